#include "fs/control/jobs.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace modelfs::fs {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Finished(const std::string& state) {
  return state == "completed" || state == "failed" || state == "cancelled";
}

}  // namespace

std::string JobHint(const std::string& code_name) {
  const Code c = CodeFromName(code_name);
  if (IsNotFound(c)) return "check the repo name, revision and patterns on the Hub";
  if (IsNoAccess(c)) {
    return "give the mount a token with access (token_file) and accept the repo's terms on "
           "the Hub, then resume the job";
  }
  if (c == Code::kNoSpace) {
    return "free space (modelfs gc), raise cache_size, or select fewer files; then resume";
  }
  if (c == Code::kOffline) return "the mount is offline; mount it online, then resume";
  if (IsUpstream(c)) {
    return "the Hub could not be reached or answered badly; check the network and the "
           "endpoint, then resume the job (what was fetched is kept)";
  }
  return "see the mount's log; resume the job to try again";
}

Jobs::Jobs(Service& service, index::JobStore& store, JobsOptions options)
    : service_(service), store_(store), options_(options) {
  std::vector<index::JobRecord> rows;
  if (Status s = store_.list(&rows); !s.ok()) spdlog::error("jobs: {}", s.to_string());
  MutexLock lock(mu_);
  for (auto& r : rows) {
    if (r.state == "running") r.state = "pending";  // interrupted by a stop or a crash
    Live l;
    if (r.state == "failed") l.view.hint = JobHint(r.error_code);
    l.view.record = std::move(r);
    jobs_.emplace(l.view.record.id, std::move(l));
  }
  prune();
  schedule();
}

Jobs::~Jobs() {
  std::map<int64_t, std::thread> threads;
  std::vector<std::thread> finished;
  {
    MutexLock lock(mu_);
    closing_ = true;
    for (auto& [id, l] : jobs_) l.stop = l.running;
    threads.swap(threads_);
    finished.swap(finished_threads_);
    changed_.notify_all();
  }
  for (auto& [id, t] : threads) t.join();
  for (auto& t : finished) t.join();
}

void Jobs::save(const index::JobRecord& r) {
  if (Status s = store_.update(r); !s.ok()) {
    spdlog::warn("jobs: cannot save job {}: {}", r.id, s.to_string());
  }
}

void Jobs::prune() {
  const int64_t cutoff = NowUnix() - options_.keep_finished.count();
  int removed = 0;
  if (Status s = store_.prune(cutoff, &removed); !s.ok()) {
    spdlog::warn("jobs: cannot prune: {}", s.to_string());
  }
  std::erase_if(jobs_, [cutoff](const auto& kv) {
    const auto& r = kv.second.view.record;
    return !kv.second.running && Finished(r.state) && r.finished_at < cutoff;
  });
}

void Jobs::schedule() {
  for (auto it = finished_threads_.begin(); it != finished_threads_.end();) {
    if (it->get_id() == std::this_thread::get_id()) {
      ++it;
      continue;
    }
    it->join();
    it = finished_threads_.erase(it);
  }
  if (closing_) return;
  size_t running = 0;
  for (const auto& [id, l] : jobs_) running += l.running ? 1 : 0;
  for (auto& [id, l] : jobs_) {
    if (running >= std::max(1u, options_.max_jobs)) break;
    if (l.running || l.view.record.state != "pending") continue;
    l.running = true;
    l.stop = false;
    l.view.record.state = "running";
    l.rate_t = l.saved_t = SteadyClock::now();
    l.rate_bytes = l.view.record.bytes_done;
    save(l.view.record);
    ++running;
    threads_[id] = std::thread([this, id = id] { run(id); });
  }
}

void Jobs::run(int64_t id) {
  index::JobRecord r;
  {
    MutexLock lock(mu_);
    r = jobs_.at(id).view.record;
  }
  spdlog::info("jobs: job {} starts: {} {} for uid {}", id, r.pin ? "pin" : "prefetch", r.repo,
               r.uid);
  RepoArg repo;
  Status st;
  PrefetchResult result;
  if (!ParseRepoArg(r.repo, &repo)) {
    st = {Code::kInvalid, "'" + r.repo + "' is not a repo"};
  } else {
    const Selection sel{r.patterns, r.include, r.exclude};
    st = service_.prefetch(
        repo, sel, r.ranges, r.pin,
        [&](const PrefetchEvent& e) {
          MutexLock lock(mu_);
          Live& l = jobs_.at(id);
          index::JobRecord& rec = l.view.record;
          switch (e.kind) {
            case PrefetchEvent::Kind::kStart:
              rec.commit = e.commit;
              rec.files_total = static_cast<int>(e.files);
              rec.total_bytes = e.total_bytes;
              rec.files_done = 0;
              l.rate_bytes = e.bytes_done;
              l.rate_t = SteadyClock::now();
              break;
            case PrefetchEvent::Kind::kProgress:
            case PrefetchEvent::Kind::kFileDone:
              rec.files_done = e.files_done;
              l.view.file = e.file;
              break;
          }
          rec.bytes_done = e.bytes_done;
          const auto now = SteadyClock::now();
          const double dt = std::chrono::duration<double>(now - l.rate_t).count();
          if (dt >= 0.5) {
            const double inst =
                static_cast<double>(rec.bytes_done - std::min(rec.bytes_done, l.rate_bytes)) / dt;
            l.view.rate = l.view.rate == 0 ? inst : 0.6 * l.view.rate + 0.4 * inst;
            l.rate_t = now;
            l.rate_bytes = rec.bytes_done;
          }
          if (now - l.saved_t >= std::chrono::seconds(1) ||
              e.kind != PrefetchEvent::Kind::kProgress) {
            l.saved_t = now;
            save(rec);
          }
          changed_.notify_all();
          return !l.stop;
        },
        &result);
  }
  MutexLock lock(mu_);
  Live& l = jobs_.at(id);
  index::JobRecord& rec = l.view.record;
  l.running = false;
  l.view.rate = 0;
  l.view.file.clear();
  if (st.ok()) {
    rec.state = "completed";
    rec.bytes_done = rec.total_bytes;
    rec.files_done = rec.files_total;
  } else if (l.stop || st.code() == Code::kCancelled) {
    // Paused, cancelled or resumed meanwhile (the state says which), or the mount is closing:
    // then the row keeps "running", so the next mount goes on with it.
    if (rec.state == "running" && !closing_) rec.state = "pending";
  } else {
    rec.state = "failed";
    rec.error_code = CodeName(st.code());
    rec.error = st.message();
    l.view.hint = JobHint(rec.error_code);
  }
  l.stop = false;
  if (Finished(rec.state) && rec.finished_at == 0) rec.finished_at = NowUnix();
  if (!(closing_ && rec.state == "running")) save(rec);
  spdlog::info("jobs: job {} {}{}", id, rec.state, rec.error.empty() ? "" : ": " + rec.error);
  if (auto it = threads_.find(id); it != threads_.end()) {
    finished_threads_.push_back(std::move(it->second));
    threads_.erase(it);
  }
  schedule();
  changed_.notify_all();
}

