#include "fs/snapshots.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "fetch/hub_parse.h"
#include "fs/base/clock.h"
#include "fs/base/text.h"

namespace modelfs::fs {
namespace {

// "2024-09-25T14:31:17.000Z" -> unix seconds; 0 if unparsable.
int64_t ParseIsoTime(const std::string& s) {
  std::tm tm{};
  if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm));
}

bool PercentDecode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = HexDigit(in[i + 1]), lo = HexDigit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool IsSafeRevision(const std::string& rev) {
  if (rev.empty() || rev.size() > 255) return false;
  for (unsigned char c : rev) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return rev != "." && rev != "..";
}

}  // namespace

bool IsCommitSha(const std::string& s) {
  return s.size() == 40 && IsLowerHex(s);
}

bool IsValidOrgName(const std::string& name) {
  // Hub user and org names have no '.', which keeps probes like "autorun.inf" or ".git" local.
  return name.find('.') == std::string::npos && fetch::IsValidRepoId(name + "/x");
}

bool ParseRepoSpec(const std::string& org, const std::string& entry, std::string* repo_id,
                   std::string* revision) {
  std::string name = entry;
  revision->clear();
  size_t at = entry.find('@');
  if (at != std::string::npos) {
    name = entry.substr(0, at);
    if (!PercentDecode(entry.substr(at + 1), revision) || !IsSafeRevision(*revision)) {
      return false;
    }
  }
  *repo_id = org + "/" + name;
  return fetch::IsValidRepoId(*repo_id);
}

void Snapshot::build(std::vector<index::FileRecord> records) {
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  files.clear();
  dirs.clear();
  dirs[""];
  // Registers every ancestor directory of `path` (which is itself a directory).
  auto add_dir = [this](const std::string& path) {
    std::string cur = path;
    while (!cur.empty() && !dirs.count(cur)) {
      dirs[cur];
      size_t slash = cur.rfind('/');
      std::string parent = slash == std::string::npos ? "" : cur.substr(0, slash);
      dirs[parent].push_back({cur.substr(slash == std::string::npos ? 0 : slash + 1), -1});
      cur = parent;
    }
  };
  for (auto& r : records) {
    if (r.is_dir) add_dir(r.path);
  }
  for (auto& r : records) {
    if (r.is_dir || dirs.count(r.path)) continue;  // a file may not shadow a directory
    size_t slash = r.path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : r.path.substr(0, slash);
    add_dir(parent);
    dirs[parent].push_back({r.path.substr(slash == std::string::npos ? 0 : slash + 1),
                            static_cast<int64_t>(files.size())});
    files.push_back(std::move(r));
  }
  for (auto& [path, children] : dirs) {
    std::sort(children.begin(), children.end(),
              [](const Child& a, const Child& b) { return a.name < b.name; });
  }
}

const index::FileRecord* Snapshot::file(const std::string& path) const {
  auto it =
      std::lower_bound(files.begin(), files.end(), path,
                       [](const index::FileRecord& r, const std::string& p) { return r.path < p; });
  return it != files.end() && it->path == path ? &*it : nullptr;
}

Snapshots::Snapshots(const CoreOptions& options, index::MetaStore& meta, fetch::HubClient& hub,
                     const AccessPolicy& policy)
    : options_(options), meta_(meta), hub_(hub), policy_(policy) {}

std::shared_ptr<Snapshots::Entry> Snapshots::entry(const std::string& key) {
  MutexLock lock(mu_);
  auto& e = entries_[key];
  if (!e) e = std::make_shared<Entry>();
  return e;
}

namespace {

std::shared_ptr<const Snapshot> MakeSnapshot(const std::string& repo_id,
                                             const std::string& revision, const std::string& commit,
                                             int64_t mtime, std::vector<index::FileRecord> files) {
  auto snap = std::make_shared<Snapshot>();
  snap->repo_id = repo_id;
  snap->revision = revision;
  snap->commit = commit;
  snap->immutable = IsCommitSha(revision);
  snap->mtime = mtime;
  snap->build(std::move(files));
  return snap;
}

}  // namespace

size_t Snapshots::release(const std::string& repo_id, const std::string& revision) {
  std::shared_ptr<Entry> e;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(repo_id + "@" + revision);
    if (it == entries_.end()) return 0;
    e = it->second;
  }
  MutexLock lock(e->mu);
  if (!e->snap) return 0;
  const size_t files = e->snap->files.size();
  e->released_commit = e->snap->commit;
  e->released_mtime = e->snap->mtime;
  e->snap.reset();
  return files;
}

