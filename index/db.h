// Thin RAII layer over sqlite3: a connection, prepared statements and transactions.
// Thread safety: a Db may be shared; callers hold Db::mutex() around statement use.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "fs/base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace modelfs::index {

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Stmt();
  Stmt(Stmt&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binding is 1-based as in SQLite. Text and blobs are copied (SQLITE_TRANSIENT).
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind_null(int i);
  // true while a row is available; false when done. Errors are reported by status().
  bool step();
  Status status() const { return status_; }
  // Runs the statement to completion; resets it.
  Status exec();
  void reset();

  int64_t int64(int col) const;
  std::string text(int col) const;
  bool is_null(int col) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  Status status_;
};

class Db {
 public:
  // Opens or creates the database in WAL mode with a busy timeout.
  static Status Open(const std::string& path, std::unique_ptr<Db>* out);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status exec(std::string_view sql);  // one or more statements, no results
  Status prepare(std::string_view sql, Stmt* out);
  // Creates what `schema` declares (IF NOT EXISTS statements) and stamps a new database with
  // `version`; refuses a database stamped newer than that. Caller holds mutex().
  Status apply_schema(std::string_view schema, int64_t version);
  // Quick integrity check ("PRAGMA quick_check"); kCorrupt when it fails.
  Status check();
  std::mutex& mutex() { return mu_; }
  sqlite3* handle() { return db_; }
  // Of the last statement on this connection; caller holds mutex().
  int64_t last_insert_rowid();
  int changes();

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

// Resets a statement when the scope ends, so a lookup that returns early leaves it reusable.
class ResetOnExit {
 public:
  explicit ResetOnExit(Stmt& st) : st_(st) {}
  ~ResetOnExit() { st_.reset(); }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  Stmt& st_;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless committed.
class Txn {
 public:
  explicit Txn(Db& db);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  Status status() const { return status_; }
  Status commit();

 private:
  Db& db_;
  Status status_;
  bool done_ = false;
};

}  // namespace modelfs::index
