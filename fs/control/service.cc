#include "fs/control/service.h"

#include <fnmatch.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "fetch/hub_parse.h"

namespace modelfs::fs {
namespace {

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

uint64_t ContentChunks(uint64_t size, uint32_t chunk) {
  return size == 0 ? 0 : (size - 1) / chunk + 1;
}

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
      if (depth != 0 || g.back() == '\\')
        return "bad pattern '" + g + "': unbalanced [ or trailing \\";
    }
  }
  return "";
}

Service::Service(Core& core, index::Cache& cache, fetch::HubClient& hub)
    : core_(core),
      chunks_(cache.chunks()),
      meta_(cache.meta()),
      cache_dir_(cache.dir().string()),
      hub_(hub) {}

Status Service::select(const RepoArg& repo, const Selection& sel,
                       std::shared_ptr<const Snapshot>* snap, std::vector<FileRef>* files) {
  if (std::string bad = CheckGlobs(sel); !bad.empty()) return {Code::kInvalid, bad};
  if (Status st = core_.snapshot(repo.repo_id, repo.revision, snap); !st.ok()) return st;
  for (const auto& f : (*snap)->files) {
    if (Selected(sel, f.path)) files->push_back({repo.repo_id, (*snap)->commit, f});
  }
  if (files->empty()) {
    return {Code::kNotFound, "no file of " + repo.repo_id + " matches the given patterns"};
  }
  return Status::Ok();
}

std::vector<Service::FileRef> Service::known_files(const std::optional<RepoArg>& repo) {
  std::vector<index::RepoRecord> repos;
  (void)meta_.list_repos(&repos);
  std::vector<FileRef> out;
  for (const auto& r : repos) {
    if (repo && r.id != repo->repo_id) continue;
    std::vector<index::RefRecord> refs;
    (void)meta_.list_refs(r.id, &refs);
    std::set<std::string> commits;
    for (const auto& ref : refs) {
      if (!repo || repo->revision.empty() || repo->revision == ref.revision ||
          repo->revision == ref.commit) {
        commits.insert(ref.commit);
      }
    }
    for (const auto& c : commits) {
      std::vector<index::FileRecord> tree;
      if (!meta_.get_tree(r.id, c, &tree).ok()) continue;
      for (auto& f : tree) {
        if (!f.is_dir) out.push_back({r.id, c, std::move(f)});
      }
    }
  }
  return out;
}

Status Service::ls(const std::optional<RepoArg>& repo, LsResult* out) {
  std::vector<index::ContentUsage> usage;
  (void)chunks_.list_contents(&usage);
  std::map<std::string, index::ContentUsage> by_id;
  for (auto& u : usage) by_id[u.content_id] = u;

  std::map<std::string, RepoUsage> repos;
  std::map<std::string, std::set<std::string>> counted;  // content ids counted per repo
  for (const auto& f : known_files(repo)) {
    auto [rit, inserted] = repos.try_emplace(f.repo_id);
    RepoUsage& r = rit->second;
    if (inserted) {
      r.repo = f.repo_id;
      std::vector<index::RefRecord> refs;
      (void)meta_.list_refs(f.repo_id, &refs);
      for (const auto& ref : refs) r.revisions[ref.revision] = ref.commit;
    }
    const std::string& cid = f.file.content_id();
    auto it = by_id.find(cid);
    const uint64_t cached = it == by_id.end() ? 0 : it->second.cached_bytes;
    const bool pinned = it != by_id.end() && it->second.pinned;
    const int64_t last = it == by_id.end() ? 0 : it->second.last_access;
    if (repo) r.files.push_back({f.file.path, f.commit, f.file.size, cached, pinned, last});
    if (!counted[f.repo_id].insert(cid).second) continue;
    if (cached > 0 || f.file.size == 0) ++r.cached_files;
    if (cached == f.file.size) ++r.complete_files;
    if (pinned) ++r.pinned_files;
    r.size_on_disk += cached;
    r.last_access = std::max(r.last_access, last);
  }
  out->repos.clear();
  out->per_file = repo.has_value();
  for (auto& [id, r] : repos) {
    if (!repo && r.cached_files == 0) continue;
    out->repos.push_back(std::move(r));
  }
  if (repo && repos.empty()) {
    return {Code::kNotFound, repo->repo_id + " is not in the cache; see `modelfs ls`"};
  }
  return Status::Ok();
}