Status Jobs::start(uint32_t uid, bool pin, const std::string& repo, const Selection& sel,
                   unsigned ranges, JobView* out) {
  for (const auto* list : {&sel.patterns, &sel.include, &sel.exclude}) {
    for (const auto& g : *list) {
      if (g.find('\n') != std::string::npos) return {Code::kInvalid, "a pattern has a newline"};
    }
  }
  index::JobRecord r;
  r.uid = uid;
  r.pin = pin;
  r.repo = repo;
  r.patterns = sel.patterns;
  r.include = sel.include;
  r.exclude = sel.exclude;
  r.ranges = std::clamp(ranges, 1u, 64u);
  r.state = "pending";
  MutexLock lock(mu_);
  if (closing_) return {Code::kBusy, "the mount is stopping"};
  if (Status s = store_.add(&r); !s.ok()) return s;
  Live l;
  l.view.record = r;
  const int64_t id = r.id;
  jobs_.emplace(id, std::move(l));
  schedule();
  *out = jobs_.at(id).view;
  return Status::Ok();
}

Status Jobs::get(int64_t id, JobView* out) {
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return {Code::kNotFound, "no job " + std::to_string(id)};
  *out = it->second.view;
  const auto& r = out->record;
  if (out->rate > 0 && r.total_bytes >= r.bytes_done) {
    out->eta_seconds = static_cast<double>(r.total_bytes - r.bytes_done) / out->rate;
  }
  return Status::Ok();
}

std::vector<JobView> Jobs::list() {
  std::vector<int64_t> ids;
  {
    MutexLock lock(mu_);
    prune();
    for (const auto& [id, l] : jobs_) ids.push_back(id);
  }
  std::vector<JobView> out;
  for (int64_t id : ids) {
    JobView v;
    if (get(id, &v).ok()) out.push_back(std::move(v));
  }
  return out;
}

Status Jobs::pause(int64_t id) {
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return {Code::kNotFound, "no job " + std::to_string(id)};
  Live& l = it->second;
  std::string& state = l.view.record.state;
  if (state == "paused") return Status::Ok();
  if (state != "pending" && state != "running") {
    return {Code::kInvalid, "job " + std::to_string(id) + " is " + state + ": nothing to pause"};
  }
  state = "paused";
  l.stop = l.running;
  save(l.view.record);
  changed_.notify_all();
  return Status::Ok();
}

Status Jobs::resume(int64_t id) {
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return {Code::kNotFound, "no job " + std::to_string(id)};
  Live& l = it->second;
  index::JobRecord& r = l.view.record;
  if (r.state == "pending" || r.state == "running") return Status::Ok();
  if (r.state != "paused" && r.state != "failed") {
    return {Code::kInvalid, "job " + std::to_string(id) + " is " + r.state + ": start a new one"};
  }
  r.state = "pending";
  r.error_code.clear();
  r.error.clear();
  r.finished_at = 0;
  l.view.hint.clear();
  save(r);
  schedule();
  changed_.notify_all();
  return Status::Ok();
}

Status Jobs::cancel(int64_t id) {
  MutexLock lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return {Code::kNotFound, "no job " + std::to_string(id)};
  Live& l = it->second;
  index::JobRecord& r = l.view.record;
  if (r.state == "cancelled") return Status::Ok();
  if (r.state == "completed" || r.state == "failed") {
    return {Code::kInvalid, "job " + std::to_string(id) + " is " + r.state + " already"};
  }
  r.state = "cancelled";
  r.finished_at = NowUnix();
  l.stop = l.running;
  save(r);
  schedule();
  changed_.notify_all();
  return Status::Ok();
}

Status Jobs::wait(int64_t id, std::chrono::milliseconds every,
                  const std::function<bool(const JobView&)>& on_update, JobView* out) {
  while (true) {
    JobView v;
    if (Status s = get(id, &v); !s.ok()) return s;
    if (Finished(v.record.state)) {
      MutexLock lock(mu_);
      auto it = jobs_.find(id);
      if (it == jobs_.end() || !it->second.running) {
        *out = std::move(v);
        return Status::Ok();
      }
    } else if (!on_update(v)) {
      return {Code::kCancelled, "stopped waiting"};
    }
    MutexLock lock(mu_);
    if (closing_) return {Code::kBusy, "the mount is stopping"};
    changed_.wait_for(lock, every);
  }
}

}  // namespace modelfs::fs
