// Download jobs: prefetch or pin handed to the mount, run in the background, persisted in the
// index so they go on after a restart (running and pending ones continue; paused ones stay
// paused; what was fetched is kept because it is in the cache). At most max_jobs run at once;
// the rest wait as pending, oldest first. Pausing or cancelling stops a job's fetches; resuming
// runs the prefetch again, which skips what is cached.
//
// Who may do what is decided by the caller (wire.cc): anyone who can read the mount may start a
// prefetch job, admins a pin job; a job's owner (its uid) and admins may pause, resume or
// cancel it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/control/service.h"
#include "index/job_store.h"

namespace modelfs::fs {

struct JobsOptions {
  unsigned max_jobs = 2;
  std::chrono::seconds keep_finished{24 * 3600};  // finished jobs are listed this long
};

// A job as callers see it: the persisted record plus live figures.
struct JobView {
  index::JobRecord record;
  std::string file;         // being fetched now
  double rate = 0;          // bytes/s, smoothed; 0 when not running
  double eta_seconds = -1;  // -1: unknown
  std::string hint;         // failed: what to do
};

class Jobs {
 public:
  // Loads persisted jobs (running ones become pending again) and starts what may run.
  Jobs(Service& service, index::JobStore& store, JobsOptions options);
  ~Jobs();  // stops running jobs without changing their persisted state, joins
  Jobs(const Jobs&) = delete;
  Jobs& operator=(const Jobs&) = delete;

  // The repo and globs were checked by the caller. Returns the new job (pending or running).
  Status start(uint32_t uid, bool pin, const std::string& repo, const Selection& sel,
               unsigned ranges, JobView* out);
  Status get(int64_t id, JobView* out);
  std::vector<JobView> list();
  // kNotFound for an unknown id; kInvalid when the job is in a state that does not allow it.
  Status pause(int64_t id);
  Status resume(int64_t id);
  Status cancel(int64_t id);
  // Calls on_update about every `every` while the job is unfinished (false from it stops
  // waiting); returns with the finished job in *out.
  Status wait(int64_t id, std::chrono::milliseconds every,
              const std::function<bool(const JobView&)>& on_update, JobView* out);

 private:
  struct Live {
    JobView view;
    bool stop = false;    // asked to stop: the runner ends the prefetch
    std::string stop_as;  // state to record when stopped: paused, cancelled, "" (exit)
    bool running = false;
    std::chrono::steady_clock::time_point rate_t{};
    uint64_t rate_bytes = 0;
    std::chrono::steady_clock::time_point saved_t{};
  };
  void schedule() REQUIRES(mu_);
  void run(int64_t id);
  void prune() REQUIRES(mu_);
  void save(const index::JobRecord& r);

  Service& service_;
  index::JobStore& store_;
  const JobsOptions options_;
  Mutex mu_;
  CondVar changed_;
  bool closing_ GUARDED_BY(mu_) = false;
  std::map<int64_t, Live> jobs_ GUARDED_BY(mu_);
  std::map<int64_t, std::thread> threads_ GUARDED_BY(mu_);
  std::vector<std::thread> finished_threads_ GUARDED_BY(mu_);  // joined later, not by themselves
};

// Why a job failed, as advice for its user.
std::string JobHint(const std::string& code_name);

}  // namespace modelfs::fs
