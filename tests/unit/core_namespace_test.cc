// The namespace the Core presents at the mount root (fs/core.cc): the root (inode 1) holds the
// orgs, an org its repos, and below that the repo's files, read byte-exact from the hub
// simulator. Names starting with '.' are never orgs (".hub" stays free for another view), and
// "models" is an org like any other. The root alone names the control socket.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/core.h"
#include "fs/inodes.h"
#include "index/cache.h"
#include "unit/hubsim.h"

namespace modelfs::fs {
namespace {

using modelfs::testing::HubSim;
using modelfs::testing::kMiB;
using modelfs::testing::kTiny;
using std::chrono::milliseconds;

constexpr char kOrg[] = "modelfs-test";
constexpr char kTinyName[] = "tiny-safetensors";

class CoreNamespaceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sim_ = new HubSim(); }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(sim_->ok()) << sim_->error();
    sim_->reset();
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "core_namespace_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    index::CacheOptions co;
    co.dir = dir_ / "cache";
    co.capacity_bytes = 64 * kMiB;
    Status s = index::Cache::Open(co, &cache_);
    ASSERT_TRUE(s.ok()) << s.to_string();
    fetch::HubOptions ho;
    ho.endpoint = sim_->hub_url();
    ho.connect_timeout = milliseconds(5000);
    ho.deadline = milliseconds(60000);
    hub_ = std::make_unique<fetch::HubClient>(ho);
    CoreOptions o;
    o.control_socket = (dir_ / "control.sock").string();
    core_ = std::make_unique<Core>(o, *cache_, *hub_);
  }

  void TearDown() override {
    core_.reset();
    hub_.reset();
    cache_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::vector<std::string> names(uint64_t ino) {
    std::vector<DirEntry> entries;
    Status st = core_->readdir(ino, &entries);
    EXPECT_TRUE(st.ok()) << st.to_string();
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.name);
    return out;
  }

  int64_t api_calls() const {
    const auto c = sim_->counters();
    return c.contains("api") ? c["api"].get<int64_t>() : 0;
  }

  static HubSim* sim_;
  std::filesystem::path dir_;
  std::unique_ptr<index::Cache> cache_;
  std::unique_ptr<fetch::HubClient> hub_;
  std::unique_ptr<Core> core_;
};

HubSim* CoreNamespaceTest::sim_ = nullptr;

TEST_F(CoreNamespaceTest, RootHoldsTheOrgsAndFilesAreBelowThem) {
  Attr root;
  ASSERT_TRUE(core_->getattr(kRootIno, &root).ok());
  EXPECT_EQ(root.ino, 1u);
  EXPECT_TRUE(root.is_dir);
  EXPECT_TRUE(names(kRootIno).empty()) << "a fresh cache knows no org";

  Attr org, repo, file;
  ASSERT_TRUE(core_->lookup(kRootIno, kOrg, &org).ok());
  EXPECT_TRUE(org.is_dir);
  EXPECT_NE(org.ino, kRootIno);
  Status st = core_->lookup(org.ino, kTinyName, &repo);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(repo.is_dir);
  st = core_->lookup(repo.ino, "model.safetensors", &file);
  ASSERT_TRUE(st.ok()) << st.to_string();
  const std::string want =
      HubSim::ReadFile(sim_->local_path(kTiny, sim_->branch_commit(kTiny), "model.safetensors"));
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(file.size, want.size());

  uint64_t handle = 0;
  ASSERT_TRUE(core_->open(file.ino, &handle).ok());
  std::string got;
  st = core_->read(handle, 0, want.size() + 4096, &got);
  core_->release(handle);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(got == want) << "bytes differ from the fixture";

  std::vector<DirEntry> entries;
  ASSERT_TRUE(core_->readdir(kRootIno, &entries).ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, kOrg);
  EXPECT_EQ(entries[0].attr.ino, org.ino);
  EXPECT_TRUE(entries[0].attr.is_dir);
  EXPECT_EQ(names(org.ino), std::vector<std::string>{kTinyName});
}

TEST_F(CoreNamespaceTest, ModelsIsAnOrdinaryOrg) {
  Attr models, repo;
  ASSERT_TRUE(core_->lookup(kRootIno, "models", &models).ok());
  EXPECT_TRUE(models.is_dir);
  EXPECT_TRUE(names(models.ino).empty());
  // The old layout's MOUNT/models/<org>/<name> is now the repo "models/<org>": not on the Hub.
  Status st = core_->lookup(models.ino, kOrg, &repo);
  EXPECT_TRUE(st.not_found()) << st.to_string();
  EXPECT_EQ(names(kRootIno), std::vector<std::string>{}) << "nothing became known";
}

TEST_F(CoreNamespaceTest, NamesWithADotAreNotOrgsAndNeverReachTheHub) {
  for (const char* name : {".hub", ".git", ".Trash", ".Trash-1000", ".", "..", "autorun.inf"}) {
    Attr a;
    Status st = core_->lookup(kRootIno, name, &a);
    // not_found is what the FUSE adapter answers with a cached negative entry.
    EXPECT_EQ(st.code(), Code::kNotFound) << name << ": " << st.to_string();
  }
  EXPECT_EQ(api_calls(), 0);
  EXPECT_TRUE(names(kRootIno).empty());
}

TEST_F(CoreNamespaceTest, OnlyTheRootNamesTheControlSocket) {
  const std::string key = "user.modelfs.control_socket";
  std::vector<std::string> xattrs;
  ASSERT_TRUE(core_->listxattr(kRootIno, &xattrs).ok());
  EXPECT_EQ(xattrs, std::vector<std::string>{key});
  std::string value;
  Status st = core_->getxattr(kRootIno, key, &value);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(value, (dir_ / "control.sock").string());

  Attr org;
  ASSERT_TRUE(core_->lookup(kRootIno, kOrg, &org).ok());
  ASSERT_TRUE(core_->listxattr(org.ino, &xattrs).ok());
  EXPECT_TRUE(xattrs.empty());
  EXPECT_EQ(core_->getxattr(org.ino, key, &value).code(), Code::kNoData);
}

}  // namespace
}  // namespace modelfs::fs
