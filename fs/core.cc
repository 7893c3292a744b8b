#include "fs/core.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "fs/base/sys.h"
#include "fs/read/model_prefetch.h"

namespace modelfs::fs {
namespace {

constexpr const char* kXattrPrefix = "user.modelfs.";

std::string RepoKey(const Node& n) {
  return (n.hub ? "h:" : "") + n.repo_id + "@" + n.revision;
}

constexpr std::string_view kHubDir = ".hub";
constexpr std::string_view kHubPrefix = "models--";
// The branch the Hub cache layout's clients ask for when given no revision.
constexpr const char* kHubDefaultRef = "main";

// "models--org--name" -> "org/name" (the Hub cache's folder name: '/' written as "--").
bool ParseHubRepoDir(std::string_view dir, std::string* repo_id) {
  if (dir.substr(0, kHubPrefix.size()) != kHubPrefix) return false;
  std::string_view rest = dir.substr(kHubPrefix.size());
  const size_t sep = rest.find("--");
  // A folder names a repo, never a revision ("name@rev" is not a Hub cache folder).
  if (sep == std::string_view::npos || rest.find('@') != std::string_view::npos) return false;
  std::string org(rest.substr(0, sep));
  std::string revision;
  return IsValidOrgName(org) &&
         ParseRepoSpec(org, std::string(rest.substr(sep + 2)), repo_id, &revision);
}

// A refs/<branch> file's open handle: its bytes (the commit) live in memory. Its pointer is
// tagged with the low bit so read and release tell it from a Reader's OpenFile.
struct InlineFile {
  std::shared_ptr<const std::string> data;
};
constexpr uint64_t kInlineTag = 1;
bool IsInline(uint64_t handle) {
  return (handle & kInlineTag) != 0;
}
InlineFile* InlineOf(uint64_t handle) {
  return reinterpret_cast<InlineFile*>(handle & ~kInlineTag);
}

}  // namespace

Core::Core(CoreOptions options, index::Cache& cache, fetch::HubClient& hub)
    : options_(std::move(options)),
      cache_(cache),
      hub_(hub),
      snapshots_(options_, cache.meta(), hub, policy_),
      upstream_(hub),
      reader_(options_, cache.chunks(), upstream_),
      started_(static_cast<int64_t>(std::time(nullptr))) {
  reader_.set_on_content_dropped([this](const std::string& cid) {
    MutexLock lock(invalidator_mu_);
    if (!invalidator_) return;
    for (uint64_t ino : inodes_.files_with_content(cid)) invalidator_(ino);
  });
}

void Core::set_kernel_invalidator(std::function<void(uint64_t)> fn) {
  MutexLock lock(invalidator_mu_);
  invalidator_ = std::move(fn);
}

Core::~Core() {
  MutexLock lock(handles_mu_);
  for (OpenFile* f : handles_) delete f;
}

double Core::negative_timeout() const {
  return static_cast<double>(options_.negative_ttl.count());
}

Attr Core::attr_of(const Node& node) const {
  Attr a;
  a.ino = node.ino;
  a.mtime = node.mtime ? node.mtime : started_;
  switch (node.kind) {
    case NodeKind::kRoot:
    case NodeKind::kOrg:
    case NodeKind::kHubRoot:
    case NodeKind::kHubRepo:
    case NodeKind::kHubRefs:
    case NodeKind::kHubSnapshots:
      a.is_dir = true;
      a.timeout = 1.0;  // listings grow as repos become known
      break;
    case NodeKind::kHubRef:
      a.size = node.commit.size();
      a.timeout = static_cast<double>(options_.revision_ttl.count());
      break;
    case NodeKind::kRepo:
    case NodeKind::kDir:
      a.is_dir = true;
      a.timeout = static_cast<double>(
          (node.immutable ? options_.immutable_ttl : options_.revision_ttl).count());
      break;
    case NodeKind::kFile:
      a.size = node.file.size;
      a.timeout = static_cast<double>(
          (node.immutable ? options_.immutable_ttl : options_.revision_ttl).count());
      break;
  }
  return a;
}

Status Core::snapshot_of(const Node& node, std::shared_ptr<const Snapshot>* out) {
  return snapshots_.get(node.repo_id, node.revision, out);
}

std::shared_ptr<const Node> Core::intern(Ref ref, const std::string& key, Node proto) {
  return ref == Ref::kKernel ? inodes_.lookup(key, std::move(proto))
                             : inodes_.peek(key, std::move(proto));
}

std::shared_ptr<const Node> Core::repo_child(Ref ref, const Node& parent, const Snapshot& snap,
                                             const std::string& path, const Snapshot::Child& c) {
  Node n;
  n.org = parent.org;
  n.repo_id = parent.repo_id;
  n.revision = parent.revision;
  n.rel_path = path;
  n.hub = parent.hub;
  n.mtime = snap.mtime;
  n.immutable = snap.immutable;
  if (c.file < 0) {
    n.kind = NodeKind::kDir;
    return intern(ref, "d:" + RepoKey(parent) + '\0' + path, std::move(n));
  }
  n.kind = NodeKind::kFile;
  n.file = snap.files[static_cast<size_t>(c.file)];
  n.commit = snap.commit;
  std::string key = "f:" + RepoKey(parent) + '\0' + path + '\0' + n.file.content_id();
  return intern(ref, key, std::move(n));
}

Status Core::child_of(Ref ref, const Node& dir, std::string_view name_view,
                      std::shared_ptr<const Node>* out) {
  std::string name(name_view);
  switch (dir.kind) {
    case NodeKind::kRoot: {
      if (name == kHubDir) {
        Node n;
        n.kind = NodeKind::kHubRoot;
        *out = intern(ref, "H:", std::move(n));
        return Status::Ok();
      }
      // No '.' in an org name: shell probes (.git, .Trash) and MOUNT/.hub are not orgs.
      if (!IsValidOrgName(name)) return {Code::kNotFound, "not an organisation name: " + name};
      Node n;
      n.kind = NodeKind::kOrg;
      n.org = name;
      *out = intern(ref, "o:" + name, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kOrg: {
      std::string repo_id, revision;
      if (!ParseRepoSpec(dir.org, name, &repo_id, &revision)) {
        return {Code::kNotFound, "not a repo name: " + name};
      }
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshots_.get(repo_id, revision, &snap); !st.ok()) return st;
      Node n;
      n.kind = NodeKind::kRepo;
      n.org = dir.org;
      n.repo_id = repo_id;
      n.revision = revision;
      n.mtime = snap->mtime;
      n.immutable = snap->immutable;
      *out = intern(ref, "r:" + repo_id + "@" + revision, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kRepo:
    case NodeKind::kDir: {
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshot_of(dir, &snap); !st.ok()) return st;
      auto it = snap->dirs.find(dir.rel_path);
      if (it == snap->dirs.end()) return {Code::kNotFound, dir.rel_path + " is gone"};
      for (const auto& c : it->second) {
        if (c.name == name) {
          std::string path = dir.rel_path.empty() ? name : dir.rel_path + "/" + name;
          *out = repo_child(ref, dir, *snap, path, c);
          return Status::Ok();
        }
      }
      return {Code::kNotFound, name};
    }
    case NodeKind::kHubRoot: {
      std::string repo_id;
      if (!ParseHubRepoDir(name, &repo_id)) return {Code::kNotFound, "not a repo folder: " + name};
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshots_.get(repo_id, "", &snap); !st.ok()) return st;
      Node n;
      n.kind = NodeKind::kHubRepo;
      n.repo_id = repo_id;
      n.org = repo_id.substr(0, repo_id.find('/'));
      n.mtime = snap->mtime;
      *out = intern(ref, "Hr:" + repo_id, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kHubRepo: {
      Node n = dir;
      if (name == "refs") {
        n.kind = NodeKind::kHubRefs;
      } else if (name == "snapshots") {
        n.kind = NodeKind::kHubSnapshots;
      } else {
        // blobs/, .no_exist/ and .locks are not presented (see README "A Hugging Face cache view").
        return {Code::kNotFound, name};
      }
      *out = intern(ref, "H" + name + ":" + dir.repo_id, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kHubRefs: {
      // A ref names a branch or tag; the Hub cache never has a commit there.
      if (IsCommitSha(name) || name.find('/') != std::string::npos) return {Code::kNotFound, name};
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshots_.get(dir.repo_id, name, &snap); !st.ok()) return st;
      Node n;
      n.kind = NodeKind::kHubRef;
      n.repo_id = dir.repo_id;
      n.org = dir.org;
      n.revision = name;
      n.commit = snap->commit;
      n.mtime = snap->mtime;
      // The commit is in the key: when the branch moves, the ref is a new inode with new bytes.
      *out = intern(ref, "Hn:" + dir.repo_id + "@" + name + '\0' + snap->commit, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kHubSnapshots: {
      if (!IsCommitSha(name)) return {Code::kNotFound, "not a commit: " + name};
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshots_.get(dir.repo_id, name, &snap); !st.ok()) return st;
      Node n;
      n.kind = NodeKind::kRepo;
      n.hub = true;
      n.org = dir.org;
      n.repo_id = dir.repo_id;
      n.revision = name;
      n.mtime = snap->mtime;
      n.immutable = true;
      std::string key = "r:" + RepoKey(n);
      *out = intern(ref, key, std::move(n));
      return Status::Ok();
    }
    case NodeKind::kFile:
    case NodeKind::kHubRef:
      return {Code::kNotDir, name};
  }
  return {Code::kNotFound, name};
}

Status Core::lookup(uint64_t parent, std::string_view name, Attr* out) {
  auto dir = inodes_.get(parent);
  if (!dir) return {Code::kNotFound, "stale inode"};
  std::shared_ptr<const Node> child;
  if (Status st = child_of(Ref::kKernel, *dir, name, &child); !st.ok()) return st;
  *out = attr_of(*child);
  return Status::Ok();
}

void Core::forget(uint64_t ino, uint64_t lookups) {
  auto gone = inodes_.forget(ino, lookups);
  if (!gone) return;
  // glibc keeps freed heap, so after the kernel drops a large listing RSS would stay at its
  // peak: it is handed back when most inodes are gone, and when a large tree is.
  bool trim = false;
  // The kernel forgets children before their directory: no inode of this repo@revision is left.
  if (gone->kind == NodeKind::kRepo) {
    trim = snapshots_.release(gone->repo_id, gone->revision) >= kTrimAfterInodes;
  }
  const uint64_t live = inodes_.size();
  uint64_t peak = inode_peak_.load(std::memory_order_relaxed);
  while (live > peak && !inode_peak_.compare_exchange_weak(peak, live)) {
  }
  if (peak >= kTrimAfterInodes && live < peak / 4 &&
      inode_peak_.compare_exchange_strong(peak, live)) {
    trim = true;
  }
  if (trim) {
    inodes_.compact();
    cache_.release_memory();
    ReturnFreeMemory();
  }
}

Status Core::getattr(uint64_t ino, Attr* out) {
  auto node = inodes_.get(ino);
  if (!node) return {Code::kNotFound, "stale inode"};
  *out = attr_of(*node);
  return Status::Ok();
}

Status Core::readdir(uint64_t ino, std::vector<DirEntry>* out) {
  auto node = inodes_.get(ino);
  if (!node) return {Code::kNotFound, "stale inode"};
  out->clear();
  switch (node->kind) {
    case NodeKind::kRoot:
      if (std::shared_ptr<const Node> hub; child_of(Ref::kNone, *node, kHubDir, &hub).ok()) {
        out->push_back({std::string(kHubDir), attr_of(*hub)});
      }
      for (const auto& org : snapshots_.known_orgs()) {
        std::shared_ptr<const Node> child;
        if (child_of(Ref::kNone, *node, org, &child).ok()) {
          out->push_back({org, attr_of(*child)});
        }
      }
      return Status::Ok();
    case NodeKind::kOrg:
      // Known repos are listed without asking the Hub; their attributes come on lookup.
      for (const auto& name : snapshots_.known_repos(node->org)) {
        Node n;
        n.kind = NodeKind::kRepo;
        n.org = node->org;
        n.repo_id = node->org + "/" + name;
        auto child = intern(Ref::kNone, "r:" + n.repo_id + "@", n);
        out->push_back({name, attr_of(*child)});
      }
      return Status::Ok();
    case NodeKind::kRepo:
    case NodeKind::kDir: {
      std::shared_ptr<const Snapshot> snap;
      if (Status st = snapshot_of(*node, &snap); !st.ok()) return st;
      auto it = snap->dirs.find(node->rel_path);
      if (it == snap->dirs.end()) return {Code::kNotFound, node->rel_path + " is gone"};
      out->reserve(it->second.size());
      for (const auto& c : it->second) {
        std::string path = node->rel_path.empty() ? c.name : node->rel_path + "/" + c.name;
        out->push_back({c.name, attr_of(*repo_child(Ref::kNone, *node, *snap, path, c))});
      }
      return Status::Ok();
    }
    case NodeKind::kHubRoot:
      // Known repos, without asking the Hub (as for an org).
      for (const auto& org : snapshots_.known_orgs()) {
        for (const auto& name : snapshots_.known_repos(org)) {
          Node n;
          n.kind = NodeKind::kHubRepo;
          n.org = org;
          n.repo_id.append(org).append("/").append(name);
          auto child = intern(Ref::kNone, "Hr:" + n.repo_id, n);
          std::string dir_name(kHubPrefix);
          dir_name.append(org).append("--").append(name);
          out->push_back({std::move(dir_name), attr_of(*child)});
        }
      }
      return Status::Ok();
    case NodeKind::kHubRepo:
      for (const char* name : {"refs", "snapshots"}) {
        std::shared_ptr<const Node> child;
        if (child_of(Ref::kNone, *node, name, &child).ok()) {
          out->push_back({name, attr_of(*child)});
        }
      }
      return Status::Ok();
    case NodeKind::kHubRefs:
    case NodeKind::kHubSnapshots: {
      // The default ref and the commit it names: what a client that loaded the repo would have.
      std::shared_ptr<const Node> main_ref;
      Node refs = *node;
      refs.kind = NodeKind::kHubRefs;
      if (Status st = child_of(Ref::kNone, refs, kHubDefaultRef, &main_ref); !st.ok()) {
        return st.code() == Code::kNotFound ? Status::Ok() : st;
      }
      if (node->kind == NodeKind::kHubRefs) {
        out->push_back({kHubDefaultRef, attr_of(*main_ref)});
      } else if (std::shared_ptr<const Node> snap;
                 child_of(Ref::kNone, *node, main_ref->commit, &snap).ok()) {
        out->push_back({main_ref->commit, attr_of(*snap)});
      }
      return Status::Ok();
    }
    case NodeKind::kFile:
    case NodeKind::kHubRef:
      return {Code::kNotDir, "not a directory"};
  }
  return Status::Ok();
}

Status Core::open(uint64_t ino, uint64_t* handle) {
  auto node = inodes_.get(ino);
  if (!node) return {Code::kNotFound, "stale inode"};
  if (node->kind == NodeKind::kHubRef) {
    auto* f = new InlineFile{std::make_shared<const std::string>(node->commit)};
    *handle = reinterpret_cast<uint64_t>(f) | kInlineTag;
    open_files_++;
    return Status::Ok();
  }
  if (node->kind != NodeKind::kFile) return {Code::kIsDir, "is a directory"};
  // The reader numbers chunks with uint32_t: past 2^32 chunks (a tree claiming 256 TiB with
  // 64 KiB chunks) an index would wrap and serve chunk 0's bytes for another offset.
  if (const uint64_t cs = cache_.chunks().chunk_size();
      node->file.size > 0 && (node->file.size - 1) / cs > UINT32_MAX) {
    spdlog::warn("{}/{}: listed as {} bytes, more than {} chunks of {} bytes can address",
                 node->repo_id, node->file.path, node->file.size, uint64_t{UINT32_MAX} + 1, cs);
    return {Code::kIo, node->file.path + " is too large for the cache's chunk size"};
  }
  fetch::FileLocation loc;
  loc.repo_id = node->repo_id;
  loc.commit = node->commit;
  loc.path = node->file.path;
  loc.size = node->file.size;
  loc.etag = node->file.content_id();
  auto f = reader_.open(std::move(loc), node->file.content_id());
  if (options_.model_prefetch) prefetch_model_set(*node);
  {
    MutexLock lock(handles_mu_);
    handles_.insert(f.get());
  }
  *handle = reinterpret_cast<uint64_t>(f.release());
  open_files_++;
  return Status::Ok();
}

void Core::prefetch_model_set(const Node& node) {
  const std::string& path = node.file.path;
  if (!MayOpenShardSet(path)) return;
  std::shared_ptr<const Snapshot> snap;
  if (!snapshots_.get(node.repo_id, node.revision, &snap).ok() || snap->commit != node.commit) {
    return;
  }
  std::vector<std::string> paths;
  paths.reserve(snap->files.size());
  for (const auto& f : snap->files) paths.push_back(f.path);
  std::vector<std::pair<fetch::FileLocation, std::string>> files;
  for (const auto& shard : ShardSet(path, paths)) {
    const index::FileRecord* f = snap->file(shard);
    if (f == nullptr) continue;
    files.push_back(
        {{node.repo_id, snap->commit, f->path, f->size, f->content_id()}, f->content_id()});
  }
  if (!files.empty()) reader_.prefetch_files(files);
}

Status Core::read(uint64_t handle, uint64_t offset, size_t size, ReadPieces* out) {
  if (IsInline(handle)) {
    const auto& data = InlineOf(handle)->data;
    out->clear();
    if (offset < data->size()) {
      const size_t n = std::min<size_t>(size, data->size() - offset);
      out->pieces.push_back({data, data->data() + offset, n});
      out->size = n;
    }
    return Status::Ok();
  }
  return reader_.read(*reinterpret_cast<OpenFile*>(handle), offset, size, out);
}

Status Core::read(uint64_t handle, uint64_t offset, size_t size, std::string* out) {
  if (IsInline(handle)) {
    const std::string& data = *InlineOf(handle)->data;
    *out = offset < data.size() ? data.substr(offset, size) : std::string();
    return Status::Ok();
  }
  return reader_.read(*reinterpret_cast<OpenFile*>(handle), offset, size, out);
}

void Core::release(uint64_t handle) {
  if (IsInline(handle)) {
    delete InlineOf(handle);
    open_files_--;
    return;
  }
  auto* f = reinterpret_cast<OpenFile*>(handle);
  {
    MutexLock lock(handles_mu_);
    handles_.erase(f);
  }
  delete f;
  open_files_--;
}

Status Core::listxattr(uint64_t ino, std::vector<std::string>* names) {
  auto node = inodes_.get(ino);
  if (!node) return {Code::kNotFound, "stale inode"};
  names->clear();
  if (node->kind == NodeKind::kFile) {
    for (const char* n : {"revision", "commit", "content_id", "cached_bytes", "pinned"}) {
      names->push_back(std::string(kXattrPrefix) + n);
    }
    if (!node->file.sha256.empty()) names->push_back(std::string(kXattrPrefix) + "sha256");
  } else if (node->kind == NodeKind::kRepo || node->kind == NodeKind::kDir) {
    names->push_back(std::string(kXattrPrefix) + "revision");
    names->push_back(std::string(kXattrPrefix) + "commit");
  } else if (node->kind == NodeKind::kRoot && !options_.control_socket.empty()) {
    names->push_back(std::string(kXattrPrefix) + "control_socket");
  }
  return Status::Ok();
}

Status Core::getxattr(uint64_t ino, std::string_view name, std::string* value) {
  auto node = inodes_.get(ino);
  if (!node) return {Code::kNotFound, "stale inode"};
  // "Not supported" rather than "no such attribute" for security.*, system.* and trusted.*:
  // ls -l then stops asking for SELinux labels and ACLs on this file system (it remembers per
  // device), which would otherwise cost two requests per file listed.
  if (name.substr(0, 5) != "user.") return {Code::kNotSupported, std::string(name)};
  if (name.substr(0, std::string_view(kXattrPrefix).size()) != kXattrPrefix) {
    return {Code::kNoData, std::string(name)};
  }
  std::string_view key = name.substr(std::string_view(kXattrPrefix).size());
  if (key == "control_socket" && !options_.control_socket.empty() &&
      node->kind == NodeKind::kRoot) {
    *value = options_.control_socket;
    return Status::Ok();
  }
  bool in_repo = node->kind == NodeKind::kRepo || node->kind == NodeKind::kDir ||
                 node->kind == NodeKind::kFile;
  if (in_repo && key == "revision") {
    *value = node->revision.empty() ? "main" : node->revision;
    return Status::Ok();
  }
  if (in_repo && key == "commit") {
    if (node->kind == NodeKind::kFile) {
      *value = node->commit;
      return Status::Ok();
    }
    std::shared_ptr<const Snapshot> snap;
    if (Status st = snapshot_of(*node, &snap); !st.ok()) return st;
    *value = snap->commit;
    return Status::Ok();
  }
  if (node->kind == NodeKind::kFile) {
    const auto& f = node->file;
    if (key == "content_id") {
      *value = f.content_id();
      return Status::Ok();
    }
    if (key == "sha256" && !f.sha256.empty()) {
      *value = f.sha256;
      return Status::Ok();
    }
    if (key == "cached_bytes") {
      *value = std::to_string(cache_.chunks().cached_bytes(f.content_id()));
      return Status::Ok();
    }
    if (key == "pinned") {
      *value = cache_.chunks().is_pinned(f.content_id()) ? "1" : "0";
      return Status::Ok();
    }
  }
  return {Code::kNoData, std::string(name)};
}

Status Core::snapshot(const std::string& repo_id, const std::string& revision,
                      std::shared_ptr<const Snapshot>* out) {
  return snapshots_.get(repo_id, revision, out);
}

Status Core::fetch_all(const fetch::FileLocation& loc, const std::string& content_id, unsigned jobs,
                       const std::function<bool(uint64_t)>& progress) {
  return reader_.fetch_all(loc, content_id, jobs, progress);
}

void Core::set_policy(PolicyRules rules) {
  policy_.set(std::move(rules));
}

void Core::forget_misses() {
  snapshots_.forget_misses();
}

CoreStats Core::stats() const {
  CoreStats s;
  s.reader = reader_.stats();
  s.cache = cache_.chunks().stats();
  s.hub = hub_.counters();
  s.inodes = inodes_.size();
  s.trees_in_memory = snapshots_.resident();
  s.open_files = open_files_;
  s.uptime_seconds = static_cast<int64_t>(std::time(nullptr)) - started_;
  return s;
}

}  // namespace modelfs::fs