namespace {

// Reads a whole small file through the Hub (not the cache).
bool ReadSmallFile(fetch::HubClient& hub, const fetch::FileLocation& loc, std::string* body) {
  body->clear();
  return hub
      .read_range(loc, 0, loc.size,
                  [&](const char* d, size_t n) {
                    body->append(d, n);
                    return true;
                  })
      .ok();
}

}  // namespace

Status Service::info(const RepoArg& repo, InfoResult* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, {}, &snap, &files); !st.ok()) return st;
  *out = InfoResult{};
  // config.json gives the architecture of safetensors repos.
  std::string config_arch;
  if (const auto* cfg = snap->file("config.json"); cfg && cfg->size < (1u << 20)) {
    std::string body;
    fetch::FileLocation loc{repo.repo_id, snap->commit, cfg->path, cfg->size, cfg->content_id()};
    if (ReadSmallFile(hub_, loc, &body)) {
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_object()) {
        if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) config_arch = *mt;
        if (auto a = j.find("architectures"); a != j.end() && a->is_array()) {
          for (const auto& v : *a) {
            if (v.is_string()) out->architectures.push_back(v.get<std::string>());
          }
        }
      }
    }
  }
  for (const auto& f : files) {
    FileInfo fi;
    fi.path = f.file.path;
    fi.size = f.file.size;
    fi.cached_bytes = chunks_.cached_bytes(f.file.content_id());
    fi.lfs = !f.file.sha256.empty();
    out->total_bytes += fi.size;
    out->cached_bytes += fi.cached_bytes;
    const ModelFormat fmt = DetectFormat(f.file.path);
    if (fmt != ModelFormat::kUnknown) {
      fetch::FileLocation loc{repo.repo_id, snap->commit, f.file.path, f.file.size,
                              f.file.content_id()};
      RangeReader reader = [&](uint64_t off, uint64_t len, std::string* buf, std::string* err) {
        buf->clear();
        if (off >= loc.size) return true;
        len = std::min(len, loc.size - off);
        Status s = hub_.read_range(loc, off, len, [&](const char* d, size_t n) {
          buf->append(d, n);
          return true;
        });
        if (!s.ok()) *err = s.to_string();
        return s.ok();
      };
      ModelInfo mi;
      std::string err;
      if (ReadModelInfo(fmt, f.file.size, reader, &mi, &err)) {
        if (mi.architecture.empty()) mi.architecture = config_arch;
        fi.model = std::move(mi);
      } else {
        fi.model_error = err;
      }
    }
    out->files.push_back(std::move(fi));
  }
  out->repo = repo.repo_id;
  out->revision = repo.revision.empty() ? "main" : repo.revision;
  out->commit = snap->commit;
  return Status::Ok();
}

Status Service::stats(StatsResult* out) {
  out->cache_dir = cache_dir_;
  out->model_prefetch = core_.options().model_prefetch;
  out->core = core_.stats();
  return Status::Ok();
}

