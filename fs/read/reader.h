// The data path: serves byte ranges of immutable files from the chunk store, fetching what is
// missing from the Hub.
//
// - A miss fetches the chunks the read needs in the reading thread; sequential reading grows a
//   readahead window (readahead_initial doubling to readahead_max) fetched in parallel ranges
//   of fetch_unit bytes on a thread pool. A random read fetches only its own chunks.
// - One fetch per chunk: readers that want a chunk already in flight wait for it (bounded by
//   read_timeout) and get the same bytes.
// - Per-read state is per open handle; nothing serialises unrelated reads of one file.
// - Integrity of LFS files (content id = sha256): chunks are hashed in file order as they land
//   (a HashCursor per file), so the sha256 is known the moment the last chunk is stored. A
//   match is recorded in the index (ChunkStore::mark_verified). A mismatch drops every chunk of
//   the file, asks the kernel to forget its cached pages (on_content_dropped) and fails the
//   read that needed the verdict with kIo:
//     lazy (default): a read of the file's last chunk waits for the verdict, so a reader of
//       the whole file (cat, cp, a model loader) always gets an error, never a silent success;
//       bytes before the end may have been served unverified.
//     strict (options.strict_verify): no byte of an unverified file is served; the first read
//       downloads and checks the whole file.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/status.h"
#include "fs/options.h"
#include "fs/read/thread_pool.h"
#include "index/chunk_store.h"

namespace modelfs::fs {

// One open file: what it reads (fixed at open) and its readahead state.
struct OpenFile {
  fetch::FileLocation loc;
  std::string content_id;
  std::mutex mu;  // guards the readahead fields only
  uint64_t next_offset = 0;
  uint64_t run_start = 0;  // where the current sequential run began
  bool jumped = true;      // the last read did not follow on from the one before
  uint64_t window = 0;
  uint64_t scheduled_until = 0;
  uint32_t mismatch_epoch = 0;  // the content's sha256 mismatch count when opened
};

struct ReaderStats {
  uint64_t reads = 0;
  uint64_t bytes_read = 0;        // bytes returned to readers
  uint64_t bytes_from_cache = 0;  // of which read back from the chunk store
  uint64_t bytes_fetched = 0;     // chunk bytes received from upstream
  uint64_t chunks_fetched = 0;
  uint64_t shared_waits = 0;       // times a reader joined a fetch already in flight
  uint64_t direct_reads = 0;       // small random misses answered from their own range request
  uint64_t bytes_from_memory = 0;  // served from chunks just fetched, still in memory
  uint64_t corrupt_chunks = 0;     // failed their checksum on read-back and were refetched
  uint64_t files_verified = 0;     // sha256 matched
  uint64_t sha256_mismatches = 0;
  uint64_t read_errors = 0;
  uint64_t inflight_chunks = 0;  // now
};

class Reader {
 public:
  Reader(const CoreOptions& options, index::ChunkStore& store, fetch::HubClient& hub);
  ~Reader();  // cancels readahead and waits for its threads
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  std::unique_ptr<OpenFile> open(fetch::FileLocation loc, std::string content_id);
  // Reads [offset, offset + size) clipped to the file into *out.
  Status read(OpenFile& file, uint64_t offset, size_t size, std::string* out);

  // Makes every chunk of the file present (prefetch) with up to `jobs` ranges in flight, then
  // checks its sha256 (kIo on a mismatch, after the bad data was dropped).
  // progress gets the bytes of each chunk as it lands; returning false cancels (kCancelled).
  Status fetch_all(const fetch::FileLocation& loc, const std::string& content_id, unsigned jobs,
                   const std::function<bool(uint64_t)>& progress);

  ReaderStats stats() const;

  // Called (from a worker thread) after a content's data was dropped for a sha256 mismatch, so
  // the kernel's cached pages of it can be invalidated. Set before the first read.
  void set_on_content_dropped(std::function<void(const std::string& content_id)> fn) {
    on_dropped_ = std::move(fn);
  }

 private:
  struct HashCursor;
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    std::shared_ptr<const std::string> data;
  };
  using PendingList = std::vector<std::shared_ptr<Pending>>;

