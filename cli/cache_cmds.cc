// The cache commands: prefetch, pin, unpin, ls, info, stats, gc, rm, verify.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/settings.h"
#include "cli/size.h"
#include "fs/control/service.h"

namespace modelfs::cli {
namespace {

using nlohmann::json;

struct CacheArgs {
  CommonArgs common;
  std::string repo;
  std::vector<std::string> patterns, include, exclude;
  unsigned jobs = 8;
  std::string to;
  bool all = false;
  bool force = false;
  bool detach = false;  // prefetch, pin: hand the work to the mount as a job
  std::string action;   // jobs: list (default), pause, resume, cancel, wait
  int64_t id = 0;       // jobs: the job
  bool watch = false;   // jobs: redraw until no job is active
};

std::string Ago(int64_t t) {
  if (t <= 0) return "never";
  int64_t d = static_cast<int64_t>(std::time(nullptr)) - t;
  if (d < 120) return std::to_string(std::max<int64_t>(d, 0)) + "s ago";
  if (d < 7200) return std::to_string(d / 60) + "m ago";
  if (d < 172800) return std::to_string(d / 3600) + "h ago";
  return std::to_string(d / 86400) + "d ago";
}

// Missing keys read as 0: operator[] on a const json must not be used for absent keys.
std::string Bytes(const json& obj, const char* key) {
  return FormatSize(obj.is_object() ? obj.value(key, uint64_t{0}) : 0);
}

// A progress bar on a terminal, plain periodic lines otherwise, JSON lines with --json.
class Progress {
 public:
  explicit Progress(bool json_out) : json_(json_out), tty_(isatty(STDERR_FILENO)) {}
  void on(const json& e) {
    if (json_) {
      std::printf("%s\n", e.dump().c_str());
      std::fflush(stdout);
      return;
    }
    std::string ev = e.value("event", "");
    auto now = std::chrono::steady_clock::now();
    if (ev == "start") {
      total_ = e.value("total_bytes", uint64_t{0});
      start_bytes_ = e.value("cached_bytes", uint64_t{0});
      files_ = e.value("files", 0);
      t0_ = now;
      std::fprintf(stderr, "%s@%s: %d files, %s; %s already cached\n", e.value("repo", "").c_str(),
                   e.value("commit", "").substr(0, 12).c_str(), files_, FormatSize(total_).c_str(),
                   FormatSize(start_bytes_).c_str());
    } else if (ev == "progress") {
      draw(e, now, false);
    } else if (ev == "file_done") {
      clear();
      std::fprintf(stderr, "  done %s (%s%s)\n", e.value("file", "").c_str(),
                   Bytes(e, "size").c_str(),
                   e.value("fetched", uint64_t{0}) == 0 ? ", was cached" : "");
      if (tty_) draw(e, now, true);
    } else if (ev == "verified" && !e.value("ok", true)) {
      std::fprintf(stderr, "  CORRUPT %s/%s (dropped)\n", e.value("repo", "").c_str(),
                   e.value("file", "").c_str());
    }
  }
  void finish() { clear(); }

