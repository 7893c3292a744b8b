// The data path: serves byte ranges of immutable files from the chunk store, fetching what is
// missing upstream. It composes the units of fs/read:
//   inflight.h        one fetch per chunk; readers of a chunk in flight wait for it (bounded)
//   fetcher.h         range requests into the store, on the reader's thread or a worker pool
//   readahead.h       the window a sequential reader gets, ramped from the measured network
//   verifier.h        sha256 of LFS files in file order as their chunks land
//   hot_tier.h        chunks kept in memory when the disk cache has no room
//   buffer_pool.h     the chunk buffers, reused
//   model_prefetch.h  what a loader reads next
// and, in their own files: small random misses answered by their own range request
// (reader_direct.cc) and strict verification (reader_strict.cc).
//
// Integrity of LFS files (content id = sha256): a mismatch drops every chunk of the file, asks
// the kernel to forget its cached pages (on_content_dropped) and fails the read that needed
// the verdict with kIo:
//   lazy (default): a read of the file's last chunk waits for the verdict, so a reader of the
//     whole file (cat, cp, a model loader) always gets an error, never a silent success;
//     bytes before the end may have been served unverified.
//   strict (options.strict_verify): no byte of an unverified file is served; the first read
//     downloads and checks the whole file.
//
// Thread safety: all methods may be called concurrently; per-read state is per open handle,
// so nothing serialises unrelated reads of one file.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/options.h"
#include "fs/read/buffer_pool.h"
#include "fs/read/chunk.h"
#include "fs/read/fetcher.h"
#include "fs/read/hot_tier.h"
#include "fs/read/inflight.h"
#include "fs/read/readahead.h"
#include "fs/read/upstream.h"
#include "fs/read/verifier.h"
#include "index/chunk_store.h"

namespace modelfs::fs {

// One open file: what it reads (fixed at open) and its readahead state.
struct OpenFile {
  fetch::FileLocation loc;
  std::string content_id;
  bool model_file = false;      // read ahead at full width once past the header
  uint32_t mismatch_epoch = 0;  // the content's sha256 mismatch count when opened
  Mutex mu;
  ReadaheadState ra GUARDED_BY(mu);
};

struct ReaderStats {
  uint64_t reads = 0;
  uint64_t bytes_read = 0;         // bytes returned to readers
  uint64_t bytes_from_cache = 0;   // of which read back from the chunk store
  uint64_t bytes_from_memory = 0;  // served from chunks in memory (just fetched, or hot tier)
  uint64_t shared_waits = 0;       // times a reader joined a fetch already in flight
  uint64_t direct_reads = 0;       // small random misses answered from their own range request
  uint64_t corrupt_chunks = 0;     // failed their checksum on read-back and were refetched
  uint64_t read_errors = 0;
  uint64_t inflight_chunks = 0;         // now
  uint64_t model_prefetch_files = 0;    // files queued by model-aware prefetch
  uint64_t model_prefetch_skipped = 0;  // sets not prefetched: they would not fit the cache
  FetcherStats fetch;
  VerifierStats verify;
};

class Reader {
 public:
  Reader(const CoreOptions& options, index::ChunkStore& store, Upstream& upstream);
  ~Reader();  // stops the fetch workers (their chunks fail with kCancelled) and joins them
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  std::unique_ptr<OpenFile> open(fetch::FileLocation loc, std::string content_id);
  // Reads [offset, offset + size) clipped to the file: *out gets pieces of memory, no copy.
  Status read(OpenFile& file, uint64_t offset, size_t size, ReadPieces* out);
  // The same, copied into one string.
  Status read(OpenFile& file, uint64_t offset, size_t size, std::string* out);

  // Makes every chunk of the file present (prefetch) with up to `jobs` ranges in flight, then
  // checks its sha256 (kIo on a mismatch, after the bad data was dropped).
  // progress gets the bytes of each chunk as it lands; returning false cancels (kCancelled).
  Status fetch_all(const fetch::FileLocation& loc, const std::string& content_id, unsigned jobs,
                   const std::function<bool(uint64_t)>& progress);

  // Model-aware prefetch: fetches these files whole, in order, in the background, if together
  // they fit the cache beside what is pinned; once per content.
  void prefetch_files(const std::vector<std::pair<fetch::FileLocation, std::string>>& files);

  ReaderStats stats() const;

  // Drops the content's chunks kept in memory (after rm or verify removed them from disk).
  void forget_content(const std::string& content_id) { hot_.forget(content_id); }

  // Called (from a worker thread) after a content's data was dropped for a sha256 mismatch, so
  // the kernel's cached pages of it can be invalidated. Set before the first read.
  void set_on_content_dropped(std::function<void(const std::string& content_id)> fn) {
    on_dropped_ = std::move(fn);
  }

 private:
  uint64_t chunk_len(uint64_t file_size, uint32_t index) const;
  // *waited: the bytes were in flight (or missing) and the read had to wait for them.
  Status read_chunk(OpenFile& f, uint32_t index, uint32_t offset, uint32_t length,
                    uint32_t last_needed, std::chrono::steady_clock::time_point deadline,
                    ReadPieces* out, bool* waited);
  // Drops a chunk from the hot tier once a read reached its end and it is on disk.
  void release_if_read(const OpenFile& f, uint32_t index, uint64_t read_end, uint64_t chunk_bytes);
  void schedule_readahead(OpenFile& f, uint64_t offset, uint64_t end);
  // Queues [from, to) as range jobs of up to `part` bytes; chunks already there are skipped.
  void schedule(const fetch::FileLocation& loc, const std::string& cid, uint64_t from, uint64_t to,
                uint64_t part, FetchPriority priority);
  // reader_direct.cc: a small random read of a chunk nobody has, answered by its own short
  // range request while the whole chunk is fetched for the cache. False: use the normal path.
  bool read_direct(OpenFile& f, uint64_t offset, uint64_t end, ReadPieces* out);
  // reader_strict.cc
  Status read_strict(OpenFile& f, uint64_t offset, uint64_t end, ReadPieces* out);
  Status strict_check(OpenFile& f);

  const CoreOptions& options_;
  index::ChunkStore& store_;
  Upstream& upstream_;
  const uint32_t chunk_size_;
  const ReadaheadConfig ra_config_;
  BufferPool buffers_;
  HotTier hot_;
  Inflight inflight_;
  Verifier verifier_;
  std::function<void(const std::string&)> on_dropped_;

  Mutex model_mu_;
  std::unordered_set<std::string> model_prefetched_ GUARDED_BY(model_mu_);

  struct Counters {
    std::atomic<uint64_t> reads{0}, bytes_read{0}, bytes_from_cache{0}, bytes_from_memory{0},
        shared_waits{0}, direct_reads{0}, corrupt_chunks{0}, read_errors{0}, model_files{0},
        model_skipped{0};
  } n_;
  // Last member: its destructor joins the workers while everything above is still alive.
  Fetcher fetcher_;
};

}  // namespace modelfs::fs
