// A fixed set of worker threads running queued jobs in order. Used for readahead and
// verification, so a reader never waits for work it did not ask for.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "fs/base/mutex.h"

namespace modelfs::fs {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  // Runs every job already queued, then joins.
  ~ThreadPool() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void submit(std::function<void()> job) {
    {
      MutexLock lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        MutexLock lock(mu_);
        while (!stop_ && jobs_.empty()) cv_.wait(lock);
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // last: started once the rest is ready
};

}  // namespace modelfs::fs
