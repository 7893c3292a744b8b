// The data path: serves byte ranges of immutable files from the chunk store, fetching what is
// missing from the Hub.
//
// - A miss fetches the chunks the read needs in the reading thread; sequential reading grows a
//   readahead window (readahead_initial doubling to readahead_max) fetched in parallel ranges
//   of fetch_unit bytes on a thread pool. A random read fetches only its own chunks.
// - One fetch per chunk: readers that want a chunk already in flight wait for it (bounded by
//   read_timeout) and get the same bytes.
// - Per-read state is per open handle; nothing serialises unrelated reads of one file.
// - When every chunk of an LFS file is present, its sha256 is checked against the Hub's; a
//   mismatch drops the file's chunks so they are fetched again, and is logged.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/options.h"
#include "fs/status.h"
#include "fs/thread_pool.h"
#include "index/chunk_store.h"

namespace modelfs::fs {

// One open file: what it reads (fixed at open) and its readahead state.
struct OpenFile {
  fetch::FileLocation loc;
  std::string content_id;
  std::mutex mu;  // guards the readahead fields only
  uint64_t next_offset = 0;
  uint64_t window = 0;
  uint64_t scheduled_until = 0;
};

struct ReaderStats {
  uint64_t reads = 0;
  uint64_t bytes_read = 0;         // bytes returned to readers
  uint64_t bytes_from_cache = 0;   // of which read back from the chunk store
  uint64_t bytes_fetched = 0;      // chunk bytes received from upstream
  uint64_t chunks_fetched = 0;
  uint64_t shared_waits = 0;       // times a reader joined a fetch already in flight
  uint64_t corrupt_chunks = 0;     // failed their checksum on read-back and were refetched
  uint64_t files_verified = 0;     // sha256 matched
  uint64_t sha256_mismatches = 0;
  uint64_t read_errors = 0;
  uint64_t inflight_chunks = 0;    // now
};

class Reader {
 public:
  Reader(const CoreOptions& options, index::ChunkStore& store, fetch::HubClient& hub);
  ~Reader();  // cancels readahead and waits for its threads
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  std::unique_ptr<OpenFile> open(fetch::FileLocation loc, std::string content_id) const;
  // Reads [offset, offset + size) clipped to the file into *out.
  Status read(OpenFile& file, uint64_t offset, size_t size, std::string* out);

  // Makes every chunk of the file present (prefetch) with up to `jobs` ranges in flight.
  // progress gets the bytes of each chunk as it lands; returning false cancels (kCancelled).
  Status fetch_all(const fetch::FileLocation& loc, const std::string& content_id, unsigned jobs,
                   const std::function<bool(uint64_t)>& progress);

  ReaderStats stats() const;

 private:
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
  Status read_chunk(OpenFile& f, uint32_t index, uint32_t offset, uint32_t length, char* dst,
                    uint32_t last_needed, std::chrono::steady_clock::time_point deadline);
  void schedule_readahead(OpenFile& f, uint64_t offset, uint64_t end);
  void maybe_verify(const fetch::FileLocation& loc, const std::string& cid);

  const CoreOptions& options_;
  index::ChunkStore& store_;
  fetch::HubClient& hub_;
  const uint32_t chunk_size_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex inflight_mu_;
  std::unordered_map<std::string, std::shared_ptr<Pending>> inflight_;
  std::mutex verify_mu_;
  std::unordered_set<std::string> verifying_;

  struct Counters {
    std::atomic<uint64_t> reads{0}, bytes_read{0}, bytes_from_cache{0}, bytes_fetched{0},
        chunks_fetched{0}, shared_waits{0}, corrupt_chunks{0}, files_verified{0},
        sha256_mismatches{0}, read_errors{0};
  } n_;
  // Last member: its destructor joins the workers while everything above is still alive.
  ThreadPool pool_;
};

}  // namespace modelfs::fs