 private:
  void clear() {
    if (tty_ && drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }
  void draw(const json& e, std::chrono::steady_clock::time_point now, bool force) {
    uint64_t done = e.value("bytes_done", uint64_t{0});
    int fdone = e.value("files_done", 0);
    if (!e.value("file", std::string()).empty()) current_ = e.value("file", "");
    double secs = std::chrono::duration<double>(now - t0_).count();
    double speed = secs > 0.2 ? static_cast<double>(done - start_bytes_) / secs : 0;
    double pct = total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100;
    std::string eta =
        speed > 0
            ? std::to_string(static_cast<int>(static_cast<double>(total_ - done) / speed)) + "s"
            : "?";
    if (tty_) {
      int width = 24, fill = static_cast<int>(pct / 100 * width);
      std::string bar = std::string(static_cast<size_t>(fill), '#') +
                        std::string(static_cast<size_t>(width - fill), '-');
      std::fprintf(stderr, "\r\033[K[%s] %5.1f%% %s/%s %s/s ETA %s files %d/%d %s", bar.c_str(),
                   pct, FormatSize(done).c_str(), FormatSize(total_).c_str(),
                   FormatSize(static_cast<uint64_t>(speed)).c_str(), eta.c_str(), fdone, files_,
                   current_.c_str());
      drawn_ = true;
    } else if (force || now - last_line_ >= std::chrono::seconds(2)) {
      last_line_ = now;
      std::fprintf(stderr, "progress: %.1f%% %s of %s, %s/s, files %d/%d\n", pct,
                   FormatSize(done).c_str(), FormatSize(total_).c_str(),
                   FormatSize(static_cast<uint64_t>(speed)).c_str(), fdone, files_);
    }
    std::fflush(stderr);
  }
  bool json_, tty_, drawn_ = false;
  uint64_t total_ = 0, start_bytes_ = 0;
  int files_ = 0;
  std::string current_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now(), last_line_{};
};

json RequestArgs(const CacheArgs& a) {
  json args = {{"patterns", a.patterns}, {"include", a.include}, {"exclude", a.exclude}};
  if (!a.repo.empty()) args["repo"] = a.repo;
  return args;
}

// Checks the repo argument and globs before anything is sent, for a clear usage error.
int CheckArgs(const CacheArgs& a, bool repo_required) {
  fs::RepoArg r;
  if ((repo_required || !a.repo.empty()) && !fs::ParseRepoArg(a.repo, &r)) {
    std::fprintf(stderr, "modelfs: '%s' is not a repo; expected org/name or org/name@revision\n",
                 a.repo.c_str());
    return kExitUsage;
  }
  std::string bad = fs::CheckGlobs({a.patterns, a.include, a.exclude});
  if (!bad.empty()) {
    std::fprintf(stderr, "modelfs: %s\n", bad.c_str());
    return kExitUsage;
  }
  return kExitOk;
}

// Runs the request and prints errors; returns the exit code and leaves the answer in *final.
int Execute(const CacheArgs& a, const json& request, json* final, Progress* progress = nullptr) {
  int rc = RunRequest(
      a.common, request,
      [&](const json& e) {
        if (progress) progress->on(e);
      },
      final);
  if (progress) progress->finish();
  if (rc == 130 || (rc == -1 && final->value("code", "") == "cancelled")) {
    std::fprintf(stderr,
                 "modelfs: interrupted; what was fetched is kept, run it again to resume\n");
    return 130;
  }
  if (rc != -1) return rc;
  if (!final->value("ok", false)) {
    std::fprintf(stderr, "modelfs: %s\n", final->value("error", std::string("failed")).c_str());
  }
  return ExitCodeFor(*final);
}

void PrintJson(const json& j) {
  std::printf("%s\n", j.dump(2).c_str());
}
// Streaming commands print JSON lines: events, then {"event": "result", ...}.
void PrintResultLine(json r) {
  r["event"] = "result";
  std::printf("%s\n", r.dump().c_str());
}

int RunDetached(const CacheArgs& a, json args, bool pin) {
  args["pin"] = pin;
  json final;
  int rc = RunRequest(
      a.common, {{"op", "job_start"}, {"args", args}}, [](const json&) {}, &final);
  if (rc != -1) return rc;
  if (!final.value("ok", false)) {
    std::fprintf(stderr, "modelfs: %s\n", final.value("error", std::string("failed")).c_str());
    return ExitCodeFor(final);
  }
  const json& j = final["result"];
  const int64_t id = j.value("id", int64_t{0});
  if (a.common.json) {
    PrintJson(j);
  } else {
    std::printf("%lld\n", static_cast<long long>(id));
    std::fprintf(stderr,
                 "job %lld: %s %s, %s in the mount; follow it with `modelfs jobs wait %lld`\n",
                 static_cast<long long>(id), pin ? "pin" : "prefetch", a.repo.c_str(),
                 j.value("state", "").c_str(), static_cast<long long>(id));
  }
  return kExitOk;
}

int RunPrefetch(const CacheArgs& a, bool pin) {
  if (int rc = CheckArgs(a, true)) return rc;
  json args = RequestArgs(a);
  args["jobs"] = a.jobs;
  if (a.detach) return RunDetached(a, std::move(args), pin);
  Progress progress(a.common.json);
  json final;
  int rc = Execute(a, {{"op", pin ? "pin" : "prefetch"}, {"args", args}}, &final, &progress);
  if (rc == 0) {
    const json& r = final["result"];
    if (a.common.json) {
      PrintResultLine(r);
    } else {
      std::fprintf(stderr, "%s %d files of %s: fetched %s, %s were already cached, %.1f s\n",
                   pin ? "pinned" : "prefetched", r.value("files", 0), r.value("repo", "").c_str(),
                   Bytes(r, "fetched_bytes").c_str(), Bytes(r, "already_cached_bytes").c_str(),
                   r.value("seconds", 0.0));
    }
  }
  return rc;
}

int RunLs(const CacheArgs& a) {
  if (int rc = CheckArgs(a, false)) return rc;
  json final;
  int rc = Execute(a, {{"op", "ls"}, {"args", RequestArgs(a)}}, &final);
  if (rc != 0) return rc;
  const json& repos = final["result"]["repos"];
  if (a.common.json) {
    PrintJson(final["result"]);
    return 0;
  }
  if (a.repo.empty()) {
    std::printf("%-48s %10s %7s %9s %7s %-10s %s\n", "REPO", "ON DISK", "FILES", "COMPLETE",
                "PINNED", "ACCESSED", "REVISIONS");
    for (const auto& r : repos) {
      std::string revs;
      for (auto& [rev, sha] : r["revisions"].items()) {
        revs += (revs.empty() ? "" : ", ") + rev + "=" + sha.get<std::string>().substr(0, 8);
      }
      std::printf("%-48s %10s %7d %9d %7d %-10s %s\n", r.value("repo", "").c_str(),
                  Bytes(r, "size_on_disk").c_str(), r.value("cached_files", 0),
                  r.value("complete_files", 0), r.value("pinned_files", 0),
                  Ago(r.value("last_access", int64_t{0})).c_str(), revs.c_str());
    }
    if (repos.empty()) std::printf("(nothing cached)\n");
    return 0;
  }
  std::printf("%-60s %10s %8s %6s %-10s %s\n", "FILE", "SIZE", "CACHED", "PINNED", "ACCESSED",
              "COMMIT");
  for (const auto& r : repos) {
    for (const auto& f : r["files"]) {
      uint64_t size = f.value("size", uint64_t{0}), cached = f.value("cached_bytes", uint64_t{0});
      char pct[16];
      std::snprintf(pct, sizeof pct, "%.0f%%",
                    size ? 100.0 * static_cast<double>(cached) / static_cast<double>(size) : 100.0);
      std::printf("%-60s %10s %8s %6s %-10s %s\n", f.value("path", "").c_str(),
                  FormatSize(size).c_str(), pct, f.value("pinned", false) ? "yes" : "",
                  Ago(f.value("last_access", int64_t{0})).c_str(),
                  f.value("commit", "").substr(0, 12).c_str());
    }
  }
  return 0;
}

int RunInfo(const CacheArgs& a) {
  if (int rc = CheckArgs(a, true)) return rc;
  json final;
  int rc = Execute(a, {{"op", "info"}, {"args", RequestArgs(a)}}, &final);
  if (rc != 0) return rc;
  const json& r = final["result"];
  if (a.common.json) {
    PrintJson(r);
    return 0;
  }
  std::printf("%s@%s (commit %s): %zu files, %s, %s cached\n", r.value("repo", "").c_str(),
              r.value("revision", "").c_str(), r.value("commit", "").c_str(), r["files"].size(),
              Bytes(r, "total_bytes").c_str(), Bytes(r, "cached_bytes").c_str());
  for (const auto& f : r["files"]) {
    std::printf(
        "  %-56s %10s %s\n", f.value("path", "").c_str(), Bytes(f, "size").c_str(),
        f.value("cached_bytes", uint64_t{0}) == f.value("size", uint64_t{0}) ? "cached" : "");
    if (f.contains("model")) {
      const json& m = f["model"];
      std::printf("      %s\n", ModelSummary(m).c_str());
      std::string rt;
      for (const auto& x : m["runtimes"]) rt += (rt.empty() ? "" : ", ") + x.get<std::string>();
      std::printf("      loads in: %s (header read: %s)\n", rt.c_str(),
                  Bytes(m, "bytes_read").c_str());
    } else if (f.contains("model_error")) {
      std::printf("      unreadable header: %s\n", f.value("model_error", "").c_str());
    }
  }
  return 0;
}

int RunStats(const CacheArgs& a) {
  json final;
  int rc = Execute(a, {{"op", "stats"}, {"args", json::object()}}, &final);
  if (rc != 0) return rc;
  const json& s = final["result"];
  if (a.common.json) {
    PrintJson(s);
    return 0;
  }
  const json &c = s["cache"], &r = s["reads"], &u = s["upstream"];
  std::printf("cache      %s: %s of %s used, %s pinned, %llu chunks\n", c.value("dir", "").c_str(),
              Bytes(c, "used_bytes").c_str(), Bytes(c, "limit_bytes").c_str(),
              Bytes(c, "pinned_bytes").c_str(),
              static_cast<unsigned long long>(c.value("chunks", uint64_t{0})));
  std::printf("served     %s (%s from cache, %s fetched), hit ratio %.1f%%\n",
              Bytes(r, "bytes_served").c_str(), Bytes(r, "bytes_from_cache").c_str(),
              Bytes(r, "bytes_fetched").c_str(), 100 * r.value("hit_ratio", 0.0));
  std::printf("evictions  %llu chunks (%s); corrupt chunks found %llu\n",
              static_cast<unsigned long long>(c.value("evicted_chunks", uint64_t{0})),
              Bytes(c, "evicted_bytes").c_str(),
              static_cast<unsigned long long>(c.value("corrupt_chunks", uint64_t{0})));
  std::printf("in flight  %llu chunks; %llu open files\n",
              static_cast<unsigned long long>(r.value("inflight_chunks", uint64_t{0})),
              static_cast<unsigned long long>(s.value("open_files", uint64_t{0})));
  std::printf("upstream   %llu requests, %s, %llu retries, %llu errors\n",
              static_cast<unsigned long long>(u.value("requests", uint64_t{0})),
              Bytes(u, "bytes").c_str(),
              static_cast<unsigned long long>(u.value("retries", uint64_t{0})),
              static_cast<unsigned long long>(u.value("errors", uint64_t{0})));
  if (u.contains("endpoints") && u["endpoints"].size() > 1) {
    for (const json& e : u["endpoints"]) {
      std::string state = e.value("state", "");
      if (state == "down") {
        state += " for " + std::to_string(std::lround(e.value("down_for_seconds", 0.0))) + " s";
      }
      std::printf("endpoint   %s: %s, %llu requests, %s, %llu errors\n", e.value("url", "").c_str(),
                  state.c_str(), static_cast<unsigned long long>(e.value("requests", uint64_t{0})),
                  Bytes(e, "bytes").c_str(),
                  static_cast<unsigned long long>(e.value("errors", uint64_t{0})));
    }
  }
  std::printf("uptime     %llds\n", static_cast<long long>(s.value("uptime_seconds", int64_t{0})));
  return 0;
}

int RunSimple(const CacheArgs& a, const std::string& op, json args) {
  json final;
  int rc = Execute(a, {{"op", op}, {"args", std::move(args)}}, &final);
  // Only rm has something to report when it fails (what it removed before refusing pins).
  if (rc != 0 && (op != "rm" || !final.contains("result"))) return rc;
  const json& r = final["result"];
  if (a.common.json) {
    PrintJson(r);
  } else if (op == "gc") {
    std::printf("freed %s; cache now %s (%s pinned)\n", Bytes(r, "freed_bytes").c_str(),
                Bytes(r, "used_bytes").c_str(), Bytes(r, "pinned_bytes").c_str());
  } else if (op == "rm") {
    std::printf("removed %d files, freed %s\n", r.value("removed_files", 0),
                Bytes(r, "freed_bytes").c_str());
  } else if (op == "unpin") {
    std::printf("unpinned %d files\n", r.value("unpinned_files", 0));
  } else if (op == "verify") {
    std::printf("verified %d files (%s): %d corrupt%s\n", r.value("checked_files", 0),
                Bytes(r, "verified_bytes").c_str(), r.value("corrupt_files", 0),
                r.value("corrupt_files", 0) ? " (dropped; they will be fetched again)" : "");
  }
  return rc;
}

bool ActiveJob(const json& j) {
  const std::string s = j.value("state", "");
  return s == "pending" || s == "running";
}

std::string JobWhat(const json& j) {
  std::string w = j.value("op", "") + " " + j.value("repo", "");
  for (const char* key : {"patterns", "include"}) {
    if (j.contains(key) && j[key].is_array()) {
      for (const auto& p : j[key]) w += " " + p.get<std::string>();
    }
  }
  if (j.contains("exclude") && j["exclude"].is_array()) {
    for (const auto& p : j["exclude"]) w += " --exclude " + p.get<std::string>();
  }
  return w;
}

void PrintJobTable(const json& jobs) {
  std::printf("%-5s %-10s %-24s %-11s %-6s %-6s %s\n", "ID", "STATE", "PROGRESS", "SPEED", "ETA",
              "UID", "WHAT");
  for (const auto& j : jobs) {
    const uint64_t done = j.value("bytes_done", uint64_t{0});
    const uint64_t total = j.value("total_bytes", uint64_t{0});
    char progress[64];
    if (total > 0) {
      std::snprintf(progress, sizeof progress, "%3.0f%% %s/%s", 100 * j.value("fraction", 0.0),
                    FormatSize(done).c_str(), FormatSize(total).c_str());
    } else {
      std::snprintf(progress, sizeof progress, "-");
    }
    const double rate = j.value("rate_bytes", 0.0);
    const double eta = j.value("eta_seconds", -1.0);
    const std::string speed = rate > 0 ? FormatSize(static_cast<uint64_t>(rate)) + "/s" : "-";
    const std::string eta_s = eta >= 0 ? std::to_string(std::llround(eta)) + "s" : "-";
    std::printf("%-5lld %-10s %-24s %-11s %-6s %-6u %s\n",
                static_cast<long long>(j.value("id", int64_t{0})), j.value("state", "").c_str(),
                progress, speed.c_str(), eta_s.c_str(), j.value("uid", 0u), JobWhat(j).c_str());
    if (j.contains("error") && j["error"].is_object()) {
      std::printf("      failed: %s\n      what to do: %s\n",
                  j["error"].value("message", "").c_str(), j["error"].value("hint", "").c_str());
    }
  }
  if (jobs.empty()) std::printf("no jobs (start one with `modelfs prefetch ORG/NAME --detach`)\n");
  std::fflush(stdout);
}

int RunJobsList(const CacheArgs& a) {
  const bool tty = isatty(STDOUT_FILENO);
  while (true) {
    json final;
    int rc = RunRequest(
        a.common, {{"op", "jobs"}, {"args", json::object()}}, [](const json&) {}, &final);
    if (rc != -1) return rc;
    if (!final.value("ok", false)) {
      std::fprintf(stderr, "modelfs: %s\n", final.value("error", std::string("failed")).c_str());
      return ExitCodeFor(final);
    }
    const json jobs = final["result"].value("jobs", json::array());
    bool active = false;
    for (const auto& j : jobs) active = active || ActiveJob(j);
    if (a.common.json) {
      std::printf("%s\n", (a.watch ? jobs.dump() : jobs.dump(2)).c_str());
      std::fflush(stdout);
    } else {
      if (a.watch && tty) std::printf("\033[H\033[2J");
      PrintJobTable(jobs);
    }
    if (!a.watch || !active) return kExitOk;
    for (int i = 0; i < 10 && !Interrupted(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (Interrupted()) return 130;
  }
}

int RunJobWait(const CacheArgs& a) {
  Progress progress(a.common.json);
  bool started = false;
  json final;
  int rc = RunRequest(
      a.common, {{"op", "job_wait"}, {"args", {{"id", a.id}}}},
      [&](const json& e) {
        if (a.common.json) {
          progress.on(e);
          return;
        }
        const uint64_t total = e.value("total_bytes", uint64_t{0});
        if (!started && total > 0) {
          started = true;
          progress.on({{"event", "start"},
                       {"repo", e.value("repo", "")},
                       {"commit", e.value("commit", "")},
                       {"files", e.value("files_total", 0)},
                       {"total_bytes", total},
                       {"cached_bytes", e.value("bytes_done", uint64_t{0})}});
        } else if (started) {
          progress.on({{"event", "progress"},
                       {"bytes_done", e.value("bytes_done", uint64_t{0})},
                       {"files_done", e.value("files_done", 0)},
                       {"file", e.value("file", "")}});
        }
      },
      &final);
  progress.finish();
  if (rc == 130) {
    std::fprintf(stderr, "modelfs: stopped waiting; job %lld goes on in the mount\n",
                 static_cast<long long>(a.id));
    return 130;
  }
  if (rc != -1) return rc;
  const json& j = final.contains("result") ? final["result"] : json::object();
  if (a.common.json) {
    PrintResultLine(j);
  } else if (final.value("ok", false)) {
    std::fprintf(stderr, "job %lld completed: %s, %d files of %s\n", static_cast<long long>(a.id),
                 Bytes(j, "total_bytes").c_str(), j.value("files_total", 0),
                 j.value("repo", "").c_str());
  } else if (j.value("state", "") == "failed" && j.contains("error") && j["error"].is_object()) {
    std::fprintf(stderr, "modelfs: job %lld failed: %s\nwhat to do: %s\n",
                 static_cast<long long>(a.id), j["error"].value("message", "").c_str(),
                 j["error"].value("hint", "").c_str());
  } else {
    std::fprintf(stderr, "modelfs: %s\n", final.value("error", std::string("failed")).c_str());
  }
  return ExitCodeFor(final);
}

int RunJobs(const CacheArgs& a) {
  const std::string action = a.action.empty() ? "list" : a.action;
  if (action == "list") return RunJobsList(a);
  if (a.id <= 0) {
    std::fprintf(stderr, "modelfs: jobs %s needs a job id (see `modelfs jobs`)\n", action.c_str());
    return kExitUsage;
  }
  if (action == "wait") return RunJobWait(a);
  json final;
  int rc = RunRequest(
      a.common, {{"op", "job_" + action}, {"args", {{"id", a.id}}}}, [](const json&) {}, &final);
  if (rc != -1) return rc;
  if (!final.value("ok", false)) {
    std::fprintf(stderr, "modelfs: %s\n", final.value("error", std::string("failed")).c_str());
    return ExitCodeFor(final);
  }
  if (a.common.json) {
    PrintJson(final["result"]);
  } else {
    std::printf("job %lld: %s\n", static_cast<long long>(a.id),
                final["result"].value("state", "").c_str());
  }
  return kExitOk;
}

CLI::App* Sub(CLI::App& app, const char* name, const char* help, CacheArgs* a) {
  CLI::App* cmd = app.add_subcommand(name, help);
  AddCommonOptions(cmd, &a->common);
  return cmd;
}

void AddSelection(CLI::App* cmd, CacheArgs* a) {
  cmd->add_option("patterns", a->patterns, "Files to select (globs; default: all)");
  cmd->add_option("--include", a->include, "Also select files matching GLOB (repeatable)");
  cmd->add_option("--exclude", a->exclude, "Leave out files matching GLOB (repeatable)");
}

}  // namespace

std::vector<Runner> AddCacheCommands(CLI::App& app) {
  std::vector<Runner> runners;
  auto add = [&](const char* name, const char* help, auto setup, auto run) {
    auto a = std::make_shared<CacheArgs>();
    CLI::App* cmd = Sub(app, name, help, a.get());
    setup(cmd, a.get());
    runners.push_back([a, run] { return run(*a); });
  };
  add(
      "prefetch",
      "Fetch whole files into the cache, with progress; Ctrl-C stops, running again resumes.\n"
      "Examples:\n  modelfs prefetch Qwen/Qwen2.5-0.5B-Instruct\n"
      "  modelfs prefetch org/repo-GGUF '*Q4_K_M.gguf'\n"
      "  modelfs prefetch org/name@v1.0 --include '*.safetensors' --exclude 'original/*' --jobs 16",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision]")->required();
        AddSelection(c, a);
        c->add_option("--jobs", a->jobs, "Parallel range downloads per file")
            ->capture_default_str()
            ->check(CLI::Range(1, 64));
        c->add_flag("--detach", a->detach,
                    "Hand it to the mount as a download job and return at once; prints the job "
                    "id (see `modelfs jobs`)");
      },
      [](const CacheArgs& a) { return RunPrefetch(a, false); });
  add(
      "pin",
      "Prefetch files and keep them: pinned data is never evicted (survives gc and restarts).\n"
      "Example:\n  modelfs pin org/name '*.gguf'",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision]")->required();
        AddSelection(c, a);
        c->add_option("--jobs", a->jobs, "Parallel range downloads per file")
            ->capture_default_str()
            ->check(CLI::Range(1, 64));
        c->add_flag("--detach", a->detach,
                    "Hand it to the mount as a download job and return at once; prints the job "
                    "id (see `modelfs jobs`)");
      },
      [](const CacheArgs& a) { return RunPrefetch(a, true); });
  add(
      "jobs",
      "Download jobs running in the mount (started with prefetch --detach or pin --detach):\n"
      "list them, or pause, resume, cancel or wait for one. Jobs survive a restart of the\n"
      "mount; at most max_jobs run at once, the rest wait in order.\n"
      "Examples:\n  modelfs jobs\n  modelfs jobs --watch\n  modelfs jobs wait 3\n"
      "  modelfs jobs pause 3",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("action", a->action, "list (default), pause, resume, cancel or wait")
            ->check(CLI::IsMember({"list", "pause", "resume", "cancel", "wait"}));
        c->add_option("id", a->id, "The job (its number in `modelfs jobs`)");
        c->add_flag("--watch", a->watch, "Redraw every second until no job is pending or running");
      },
      [](const CacheArgs& a) { return RunJobs(a); });
  add(
      "unpin", "Let pinned files be evicted again.\nExample:\n  modelfs unpin org/name",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision]")->required();
        AddSelection(c, a);
      },
      [](const CacheArgs& a) {
        if (int rc = CheckArgs(a, true)) return rc;
        return RunSimple(a, "unpin", RequestArgs(a));
      });
  add(
      "ls",
      "Cached repos, or the files of one: size on disk, how much is cached, pins.\n"
      "Examples:\n  modelfs ls\n  modelfs ls org/name --json",
      [](CLI::App* c, CacheArgs* a) { c->add_option("repo", a->repo, "org/name[@revision]"); },
      [](const CacheArgs& a) { return RunLs(a); });
  add(
      "info",
      "What a repo holds before downloading it: files, sizes, and what GGUF and safetensors\n"
      "headers say (architecture, parameters, dtypes), read with a few small range requests.\n"
      "Example:\n  modelfs info org/repo-GGUF",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision]")->required();
      },
      [](const CacheArgs& a) { return RunInfo(a); });
  add(
      "stats",
      "Cache size and limit, hits, fetches, evictions, errors, in-flight downloads.\n"
      "Example:\n  modelfs stats --mount /mnt/models",
      [](CLI::App*, CacheArgs*) {}, [](const CacheArgs& a) { return RunStats(a); });
  add(
      "gc",
      "Evict least-recently-used unpinned data down to SIZE (default: 90% of the limit).\n"
      "Example:\n  modelfs gc --to 10G",
      [](CLI::App* c, CacheArgs* a) { c->add_option("--to", a->to, "Target size: 10G, 500M, 0"); },
      [](const CacheArgs& a) {
        json args = json::object();
        if (!a.to.empty()) {
          auto to = ParseSize(a.to);
          if (!to) {
            std::fprintf(stderr, "modelfs: --to '%s' is not a size; use e.g. 10G, 500M or 0\n",
                         a.to.c_str());
            return static_cast<int>(kExitUsage);
          }
          args["to"] = *to;
        }
        return RunSimple(a, "gc", args);
      });
  add(
      "rm",
      "Drop cached data of a repo (or --all); pinned data needs --force.\n"
      "Examples:\n  modelfs rm org/name\n  modelfs rm org/name '*.bin'\n  modelfs rm --all --force",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision]");
        AddSelection(c, a);
        c->add_flag("--all", a->all, "Every cached file");
        c->add_flag("--force", a->force, "Also drop pinned data");
      },
      [](const CacheArgs& a) {
        if (a.repo.empty() && !a.all) {
          std::fprintf(stderr, "modelfs: rm needs a repo or --all\n");
          return static_cast<int>(kExitUsage);
        }
        if (int rc = CheckArgs(a, false)) return rc;
        json args = RequestArgs(a);
        args["all"] = a.all;
        args["force"] = a.force;
        return RunSimple(a, "rm", args);
      });
  add(
      "verify",
      "Re-hash cached data; report and drop anything corrupt.\nExample:\n  modelfs verify org/name",
      [](CLI::App* c, CacheArgs* a) {
        c->add_option("repo", a->repo, "org/name[@revision] (default: all)");
      },
      [](const CacheArgs& a) {
        if (int rc = CheckArgs(a, false)) return rc;
        Progress p(a.common.json);
        json final;
        int rc = Execute(a, {{"op", "verify"}, {"args", RequestArgs(a)}}, &final, &p);
        if (rc != 0) return rc;
        const json& r = final["result"];
        if (a.common.json) {
          PrintResultLine(r);
        } else {
          std::printf("verified %d files (%s): %d corrupt%s\n", r.value("checked_files", 0),
                      Bytes(r, "verified_bytes").c_str(), r.value("corrupt_files", 0),
                      r.value("corrupt_files", 0) ? " (dropped; they will be fetched again)" : "");
        }
        return rc;
      });
  return runners;
}

}  // namespace modelfs::cli
