// Range fetches into the chunk store: one HTTP range request fills a run of consecutive chunks
// claimed in the single-flight registry, each stored, hashed and handed to its waiters as soon
// as its last byte arrives. Runs either in the calling thread (a reader's own miss: no queue)
// or on a pool of worker threads, one range request each (readahead, prefetch), taken by
// priority. It also measures the network (time to first byte, rate per connection and in all)
// so readahead can size its window from the bandwidth-delay product.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/mutex.h"
#include "fs/read/buffer_pool.h"
#include "fs/read/hot_tier.h"
#include "fs/read/inflight.h"
#include "fs/read/rate_meter.h"
#include "fs/read/upstream.h"
#include "fs/read/verifier.h"
#include "index/chunk_store.h"

namespace modelfs::fs {

enum class FetchPriority : uint8_t {
  kReadahead = 0,   // ahead of a reader
  kBackground = 1,  // the whole chunk behind a direct read; prefetch jobs
  kModel = 2,       // model-aware prefetch of files not opened yet
};

struct FetchJob {
  fetch::FileLocation loc;
  std::string cid;
  uint32_t first = 0;   // first chunk
  PendingList pending;  // claimed chunks first, first+1, ...
  FetchPriority priority = FetchPriority::kReadahead;
  std::function<void()> after;  // runs once the chunks are finished (or with no chunks at all)
};

// What the network looks like, from the last requests (exponentially weighted).
struct NetEstimate {
  double ttfb_s = 0;     // request sent -> first byte
  double conn_rate = 0;  // bytes/s of one request once its bytes flow
  double rate = 0;       // bytes/s delivered by all requests while busy (RateMeter)
  uint64_t samples = 0;  // requests measured
};

struct FetcherStats {
  uint64_t bytes_fetched = 0;
  uint64_t chunks_fetched = 0;
  uint64_t requests = 0;
  uint64_t requests_in_flight = 0;  // now
  uint64_t peak_in_flight = 0;      // since start
  uint64_t queued = 0;              // jobs waiting for a worker, now
  NetEstimate net;
};

class Fetcher {
 public:
  Fetcher(index::ChunkStore& store, Upstream& upstream, Inflight& inflight, HotTier& hot,
          Verifier& verifier, BufferPool& buffers, unsigned threads);
  ~Fetcher();  // stops: queued and running jobs finish their chunks with kCancelled
  Fetcher(const Fetcher&) = delete;
  Fetcher& operator=(const Fetcher&) = delete;

  // Claims chunks first.. (< end) that are neither present (store, hot tier) nor in flight,
  // stopping at the first that is.
  PendingList claim(const std::string& cid, uint32_t first, uint32_t end);
  // Fetches the job's chunks in the calling thread.
  void run(FetchJob job);
  // Queues the job for a worker.
  void submit(FetchJob job);
  // Runs fn on a worker (work that must not run under the caller's locks).
  void post(std::function<void()> fn);

  unsigned threads() const { return thread_count_; }
  // True while the last store attempt found no room (readahead then keeps to the hot tier).
  bool store_full() const { return store_full_.load(std::memory_order_relaxed); }
  NetEstimate net() const;
  FetcherStats stats() const;

 private:
  void work();
  // Every request that was started ends here; `measured` when its bytes all arrived.
  void note_request(bool measured, double ttfb_s, double flow_s, uint64_t bytes);

  index::ChunkStore& store_;
  Upstream& upstream_;
  Inflight& inflight_;
  BufferPool& buffers_;
  HotTier& hot_;
  Verifier& verifier_;
  const uint32_t chunk_size_;
  // Workers read this while the constructor is still filling workers_.
  const unsigned thread_count_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> store_full_{false};

  mutable Mutex mu_;
  CondVar cv_;
  std::deque<FetchJob> queue_[3] GUARDED_BY(mu_);  // by FetchPriority
  unsigned model_running_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;

  mutable Mutex net_mu_;
  NetEstimate net_ GUARDED_BY(net_mu_);
  RateMeter meter_ GUARDED_BY(net_mu_);

  std::atomic<uint64_t> bytes_{0}, chunks_{0}, requests_{0}, in_flight_{0}, peak_{0};
  std::vector<std::thread> workers_;  // last: started once the rest is ready
};

}  // namespace modelfs::fs
