#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "index/db.h"
#include "index/meta_store.h"

namespace modelfs::index {
namespace {

namespace fs = std::filesystem;

class MetaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "index_meta_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    meta_.reset();
    db_.reset();
    fs::remove_all(dir_);
  }
  void Reopen() {
    meta_.reset();
    db_.reset();
    ASSERT_TRUE(Db::Open((dir_ / "index.sqlite").string(), &db_).ok());
    meta_ = std::make_unique<MetaStore>(*db_);
    ASSERT_TRUE(meta_->init().ok());
  }

  static FileRecord File(std::string path, uint64_t size, std::string oid, std::string sha = "",
                         bool is_dir = false) {
    FileRecord f;
    f.path = std::move(path);
    f.size = size;
    f.oid = std::move(oid);
    f.sha256 = std::move(sha);
    f.is_dir = is_dir;
    return f;
  }

  fs::path dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<MetaStore> meta_;
};

TEST_F(MetaTest, ReposPutGetUpdateList) {
  RepoRecord r;
  EXPECT_EQ(meta_->get_repo("org/none", &r).code(), Code::kNotFound);

  RepoRecord a{"org/b-model", true, "manual", "2024-01-02T03:04:05Z", 1700000000};
  RepoRecord b{"org/a-model", false, "", "2023-01-01T00:00:00Z", 1600000000};
  ASSERT_TRUE(meta_->put_repo(a).ok());
  ASSERT_TRUE(meta_->put_repo(b).ok());
  ASSERT_TRUE(meta_->get_repo("org/b-model", &r).ok());
  EXPECT_EQ(r.id, "org/b-model");
  EXPECT_TRUE(r.is_private);
  EXPECT_EQ(r.gated, "manual");
  EXPECT_EQ(r.last_modified, "2024-01-02T03:04:05Z");
  EXPECT_EQ(r.fetched_at, 1700000000);

  a.gated = "auto";
  a.fetched_at = 1800000000;
  ASSERT_TRUE(meta_->put_repo(a).ok());  // update in place
  std::vector<RepoRecord> all;
  ASSERT_TRUE(meta_->list_repos(&all).ok());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "org/a-model");  // ordered by id
  EXPECT_EQ(all[1].id, "org/b-model");
  EXPECT_EQ(all[1].gated, "auto");
  EXPECT_EQ(all[1].fetched_at, 1800000000);
}

TEST_F(MetaTest, RefsPutGetList) {
  const std::string c1(40, 'a'), c2(40, 'b');
  RefRecord ref;
  EXPECT_EQ(meta_->get_ref("org/m", "", &ref).code(), Code::kNotFound);
  ASSERT_TRUE(meta_->put_ref({"org/m", "", c1, 10}).ok());
  ASSERT_TRUE(meta_->put_ref({"org/m", "v1.0", c2, 11}).ok());
  ASSERT_TRUE(meta_->put_ref({"org/other", "main", c2, 12}).ok());
  ASSERT_TRUE(meta_->get_ref("org/m", "", &ref).ok());
  EXPECT_EQ(ref.commit, c1);
  EXPECT_EQ(ref.resolved_at, 10);
  ASSERT_TRUE(meta_->put_ref({"org/m", "", c2, 20}).ok());  // branch moved
  ASSERT_TRUE(meta_->get_ref("org/m", "", &ref).ok());
  EXPECT_EQ(ref.commit, c2);
  EXPECT_EQ(ref.resolved_at, 20);

  std::vector<RefRecord> refs;
  ASSERT_TRUE(meta_->list_refs("org/m", &refs).ok());
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].revision, "");
  EXPECT_EQ(refs[1].revision, "v1.0");
  EXPECT_EQ(refs[1].repo_id, "org/m");
}