Status Service::prefetch(const RepoArg& repo, const Selection& sel, unsigned jobs, bool pin,
                         const PrefetchProgress& progress, PrefetchResult* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, sel, &snap, &files); !st.ok()) return st;
  const uint32_t chunk = chunks_.chunk_size();
  uint64_t total = 0, already = 0;
  std::set<std::string> seen;
  for (const auto& f : files) {
    if (!seen.insert(f.file.content_id()).second) continue;
    total += f.file.size;
    already += chunks_.cached_bytes(f.file.content_id());
  }
  // Refuse up front what cannot fit: the selection must fit next to pinned data, and what is
  // missing must fit on the disk.
  index::ChunkStoreStats cs = chunks_.stats();
  uint64_t pinned_elsewhere = cs.pinned_bytes;
  for (const auto& cid : seen) {
    if (chunks_.is_pinned(cid)) {
      pinned_elsewhere -= std::min(pinned_elsewhere, chunks_.cached_bytes(cid));
    }
  }
  const uint64_t missing = total - already;
  if (total + pinned_elsewhere > cs.capacity_bytes) {
    return {Code::kNoSpace, "the selection is " + std::to_string(total) +
                                " bytes but the cache limit is " +
                                std::to_string(cs.capacity_bytes) + " bytes with " +
                                std::to_string(pinned_elsewhere) +
                                " bytes pinned; raise --cache-size, unpin data, or pick files "
                                "with patterns or --include"};
  }
  struct statvfs vfs {};
  if (statvfs(cache_dir_.c_str(), &vfs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    const uint64_t overhead = ContentChunks(missing, chunk) * 4096;
    const uint64_t reclaimable = cs.used_bytes - std::min(cs.used_bytes, cs.pinned_bytes);
    if (missing + overhead > free_bytes + reclaimable) {
      return {Code::kNoSpace, "the selection needs " + std::to_string(missing) +
                                  " more bytes but the disk holding the cache has " +
                                  std::to_string(free_bytes) +
                                  " free; run `modelfs gc`, or pick fewer files"};
    }
  }
  std::atomic<uint64_t> done{already};
  int files_done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto last_emit = t0 - std::chrono::seconds(1);
  PrefetchEvent start;
  start.kind = PrefetchEvent::Kind::kStart;
  start.repo = repo.repo_id;
  start.commit = snap->commit;
  start.files = seen.size();
  start.total_bytes = total;
  start.cached_bytes = already;
  start.bytes_done = already;
  bool going = progress(start);
  seen.clear();
  Status result;
  for (const auto& f : files) {
    if (!going) break;
    const std::string& cid = f.file.content_id();
    if (!seen.insert(cid).second) continue;
    if (pin) (void)chunks_.set_pinned(cid, true);
    const uint64_t before = chunks_.cached_bytes(cid);
    fetch::FileLocation loc{f.repo_id, f.commit, f.file.path, f.file.size, cid};
    Status st = core_.fetch_all(loc, cid, jobs, [&](uint64_t n) {
      done += n;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_emit >= std::chrono::milliseconds(100)) {
        last_emit = now;
        PrefetchEvent e;
        e.kind = PrefetchEvent::Kind::kProgress;
        e.file = f.file.path;
        e.files_done = files_done;
        e.bytes_done = done.load();
        e.total_bytes = total;
        going = progress(e);
      }
      return going;
    });
    if (st.not_found()) {
      // Evicted again before it could be hashed (cache nearly full): fetched, not verified.
      spdlog::warn("prefetch: {}: {}", f.file.path, st.message());
      st = Status::Ok();
    }
    if (!st.ok()) {
      result = st.code() == Code::kCancelled ? Status(Code::kCancelled, "interrupted") : st;
      break;
    }
    ++files_done;
    PrefetchEvent e;
    e.kind = PrefetchEvent::Kind::kFileDone;
    e.file = f.file.path;
    e.size = f.file.size;
    e.fetched = f.file.size - std::min(f.file.size, before);
    e.files_done = files_done;
    e.bytes_done = done.load();
    e.total_bytes = total;
    going = progress(e);
  }
  out->repo = repo.repo_id;
  out->commit = snap->commit;
  out->files = files_done;
  out->total_bytes = total;
  out->already_cached_bytes = already;
  out->fetched_bytes = done.load() - already;
  out->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out->pinned = pin;
  if (result.ok() && !going) result = {Code::kCancelled, "interrupted"};
  return result;
}

Status Service::unpin(const RepoArg& repo, const Selection& sel, UnpinResult* out) {
  std::shared_ptr<const Snapshot> snap;
  std::vector<FileRef> files;
  if (Status st = select(repo, sel, &snap, &files); !st.ok()) return st;
  out->repo = repo.repo_id;
  out->unpinned_files = 0;
  for (const auto& f : files) {
    if (chunks_.is_pinned(f.file.content_id())) {
      (void)chunks_.set_pinned(f.file.content_id(), false);
      ++out->unpinned_files;
    }
  }
  return Status::Ok();
}

