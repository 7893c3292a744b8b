#include "fs/service.h"

#include <fnmatch.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <set>

#include "fetch/hub_parse.h"
#include "fs/model_info.h"

namespace modelfs::fs {
namespace {

using nlohmann::json;

bool Matches(const std::string& glob, const std::string& path) {
  // '*' may cross '/', as in the Hub client's allow/ignore patterns; a bare name also matches
  // a file of that name in any folder.
  if (fnmatch(glob.c_str(), path.c_str(), 0) == 0) return true;
  size_t slash = path.rfind('/');
  return glob.find('/') == std::string::npos && slash != std::string::npos &&
         fnmatch(glob.c_str(), path.c_str() + slash + 1, 0) == 0;
}

bool Selected(const Selection& sel, const std::string& path) {
  bool any = sel.patterns.empty() && sel.include.empty();
  for (const auto& g : sel.patterns) any = any || Matches(g, path);
  for (const auto& g : sel.include) any = any || Matches(g, path);
  if (!any) return false;
  for (const auto& g : sel.exclude) {
    if (Matches(g, path)) return false;
  }
  return true;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

uint64_t ContentChunks(uint64_t size, uint32_t chunk) { return size == 0 ? 0 : (size - 1) / chunk + 1; }

}  // namespace

bool ParseRepoArg(const std::string& text, RepoArg* out) {
  size_t at = text.find('@');
  out->repo_id = text.substr(0, at);
  out->revision = at == std::string::npos ? "" : text.substr(at + 1);
  if (at != std::string::npos && out->revision.empty()) return false;
  for (unsigned char c : out->revision) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return fetch::IsValidRepoId(out->repo_id) && out->revision.size() <= 255;
}

std::string CheckGlobs(const Selection& sel) {
  for (const auto* list : {&sel.patterns, &sel.include, &sel.exclude}) {
    for (const auto& g : *list) {
      if (g.empty()) return "an empty pattern matches nothing";
      int depth = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        if (g[i] == '\\') {
          ++i;
        } else if (g[i] == '[') {
          ++depth;
        } else if (g[i] == ']' && depth > 0) {
          --depth;
        }
      }
      if (depth != 0 || g.back() == '\\') return "bad pattern '" + g + "': unbalanced [ or trailing \\";
    }
  }
  return "";
}

Service::Service(Core& core) : core_(core), started_(Now()) {}

Status Service::select(const RepoArg& repo, const Selection& sel,
                       std::shared_ptr<const Snapshot>* snap, std::vector<FileRef>* files) {
  if (std::string bad = CheckGlobs(sel); !bad.empty()) return {Code::kInvalid, bad};
  if (Status st = core_.snapshots().get(repo.repo_id, repo.revision, snap); !st.ok()) return st;
  for (const auto& f : (*snap)->files) {
    if (Selected(sel, f.path)) files->push_back({repo.repo_id, (*snap)->commit, f});
  }
  if (files->empty()) {
    return {Code::kNotFound, "no file of " + repo.repo_id + " matches the given patterns"};
  }
  return Status::Ok();
}

std::vector<Service::FileRef> Service::known_files(const std::optional<RepoArg>& repo) {
  auto& meta = core_.cache().meta();
  std::vector<index::RepoRecord> repos;
  (void)meta.list_repos(&repos);
  std::vector<FileRef> out;
  for (const auto& r : repos) {
    if (repo && r.id != repo->repo_id) continue;
    std::vector<index::RefRecord> refs;
    (void)meta.list_refs(r.id, &refs);
    std::set<std::string> commits;
    for (const auto& ref : refs) {
      if (!repo || repo->revision.empty() || repo->revision == ref.revision ||
          repo->revision == ref.commit) {
        commits.insert(ref.commit);
      }
    }
    for (const auto& c : commits) {
      std::vector<index::FileRecord> tree;
      if (!meta.get_tree(r.id, c, &tree).ok()) continue;
      for (auto& f : tree) {
        if (!f.is_dir) out.push_back({r.id, c, std::move(f)});
      }
    }
  }
  return out;
}

Status Service::ls(const std::optional<RepoArg>& repo, json* out) {
  auto& chunks = core_.cache().chunks();
  std::vector<index::ContentUsage> usage;
  (void)chunks.list_contents(&usage);
  std::map<std::string, index::ContentUsage> by_id;
  for (auto& u : usage) by_id[u.content_id] = u;

  auto& meta = core_.cache().meta();
  std::map<std::string, json> repos;
  std::map<std::string, std::set<std::string>> counted;  // content ids counted per repo
  for (const auto& f : known_files(repo)) {
    json& r = repos[f.repo_id];
    if (r.is_null()) {
      r = {{"repo", f.repo_id}, {"size_on_disk", 0}, {"files", json::array()},
           {"cached_files", 0}, {"complete_files", 0}, {"pinned_files", 0},
           {"last_access", 0}, {"revisions", json::object()}};
      std::vector<index::RefRecord> refs;
      (void)meta.list_refs(f.repo_id, &refs);
      for (const auto& ref : refs) {
        r["revisions"][ref.revision.empty() ? "main (default)" : ref.revision] = ref.commit;
      }
    }
    const std::string& cid = f.file.content_id();
    auto it = by_id.find(cid);
    uint64_t cached = it == by_id.end() ? 0 : it->second.cached_bytes;
    bool pinned = it != by_id.end() && it->second.pinned;
    if (repo) {
      r["files"].push_back({{"path", f.file.path}, {"commit", f.commit}, {"size", f.file.size},
                            {"cached_bytes", cached}, {"pinned", pinned},
                            {"last_access", it == by_id.end() ? 0 : it->second.last_access}});
    }
    if (!counted[f.repo_id].insert(cid).second) continue;
    if (cached > 0 || f.file.size == 0) r["cached_files"] = r["cached_files"].get<int>() + 1;
    if (cached == f.file.size) r["complete_files"] = r["complete_files"].get<int>() + 1;
    if (pinned) r["pinned_files"] = r["pinned_files"].get<int>() + 1;
    r["size_on_disk"] = r["size_on_disk"].get<uint64_t>() + cached;
    if (it != by_id.end()) {
      r["last_access"] = std::max(r["last_access"].get<int64_t>(), it->second.last_access);
    }
  }
  *out = {{"repos", json::array()}};
  for (auto& [id, r] : repos) {
    if (!repo && r["cached_files"].get<int>() == 0) continue;
    if (!repo) r.erase("files");
    (*out)["repos"].push_back(std::move(r));
  }
  if (repo && repos.empty()) {
    return {Code::kNotFound, repo->repo_id + " is not in the cache; see `modelfs ls`"};
  }
  return Status::Ok();
}

Status Service::info(const RepoArg& repo, json* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, {}, &snap, &files); !st.ok()) return st;
  auto& chunks = core_.cache().chunks();
  uint64_t total = 0, cached = 0;
  json jfiles = json::array();
  auto& hub = core_.hub();
  // config.json gives the architecture of safetensors repos.
  std::string config_arch;
  if (const auto* cfg = snap->file("config.json"); cfg && cfg->size < (1u << 20)) {
    std::string body;
    fetch::FileLocation loc{repo.repo_id, snap->commit, cfg->path, cfg->size, cfg->content_id()};
    fetch::Status fst = hub.read_range(loc, 0, cfg->size, [&](const char* d, size_t n) {
      body.append(d, n);
      return true;
    });
    if (fst.ok()) {
      json j = json::parse(body, nullptr, false);
      if (j.is_object()) {
        if (j.contains("model_type") && j["model_type"].is_string()) config_arch = j["model_type"];
        if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
            j["architectures"][0].is_string()) {
          (*out)["architectures"] = j["architectures"];
        }
      }
    }
  }
  for (const auto& f : files) {
    uint64_t c = chunks.cached_bytes(f.file.content_id());
    total += f.file.size;
    cached += c;
    json jf = {{"path", f.file.path}, {"size", f.file.size}, {"cached_bytes", c},
               {"lfs", !f.file.sha256.empty()}};
    ModelFormat fmt = DetectFormat(f.file.path);
    if (fmt != ModelFormat::kUnknown) {
      fetch::FileLocation loc{repo.repo_id, snap->commit, f.file.path, f.file.size,
                              f.file.content_id()};
      RangeReader reader = [&](uint64_t off, uint64_t len, std::string* buf, std::string* err) {
        buf->clear();
        if (off >= loc.size) return true;
        len = std::min(len, loc.size - off);
        fetch::Status s = hub.read_range(loc, off, len, [&](const char* d, size_t n) {
          buf->append(d, n);
          return true;
        });
        if (!s.ok()) *err = s.ToString();
        return s.ok();
      };
      ModelInfo mi;
      std::string err;
      if (ReadModelInfo(fmt, f.file.size, reader, &mi, &err)) {
        json dtypes = json::array();
        for (const auto& d : mi.dtypes) {
          dtypes.push_back({{"dtype", d.dtype}, {"tensors", d.count}, {"parameters", d.parameters}});
        }
        std::string arch = mi.architecture.empty() ? config_arch : mi.architecture;
        jf["model"] = {{"format", mi.format},          {"architecture", arch},
                       {"name", mi.name},              {"parameters", mi.parameters},
                       {"tensors", mi.tensors},        {"context_length", mi.context_length},
                       {"file_type", mi.file_type},    {"dtypes", dtypes},
                       {"header_bytes", mi.header_bytes}, {"bytes_read", mi.bytes_read},
                       {"runtimes", mi.runtimes}};
      } else {
        jf["model_error"] = err;
      }
    }
    jfiles.push_back(std::move(jf));
  }
  (*out)["repo"] = repo.repo_id;
  (*out)["revision"] = repo.revision.empty() ? "main" : repo.revision;
  (*out)["commit"] = snap->commit;
  (*out)["files"] = std::move(jfiles);
  (*out)["total_bytes"] = total;
  (*out)["cached_bytes"] = cached;
  return Status::Ok();
}