size_t Snapshots::resident() const {
  std::vector<std::shared_ptr<Entry>> all;
  {
    MutexLock lock(mu_);
    for (auto& [key, e] : entries_) all.push_back(e);
  }
  size_t n = 0;
  for (auto& e : all) {
    MutexLock lock(e->mu);
    n += e->snap != nullptr;
  }
  return n;
}

Status Snapshots::get(const std::string& repo_id, const std::string& revision,
                      std::shared_ptr<const Snapshot>* out) {
  // The policy is checked on every call (it can change on reload), before any network.
  if (std::string why = policy_.check(repo_id); !why.empty()) {
    spdlog::warn("{}: {}", repo_id, why);
    return {Code::kNoAccess, repo_id + " is " + why};
  }
  auto e = entry(repo_id + "@" + revision);
  MutexLock lock(e->mu);
  if (!e->snap && !e->released_commit.empty()) {
    // Rebuilt from the index whether or not the revision is fresh: it is also what is served
    // while the Hub cannot be reached.
    std::vector<index::FileRecord> files;
    if (meta_.get_tree(repo_id, e->released_commit, &files).ok()) {
      e->snap =
          MakeSnapshot(repo_id, revision, e->released_commit, e->released_mtime, std::move(files));
    }
    e->released_commit.clear();
  }
  if (e->snap && policy_.refuse_gated() && e->gated) {
    spdlog::warn("{}: gated repos are refused by the policy", repo_id);
    return {Code::kNoAccess, repo_id + " is gated and the policy refuses gated repos"};
  }
  auto now = std::chrono::steady_clock::now();
  if (now < e->negative_until) return e->negative;
  const bool fresh = IsCommitSha(revision) || now < e->checked + options_.revision_ttl;
  if (e->snap && fresh) {
    *out = e->snap;
    return Status::Ok();
  }
  std::string commit, gated;
  int64_t mtime = 0;
  Status st = resolve_commit(repo_id, revision, *e, &commit, &mtime, &gated);
  if (st.ok() && !gated.empty() && policy_.refuse_gated()) {
    spdlog::warn("{}: gated repos are refused by the policy", repo_id);
    return {Code::kNoAccess, repo_id + " is gated and the policy refuses gated repos"};
  }
  if (st.ok() && e->snap && e->snap->commit == commit) {
    e->checked = now;
    *out = e->snap;
    return st;
  }
  std::vector<index::FileRecord> files;
  if (st.ok()) st = load_tree(repo_id, commit, &files);
  if (!st.ok()) {
    if (st.not_found() || st.no_access()) {
      e->negative = st;
      e->negative_until = now + options_.negative_ttl;
      e->snap.reset();
    } else if (e->snap) {
      spdlog::warn("{}@{}: {}; serving the last known commit {}", repo_id, revision, st.to_string(),
                   e->snap->commit);
      e->checked = now;  // do not retry on every lookup while the Hub is down
      *out = e->snap;
      return Status::Ok();
    }
    return st;
  }
  auto snap = MakeSnapshot(repo_id, revision, commit, mtime ? mtime : NowUnix(), std::move(files));
  e->released_commit.clear();
  if (e->snap && e->snap->commit != commit) {
    spdlog::info("{}@{} moved from {} to {}", repo_id, revision.empty() ? "default" : revision,
                 e->snap->commit, commit);
  }
  e->snap = snap;
  e->gated = !gated.empty();
  e->checked = now;
  *out = snap;
  return Status::Ok();
}

