#include "fs/control/wire.h"

#include <algorithm>

namespace modelfs::fs::wire {
namespace {

using nlohmann::json;

std::vector<std::string> Strings(const json& args, const char* key) {
  std::vector<std::string> out;
  if (auto it = args.find(key); it != args.end() && it->is_array()) {
    for (const auto& v : *it) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

// Reads a string member; anything else (absent, a number, an object) is `fallback`. A client
// decides what types it sends, so nothing here may throw (json::value() would).
std::string StringField(const json& obj, const char* key, const std::string& fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool BoolField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

json Final(const Status& st, json result) {
  return {{"done", true},
          {"ok", st.ok()},
          {"code", CodeName(st.code())},
          {"error", st.message()},
          {"result", std::move(result)}};
}

json ModelJson(const ModelInfo& m) {
  json dtypes = json::array();
  for (const auto& d : m.dtypes) {
    dtypes.push_back({{"dtype", d.dtype}, {"tensors", d.count}, {"parameters", d.parameters}});
  }
  return {{"format", m.format},
          {"architecture", m.architecture},
          {"name", m.name},
          {"parameters", m.parameters},
          {"tensors", m.tensors},
          {"context_length", m.context_length},
          {"file_type", m.file_type},
          {"dtypes", dtypes},
          {"header_bytes", m.header_bytes},
          {"bytes_read", m.bytes_read},
          {"runtimes", m.runtimes}};
}

// The job requests: job_start, jobs, job, job_pause, job_resume, job_cancel, job_wait.
json RunJob(Jobs* jobs, const std::string& op, const json& args, const Caller& caller,
            const Selection& sel, const EmitJson& emit) {
  json result = json::object();
  Status st;
  if (jobs == nullptr) {
    return Final({Code::kInvalid,
                  "download jobs run in a mount, and no mount owns this cache; "
                  "start one with `modelfs mount`, or run without --detach"},
                 result);
  }
  int64_t id = 0;
  if (op != "job_start" && op != "jobs") {
    if (!args.contains("id") || !args["id"].is_number_integer()) {
      return Final({Code::kInvalid, "a job id is required"}, result);
    }
    id = args["id"].get<int64_t>();
  }
  JobView v;
  if (op == "job_start") {
    const bool pin = BoolField(args, "pin");
    const std::string repo = StringField(args, "repo", "");
    RepoArg r;
    const unsigned ranges = args.contains("jobs") && args["jobs"].is_number_unsigned()
                                ? std::clamp(args["jobs"].get<unsigned>(), 1u, 64u)
                                : 8u;
    if (!caller.can_read) {
      st = {Code::kNoAccess, "prefetch is for users who can read the mount"};
    } else if (pin && !caller.admin) {
      st = {Code::kNoAccess, "'pin' needs root or membership in the modelfs admin group"};
    } else if (!ParseRepoArg(repo, &r)) {
      st = {Code::kInvalid, "'" + repo + "' is not a repo; expected org/name or org/name@revision"};
    } else if (std::string bad = CheckGlobs(sel); !bad.empty()) {
      st = {Code::kInvalid, bad};
    } else {
      st = jobs->start(caller.uid, pin, repo, sel, ranges, &v);
      if (st.ok()) result = ToJson(v);
    }
  } else if (op == "jobs") {
    json list = json::array();
    for (const auto& j : jobs->list()) list.push_back(ToJson(j));
    result = {{"jobs", list}};
  } else if (op == "job") {
    st = jobs->get(id, &v);
    if (st.ok()) result = ToJson(v);
  } else if (op == "job_pause" || op == "job_resume" || op == "job_cancel") {
    st = jobs->get(id, &v);
    if (st.ok() && v.record.uid != caller.uid && !caller.admin) {
      st = {Code::kNoAccess, "job " + std::to_string(id) + " belongs to uid " +
                                 std::to_string(v.record.uid) +
                                 "; only its owner or an admin may change it"};
    } else if (st.ok()) {
      st = op == "job_pause"    ? jobs->pause(id)
           : op == "job_resume" ? jobs->resume(id)
                                : jobs->cancel(id);
      if (st.ok() && jobs->get(id, &v).ok()) result = ToJson(v);
    }
  } else if (op == "job_wait") {
    st = jobs->wait(
        id, std::chrono::milliseconds(250),
        [&](const JobView& j) {
          json e = ToJson(j);
          e["event"] = "job";
          return emit(e);
        },
        &v);
    if (st.ok()) {
      result = ToJson(v);
      if (v.record.state == "failed") {
        st = {CodeFromName(v.record.error_code), v.record.error};
      } else if (v.record.state == "cancelled") {
        st = {Code::kCancelled, "job " + std::to_string(id) + " was cancelled"};
      }
    }
  }
  return Final(st, std::move(result));
}

json RunChecked(Service& service, Jobs* job_runner, const json& request, const Caller& caller,
                const EmitJson& emit) {
  json result = json::object();
  Status st;
  const std::string op = StringField(request, "op", "");
  const json args =
      request.contains("args") && request["args"].is_object() ? request["args"] : json::object();
  auto repo_arg = [&](std::optional<RepoArg>* out, bool required) -> bool {
    const std::string text = StringField(args, "repo", "");
    if (text.empty()) {
      if (required) st = {Code::kInvalid, "a repo (org/name[@revision]) is required"};
      return !required;
    }
    RepoArg r;
    if (!ParseRepoArg(text, &r)) {
      st = {Code::kInvalid, "'" + text + "' is not a repo; expected org/name or org/name@revision"};
      return false;
    }
    *out = r;
    return true;
  };
  const Selection sel{Strings(args, "patterns"), Strings(args, "include"),
                      Strings(args, "exclude")};
  std::optional<RepoArg> repo;
  if (op.starts_with("job")) return RunJob(job_runner, op, args, caller, sel, emit);
  if (IsAdminOp(op) && !caller.admin) {
    st = {Code::kNoAccess, "'" + op + "' needs root or membership in the modelfs admin group"};
  } else if (op == "prefetch" && !caller.can_read) {
    st = {Code::kNoAccess, "prefetch is for users who can read the mount"};
  } else if (op == "ls") {
    LsResult r;
    if (repo_arg(&repo, false)) {
      st = service.ls(repo, &r);
      result = ToJson(r);
    }
  } else if (op == "info") {
    InfoResult r;
    if (repo_arg(&repo, true)) {
      st = service.info(*repo, &r);
      if (st.ok()) result = ToJson(r);
    }
  } else if (op == "stats") {
    StatsResult r;
    st = service.stats(&r);
    result = ToJson(r);
  } else if (op == "prefetch" || op == "pin") {
    if (repo_arg(&repo, true)) {
      const unsigned jobs = args.contains("jobs") && args["jobs"].is_number_unsigned()
                                ? std::clamp(args["jobs"].get<unsigned>(), 1u, 64u)
                                : 8u;
      PrefetchResult r;
      st = service.prefetch(
          *repo, sel, jobs, op == "pin", [&](const PrefetchEvent& e) { return emit(ToJson(e)); },
          &r);
      if (!r.repo.empty()) result = ToJson(r);
    }
  } else if (op == "unpin") {
    UnpinResult r;
    if (repo_arg(&repo, true)) {
      st = service.unpin(*repo, sel, &r);
      if (st.ok()) result = ToJson(r);
    }
  } else if (op == "gc") {
    std::optional<uint64_t> to;
    if (args.contains("to") && args["to"].is_number_unsigned()) to = args["to"].get<uint64_t>();
    GcResult r;
    st = service.gc(to, &r);
    result = ToJson(r);
  } else if (op == "rm") {
    const bool all = BoolField(args, "all");
    if (all || repo_arg(&repo, true)) {
      RmResult r;
      st = service.rm(all ? std::nullopt : repo, sel, BoolField(args, "force"), &r);
      result = ToJson(r);
    }
  } else if (op == "verify") {
    if (repo_arg(&repo, false)) {
      VerifyResult r;
      st = service.verify(
          repo, [&](const VerifyEvent& e) { return emit(ToJson(e)); }, &r);
      if (st.ok()) result = ToJson(r);
    }
  } else {
    st = {Code::kInvalid, "unknown request '" + op + "'"};
  }
  return Final(st, std::move(result));
}

}  // namespace

json Run(Service& service, Jobs* jobs, const json& request, const Caller& caller,
         const EmitJson& emit) {
  try {
    return RunChecked(service, jobs, request, caller, emit);
  } catch (const json::exception& e) {
    return Final({Code::kInvalid, std::string("malformed request: ") + e.what()}, json::object());
  }
}

json ToJson(const LsResult& r) {
  json repos = json::array();
  for (const auto& u : r.repos) {
    json revisions = json::object();
    for (const auto& [rev, commit] : u.revisions) {
      revisions[rev.empty() ? "main (default)" : rev] = commit;
    }
    json j = {{"repo", u.repo},
              {"size_on_disk", u.size_on_disk},
              {"cached_files", u.cached_files},
              {"complete_files", u.complete_files},
              {"pinned_files", u.pinned_files},
              {"last_access", u.last_access},
              {"revisions", revisions}};
    if (r.per_file) {
      json files = json::array();
      for (const auto& f : u.files) {
        files.push_back({{"path", f.path},
                         {"commit", f.commit},
                         {"size", f.size},
                         {"cached_bytes", f.cached_bytes},
                         {"pinned", f.pinned},
                         {"last_access", f.last_access}});
      }
      j["files"] = std::move(files);
    }
    repos.push_back(std::move(j));
  }
  return {{"repos", repos}};
}

json ToJson(const InfoResult& r) {
  json files = json::array();
  for (const auto& f : r.files) {
    json jf = {
        {"path", f.path}, {"size", f.size}, {"cached_bytes", f.cached_bytes}, {"lfs", f.lfs}};
    if (f.model) {
      jf["model"] = ModelJson(*f.model);
    } else if (!f.model_error.empty()) {
      jf["model_error"] = f.model_error;
    }
    files.push_back(std::move(jf));
  }
  json j = {{"repo", r.repo}, {"revision", r.revision},       {"commit", r.commit},
            {"files", files}, {"total_bytes", r.total_bytes}, {"cached_bytes", r.cached_bytes}};
  if (!r.architectures.empty()) j["architectures"] = r.architectures;
  return j;
}

json ToJson(const StatsResult& r) {
  const CoreStats& s = r.core;
  const auto& rd = s.reader;
  const uint64_t served = rd.bytes_read;
  const double hit =
      served ? static_cast<double>(rd.bytes_from_cache) / static_cast<double>(served) : 0;
  json endpoints = json::array();
  for (const auto& e : s.hub.endpoints) {
    endpoints.push_back({{"url", e.url},
                         {"state", e.down ? "down" : "up"},
                         {"down_for_seconds", e.down_for_s},
                         {"requests", e.requests},
                         {"bytes", e.bytes},
                         {"errors", e.errors},
                         {"failovers", e.failovers}});
  }
  return {{"cache",
           {{"dir", r.cache_dir},
            {"used_bytes", s.cache.used_bytes},
            {"limit_bytes", s.cache.capacity_bytes},
            {"pinned_bytes", s.cache.pinned_bytes},
            {"chunks", s.cache.chunks},
            {"evicted_chunks", s.cache.evicted_chunks},
            {"evicted_bytes", s.cache.evicted_bytes},
            {"corrupt_chunks", s.cache.corrupt_chunks}}},
          {"reads",
           {{"requests", rd.reads},
            {"bytes_served", served},
            {"bytes_from_cache", rd.bytes_from_cache},
            {"bytes_fetched", rd.fetch.bytes_fetched},
            {"bytes_from_memory", rd.bytes_from_memory},
            {"direct_reads", rd.direct_reads},
            {"hit_ratio", hit},
            {"shared_waits", rd.shared_waits},
            {"errors", rd.read_errors},
            {"inflight_chunks", rd.inflight_chunks},
            {"files_verified", rd.verify.files_verified},
            {"sha256_mismatches", rd.verify.sha256_mismatches},
            {"hashed_from_memory", rd.verify.hashed_from_memory},
            {"hashed_from_disk", rd.verify.hashed_from_disk}}},
          {"fetch",
           {{"requests", rd.fetch.requests},
            {"chunks", rd.fetch.chunks_fetched},
            {"in_flight", rd.fetch.requests_in_flight},
            {"peak_in_flight", rd.fetch.peak_in_flight},
            {"queued", rd.fetch.queued},
            {"ttfb_ms", rd.fetch.net.ttfb_s * 1000},
            {"connection_rate_bytes", rd.fetch.net.conn_rate},
            {"rate_bytes", rd.fetch.net.rate}}},
          {"model_prefetch",
           {{"enabled", r.model_prefetch},
            {"files", rd.model_prefetch_files},
            {"skipped_sets", rd.model_prefetch_skipped}}},
          {"upstream",
           {{"requests", s.hub.requests},
            {"bytes", s.hub.bytes},
            {"retries", s.hub.retries},
            {"errors", s.hub.errors},
            {"redirects", s.hub.redirects},
            {"failovers", s.hub.failovers},
            {"endpoints", endpoints}}},
          {"open_files", s.open_files},
          {"inodes", s.inodes},
          {"trees_in_memory", s.trees_in_memory},
          {"uptime_seconds", s.uptime_seconds}};
}

json ToJson(const PrefetchEvent& e) {
  switch (e.kind) {
    case PrefetchEvent::Kind::kStart:
      return {{"event", "start"},
              {"repo", e.repo},
              {"commit", e.commit},
              {"files", e.files},
              {"total_bytes", e.total_bytes},
              {"cached_bytes", e.cached_bytes}};
    case PrefetchEvent::Kind::kProgress:
      return {{"event", "progress"},
              {"bytes_done", e.bytes_done},
              {"total_bytes", e.total_bytes},
              {"files_done", e.files_done},
              {"file", e.file}};
    case PrefetchEvent::Kind::kFileDone:
      break;
  }
  return {{"event", "file_done"},
          {"file", e.file},
          {"size", e.size},
          {"fetched", e.fetched},
          {"files_done", e.files_done},
          {"bytes_done", e.bytes_done},
          {"total_bytes", e.total_bytes}};
}

json ToJson(const PrefetchResult& r) {
  return {{"repo", r.repo},
          {"commit", r.commit},
          {"files", r.files},
          {"total_bytes", r.total_bytes},
          {"already_cached_bytes", r.already_cached_bytes},
          {"fetched_bytes", r.fetched_bytes},
          {"seconds", r.seconds},
          {"pinned", r.pinned}};
}

json ToJson(const UnpinResult& r) {
  return {{"repo", r.repo}, {"unpinned_files", r.unpinned_files}};
}

json ToJson(const GcResult& r) {
  return {{"freed_bytes", r.freed_bytes},
          {"used_bytes", r.used_bytes},
          {"target_bytes", r.target_bytes},
          {"pinned_bytes", r.pinned_bytes}};
}

json ToJson(const RmResult& r) {
  return {{"removed_files", r.removed_files},
          {"freed_bytes", r.freed_bytes},
          {"pinned_bytes_kept", r.pinned_bytes_kept}};
}

json ToJson(const VerifyEvent& e) {
  return {{"event", "verified"}, {"repo", e.repo}, {"file", e.file}, {"ok", e.ok}};
}

json ToJson(const VerifyResult& r) {
  json bad = json::array();
  for (const auto& c : r.corrupt) {
    bad.push_back({{"repo", c.repo}, {"path", c.path}, {"content_id", c.content_id}});
  }
  return {{"checked_files", r.checked_files},
          {"corrupt_files", r.corrupt_files},
          {"verified_bytes", r.verified_bytes},
          {"corrupt", bad}};
}

json ToJson(const JobView& j) {
  const auto& r = j.record;
  json error = nullptr;
  if (r.state == "failed") {
    error = {{"code", r.error_code}, {"message", r.error}, {"hint", j.hint}};
  }
  return {{"id", r.id},
          {"uid", r.uid},
          {"op", r.pin ? "pin" : "prefetch"},
          {"repo", r.repo},
          {"patterns", r.patterns},
          {"include", r.include},
          {"exclude", r.exclude},
          {"state", r.state},
          {"commit", r.commit},
          {"created_at", r.created_at},
          {"updated_at", r.updated_at},
          {"finished_at", r.finished_at},
          {"bytes_done", r.bytes_done},
          {"total_bytes", r.total_bytes},
          {"fraction", r.total_bytes
                           ? static_cast<double>(r.bytes_done) / static_cast<double>(r.total_bytes)
                           : (r.state == "completed" ? 1.0 : 0.0)},
          {"files_done", r.files_done},
          {"files_total", r.files_total},
          {"file", j.file},
          {"rate_bytes", j.rate},
          {"eta_seconds", j.eta_seconds},
          {"error", error}};
}

}  // namespace modelfs::fs::wire