Status Service::stats(json* out) {
  CoreStats s = core_.stats();
  const auto& r = s.reader;
  uint64_t served = r.bytes_read;
  double hit = served ? static_cast<double>(r.bytes_from_cache) / static_cast<double>(served) : 0;
  *out = {{"cache",
           {{"dir", core_.cache().dir().string()},
            {"used_bytes", s.cache.used_bytes},
            {"limit_bytes", s.cache.capacity_bytes},
            {"pinned_bytes", s.cache.pinned_bytes},
            {"chunks", s.cache.chunks},
            {"evicted_chunks", s.cache.evicted_chunks},
            {"evicted_bytes", s.cache.evicted_bytes},
            {"corrupt_chunks", s.cache.corrupt_chunks}}},
          {"reads",
           {{"requests", r.reads},
            {"bytes_served", served},
            {"bytes_from_cache", r.bytes_from_cache},
            {"bytes_fetched", r.bytes_fetched},
            {"hit_ratio", hit},
            {"shared_waits", r.shared_waits},
            {"errors", r.read_errors},
            {"inflight_chunks", r.inflight_chunks},
            {"files_verified", r.files_verified},
            {"sha256_mismatches", r.sha256_mismatches}}},
          {"upstream",
           {{"requests", s.hub.requests},
            {"bytes", s.hub.bytes},
            {"retries", s.hub.retries},
            {"errors", s.hub.errors},
            {"redirects", s.hub.redirects}}},
          {"open_files", s.open_files},
          {"inodes", s.inodes},
          {"uptime_seconds", s.uptime_seconds}};
  return Status::Ok();
}