Status Snapshots::resolve_commit(const std::string& repo_id, const std::string& revision, Entry& e,
                                 std::string* commit, int64_t* mtime, std::string* gated) {
  index::RepoRecord repo;
  bool have_repo = meta_.get_repo(repo_id, &repo).ok();
  if (have_repo) {
    *mtime = ParseIsoTime(repo.last_modified);
    *gated = repo.gated;
  }
  index::RefRecord ref;
  bool have_ref = meta_.get_ref(repo_id, revision, &ref).ok();

  // A commit already listed needs no network at all: it cannot change.
  if (IsCommitSha(revision) && have_repo) {
    std::vector<index::FileRecord> tree;
    if (meta_.get_tree(repo_id, revision, &tree).ok()) {
      *commit = revision;
      return Status::Ok();
    }
  }
  // A ref resolved by an earlier run is fresh enough if it is within the TTL.
  if (!e.snap && have_ref && !IsCommitSha(revision) &&
      NowUnix() - ref.resolved_at < options_.revision_ttl.count()) {
    *commit = ref.commit;
    return Status::Ok();
  }
  if (options_.offline) {
    if (have_ref) {
      *commit = ref.commit;
      return Status::Ok();
    }
    if (IsCommitSha(revision))
      return {Code::kNotFound, repo_id + "@" + revision + " is not cached (offline)"};
    return {Code::kNotFound, repo_id + " is not cached and modelfs is offline"};
  }
  fetch::RepoInfo info;
  Status fst = hub_.repo_info(repo_id, revision, &info);
  if (!fst.ok()) {
    Status st = fst;
    if (fst.code() == Code::kRevisionNotFound) {
      st = {Code::kRevisionNotFound, repo_id + " has no revision '" + revision + "'"};
    }
    if (st.no_access()) {
      spdlog::warn("{}: {} ({})", repo_id, fst.message(),
                   hub_.options().token.empty()
                       ? "no token configured: set HF_TOKEN or --token-file"
                       : "the configured token has no access to it");
    }
    if (IsUpstream(st.code()) && have_ref) {
      spdlog::warn("{}@{}: Hub unreachable ({}); using cached commit {}", repo_id, revision,
                   fst.to_string(), ref.commit);
      *commit = ref.commit;
      return Status::Ok();
    }
    return st;
  }
  repo.id = repo_id;
  repo.is_private = info.is_private;
  repo.gated = info.gated;
  repo.last_modified = info.last_modified;
  repo.fetched_at = NowUnix();
  if (auto s = meta_.put_repo(repo); !s.ok()) spdlog::warn("index: {}", s.to_string());
  if (auto s = meta_.put_ref({repo_id, revision, info.sha, NowUnix()}); !s.ok()) {
    spdlog::warn("index: {}", s.to_string());
  }
  *mtime = ParseIsoTime(info.last_modified);
  *gated = info.gated;
  *commit = info.sha;
  return Status::Ok();
}

Status Snapshots::load_tree(const std::string& repo_id, const std::string& commit,
                            std::vector<index::FileRecord>* files) {
  if (meta_.get_tree(repo_id, commit, files).ok()) return Status::Ok();
  if (options_.offline)
    return {Code::kNotFound, repo_id + "@" + commit + " is not cached (offline)"};
  std::vector<fetch::TreeEntry> entries;
  Status fst = hub_.list_tree(repo_id, commit, &entries);
  if (!fst.ok()) return fst;
  files->clear();
  files->reserve(entries.size());
  for (auto& t : entries) {
    files->push_back(
        {std::move(t.path), t.is_dir, t.size, std::move(t.oid), std::move(t.lfs_sha256)});
  }
  if (auto s = meta_.put_tree(repo_id, commit, *files); !s.ok()) {
    spdlog::warn("index: cannot persist tree of {}@{}: {}", repo_id, commit, s.to_string());
  }
  return Status::Ok();
}

void Snapshots::forget_misses() {
  std::vector<std::shared_ptr<Entry>> all;
  {
    MutexLock lock(mu_);
    for (auto& [key, e] : entries_) all.push_back(e);
  }
  for (auto& e : all) {
    MutexLock lock(e->mu);
    e->negative_until = {};
  }
}

std::vector<std::string> Snapshots::known_orgs() {
  std::vector<index::RepoRecord> repos;
  (void)meta_.list_repos(&repos);
  std::vector<std::string> orgs;
  for (auto& r : repos) {
    size_t slash = r.id.find('/');
    if (slash != std::string::npos) orgs.push_back(r.id.substr(0, slash));
  }
  std::sort(orgs.begin(), orgs.end());
  orgs.erase(std::unique(orgs.begin(), orgs.end()), orgs.end());
  return orgs;
}

std::vector<std::string> Snapshots::known_repos(const std::string& org) {
  std::vector<index::RepoRecord> repos;
  (void)meta_.list_repos(&repos);
  std::vector<std::string> names;
  for (auto& r : repos) {
    if (r.id.size() > org.size() + 1 && r.id.compare(0, org.size(), org) == 0 &&
        r.id[org.size()] == '/') {
      names.push_back(r.id.substr(org.size() + 1));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace modelfs::fs