Status Service::gc(std::optional<uint64_t> to_bytes, GcResult* out) {
  const auto before = chunks_.stats();
  const uint64_t target =
      to_bytes ? *to_bytes
               : static_cast<uint64_t>(static_cast<double>(before.capacity_bytes) * 0.9);
  uint64_t freed = 0;
  Status s = chunks_.evict_to(target, &freed);
  const auto after = chunks_.stats();
  *out = {freed, after.used_bytes, target, after.pinned_bytes};
  if (!s.ok() && s.code() != Code::kNoSpace) return s;
  return Status::Ok();
}

Status Service::rm(const std::optional<RepoArg>& repo, const Selection& sel, bool force,
                   RmResult* out) {
  if (std::string bad = CheckGlobs(sel); !bad.empty()) return {Code::kInvalid, bad};
  std::set<std::string> ids;
  if (!repo) {
    std::vector<index::ContentUsage> usage;
    (void)chunks_.list_contents(&usage);
    for (const auto& u : usage) ids.insert(u.content_id);
  } else {
    auto files = known_files(repo);
    if (files.empty()) return {Code::kNotFound, repo->repo_id + " is not in the cache"};
    for (const auto& f : files) {
      if (Selected(sel, f.file.path)) ids.insert(f.file.content_id());
    }
  }
  *out = RmResult{};
  for (const auto& id : ids) {
    const uint64_t bytes = chunks_.cached_bytes(id);
    if (chunks_.is_pinned(id) && !force) {
      out->pinned_bytes_kept += bytes;
      continue;
    }
    if (bytes == 0 && !chunks_.is_pinned(id)) continue;
    // A pin outlives remove_content (it covers future chunks), so a forced rm lifts it first.
    if (chunks_.is_pinned(id)) (void)chunks_.set_pinned(id, false);
    core_.forget_content(id);
    if (chunks_.remove_content(id).ok()) {
      out->freed_bytes += bytes;
      ++out->removed_files;
    }
  }
  if (out->pinned_bytes_kept > 0) {
    return {Code::kNoAccess, std::to_string(out->pinned_bytes_kept) +
                                 " bytes are pinned and were kept; unpin them or pass --force"};
  }
  return Status::Ok();
}

Status Service::verify(const std::optional<RepoArg>& repo, const VerifyProgress& progress,
                       VerifyResult* out) {
  const uint32_t chunk = chunks_.chunk_size();
  std::set<std::string> seen;
  *out = VerifyResult{};
  std::string buf(chunk, '\0');
  for (const auto& f : known_files(repo)) {
    const std::string& cid = f.file.content_id();
    if (!seen.insert(cid).second || chunks_.cached_bytes(cid) == 0) continue;
    ++out->checked_files;
    bool file_bad = false;
    // Every chunk's block checksums; a failing chunk is dropped by the store.
    for (uint64_t i = 0; i < ContentChunks(f.file.size, chunk); ++i) {
      const auto len = static_cast<uint32_t>(std::min<uint64_t>(chunk, f.file.size - i * chunk));
      Status s = chunks_.read(cid, static_cast<uint32_t>(i), 0, len, buf.data());
      if (s.code() == Code::kCorrupt) file_bad = true;
      if (s.ok()) out->verified_bytes += len;
    }
    // A complete LFS file must also match its sha256.
    if (!file_bad && f.file.sha256.size() == 64 && chunks_.cached_bytes(cid) == f.file.size) {
      std::string hex;
      if (chunks_.content_sha256(cid, f.file.size, &hex).ok()) {
        if (hex != f.file.sha256) {
          file_bad = true;
          core_.forget_content(cid);
          (void)chunks_.remove_content(cid);
        } else {
          (void)chunks_.mark_verified(cid);
        }
      }
    }
    if (file_bad) {
      ++out->corrupt_files;
      out->corrupt.push_back({f.repo_id, f.file.path, cid});
      spdlog::error("verify: {}/{} was corrupt; its bad data was dropped", f.repo_id, f.file.path);
    }
    if (!progress({f.repo_id, f.file.path, !file_bad})) return {Code::kCancelled, "interrupted"};
  }
  return Status::Ok();
}

}  // namespace modelfs::fs