Status Service::prefetch(const RepoArg& repo, const Selection& sel, unsigned jobs, bool pin,
                         const Emit& emit, json* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, sel, &snap, &files); !st.ok()) return st;
  auto& chunks = core_.cache().chunks();
  const uint32_t chunk = chunks.chunk_size();
  uint64_t total = 0, already = 0;
  std::set<std::string> seen;
  for (const auto& f : files) {
    if (!seen.insert(f.file.content_id()).second) continue;
    total += f.file.size;
    already += chunks.cached_bytes(f.file.content_id());
  }
  // Refuse up front what cannot fit: the selection must fit next to pinned data, and what is
  // missing must fit on the disk.
  index::ChunkStoreStats cs = chunks.stats();
  uint64_t pinned_elsewhere = cs.pinned_bytes;
  for (const auto& cid : seen) {
    if (chunks.is_pinned(cid)) pinned_elsewhere -= std::min(pinned_elsewhere, chunks.cached_bytes(cid));
  }
  uint64_t missing = total - already;
  if (total + pinned_elsewhere > cs.capacity_bytes) {
    return {Code::kNoSpace,
            "the selection is " + std::to_string(total) + " bytes but the cache limit is " +
                std::to_string(cs.capacity_bytes) + " bytes with " + std::to_string(pinned_elsewhere) +
                " bytes pinned; raise --cache-size, unpin data, or pick files with patterns or --include"};
  }
  struct statvfs vfs{};
  if (statvfs(core_.cache().dir().c_str(), &vfs) == 0) {
    uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    uint64_t overhead = ContentChunks(missing, chunk) * 4096;
    uint64_t reclaimable = cs.used_bytes - std::min(cs.used_bytes, cs.pinned_bytes);
    if (missing + overhead > free_bytes + reclaimable) {
      return {Code::kNoSpace, "the selection needs " + std::to_string(missing) +
                                  " more bytes but the disk holding the cache has " +
                                  std::to_string(free_bytes) +
                                  " free; run `modelfs gc`, or pick fewer files"};
    }
  }
  std::atomic<uint64_t> done{already};
  int files_done = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto last_emit = t0 - std::chrono::seconds(1);
  bool ok_emit = emit({{"event", "start"}, {"repo", repo.repo_id}, {"commit", snap->commit},
                       {"files", seen.size()}, {"total_bytes", total}, {"cached_bytes", already}});
  seen.clear();
  Status result;
  for (const auto& f : files) {
    if (!ok_emit) break;
    const std::string& cid = f.file.content_id();
    if (!seen.insert(cid).second) continue;
    if (pin) (void)chunks.set_pinned(cid, true);
    uint64_t before = chunks.cached_bytes(cid);
    fetch::FileLocation loc{f.repo_id, f.commit, f.file.path, f.file.size, cid};
    Status st = core_.reader().fetch_all(loc, cid, jobs, [&](uint64_t n) {
      done += n;
      auto now = std::chrono::steady_clock::now();
      if (now - last_emit >= std::chrono::milliseconds(100)) {
        last_emit = now;
        ok_emit = emit({{"event", "progress"}, {"bytes_done", done.load()}, {"total_bytes", total},
                        {"files_done", files_done}, {"file", f.file.path}});
      }
      return ok_emit;
    });
    if (st.code() == Code::kNotFound) {
      // Evicted again before it could be hashed (cache nearly full): fetched, not verified.
      spdlog::warn("prefetch: {}: {}", f.file.path, st.message());
      st = Status::Ok();
    }
    if (!st.ok()) {
      result = st.code() == Code::kCancelled ? Status(Code::kCancelled, "interrupted") : st;
      break;
    }
    ++files_done;
    ok_emit = emit({{"event", "file_done"}, {"file", f.file.path}, {"size", f.file.size},
                    {"fetched", f.file.size - std::min(f.file.size, before)},
                    {"files_done", files_done}, {"bytes_done", done.load()}, {"total_bytes", total}});
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *out = {{"repo", repo.repo_id},           {"commit", snap->commit},
          {"files", files_done},            {"total_bytes", total},
          {"already_cached_bytes", already}, {"fetched_bytes", done.load() - already},
          {"seconds", secs},                {"pinned", pin}};
  if (result.ok() && !ok_emit) result = {Code::kCancelled, "interrupted"};
  return result;
}

