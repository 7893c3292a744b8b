#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fs/base/status.h"
#include "index/db.h"

namespace modelfs::index {
namespace {

namespace fs = std::filesystem;

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "index_db_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "t.sqlite").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::string path_;
};

TEST(StatusTest, NamesAndToString) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().to_string(), "ok");
  Status s(Code::kNotFound, "chunk x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.to_string(), "not found: chunk x");
  EXPECT_STREQ(CodeName(Code::kCorrupt), "corrupt");
  EXPECT_STREQ(CodeName(Code::kBusy), "busy");
  EXPECT_STREQ(CodeName(Code::kNoSpace), "no space");
}

TEST_F(DbTest, OpensInWalModeWithNormalSync) {
  std::unique_ptr<Db> db;
  ASSERT_TRUE(Db::Open(path_, &db).ok());
  std::lock_guard lock(db->mutex());
  Stmt st;
  ASSERT_TRUE(db->prepare("PRAGMA journal_mode", &st).ok());
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "wal");
  st.reset();
  ASSERT_TRUE(db->prepare("PRAGMA synchronous", &st).ok());
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.int64(0), 1);  // NORMAL
  EXPECT_TRUE(db->check().ok());
  EXPECT_TRUE(fs::exists(path_));
}

TEST_F(DbTest, BindStepAndReuse) {
  std::unique_ptr<Db> db;
  ASSERT_TRUE(Db::Open(path_, &db).ok());
  std::lock_guard lock(db->mutex());
  ASSERT_TRUE(db->exec("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER, n TEXT)").ok());
  Stmt ins;
  ASSERT_TRUE(db->prepare("INSERT INTO t(k, v, n) VALUES(?,?,?)", &ins).ok());
  for (int i = 0; i < 5; ++i) {
    std::string key = "k";  // not "k" + std::string: a false -Wrestrict from GCC 12 at -O3
    key += std::to_string(i);
    ins.bind(1, key).bind(2, int64_t{i} * 1000000000000);
    if (i % 2 == 0) {
      ins.bind_null(3);
    } else {
      ins.bind(3, std::string_view("x\0y", 3));  // embedded NUL survives
    }
    ASSERT_TRUE(ins.exec().ok()) << i;
  }
  // Duplicate key: a constraint error is a status, and the statement stays usable.
  Status dup = ins.bind(1, std::string_view("k1")).bind(2, int64_t{0}).exec();
  EXPECT_EQ(dup.code(), Code::kDb);
  EXPECT_TRUE(ins.bind(1, std::string_view("k9")).bind(2, int64_t{9}).exec().ok());

  Stmt sel;
  ASSERT_TRUE(db->prepare("SELECT k, v, n FROM t ORDER BY k", &sel).ok());
  std::vector<std::string> keys;
  while (sel.step()) {
    keys.push_back(sel.text(0));
    if (sel.text(0) == "k3") {
      EXPECT_EQ(sel.int64(1), 3000000000000);
      EXPECT_FALSE(sel.is_null(2));
      EXPECT_EQ(sel.text(2), std::string("x\0y", 3));
    }
    if (sel.text(0) == "k2") {
      EXPECT_TRUE(sel.is_null(2));
    }
  }
  EXPECT_TRUE(sel.status().ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k1", "k2", "k3", "k4", "k9"}));
  sel.reset();
  int again = 0;
  while (sel.step()) ++again;
  EXPECT_EQ(again, 6);
}

TEST_F(DbTest, PrepareErrorIsStatus) {
  std::unique_ptr<Db> db;
  ASSERT_TRUE(Db::Open(path_, &db).ok());
  std::lock_guard lock(db->mutex());
  Stmt st;
  Status s = db->prepare("SELECT * FROM no_such_table", &st);
  EXPECT_EQ(s.code(), Code::kDb);
  EXPECT_NE(s.message().find("no_such_table"), std::string::npos);
  EXPECT_FALSE(st.step());  // an empty statement fails safely
  EXPECT_EQ(st.status().code(), Code::kDb);
  EXPECT_EQ(db->exec("NOT SQL").code(), Code::kDb);
}

TEST_F(DbTest, TxnCommitsOrRollsBack) {
  std::unique_ptr<Db> db;
  ASSERT_TRUE(Db::Open(path_, &db).ok());
  std::lock_guard lock(db->mutex());
  ASSERT_TRUE(db->exec("CREATE TABLE t(v INTEGER)").ok());
  {
    Txn txn(*db);
    ASSERT_TRUE(txn.status().ok());
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES(1)").ok());
    ASSERT_TRUE(txn.commit().ok());
    EXPECT_FALSE(txn.commit().ok());  // only once
  }
  {
    Txn txn(*db);
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES(2)").ok());
    // no commit: rolled back
  }
  Stmt st;
  ASSERT_TRUE(db->prepare("SELECT count(*), sum(v) FROM t", &st).ok());
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.int64(0), 1);
  EXPECT_EQ(st.int64(1), 1);
}

TEST_F(DbTest, DataSurvivesReopen) {
  {
    std::unique_ptr<Db> db;
    ASSERT_TRUE(Db::Open(path_, &db).ok());
    std::lock_guard lock(db->mutex());
    ASSERT_TRUE(db->exec("CREATE TABLE t(v TEXT); INSERT INTO t VALUES('hello')").ok());
  }
  std::unique_ptr<Db> db;
  ASSERT_TRUE(Db::Open(path_, &db).ok());
  std::lock_guard lock(db->mutex());
  Stmt st;
  ASSERT_TRUE(db->prepare("SELECT v FROM t", &st).ok());
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "hello");
}

TEST_F(DbTest, GarbageFileIsCorrupt) {
  {
    std::ofstream f(path_, std::ios::binary);
    f << std::string(8192, 'g');
  }
  std::unique_ptr<Db> db;
  Status s = Db::Open(path_, &db);
  EXPECT_EQ(s.code(), Code::kCorrupt) << s.to_string();
  EXPECT_EQ(db, nullptr);
}

TEST_F(DbTest, DamagedPagesFailCheck) {
  {
    std::unique_ptr<Db> db;
    ASSERT_TRUE(Db::Open(path_, &db).ok());
    std::lock_guard lock(db->mutex());
    ASSERT_TRUE(db->exec("PRAGMA journal_mode=DELETE; CREATE TABLE t(v TEXT);"
                         "CREATE INDEX ti ON t(v);")
                    .ok());
    Txn txn(*db);
    for (int i = 0; i < 2000; ++i) {
      ASSERT_TRUE(db->exec("INSERT INTO t VALUES('row " + std::to_string(i) + "')").ok());
    }
    ASSERT_TRUE(txn.commit().ok());
  }
  // Keep the 100-byte file header, trash the pages after the first.
  {
    std::fstream f(path_, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(4096);
    f << std::string(16384, '\x5a');
  }
  std::unique_ptr<Db> db;
  Status s = Db::Open(path_, &db);
  if (s.ok()) {
    std::lock_guard lock(db->mutex());
    s = db->check();
  }
  EXPECT_EQ(s.code(), Code::kCorrupt) << s.to_string();
}

}  // namespace
}  // namespace modelfs::index