TEST_F(MetaTest, TreesOrderedReplacedAtomically) {
  const std::string commit(40, 'c');
  const std::string sha(64, 'e');
  std::vector<FileRecord> out;
  EXPECT_EQ(meta_->get_tree("org/m", commit, &out).code(), Code::kNotFound);

  std::vector<FileRecord> files = {
      File("z.bin", 5, std::string(40, '1')),
      File("model.safetensors", 1ull << 40, std::string(40, '2'), sha),
      File("a", 0, "", "", true),
      File("a/config.json", 77, std::string(40, '3')),
  };
  ASSERT_TRUE(meta_->put_tree("org/m", commit, files).ok());
  ASSERT_TRUE(meta_->get_tree("org/m", commit, &out).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].path, "a");
  EXPECT_TRUE(out[0].is_dir);
  EXPECT_EQ(out[1].path, "a/config.json");
  EXPECT_EQ(out[2].path, "model.safetensors");
  EXPECT_EQ(out[2].size, 1ull << 40);
  EXPECT_EQ(out[2].sha256, sha);
  EXPECT_EQ(out[2].content_id(), sha);
  EXPECT_EQ(out[3].path, "z.bin");
  EXPECT_EQ(out[3].content_id(), std::string(40, '1'));

  // Replacing: the old paths disappear.
  ASSERT_TRUE(meta_->put_tree("org/m", commit, {File("only.txt", 3, std::string(40, '4'))}).ok());
  ASSERT_TRUE(meta_->get_tree("org/m", commit, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].path, "only.txt");

  // An empty tree is stored (distinct from never stored).
  ASSERT_TRUE(meta_->put_tree("org/m", std::string(40, 'd'), {}).ok());
  ASSERT_TRUE(meta_->get_tree("org/m", std::string(40, 'd'), &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST_F(MetaTest, RemoveRepoRemovesRefsAndTrees) {
  const std::string commit(40, 'c');
  ASSERT_TRUE(meta_->put_repo({"org/m", false, "", "", 1}).ok());
  ASSERT_TRUE(meta_->put_repo({"org/keep", false, "", "", 1}).ok());
  ASSERT_TRUE(meta_->put_ref({"org/m", "main", commit, 1}).ok());
  ASSERT_TRUE(meta_->put_ref({"org/keep", "main", commit, 1}).ok());
  ASSERT_TRUE(meta_->put_tree("org/m", commit, {File("f", 1, std::string(40, '1'))}).ok());
  ASSERT_TRUE(meta_->put_tree("org/keep", commit, {File("g", 1, std::string(40, '1'))}).ok());

  ASSERT_TRUE(meta_->remove_repo("org/m").ok());
  RepoRecord r;
  RefRecord ref;
  std::vector<FileRecord> files;
  std::vector<RefRecord> refs;
  EXPECT_EQ(meta_->get_repo("org/m", &r).code(), Code::kNotFound);
  EXPECT_EQ(meta_->get_ref("org/m", "main", &ref).code(), Code::kNotFound);
  ASSERT_TRUE(meta_->list_refs("org/m", &refs).ok());
  EXPECT_TRUE(refs.empty());
  EXPECT_EQ(meta_->get_tree("org/m", commit, &files).code(), Code::kNotFound);
  // The other repo is untouched.
  EXPECT_TRUE(meta_->get_repo("org/keep", &r).ok());
  ASSERT_TRUE(meta_->get_tree("org/keep", commit, &files).ok());
  EXPECT_EQ(files.size(), 1u);
  EXPECT_TRUE(meta_->remove_repo("org/never").ok());  // idempotent
}

TEST_F(MetaTest, SurvivesReopen) {
  const std::string commit(40, 'c');
  ASSERT_TRUE(meta_->put_repo({"org/m", true, "auto", "t", 5}).ok());
  ASSERT_TRUE(meta_->put_ref({"org/m", "main", commit, 6}).ok());
  ASSERT_TRUE(meta_->put_tree("org/m", commit, {File("f", 9, std::string(40, '1'))}).ok());
  Reopen();
  RepoRecord r;
  ASSERT_TRUE(meta_->get_repo("org/m", &r).ok());
  EXPECT_TRUE(r.is_private);
  RefRecord ref;
  ASSERT_TRUE(meta_->get_ref("org/m", "main", &ref).ok());
  EXPECT_EQ(ref.commit, commit);
  std::vector<FileRecord> files;
  ASSERT_TRUE(meta_->get_tree("org/m", commit, &files).ok());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].size, 9u);
}

TEST_F(MetaTest, ConcurrentWriters) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string id = "org/r" + std::to_string(t) + "-" + std::to_string(i);
        EXPECT_TRUE(meta_->put_repo({id, false, "", "", i}).ok());
        EXPECT_TRUE(
            meta_->put_tree(id, std::string(40, 'c'), {File("f", 1, std::string(40, '1'))}).ok());
        std::vector<FileRecord> files;
        EXPECT_TRUE(meta_->get_tree(id, std::string(40, 'c'), &files).ok());
        EXPECT_EQ(files.size(), 1u);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<RepoRecord> all;
  ASSERT_TRUE(meta_->list_repos(&all).ok());
  EXPECT_EQ(all.size(), 400u);
}

}  // namespace
}  // namespace modelfs::index