Status Service::unpin(const RepoArg& repo, const Selection& sel, json* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, sel, &snap, &files); !st.ok()) return st;
  int n = 0;
  for (const auto& f : files) {
    if (core_.cache().chunks().is_pinned(f.file.content_id())) {
      (void)core_.cache().chunks().set_pinned(f.file.content_id(), false);
      ++n;
    }
  }
  *out = {{"repo", repo.repo_id}, {"unpinned_files", n}};
  return Status::Ok();
}

Status Service::gc(std::optional<uint64_t> to_bytes, json* out) {
  auto& chunks = core_.cache().chunks();
  auto before = chunks.stats();
  uint64_t target = to_bytes ? *to_bytes
                             : static_cast<uint64_t>(static_cast<double>(before.capacity_bytes) * 0.9);
  uint64_t freed = 0;
  index::Status s = chunks.evict_to(target, &freed);
  auto after = chunks.stats();
  *out = {{"freed_bytes", freed}, {"used_bytes", after.used_bytes}, {"target_bytes", target},
          {"pinned_bytes", after.pinned_bytes}};
  if (!s.ok() && s.code() != index::Code::kNoSpace) return {Code::kIo, s.ToString()};
  return Status::Ok();
}

Status Service::rm(const std::optional<RepoArg>& repo, const Selection& sel, bool force,
                   json* out) {
  if (std::string bad = CheckGlobs(sel); !bad.empty()) return {Code::kInvalid, bad};
  auto& chunks = core_.cache().chunks();
  std::set<std::string> ids;
  if (!repo) {
    std::vector<index::ContentUsage> usage;
    (void)chunks.list_contents(&usage);
    for (const auto& u : usage) ids.insert(u.content_id);
  } else {
    auto files = known_files(repo);
    if (files.empty()) return {Code::kNotFound, repo->repo_id + " is not in the cache"};
    for (const auto& f : files) {
      if (Selected(sel, f.file.path)) ids.insert(f.file.content_id());
    }
  }
  uint64_t freed = 0, pinned_kept = 0;
  int removed = 0;
  for (const auto& id : ids) {
    uint64_t bytes = chunks.cached_bytes(id);
    if (chunks.is_pinned(id) && !force) {
      pinned_kept += bytes;
      continue;
    }
    if (bytes == 0 && !chunks.is_pinned(id)) continue;
    // A pin outlives remove_content (it covers future chunks), so a forced rm lifts it first.
    if (chunks.is_pinned(id)) (void)chunks.set_pinned(id, false);
    if (chunks.remove_content(id).ok()) {
      freed += bytes;
      ++removed;
    }
  }
  *out = {{"removed_files", removed}, {"freed_bytes", freed}, {"pinned_bytes_kept", pinned_kept}};
  if (pinned_kept > 0) {
    return {Code::kNoAccess, std::to_string(pinned_kept) +
                                 " bytes are pinned and were kept; unpin them or pass --force"};
  }
  return Status::Ok();
}