  uint64_t chunk_len(uint64_t file_size, uint32_t index) const;
  // Registers chunks first, first+1, ... (< end) that are neither stored nor in flight, stopping
  // at the first that is; the caller must then fetch exactly those.
  PendingList claim(const std::string& cid, uint32_t first, uint32_t end);
  void fetch_run(const fetch::FileLocation& loc, const std::string& cid, uint32_t first,
                 PendingList pending);
  void finish(const std::string& cid, uint32_t index, Pending& p, Status st,
              std::shared_ptr<const std::string> data);
  std::shared_ptr<Pending> find_inflight(const std::string& cid, uint32_t index);
  // The last chunks fetched, kept in memory (bounded): the reader that asked for them is
  // usually right behind, and when the disk cache has no room they are the only copy.
  void hot_put(const std::string& cid, uint32_t index, std::shared_ptr<const std::string> data);
  std::shared_ptr<const std::string> hot_get(const std::string& cid, uint32_t index);
  void hot_forget(const std::string& cid);
  Status read_chunk(OpenFile& f, uint32_t index, uint32_t offset, uint32_t length, char* dst,
                    uint32_t last_needed, std::chrono::steady_clock::time_point deadline);
  void schedule_readahead(OpenFile& f, uint64_t offset, uint64_t end);
  // A small random read of a chunk nobody has: fetch just its bytes (one short range request)
  // and fetch the whole chunk for the cache in the background. False: use the normal path.
  bool read_direct(OpenFile& f, uint64_t offset, uint64_t end, char* dst);
  // Hashing in file order; see the header comment.
  std::shared_ptr<HashCursor> cursor(const std::string& cid, bool force);
  void before_put(const std::string& cid, uint32_t index);
  void advance(const fetch::FileLocation& loc, const std::string& cid, uint32_t index,
               const std::string* data);
  // Ok if verified (or not an LFS file); kNotFound if chunks are missing; kIo on a mismatch.
  Status verify_complete(const fetch::FileLocation& loc, const std::string& cid);
  Status consume_locked(HashCursor& c, const fetch::FileLocation& loc, const std::string& cid);
  // The upstream sent wrong bytes: count and log it, drop the content from disk, memory and
  // the kernel's page cache, and fail the end of handles opened before now.
  void drop_bad_content(const fetch::FileLocation& loc, const std::string& cid,
                        const std::string& why);
  Status strict_check(OpenFile& f);
  Status read_strict(OpenFile& f, uint64_t offset, uint64_t end, char* dst);
  uint32_t mismatch_epoch(const std::string& cid);

  const CoreOptions& options_;
  index::ChunkStore& store_;
  fetch::HubClient& hub_;
  const uint32_t chunk_size_;
  std::atomic<bool> stopping_{false};

  std::mutex hot_mu_;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> hot_;
  std::deque<std::string> hot_order_;  // oldest first
  uint64_t hot_bytes_ = 0;
  std::atomic<size_t> hot_count_{0};     // hot_.size(), read without the lock
  std::atomic<bool> store_full_{false};  // the last put found no room

  mutable std::mutex inflight_mu_;
  std::unordered_map<std::string, std::shared_ptr<Pending>> inflight_;
  std::mutex cursors_mu_;
  std::unordered_map<std::string, std::shared_ptr<HashCursor>> cursors_;
  // sha256 mismatches per content: a handle opened before one may hold bad bytes, so the end of
  // the file is refused to it.
  std::unordered_map<std::string, uint32_t> mismatch_epoch_;
  std::function<void(const std::string&)> on_dropped_;

  struct Counters {
    std::atomic<uint64_t> reads{0}, bytes_read{0}, bytes_from_cache{0}, bytes_fetched{0},
        chunks_fetched{0}, shared_waits{0}, direct_reads{0}, bytes_from_memory{0},
        corrupt_chunks{0}, files_verified{0}, sha256_mismatches{0}, read_errors{0};
  } n_;
  // Last member: its destructor joins the workers while everything above is still alive.
  ThreadPool pool_;
};

}  // namespace modelfs::fs
