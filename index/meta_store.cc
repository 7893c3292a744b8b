#include "index/meta_store.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace modelfs::index {
namespace {

constexpr int kSchemaVersion = 1;

// Tables owned by MetaStore. Trees get their own row so that an empty tree is distinct from
// a tree never stored.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS repos(
  id TEXT PRIMARY KEY,
  is_private INTEGER NOT NULL DEFAULT 0,
  gated TEXT NOT NULL DEFAULT '',
  last_modified TEXT NOT NULL DEFAULT '',
  fetched_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refs(
  repo_id TEXT NOT NULL,
  revision TEXT NOT NULL,
  commit_id TEXT NOT NULL,
  resolved_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(repo_id, revision)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees(
  repo_id TEXT NOT NULL,
  commit_id TEXT NOT NULL,
  stored_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(repo_id, commit_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_files(
  repo_id TEXT NOT NULL,
  commit_id TEXT NOT NULL,
  path TEXT NOT NULL,
  is_dir INTEGER NOT NULL,
  size INTEGER NOT NULL,
  oid TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY(repo_id, commit_id, path)) WITHOUT ROWID;
)sql";

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Clears a statement's bindings and state whatever way the scope is left.
Status NotReady() {
  return Status(Code::kDb, "metadata store not initialized");
}

}  // namespace

MetaStore::MetaStore(Db& db) : db_(db) {
  Status s = init();
  if (!s.ok()) spdlog::error("metadata store: {}", s.to_string());
}

Status MetaStore::init() {
  std::lock_guard lock(db_.mutex());
  if (ready_) return Status::Ok();
  Status s = db_.apply_schema(kSchema, kSchemaVersion);
  if (!s.ok()) return s;
  s = prepare_all();
  if (!s.ok()) return s;
  ready_ = true;
  return Status::Ok();
}

Status MetaStore::prepare_all() {
  struct Item {
    Stmt* stmt;
    const char* sql;
  };
  const Item items[] = {
      {&put_repo_,
       "INSERT INTO repos(id, is_private, gated, last_modified, fetched_at) VALUES(?,?,?,?,?) "
       "ON CONFLICT(id) DO UPDATE SET is_private=excluded.is_private, gated=excluded.gated, "
       "last_modified=excluded.last_modified, fetched_at=excluded.fetched_at"},
      {&get_repo_, "SELECT id, is_private, gated, last_modified, fetched_at FROM repos WHERE id=?"},
      {&list_repos_,
       "SELECT id, is_private, gated, last_modified, fetched_at FROM repos ORDER BY id"},
      {&del_repo_, "DELETE FROM repos WHERE id=?"},
      {&del_repo_refs_, "DELETE FROM refs WHERE repo_id=?"},
      {&del_repo_trees_, "DELETE FROM trees WHERE repo_id=?"},
      {&del_repo_files_, "DELETE FROM tree_files WHERE repo_id=?"},
      {&put_ref_,
       "INSERT INTO refs(repo_id, revision, commit_id, resolved_at) VALUES(?,?,?,?) "
       "ON CONFLICT(repo_id, revision) DO UPDATE SET commit_id=excluded.commit_id, "
       "resolved_at=excluded.resolved_at"},
      {&get_ref_,
       "SELECT repo_id, revision, commit_id, resolved_at FROM refs "
       "WHERE repo_id=? AND revision=?"},
      {&list_refs_,
       "SELECT repo_id, revision, commit_id, resolved_at FROM refs WHERE repo_id=? "
       "ORDER BY revision"},
      {&put_tree_,
       "INSERT INTO trees(repo_id, commit_id, stored_at) VALUES(?,?,?) "
       "ON CONFLICT(repo_id, commit_id) DO UPDATE SET stored_at=excluded.stored_at"},
      {&has_tree_, "SELECT 1 FROM trees WHERE repo_id=? AND commit_id=?"},
      {&del_tree_files_, "DELETE FROM tree_files WHERE repo_id=? AND commit_id=?"},
      {&put_file_,
       "INSERT OR REPLACE INTO tree_files(repo_id, commit_id, path, is_dir, size, oid, sha256) "
       "VALUES(?,?,?,?,?,?,?)"},
      {&get_files_,
       "SELECT path, is_dir, size, oid, sha256 FROM tree_files WHERE repo_id=? AND commit_id=? "
       "ORDER BY path"},
  };
  for (const Item& item : items) {
    Status s = db_.prepare(item.sql, item.stmt);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

namespace {

RepoRecord RepoFromRow(const Stmt& st) {
  RepoRecord r;
  r.id = st.text(0);
  r.is_private = st.int64(1) != 0;
  r.gated = st.text(2);
  r.last_modified = st.text(3);
  r.fetched_at = st.int64(4);
  return r;
}

RefRecord RefFromRow(const Stmt& st) {
  RefRecord r;
  r.repo_id = st.text(0);
  r.revision = st.text(1);
  r.commit = st.text(2);
  r.resolved_at = st.int64(3);
  return r;
}

}  // namespace

Status MetaStore::put_repo(const RepoRecord& repo) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  return put_repo_.bind(1, repo.id)
      .bind(2, int64_t{repo.is_private ? 1 : 0})
      .bind(3, repo.gated)
      .bind(4, repo.last_modified)
      .bind(5, repo.fetched_at)
      .exec();
}

Status MetaStore::get_repo(const std::string& id, RepoRecord* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(get_repo_);
  get_repo_.bind(1, id);
  if (get_repo_.step()) {
    *out = RepoFromRow(get_repo_);
    return Status::Ok();
  }
  if (!get_repo_.status().ok()) return get_repo_.status();
  return Status(Code::kNotFound, "repo " + id);
}

Status MetaStore::list_repos(std::vector<RepoRecord>* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(list_repos_);
  std::vector<RepoRecord> repos;
  while (list_repos_.step()) repos.push_back(RepoFromRow(list_repos_));
  if (!list_repos_.status().ok()) return list_repos_.status();
  *out = std::move(repos);
  return Status::Ok();
}

// Idempotent: removing an unknown repo is Ok.
Status MetaStore::remove_repo(const std::string& id) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  Txn txn(db_);
  if (!txn.status().ok()) return txn.status();
  for (Stmt* st : {&del_repo_files_, &del_repo_trees_, &del_repo_refs_, &del_repo_}) {
    Status s = st->bind(1, id).exec();
    if (!s.ok()) return s;
  }
  return txn.commit();
}

Status MetaStore::put_ref(const RefRecord& ref) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  return put_ref_.bind(1, ref.repo_id)
      .bind(2, ref.revision)
      .bind(3, ref.commit)
      .bind(4, ref.resolved_at)
      .exec();
}

Status MetaStore::get_ref(const std::string& repo_id, const std::string& revision, RefRecord* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(get_ref_);
  get_ref_.bind(1, repo_id).bind(2, revision);
  if (get_ref_.step()) {
    *out = RefFromRow(get_ref_);
    return Status::Ok();
  }
  if (!get_ref_.status().ok()) return get_ref_.status();
  return Status(Code::kNotFound, "ref " + repo_id + "@" + revision);
}

Status MetaStore::list_refs(const std::string& repo_id, std::vector<RefRecord>* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(list_refs_);
  list_refs_.bind(1, repo_id);
  std::vector<RefRecord> refs;
  while (list_refs_.step()) refs.push_back(RefFromRow(list_refs_));
  if (!list_refs_.status().ok()) return list_refs_.status();
  *out = std::move(refs);
  return Status::Ok();
}

Status MetaStore::put_tree(const std::string& repo_id, const std::string& commit,
                           const std::vector<FileRecord>& files) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  Txn txn(db_);
  if (!txn.status().ok()) return txn.status();
  Status s = del_tree_files_.bind(1, repo_id).bind(2, commit).exec();
  if (!s.ok()) return s;
  s = put_tree_.bind(1, repo_id).bind(2, commit).bind(3, NowUnix()).exec();
  if (!s.ok()) return s;
  for (const FileRecord& f : files) {
    s = put_file_.bind(1, repo_id)
            .bind(2, commit)
            .bind(3, f.path)
            .bind(4, int64_t{f.is_dir ? 1 : 0})
            .bind(5, static_cast<int64_t>(f.size))
            .bind(6, f.oid)
            .bind(7, f.sha256)
            .exec();
    if (!s.ok()) return s;  // the Txn rolls back: the old tree stays
  }
  return txn.commit();
}

Status MetaStore::get_tree(const std::string& repo_id, const std::string& commit,
                           std::vector<FileRecord>* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  {
    ResetOnExit reset(has_tree_);
    has_tree_.bind(1, repo_id).bind(2, commit);
    if (!has_tree_.step()) {
      if (!has_tree_.status().ok()) return has_tree_.status();
      return Status(Code::kNotFound, "tree " + repo_id + "@" + commit);
    }
  }
  ResetOnExit reset(get_files_);
  get_files_.bind(1, repo_id).bind(2, commit);
  std::vector<FileRecord> files;
  while (get_files_.step()) {
    FileRecord f;
    f.path = get_files_.text(0);
    f.is_dir = get_files_.int64(1) != 0;
    f.size = static_cast<uint64_t>(get_files_.int64(2));
    f.oid = get_files_.text(3);
    f.sha256 = get_files_.text(4);
    files.push_back(std::move(f));
  }
  if (!get_files_.status().ok()) return get_files_.status();
  *out = std::move(files);
  return Status::Ok();
}

}  // namespace modelfs::index
