// Persisted Hub metadata: repos, revisions resolved to commits, and the trees of commits, so
// that after a restart or offline everything seen before still lists.
// Thread safety: all methods may be called concurrently (they lock the Db).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/base/status.h"
#include "index/db.h"

namespace modelfs::index {

struct RepoRecord {
  std::string id;  // "org/name"
  bool is_private = false;
  std::string gated;  // "", "auto", "manual"
  std::string last_modified;
  int64_t fetched_at = 0;  // unix seconds
};

struct RefRecord {
  std::string repo_id;
  std::string revision;  // as asked: "" for the default branch, a branch, tag or commit
  std::string commit;    // 40 hex
  int64_t resolved_at = 0;
};

struct FileRecord {
  std::string path;
  bool is_dir = false;
  uint64_t size = 0;
  std::string oid;     // git blob sha1
  std::string sha256;  // LFS sha256, empty for plain git files
  // The key of the bytes in the chunk store: the sha256 when present, else the git oid.
  const std::string& content_id() const { return sha256.empty() ? oid : sha256; }
};

class MetaStore {
 public:
  explicit MetaStore(Db& db);  // creates the tables if missing
  Status init();

  Status put_repo(const RepoRecord& repo);
  Status get_repo(const std::string& id, RepoRecord* out);  // kNotFound if unknown
  Status list_repos(std::vector<RepoRecord>* out);
  Status remove_repo(const std::string& id);  // refs and trees too

  Status put_ref(const RefRecord& ref);
  Status get_ref(const std::string& repo_id, const std::string& revision, RefRecord* out);
  Status list_refs(const std::string& repo_id, std::vector<RefRecord>* out);

  // Replaces the stored tree of (repo, commit) atomically.
  Status put_tree(const std::string& repo_id, const std::string& commit,
                  const std::vector<FileRecord>& files);
  Status get_tree(const std::string& repo_id, const std::string& commit,
                  std::vector<FileRecord>* out);  // kNotFound if never stored

 private:
  Status prepare_all();  // caller holds db_.mutex()

  Db& db_;
  bool ready_ = false;  // tables created and statements prepared (guarded by db_.mutex())
  // Prepared once in init(), reused under db_.mutex().
  Stmt put_repo_, get_repo_, list_repos_, del_repo_, del_repo_refs_, del_repo_trees_,
      del_repo_files_, put_ref_, get_ref_, list_refs_, put_tree_, has_tree_, del_tree_files_,
      put_file_, get_files_;
};

}  // namespace modelfs::index
