#include "fs/read/fetcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace modelfs::fs {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kAlpha = 0.2;  // weight of the newest sample
// Workers that model prefetch may not take, so readahead and direct reads never wait for it.
constexpr unsigned kReservedForReaders = 4;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

Fetcher::Fetcher(index::ChunkStore& store, Upstream& upstream, Inflight& inflight, HotTier& hot,
                 Verifier& verifier, BufferPool& buffers, unsigned threads)
    : store_(store),
      upstream_(upstream),
      inflight_(inflight),
      buffers_(buffers),
      hot_(hot),
      verifier_(verifier),
      chunk_size_(store.chunk_size()),
      thread_count_(std::max(1u, threads)) {
  for (unsigned i = 0; i < thread_count_; ++i) workers_.emplace_back([this] { work(); });
}

Fetcher::~Fetcher() {
  stopping_ = true;
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

PendingList Fetcher::claim(const std::string& cid, uint32_t first, uint32_t end) {
  return inflight_.claim(cid, first, end, [&](uint32_t i) {
    return store_.contains(cid, i) || hot_.get(cid, i) != nullptr;
  });
}

void Fetcher::submit(FetchJob job) {
  {
    MutexLock lock(mu_);
    queue_[static_cast<int>(job.priority)].push_back(std::move(job));
  }
  cv_.notify_one();
}

void Fetcher::work() {
  const unsigned model_cap =
      thread_count_ > kReservedForReaders ? thread_count_ - kReservedForReaders : 1;
  for (;;) {
    FetchJob job;
    bool model = false;
    {
      MutexLock lock(mu_);
      for (;;) {
        if (!queue_[0].empty()) {
          job = std::move(queue_[0].front());
          queue_[0].pop_front();
        } else if (!queue_[1].empty()) {
          job = std::move(queue_[1].front());
          queue_[1].pop_front();
        } else if (!queue_[2].empty() && (model_running_ < model_cap || stop_)) {
          job = std::move(queue_[2].front());
          queue_[2].pop_front();
          model = true;
          ++model_running_;
        } else if (stop_) {
          return;
        } else {
          cv_.wait(lock);
          continue;
        }
        break;
      }
    }
    run(std::move(job));
    if (model) {
      MutexLock lock(mu_);
      --model_running_;
      cv_.notify_all();  // a model job may have waited for this slot
    }
  }
}

void Fetcher::post(std::function<void()> fn) {
  FetchJob job;
  job.priority = FetchPriority::kBackground;
  job.after = std::move(fn);
  submit(std::move(job));
}

void Fetcher::run(FetchJob job) {
  struct After {
    std::function<void()>& fn;
    ~After() {
      if (fn) fn();
    }
  } after{job.after};
  const auto& loc = job.loc;
  const std::string& cid = job.cid;
  PendingList& pending = job.pending;
  if (pending.empty()) return;
  const uint64_t begin = uint64_t{job.first} * chunk_size_;
  const uint64_t end = std::min(begin + pending.size() * uint64_t{chunk_size_}, loc.size);
  auto chunk_len = [&](uint32_t index) {
    const uint64_t start = uint64_t{index} * chunk_size_;
    return static_cast<size_t>(std::min<uint64_t>(chunk_size_, loc.size - start));
  };
  size_t done = 0;
  auto new_chunk = [&](uint32_t index) {
    return std::make_shared<ChunkData>(buffers_.get(), chunk_len(index));
  };
  std::shared_ptr<ChunkData> buf = new_chunk(job.first);
  const auto t0 = Clock::now();
  Clock::time_point first_byte{};
  auto sink = [&](const char* data, size_t n) {
    if (stopping_) return false;
    if (first_byte == Clock::time_point{}) first_byte = Clock::now();
    while (n > 0 && done < pending.size()) {
      const uint32_t index = job.first + static_cast<uint32_t>(done);
      const size_t take = std::min(buf->room(), n);
      std::memcpy(buf->tail(), data, take);
      buf->grow(take);
      data += take;
      n -= take;
      if (buf->room() > 0) break;
      ChunkRef bytes = std::exchange(buf, nullptr);  // refilled below while chunks remain
      verifier_.before_put(cid, index);
      if (Status s = store_.put(cid, index, std::string_view(bytes->data(), bytes->size()));
          !s.ok()) {
        hot_.put(cid, index, bytes);  // the only copy until the reader comes for it
        if (s.code() == Code::kNoSpace) store_full_ = true;
        spdlog::warn("cache: chunk {} of {} not stored: {}", index, loc.path, s.to_string());
      } else {
        store_full_ = false;
        // A reader is usually right behind readahead: it gets these bytes from memory.
        // Background work (prefetch, pin) has nobody waiting.
        if (job.priority != FetchPriority::kBackground) hot_.put(cid, index, bytes);
        // Before finish(): a reader woken for this chunk finds it already hashed.
        verifier_.advance(loc, cid, index, bytes);
      }
      bytes_ += bytes->size();
      chunks_++;
      inflight_.finish(cid, index, *pending[done], Status::Ok(), std::move(bytes));
      ++done;
      if (done < pending.size()) {
        buf = new_chunk(job.first + static_cast<uint32_t>(done));
      }
    }
    return true;
  };
  Status st;
  if (stopping_) {
    st = {Code::kCancelled, "shutting down"};
  } else {
    requests_++;
    const uint64_t now_in_flight = ++in_flight_;
    uint64_t peak = peak_.load();
    while (now_in_flight > peak && !peak_.compare_exchange_weak(peak, now_in_flight)) {
    }
    {
      MutexLock lock(net_mu_);
      meter_.started(t0);
    }
    st = upstream_.read_range(loc, begin, end - begin, sink);
    --in_flight_;
    const bool measured = st.ok() && first_byte != Clock::time_point{};
    note_request(measured, Seconds(first_byte - t0), Seconds(Clock::now() - first_byte),
                 measured ? end - begin : 0);
  }
  if (done < pending.size()) {
    Status err = st.ok() ? Status(Code::kIo, "upstream ended early") : st;
    // A file that vanished upstream is an I/O error to its reader, never "no such file".
    if (err.not_found()) err = Status(Code::kIo, err.to_string());
    if (err.code() != Code::kCancelled) {
      spdlog::warn("fetch {}@{}/{} bytes {}-{}: {}", loc.repo_id, loc.commit.substr(0, 8), loc.path,
                   begin, end, st.to_string());
    }
    for (size_t i = done; i < pending.size(); ++i) {
      inflight_.finish(cid, job.first + static_cast<uint32_t>(i), *pending[i], err, nullptr);
    }
  }
}

void Fetcher::note_request(bool measured, double ttfb_s, double flow_s, uint64_t bytes) {
  MutexLock lock(net_mu_);
  meter_.ended(Clock::now(), bytes);
  net_.rate = meter_.rate();
  if (!measured) return;
  const bool first = net_.samples == 0;  // read here: the analysis does not see into lambdas
  auto mix = [first](double old, double sample) {
    return first ? sample : (1 - kAlpha) * old + kAlpha * sample;
  };
  net_.ttfb_s = mix(net_.ttfb_s, ttfb_s);
  // Small requests say little about the rate (their time is mostly latency).
  if (bytes >= (256u << 10) && flow_s > 0) {
    net_.conn_rate = mix(net_.conn_rate, static_cast<double>(bytes) / flow_s);
  }
  net_.samples++;
}

NetEstimate Fetcher::net() const {
  MutexLock lock(net_mu_);
  return net_;
}

FetcherStats Fetcher::stats() const {
  FetcherStats s;
  s.bytes_fetched = bytes_;
  s.chunks_fetched = chunks_;
  s.requests = requests_;
  s.requests_in_flight = in_flight_;
  s.peak_in_flight = peak_;
  {
    MutexLock lock(mu_);
    s.queued = queue_[0].size() + queue_[1].size() + queue_[2].size();
  }
  s.net = net();
  return s;
}

}  // namespace modelfs::fs
