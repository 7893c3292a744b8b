// Private to index/: the state behind ChunkStore, shared by the files that implement it.
//   chunk_store.cc          put, read, chunk file I/O, the public methods
//   chunk_store_recover.cc  schema, loading the index, reconciling it with the files
//   chunk_store_lru.cc      LRU, quota, eviction, removal, the access-time flush
// The chunk file format itself is index/chunk_file.h.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <compare>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fs/base/status.h"
#include "fs/base/unique_fd.h"
#include "index/chunk_file.h"
#include "index/chunk_store.h"
#include "index/db.h"

namespace modelfs::index {

// Every chunk a store accepts has room for its block hashes in the header.
static_assert(kMaxChunkSize <= chunk_file::kMaxDataLen);

// Named (not anonymous) because ChunkStore::Impl, defined in this header, holds these types.
namespace chunk_store_internal {

inline constexpr size_t kFlushThreshold = 1024;  // dirty access entries that wake the flusher
inline constexpr size_t kEvictBatch = 256;       // victims deleted per transaction
inline constexpr size_t kOpenChunks = 64;        // chunk files kept open for readers

struct Key {
  std::string id;
  uint32_t idx = 0;
  bool operator==(const Key&) const = default;
  auto operator<=>(const Key&) const =
      default;  // NOLINT(modernize-use-nullptr): a clang-tidy 14 false positive
};

struct KeyHash {
  size_t operator()(const Key& k) const noexcept {
    return std::hash<std::string>()(k.id) ^ (size_t{k.idx} * 0x9e3779b97f4a7c15ull);
  }
};

enum class State : uint8_t {
  kWriting,   // a put is writing the file; not visible, its bytes are reserved
  kPresent,   // file and row exist
  kDeleting,  // being removed; its file may still be on disk
};

struct Entry {
  uint32_t size = 0;
  uint64_t seq = 0;     // access sequence: higher = more recently used
  uint64_t gen = 0;     // unique per entry instance, so a stale lease release is ignored
  uint32_t leases = 0;  // readers currently reading the file
  State state = State::kWriting;
};

struct ContentInfo {
  bool pinned = false;
  bool verified = false;       // see the verified table
  uint64_t bytes = 0;          // present chunks only
  std::set<uint32_t> present;  // indexes of present chunks
  int64_t last_access = 0;     // unix seconds
};

enum class FileResult { kOk, kMissing, kCorrupt, kIo };

// A chunk file kept open with its decoded header, so a sequential reader does not pay an
// open, a header read and a header check for every kernel read of the same chunk.
struct OpenChunk {
  UniqueFd fd;
  uint64_t gen = 0;  // the entry instance it belongs to
  uint32_t data_len = 0;
  std::unique_ptr<unsigned char[]> header;  // kHeaderSize bytes, already checked
  uint64_t block_hash(uint32_t b) const { return chunk_file::BlockHash(header.get(), b); }
};

// Reads up to n bytes at off; returns the bytes read (short at end of file) or -1 (errno set).
ssize_t PreadAll(int fd, void* buf, size_t n, off_t off);

}  // namespace chunk_store_internal

struct ChunkStore::Impl {
  using Key = chunk_store_internal::Key;
  using KeyHash = chunk_store_internal::KeyHash;
  using Entry = chunk_store_internal::Entry;
  using ContentInfo = chunk_store_internal::ContentInfo;
  using FileResult = chunk_store_internal::FileResult;
  using OpenChunk = chunk_store_internal::OpenChunk;

  Impl(Db& d, ChunkStoreOptions o) : db(d), opt(std::move(o)) {}

  // Lock order: flush_mu -> db.mutex() -> mu. flusher_mu is a leaf. mu is never held across
  // file I/O or SQLite calls.
  Db& db;
  ChunkStoreOptions opt;
  std::string dir;
  uint32_t chunk_size = 0;

  // Prepared once; guarded by db.mutex().
  Stmt ins_content, ins_chunk, del_chunk, del_empty_content, upd_seq, upd_access, upd_pin, set_meta,
      ins_verified, del_verified, del_empty_verified;

  std::mutex flush_mu;  // serializes flush_access so an older batch never overwrites a newer

  mutable std::mutex mu;
  std::condition_variable key_cv;  // an entry left kWriting or kDeleting
  std::unordered_map<Key, Entry, KeyHash> entries;
  std::map<std::string, ContentInfo, std::less<>> contents;
  std::set<std::pair<uint64_t, Key>> lru;  // present, unpinned entries by access sequence
  std::unordered_set<Key, KeyHash> dirty;  // access sequence not yet in SQLite
  std::set<std::string, std::less<>> dirty_contents;
  uint64_t next_seq = 1;
  uint64_t next_gen = 1;
  uint64_t used = 0;      // bytes of present + deleting entries (files that may be on disk)
  uint64_t reserved = 0;  // bytes of entries being written
  uint64_t deleting = 0;  // bytes of entries being deleted
  uint64_t present_chunks = 0;
  uint64_t capacity = 0;
  uint64_t evicted_chunks = 0;
  uint64_t evicted_bytes = 0;
  uint64_t corrupt_chunks = 0;

  std::mutex flusher_mu;
  std::condition_variable flusher_cv;
  bool stop = false;
  bool flush_wanted = false;
  std::thread flusher;

  std::atomic<uint64_t> tmp_counter{0};

  // Leaf lock. Entries are checked against the chunk's gen, so a stale one is never used.
  mutable std::mutex open_mu;
  mutable std::unordered_map<Key, std::shared_ptr<const OpenChunk>, KeyHash> open_chunks;

  std::string content_dir(std::string_view id) const {
    std::string p = dir;
    p += '/';
    p.append(id.substr(0, 2));
    p += '/';
    p.append(id);
    return p;
  }
  std::string chunk_path(std::string_view id, uint32_t idx) const {
    return content_dir(id) + "/" + std::to_string(idx);
  }

  // chunk_store_recover.cc
  Status init_db(uint64_t* max_seq);
  Status load(uint64_t max_seq);
  Status reconcile();

  // chunk_store_lru.cc
  void start_flusher();
  void shutdown();
  void run_flusher();
  Status flush();
  // mu held.
  void touch_locked(const Key& key, Entry& e, int64_t now);
  void add_present_locked(const Key& key, Entry& e);
  void mark_deleting_locked(const Key& key, Entry& e);
  void erase_content_if_empty_locked(const std::string& id);
  void drop(const Key& key, uint64_t gen);
  void remove_batch(const std::vector<std::pair<Key, uint32_t>>& victims, bool evicted);
  Status evict_to(uint64_t target, uint64_t* freed);

  // chunk_store.cc
  int write_file(const Key& key, const std::string& header, std::string_view data);
  FileResult open_chunk(const Key& key, uint64_t gen, uint32_t size,
                        std::shared_ptr<const OpenChunk>* out, std::string* why) const;
  void forget_open(const Key& key) const;
  FileResult read_file(const Key& key, uint64_t gen, uint32_t size, uint32_t offset,
                       uint32_t length, char* dst, std::string* why) const;
  Status put(std::string_view id, uint32_t idx, std::string_view data);
  Status read(std::string_view id, uint32_t idx, uint32_t offset, uint32_t length, char* dst);
};

}  // namespace modelfs::index
