#include "index/db.h"

#include <sqlite3.h>

#include <utility>

namespace modelfs::index {
namespace {

Code CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Code::kCorrupt;
    case SQLITE_FULL:
      return Code::kNoSpace;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Code::kBusy;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return Code::kIo;
    default:
      return Code::kDb;
  }
}

Status FromSqlite(int rc, sqlite3* db, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Status(CodeFor(rc), std::move(msg));
}

Status NoStatement() {
  return Status(Code::kDb, "statement not prepared");
}

}  // namespace

// ---- Stmt ----

Stmt::~Stmt() {
  sqlite3_finalize(stmt_);
}

Stmt& Stmt::operator=(Stmt&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    status_ = std::move(other.status_);
  }
  return *this;
}

Stmt& Stmt::bind(int i, int64_t v) {
  if (stmt_ == nullptr) {
    status_ = NoStatement();
    return *this;
  }
  int rc = sqlite3_bind_int64(stmt_, i, v);
  if (rc != SQLITE_OK && status_.ok()) status_ = FromSqlite(rc, sqlite3_db_handle(stmt_), "bind");
  return *this;
}

Stmt& Stmt::bind(int i, std::string_view v) {
  if (stmt_ == nullptr) {
    status_ = NoStatement();
    return *this;
  }
  int rc = sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && status_.ok()) status_ = FromSqlite(rc, sqlite3_db_handle(stmt_), "bind");
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  if (stmt_ == nullptr) {
    status_ = NoStatement();
    return *this;
  }
  int rc = sqlite3_bind_null(stmt_, i);
  if (rc != SQLITE_OK && status_.ok()) status_ = FromSqlite(rc, sqlite3_db_handle(stmt_), "bind");
  return *this;
}

bool Stmt::step() {
  if (stmt_ == nullptr) {
    status_ = NoStatement();
    return false;
  }
  if (!status_.ok()) return false;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) status_ = FromSqlite(rc, sqlite3_db_handle(stmt_), "step");
  return false;
}

Status Stmt::exec() {
  while (step()) {
  }
  Status s = status_;
  reset();
  return s;
}

void Stmt::reset() {
  if (stmt_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  status_ = Status::Ok();
}

int64_t Stmt::int64(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

std::string Stmt::text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

bool Stmt::is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

// ---- Db ----

Status Db::Open(const std::string& path, std::unique_ptr<Db>* out) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  // The handle is owned from here on, even when the open failed.
  std::unique_ptr<Db> db(new Db(raw));
  if (rc != SQLITE_OK) return FromSqlite(rc, raw, "open " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  // journal_mode reads the file header, so a file that is not a database fails here
  // (SQLITE_NOTADB -> kCorrupt). synchronous=NORMAL in WAL mode: a power loss may lose the last
  // transactions but never corrupts the database; the index is a rebuildable hint anyway.
  Status s = db->exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
      "SELECT count(*) FROM sqlite_schema;");
  if (!s.ok()) return s;
  *out = std::move(db);
  return Status::Ok();
}

Db::~Db() {
  sqlite3_close_v2(db_);
}

Status Db::exec(std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return Status(CodeFor(rc), "exec: " + msg);
}

int64_t Db::last_insert_rowid() {
  return sqlite3_last_insert_rowid(db_);
}

int Db::changes() {
  return sqlite3_changes(db_);
}

Status Db::apply_schema(std::string_view schema, int64_t version) {
  Stmt stamp;
  Status s = prepare("PRAGMA user_version", &stamp);
  if (!s.ok()) return s;
  const int64_t v = stamp.step() ? stamp.int64(0) : 0;
  if (!stamp.status().ok()) return stamp.status();
  if (v > version) {
    return Status(Code::kInvalid, "index schema version " + std::to_string(v) +
                                      " is newer than this modelfs supports");
  }
  s = exec(schema);
  if (!s.ok()) return s;
  if (v == 0) return exec("PRAGMA user_version=" + std::to_string(version));
  return Status::Ok();
}

Status Db::prepare(std::string_view sql, Stmt* out) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    return FromSqlite(rc, db_, "prepare \"" + std::string(sql) + "\"");
  }
  *out = Stmt(raw);
  return Status::Ok();
}

Status Db::check() {
  Stmt st;
  Status s = prepare("PRAGMA quick_check", &st);
  if (!s.ok()) return s.code() == Code::kCorrupt ? s : Status(Code::kCorrupt, s.message());
  std::string result;
  bool first = true;
  while (st.step()) {
    if (first) result = st.text(0);
    first = false;
  }
  if (!st.status().ok()) return Status(Code::kCorrupt, st.status().message());
  if (result != "ok") return Status(Code::kCorrupt, "quick_check: " + result);
  return Status::Ok();
}

// ---- Txn ----

Txn::Txn(Db& db) : db_(db) {
  status_ = db_.exec("BEGIN IMMEDIATE");
  done_ = !status_.ok();
}

Txn::~Txn() {
  if (!done_) db_.exec("ROLLBACK");
}

Status Txn::commit() {
  if (done_) return status_.ok() ? Status(Code::kDb, "transaction already finished") : status_;
  status_ = db_.exec("COMMIT");
  if (status_.ok()) done_ = true;  // else the destructor rolls back
  return status_;
}

}  // namespace modelfs::index