Status Service::verify(const std::optional<RepoArg>& repo, const Emit& emit, json* out) {
  auto& chunks = core_.cache().chunks();
  const uint32_t chunk = chunks.chunk_size();
  std::set<std::string> seen;
  int checked = 0, corrupt = 0;
  uint64_t bytes = 0;
  json bad = json::array();
  std::string buf(chunk, '\0');
  for (const auto& f : known_files(repo)) {
    const std::string& cid = f.file.content_id();
    if (!seen.insert(cid).second || chunks.cached_bytes(cid) == 0) continue;
    ++checked;
    bool file_bad = false;
    // Every chunk's block checksums; a failing chunk is dropped by the store.
    for (uint64_t i = 0; i < ContentChunks(f.file.size, chunk); ++i) {
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(chunk, f.file.size - i * chunk));
      index::Status s = chunks.read(cid, static_cast<uint32_t>(i), 0, len, buf.data());
      if (s.code() == index::Code::kCorrupt) file_bad = true;
      if (s.ok()) bytes += len;
    }
    // A complete LFS file must also match its sha256.
    if (!file_bad && f.file.sha256.size() == 64 && chunks.cached_bytes(cid) == f.file.size) {
      std::string hex;
      if (chunks.content_sha256(cid, f.file.size, &hex).ok()) {
        if (hex != f.file.sha256) {
          file_bad = true;
          (void)chunks.remove_content(cid);
        } else {
          (void)chunks.mark_verified(cid);
        }
      }
    }
    if (file_bad) {
      ++corrupt;
      bad.push_back({{"repo", f.repo_id}, {"path", f.file.path}, {"content_id", cid}});
      spdlog::error("verify: {}/{} was corrupt; its bad data was dropped", f.repo_id, f.file.path);
    }
    if (!emit({{"event", "verified"}, {"repo", f.repo_id}, {"file", f.file.path}, {"ok", !file_bad}})) {
      return {Code::kCancelled, "interrupted"};
    }
  }
  *out = {{"checked_files", checked}, {"corrupt_files", corrupt}, {"verified_bytes", bytes},
          {"corrupt", bad}};
  return Status::Ok();
}

}  // namespace modelfs::fs
