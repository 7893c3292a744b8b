// Resolves "org/name" at a revision to a Snapshot: the commit and its file tree.
//
// Branches and tags are re-resolved after CoreOptions::revision_ttl; a commit never changes.
// Everything resolved is persisted in the MetaStore, so after a restart, offline, or while the
// Hub is unreachable, what was seen before is served (a stale branch is logged, not an error).
// Misses (not found, no access) are remembered for negative_ttl so shell probes stay local.
//
// Thread safety: all methods may be called concurrently; one resolution per repo@rev at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/options.h"
#include "fs/policy.h"
#include "index/meta_store.h"

namespace modelfs::fs {

struct Snapshot {
  std::string repo_id;
  std::string revision;  // as asked; "" = default branch
  std::string commit;
  bool immutable = false;  // the revision is a commit sha
  int64_t mtime = 0;       // the repo's lastModified (unix seconds), or the resolve time

  struct Child {
    std::string name;
    int64_t file = -1;  // index into files, -1 for a directory
  };
  std::vector<index::FileRecord> files;                      // files only, sorted by path
  std::unordered_map<std::string, std::vector<Child>> dirs;  // dir path ("" = root) -> children

  // Builds files and dirs from a tree listing (directories are implied by file paths too).
  void build(std::vector<index::FileRecord> records);
  bool is_dir(const std::string& path) const { return dirs.count(path) != 0; }
  const index::FileRecord* file(const std::string& path) const;
};

// "org/name", "org/name@rev" with rev percent-decoded; false if malformed.
bool ParseRepoSpec(const std::string& org, const std::string& entry, std::string* repo_id,
                   std::string* revision);
bool IsValidOrgName(const std::string& name);
bool IsCommitSha(const std::string& s);

class Snapshots {
 public:
  Snapshots(const CoreOptions& options, index::MetaStore& meta, fetch::HubClient& hub,
            const AccessPolicy& policy);

  Status get(const std::string& repo_id, const std::string& revision,
             std::shared_ptr<const Snapshot>* out);

  // Forgets remembered misses and refusals (after a new token or policy is loaded).
  void forget_misses();

  // Frees repo@revision's tree from memory (the kernel holds none of its inodes any more); the
  // next get rebuilds it from the index, without the network while the revision is fresh.
  // Returns the number of files the freed tree had.
  size_t release(const std::string& repo_id, const std::string& revision);
  // Trees held in memory.
  size_t resident() const;
  // Orgs and repo names (without revision) known locally, sorted.
  std::vector<std::string> known_orgs();
  std::vector<std::string> known_repos(const std::string& org);

 private:
  struct Entry {
    // Held while the entry is resolved, network included: one resolution per repo@rev.
    Mutex mu;
    std::shared_ptr<const Snapshot> snap GUARDED_BY(mu);
    std::chrono::steady_clock::time_point checked GUARDED_BY(mu);
    Status negative GUARDED_BY(mu);
    std::chrono::steady_clock::time_point negative_until GUARDED_BY(mu);
    bool gated GUARDED_BY(mu) = false;
    // After release: the commit snap had, to rebuild it from the index.
    std::string released_commit GUARDED_BY(mu);
    int64_t released_mtime GUARDED_BY(mu) = 0;
  };
  std::shared_ptr<Entry> entry(const std::string& key);
  Status resolve_commit(const std::string& repo_id, const std::string& revision, Entry& e,
                        std::string* commit, int64_t* mtime, std::string* gated) REQUIRES(e.mu);
  Status load_tree(const std::string& repo_id, const std::string& commit,
                   std::vector<index::FileRecord>* files);

  const CoreOptions& options_;
  index::MetaStore& meta_;
  fetch::HubClient& hub_;
  const AccessPolicy& policy_;
  mutable Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_ GUARDED_BY(mu_);
};

}  // namespace modelfs::fs
