// Content-addressed chunk cache on local disk, indexed in SQLite, bounded by a byte limit
// with LRU eviction.
//
// A content id is a lowercase hex sha256 (64) or git oid (40); chunk i of a content holds bytes
// [i * chunk_size, (i + 1) * chunk_size). Each chunk is one file written to a temp name and
// renamed into place; its header carries an xxHash3 per 64 KiB block, checked on every read,
// so a torn or corrupted chunk is never returned (it is dropped and kCorrupt returned).
//
// LRU: reads bump an in-memory access sequence; it reaches SQLite in batches (flush_access or
// the background flusher), never one write per read. Eviction removes the least recently used
// chunks that are neither pinned nor being read, down to the low-water mark.
//
// The SQLite rows are a hint: on open after an unclean exit (sentinel file present) the store
// reconciles with the files on disk (drops rows without a valid file, adopts orphan files).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fs/base/status.h"
#include "index/db.h"

namespace modelfs::index {

// A chunk's header has room for the block hashes of 16 MiB.
inline constexpr uint32_t kMinChunkSize = 64u << 10;
inline constexpr uint32_t kMaxChunkSize = 16u << 20;

struct ChunkStoreOptions {
  std::filesystem::path dir;              // where chunk files live (created if missing)
  uint64_t capacity_bytes = 50ull << 30;  // limit on chunk payload bytes
  double low_water = 0.9;                 // eviction frees down to capacity * low_water
  uint32_t chunk_size = 1u << 20;         // at most kMaxChunkSize; an existing store keeps its own
  // Access times reach SQLite every flush_interval (or sooner when many are pending).
  // Zero: no background flusher; flush_access() and the destructor still flush.
  std::chrono::milliseconds flush_interval{2000};

  // Test hooks; leave empty in production.
  // Called inside read() while the chunk is leased (so it cannot be evicted), before the file
  // is opened.
  std::function<void(std::string_view content_id, uint32_t index)> on_read_leased;
  // Called before each chunk file write; a nonzero errno (e.g. ENOSPC) fails that write as the
  // disk would.
  std::function<int()> inject_write_errno;
};

struct ChunkStoreStats {
  uint64_t chunks = 0;
  uint64_t used_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t pinned_bytes = 0;
  uint64_t evicted_chunks = 0;  // since open
  uint64_t evicted_bytes = 0;
  uint64_t corrupt_chunks = 0;  // detected since open
};

struct ContentUsage {
  std::string content_id;
  uint64_t cached_bytes = 0;
  uint32_t chunks = 0;
  bool pinned = false;
  int64_t last_access = 0;  // unix seconds
};

class ChunkStore {
 public:
  // recover: reconcile rows and files (after an unclean exit).
  static Status Open(Db& db, ChunkStoreOptions options, bool recover,
                     std::unique_ptr<ChunkStore>* out);
  ~ChunkStore();  // flushes access times
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  uint32_t chunk_size() const;
  bool contains(std::string_view content_id, uint32_t index) const;

  // Stores a complete chunk (data.size() == chunk_size, or less for a file's last chunk).
  // Evicts first if needed; kNoSpace when pinned/in-use data leaves no room or the disk is full.
  // Storing a chunk that is already present is Ok and changes nothing.
  Status put(std::string_view content_id, uint32_t index, std::string_view data);

  // Copies [offset, offset + length) of the chunk to dst after verifying the blocks it spans.
  // kNotFound if absent; kCorrupt if a checksum fails (the chunk is then dropped).
  Status read(std::string_view content_id, uint32_t index, uint32_t offset, uint32_t length,
              char* dst);

  // sha256 (hex) of the concatenated chunks 0..n-1 where n covers `size` bytes; kNotFound if
  // any chunk is missing, kCorrupt if one fails its checksum.
  Status content_sha256(std::string_view content_id, uint64_t size, std::string* hex);

  // Whether the content's present chunks were hashed to its id since any of them was stored.
  // The mark persists; put() of any chunk of the content clears it before writing.
  bool is_verified(std::string_view content_id) const;
  Status mark_verified(std::string_view content_id);

  // Asks the kernel to start reading the chunk's file (readahead for a sequential reader of
  // cached data). No effect if the chunk is absent.
  void will_need(std::string_view content_id, uint32_t index);

  Status remove_content(std::string_view content_id);           // every chunk, pinned or not
  Status set_pinned(std::string_view content_id, bool pinned);  // applies to future chunks too
  bool is_pinned(std::string_view content_id) const;

  // Evicts LRU unpinned, unused chunks until used_bytes() <= target. *freed gets the bytes.
  Status evict_to(uint64_t target_bytes, uint64_t* freed);
  void set_capacity(uint64_t capacity_bytes);

  uint64_t cached_bytes(std::string_view content_id) const;
  uint64_t capacity() const;  // the limit now (cheap: no walk over contents)
  Status list_contents(std::vector<ContentUsage>* out) const;
  ChunkStoreStats stats() const;
  Status flush_access();

 private:
  struct Impl;
  explicit ChunkStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modelfs::index
