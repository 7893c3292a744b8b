// HubClient against the hub simulator (tests/hubsim/hubsim.py): metadata, listing, byte
// ranges through the CDN redirect, error mapping, retries, resumption and fault handling.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fetch/hub_client.h"
#include "fetch/hub_parse.h"
#include "unit/hubsim.h"

namespace modelfs::fetch {
namespace {

using modelfs::testing::HubSim;
using modelfs::testing::kEdge;
using modelfs::testing::kMiB;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kFull[] = "hf_modelfs_full";
constexpr char kBasic[] = "hf_modelfs_basic";
constexpr char kVersioned[] = "modelfs-test/versioned";
constexpr char kMany[] = "modelfs-test/many-files";
constexpr char kPrivate[] = "modelfs-test/private-model";
constexpr char kGated[] = "modelfs-test/gated-model";

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

// Incremental sha256 for hashing a large file through many ranges.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(const char* d, size_t n) { EVP_DigestUpdate(ctx_.get(), d, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &n);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 0xf]);
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// A port that was free a moment ago: nothing listens there.
std::string DeadEndpoint() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

class HubClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    HubSim::Options o;
    o.page_size = 50;  // the page counts below assume it
    sim_ = new HubSim(o);
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(sim_->ok()) << sim_->error();
    sim_->reset(/*refs=*/true);
  }
  void TearDown() override { sim_->clear_faults(); }

  static HubOptions Options(const std::string& token = "") {
    HubOptions o;
    o.endpoint = sim_->hub_url() + "/";  // the trailing '/' must be stripped
    o.token = token;
    o.connect_timeout = milliseconds(2000);
    o.stall_timeout = milliseconds(5000);
    o.deadline = milliseconds(30000);
    o.backoff_initial = milliseconds(20);
    o.backoff_max = milliseconds(200);
    return o;
  }

  static FileLocation File(const std::string& repo, const std::string& path,
                           const std::string& branch = "main") {
    FileLocation f;
    f.repo_id = repo;
    f.commit = sim_->branch_commit(repo, branch);
    f.path = path;
    const auto* m = sim_->file(repo, f.commit, path);
    EXPECT_NE(m, nullptr) << path;
    if (m != nullptr) {
      f.size = (*m)["size"].get<uint64_t>();
      f.etag = (*m)["etag"].get<std::string>();
    }
    return f;
  }

  static std::string Local(const FileLocation& f) {
    return HubSim::ReadFile(sim_->local_path(f.repo_id, f.commit, f.path));
  }

  static Status Read(HubClient& c, const FileLocation& f, uint64_t off, uint64_t len,
                     std::string* out) {
    out->clear();
    return c.read_range(f, off, len, [out](const char* d, size_t n) {
      out->append(d, n);
      return true;
    });
  }

  static int64_t Counter(const nlohmann::json& c, const std::string& key) {
    return c.contains(key) ? c[key].get<int64_t>() : -1;
  }

  static HubSim* sim_;
};

HubSim* HubClientTest::sim_ = nullptr;

// ---------------------------------------------------------------------------- repo_info

TEST_F(HubClientTest, RepoInfoBranchTagCommitAndEncodedRevision) {
  HubClient c(Options());
  const auto& repo = sim_->repo(kVersioned);
  RepoInfo info;
  ASSERT_TRUE(c.repo_info(kVersioned, "", &info).ok());
  EXPECT_EQ(info.id, kVersioned);
  EXPECT_EQ(info.sha, repo["branches"]["main"]);
  EXPECT_FALSE(info.is_private);
  EXPECT_EQ(info.gated, "");
  EXPECT_FALSE(info.last_modified.empty());

  for (const auto& [rev, want] :
       std::map<std::string, std::string>{{"main", repo["branches"]["main"]},
                                          {"dev", repo["branches"]["dev"]},
                                          {"feature/x", repo["branches"]["feature/x"]},
                                          {"v1.0", repo["tags"]["v1.0"]},
                                          {"refs/pr/1", repo["refs"]["refs/pr/1"]},
                                          {repo["tags"]["v1.0"], repo["tags"]["v1.0"]}}) {
    Status s = c.repo_info(kVersioned, rev, &info);
    ASSERT_TRUE(s.ok()) << rev << ": " << s.to_string();
    EXPECT_EQ(info.sha, want) << rev;
  }
  EXPECT_EQ(c.options().endpoint, sim_->hub_url());
}

TEST_F(HubClientTest, RepoInfoFollowsAMovedBranch) {
  HubClient c(Options());
  const auto& repo = sim_->repo(kVersioned);
  RepoInfo info;
  ASSERT_TRUE(c.repo_info(kVersioned, "movable", &info).ok());
  EXPECT_EQ(info.sha, repo["branches"]["movable"]);
  sim_->move_branch(kVersioned, "movable", "dev");
  ASSERT_TRUE(c.repo_info(kVersioned, "movable", &info).ok());
  EXPECT_EQ(info.sha, repo["branches"]["dev"]);
}

TEST_F(HubClientTest, NotFoundRepoRevisionEntry) {
  HubClient anon(Options());
  HubClient basic(Options(kBasic));
  RepoInfo info;
  Status s = anon.repo_info("modelfs-test/no-such-repo", "", &info);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();
  s = basic.repo_info("modelfs-test/no-such-repo", "", &info);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();
  s = anon.repo_info(kVersioned, "no-such-branch", &info);
  EXPECT_EQ(s.code(), Code::kRevisionNotFound) << s.to_string();
  s = anon.repo_info("not a repo id", "", &info);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();

  std::vector<TreeEntry> tree;
  s = anon.list_tree(kVersioned, std::string(40, '0'), &tree);
  EXPECT_EQ(s.code(), Code::kRevisionNotFound) << s.to_string();

  FileLocation f = File(kEdge, "small.txt");
  f.path = "no-such-file.txt";
  f.etag.clear();
  f.size = 0;
  std::string out;
  s = Read(anon, f, 0, 10, &out);
  EXPECT_EQ(s.code(), Code::kEntryNotFound) << s.to_string();
  EXPECT_EQ(s.http_status(), 404);
  EXPECT_GE(anon.counters().errors, 5u);
}

TEST_F(HubClientTest, PrivateRepoNeedsAToken) {
  RepoInfo info;
  HubClient anon(Options());
  Status s = anon.repo_info(kPrivate, "", &info);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();
  EXPECT_NE(s.message().find("HF_TOKEN"), std::string::npos) << s.message();
  EXPECT_EQ(s.http_status(), 401);

  HubClient basic(Options(kBasic));
  s = basic.repo_info(kPrivate, "", &info);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();

  HubClient full(Options(kFull));
  s = full.repo_info(kPrivate, "", &info);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(info.is_private);

  // The token must not show up in any message.
  HubClient bad(Options("hf_not_a_valid_token_secret"));
  s = bad.repo_info(kVersioned, "", &info);
  EXPECT_EQ(s.code(), Code::kNoAccess) << s.to_string();
  EXPECT_EQ(s.to_string().find("hf_not_a_valid_token_secret"), std::string::npos);

  // Bytes of the private repo, through the CDN, with the full token.
  FileLocation f = File(kPrivate, "pytorch_model.bin");
  std::string out;
  s = Read(full, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(Sha256Hex(out), (*sim_->file(kPrivate, f.commit, f.path))["sha256"]);
  s = Read(anon, f, 0, 10, &out);
  EXPECT_EQ(s.code(), Code::kRepoNotFound) << s.to_string();
  EXPECT_EQ(Counter(sim_->counters(), "cdn_auth_leaks"), 0);
}

TEST_F(HubClientTest, SetTokenAppliesToLaterCalls) {
  HubClient c(Options());
  RepoInfo info;
  EXPECT_EQ(c.repo_info(kPrivate, "", &info).code(), Code::kRepoNotFound);
  c.set_token(kFull);
  ASSERT_TRUE(c.repo_info(kPrivate, "", &info).ok());
  EXPECT_EQ(c.options().token, "");  // options() keeps the construction value
  // Concurrent readers and a token change: no race (checked under TSan).
  std::thread reader([&c] {
    RepoInfo i;
    for (int n = 0; n < 5; ++n) (void)c.repo_info(kEdge, "", &i);
  });
  for (int n = 0; n < 5; ++n) c.set_token(n % 2 ? kFull : kBasic);
  reader.join();
  c.set_token("");
  EXPECT_EQ(c.repo_info(kPrivate, "", &info).code(), Code::kRepoNotFound);
}

TEST_F(HubClientTest, GatedRepo) {
  RepoInfo info;
  HubClient anon(Options());
  ASSERT_TRUE(anon.repo_info(kGated, "", &info).ok());  // metadata stays public
  EXPECT_EQ(info.gated, "manual");

  FileLocation f = File(kGated, "config.json");
  std::string out;
  Status s = Read(anon, f, 0, f.size, &out);
  EXPECT_EQ(s.code(), Code::kGated) << s.to_string();
  EXPECT_EQ(s.http_status(), 401);

  HubClient basic(Options(kBasic));
  s = Read(basic, f, 0, f.size, &out);
  EXPECT_EQ(s.code(), Code::kGated) << s.to_string();
  EXPECT_EQ(s.http_status(), 403);

  HubClient full(Options(kFull));
  s = Read(full, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Local(f));

  FileLocation st = File(kGated, "model.safetensors");
  s = Read(full, st, 0, st.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(Sha256Hex(out), (*sim_->file(kGated, st.commit, st.path))["sha256"]);
  EXPECT_EQ(Counter(sim_->counters(), "cdn_auth_leaks"), 0);
}

// ---------------------------------------------------------------------------- list_tree

void ExpectTreeMatchesManifest(const std::vector<TreeEntry>& tree, const nlohmann::json& commit) {
  std::map<std::string, const TreeEntry*> by_path;
  for (const auto& e : tree) {
    EXPECT_TRUE(by_path.emplace(e.path, &e).second) << "duplicate " << e.path;
  }
  size_t files = 0;
  for (const auto& f : commit["files"]) {
    const std::string path = f["path"];
    auto it = by_path.find(path);
    ASSERT_NE(it, by_path.end()) << path;
    const TreeEntry& e = *it->second;
    EXPECT_FALSE(e.is_dir) << path;
    EXPECT_EQ(e.size, f["size"].get<uint64_t>()) << path;
    EXPECT_EQ(e.oid, f["oid"]) << path;
    if (f["lfs"].get<bool>()) {
      EXPECT_EQ(e.lfs_sha256, f["sha256"]) << path;
    } else {
      EXPECT_EQ(e.lfs_sha256, "") << path;
    }
    ++files;
  }
  size_t dirs = 0;
  for (const auto& [path, oid] : commit["dirs"].items()) {
    auto it = by_path.find(path);
    ASSERT_NE(it, by_path.end()) << path;
    EXPECT_TRUE(it->second->is_dir) << path;
    ++dirs;
  }
  EXPECT_EQ(tree.size(), files + dirs);
}

TEST_F(HubClientTest, ListTreeFollowsPaginationAndMatchesManifest) {
  HubClient c(Options());
  for (const char* repo : {kMany, kEdge, kVersioned}) {
    sim_->reset();
    const std::string commit = sim_->branch_commit(repo);
    std::vector<TreeEntry> tree;
    Status s = c.list_tree(repo, commit, &tree);
    ASSERT_TRUE(s.ok()) << repo << ": " << s.to_string();
    const auto& mc = sim_->repo(repo)["commits"][commit];
    ExpectTreeMatchesManifest(tree, mc);
    const size_t total = mc["files"].size() + mc["dirs"].size();
    const int64_t pages = Counter(sim_->counters(), "tree");
    EXPECT_EQ(pages, static_cast<int64_t>((total + 49) / 50)) << repo;
  }
}

TEST_F(HubClientTest, ListTreeWithTinyPages) {
  HubSim::Options o;
  o.page_size = 3;
  HubSim small(o);
  ASSERT_TRUE(small.ok()) << small.error();
  HubOptions opt = Options();
  opt.endpoint = small.hub_url();
  HubClient c(opt);
  const std::string commit = small.branch_commit(kVersioned, "dev");
  std::vector<TreeEntry> tree;
  ASSERT_TRUE(c.list_tree(kVersioned, commit, &tree).ok());
  ExpectTreeMatchesManifest(tree, small.repo(kVersioned)["commits"][commit]);
  EXPECT_GE(Counter(small.counters(), "tree"), 2);
  // A branch name works too (encoded as one path segment).
  ASSERT_TRUE(c.list_tree(kVersioned, "feature/x", &tree).ok());
  ExpectTreeMatchesManifest(
      tree, small.repo(kVersioned)["commits"][small.branch_commit(kVersioned, "feature/x")]);
}

// ---------------------------------------------------------------------------- read_range

TEST_F(HubClientTest, ReadSmallGitFileExact) {
  HubClient c(Options());
  for (const char* path : {"small.txt", "dir with spaces/naïve café ✓.txt", "nested/deep/a/b/c.txt",
                           ".gitattributes"}) {
    FileLocation f = File(kEdge, path);
    const std::string want = Local(f);
    std::string out;
    Status s = Read(c, f, 0, f.size, &out);
    ASSERT_TRUE(s.ok()) << path << ": " << s.to_string();
    EXPECT_EQ(out, want) << path;
    // A middle slice.
    if (f.size > 4) {
      s = Read(c, f, 2, f.size - 3, &out);
      ASSERT_TRUE(s.ok()) << s.to_string();
      EXPECT_EQ(out, want.substr(2, f.size - 3));
    }
  }
  auto cnt = sim_->counters();
  EXPECT_EQ(Counter(cnt, "cdn"), 0);  // git files come from the Hub itself
  EXPECT_EQ(c.counters().redirects, 0u);
}

TEST_F(HubClientTest, ZeroLengthAndOutOfRange) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "small.txt");
  std::string out;
  EXPECT_TRUE(Read(c, f, 5, 0, &out).ok());
  EXPECT_EQ(c.counters().requests, 0u);
  EXPECT_EQ(Read(c, f, f.size - 1, 2, &out).code(), Code::kProtocol);
  EXPECT_EQ(Read(c, f, UINT64_MAX, 2, &out).code(), Code::kProtocol);
  // Size unknown to the caller: the server's 416 is a protocol error too.
  f.size = 0;
  EXPECT_EQ(Read(c, f, 1000, 2, &out).code(), Code::kProtocol);
  // Hostile arguments never reach the network.
  FileLocation bad = File(kEdge, "small.txt");
  bad.path = "../etc/passwd";
  EXPECT_EQ(Read(c, bad, 0, 1, &out).code(), Code::kEntryNotFound);
  bad = File(kEdge, "small.txt");
  bad.repo_id = "../x";
  EXPECT_EQ(Read(c, bad, 0, 1, &out).code(), Code::kRepoNotFound);
}

TEST_F(HubClientTest, ReadLargeLfsFileByRangesReusesCdnUrl) {
  HubClient c(Options(kFull));
  FileLocation f = File(kEdge, "large.bin");
  ASSERT_EQ(f.size, 160 * kMiB);
  Sha256 h;
  uint64_t requests = 0;
  const uint64_t step = 7 * kMiB + 12345;  // ranges not aligned to anything
  for (uint64_t off = 0; off < f.size; off += step) {
    const uint64_t len = std::min(step, f.size - off);
    uint64_t got = 0;
    Status s = c.read_range(f, off, len, [&](const char* d, size_t n) {
      h.update(d, n);
      got += n;
      return true;
    });
    ASSERT_TRUE(s.ok()) << off << ": " << s.to_string();
    ASSERT_EQ(got, len);
    ++requests;
  }
  EXPECT_EQ(h.hex(), (*sim_->file(kEdge, f.commit, f.path))["sha256"]);
  auto cnt = sim_->counters();
  EXPECT_EQ(Counter(cnt, "resolve"), 1);  // later ranges skip the Hub
  EXPECT_EQ(Counter(cnt, "cdn"), static_cast<int64_t>(requests));
  EXPECT_EQ(Counter(cnt, "cdn_auth_leaks"), 0);
  const HubCounters hc = c.counters();
  EXPECT_EQ(hc.redirects, 1u);
  EXPECT_EQ(hc.requests, requests + 1);
  EXPECT_EQ(hc.bytes, f.size);
  EXPECT_EQ(hc.retries, 0u);
  EXPECT_EQ(hc.errors, 0u);
  // Keep-alive: the CDN saw far fewer connections than requests.
  EXPECT_LE(cnt["connections"]["cdn"].get<int64_t>(), 2);
}

TEST_F(HubClientTest, SmallLfsFilesAndBoundaries) {
  HubClient c(Options());
  for (const char* path : {"exact-4MiB.bin", "exact-4MiB-plus-1.bin"}) {
    FileLocation f = File(kEdge, path);
    const std::string want = Local(f);
    std::string out;
    ASSERT_TRUE(Read(c, f, 0, f.size, &out).ok()) << path;
    EXPECT_EQ(out, want);
    ASSERT_TRUE(Read(c, f, f.size - 1, 1, &out).ok());
    EXPECT_EQ(out, want.substr(f.size - 1));
    ASSERT_TRUE(Read(c, f, 0, 1, &out).ok());
    EXPECT_EQ(out, want.substr(0, 1));
  }
}

TEST_F(HubClientTest, ReadsFromManyThreads) {
  HubClient c(Options(kFull));
  FileLocation f = File(kEdge, "exact-4MiB-plus-1.bin");
  FileLocation g = File(kEdge, "small.txt");
  const std::string want = Local(f);
  const std::string want_g = Local(g);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 6; ++i) {
        const uint64_t off = (static_cast<uint64_t>(t) * 6 + i) * 81233 % (f.size - 70000);
        std::string out;
        if (!Read(c, f, off, 70000, &out).ok() || out != want.substr(off, 70000)) ++failures;
        if (!Read(c, g, 0, g.size, &out).ok() || out != want_g) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Counter(sim_->counters(), "cdn_auth_leaks"), 0);
}

// ---------------------------------------------------------------------------- faults

TEST_F(HubClientTest, Burst503Recovers) {
  HubClient c(Options());
  sim_->fault({{"kind", "status"}, {"status", 503}, {"count", 2}, {"match", "small.txt"}});
  FileLocation f = File(kEdge, "small.txt");
  std::string out;
  Status s = Read(c, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Local(f));
  EXPECT_EQ(c.counters().retries, 2u);
  EXPECT_EQ(c.counters().errors, 0u);

  // Metadata calls retry the same way.
  sim_->fault({{"kind", "status"}, {"status", 502}, {"count", 2}, {"match", "/api/models"}});
  RepoInfo info;
  ASSERT_TRUE(c.repo_info(kEdge, "", &info).ok());
}

TEST_F(HubClientTest, PersistentServerErrorGivesUpAfterMaxAttempts) {
  HubOptions o = Options();
  o.max_attempts = 3;
  HubClient c(o);
  sim_->fault({{"kind", "status"}, {"status", 500}, {"count", -1}, {"match", "small.txt"}});
  FileLocation f = File(kEdge, "small.txt");
  std::string out;
  Status s = Read(c, f, 0, f.size, &out);
  EXPECT_EQ(s.code(), Code::kNetwork) << s.to_string();
  EXPECT_EQ(s.http_status(), 500);
  EXPECT_EQ(c.counters().requests, 3u);
  EXPECT_EQ(c.counters().retries, 2u);
  EXPECT_EQ(c.counters().errors, 1u);
}

TEST_F(HubClientTest, RateLimitRetryAfterIsHonoured) {
  HubClient c(Options());
  sim_->fault({{"kind", "status"},
               {"status", 429},
               {"retry_after", 1},
               {"count", 1},
               {"match", "small.txt"}});
  FileLocation f = File(kEdge, "small.txt");
  std::string out;
  const auto t0 = Clock::now();
  Status s = Read(c, f, 0, f.size, &out);
  const double waited = Seconds(Clock::now() - t0);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_GE(waited, 0.95);
  EXPECT_LT(waited, 3.0);

  // Only the RateLimit header (t=1).
  sim_->fault({{"kind", "status"},
               {"status", 429},
               {"headers", {"ratelimit"}},
               {"count", 1},
               {"match", "/api/models"}});
  RepoInfo info;
  const auto t1 = Clock::now();
  ASSERT_TRUE(c.repo_info(kEdge, "", &info).ok());
  EXPECT_GE(Seconds(Clock::now() - t1), 0.95);
}

TEST_F(HubClientTest, RateLimitBeyondDeadlineFailsFast) {
  HubOptions o = Options();
  o.deadline = milliseconds(3000);
  HubClient c(o);
  sim_->fault({{"kind", "status"},
               {"status", 429},
               {"retry_after", 60},
               {"count", 1},
               {"match", "small.txt"}});
  FileLocation f = File(kEdge, "small.txt");
  std::string out;
  const auto t0 = Clock::now();
  Status s = Read(c, f, 0, f.size, &out);
  EXPECT_EQ(s.code(), Code::kRateLimited) << s.to_string();
  EXPECT_EQ(s.http_status(), 429);
  EXPECT_LT(Seconds(Clock::now() - t0), 1.0);
}

TEST_F(HubClientTest, DropMidBodyResumesExactly) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "large.bin");
  const std::string want = Local(f).substr(10 * kMiB, 12 * kMiB);
  sim_->fault({{"kind", "drop"},
               {"after_bytes", 3 * kMiB + 17},
               {"count", 2},
               {"port", "cdn"},
               {"match", "large.bin"}});
  std::string out;
  Status s = Read(c, f, 10 * kMiB, 12 * kMiB, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_EQ(out.size(), want.size());
  EXPECT_TRUE(out == want);
  EXPECT_EQ(c.counters().retries, 2u);
  // The resumed requests started where the previous one stopped.
  auto cnt = sim_->counters();
  std::vector<int64_t> starts;
  for (const auto& r : cnt["ranges"]) {
    if (r["port"] == "cdn") starts.push_back(r["start"].get<int64_t>());
  }
  ASSERT_EQ(starts.size(), 3u);
  EXPECT_EQ(starts[0], static_cast<int64_t>(10 * kMiB));
  EXPECT_EQ(starts[1], static_cast<int64_t>(10 * kMiB + 3 * kMiB + 17));
  EXPECT_EQ(starts[2], static_cast<int64_t>(10 * kMiB + 2 * (3 * kMiB + 17)));
}

TEST_F(HubClientTest, TruncatedBodyIsDetectedAndResumed) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  sim_->fault({{"kind", "truncate"}, {"after_bytes", 1000}, {"count", 1}, {"match", "4MiB.bin"}});
  std::string out;
  Status s = Read(c, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(out == Local(f));
  EXPECT_EQ(c.counters().retries, 1u);

  // A git file served by the Hub, truncated.
  FileLocation g = File(kEdge, ".gitattributes");
  sim_->fault({{"kind", "truncate"}, {"after_bytes", 100}, {"count", 1}, {"match", "gitattr"}});
  s = Read(c, g, 0, g.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Local(g));
}

TEST_F(HubClientTest, IgnoredRangeIsHandled) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  const std::string all = Local(f);
  sim_->fault({{"kind", "ignore_range"}, {"count", 1}, {"match", "exact-4MiB.bin"}});
  std::string out;
  Status s = Read(c, f, 1000003, 5000, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, all.substr(1000003, 5000));
  // Git file from the Hub.
  FileLocation g = File(kEdge, ".gitattributes");
  sim_->fault({{"kind", "ignore_range"}, {"count", 1}, {"match", "gitattributes"}});
  s = Read(c, g, 10, 20, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Local(g).substr(10, 20));
  // Through the end of the file.
  sim_->fault({{"kind", "ignore_range"}, {"count", 1}, {"match", "exact-4MiB.bin"}});
  s = Read(c, f, f.size - 10, 10, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, all.substr(f.size - 10));
}

TEST_F(HubClientTest, StallEndsInTimeout) {
  HubOptions o = Options();
  o.stall_timeout = milliseconds(1000);
  o.max_attempts = 1;
  HubClient c(o);
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  sim_->fault({{"kind", "stall"},
               {"seconds", 8},
               {"after_bytes", 100000},
               {"count", 1},
               {"match", "exact-4MiB.bin"}});
  std::string out;
  const auto t0 = Clock::now();
  Status s = Read(c, f, 0, f.size, &out);
  const double took = Seconds(Clock::now() - t0);
  EXPECT_EQ(s.code(), Code::kTimeout) << s.to_string();
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 1.0 + 2.5);
}

TEST_F(HubClientTest, StallIsRetriedAndResumed) {
  HubOptions o = Options();
  o.stall_timeout = milliseconds(1000);
  HubClient c(o);
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  sim_->fault({{"kind", "stall"},
               {"seconds", 8},
               {"after_bytes", 100000},
               {"count", 1},
               {"match", "exact-4MiB.bin"}});
  std::string out;
  Status s = Read(c, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(out == Local(f));
  EXPECT_EQ(c.counters().retries, 1u);
}

TEST_F(HubClientTest, DeadlineBoundsTheCall) {
  HubOptions o = Options();
  o.stall_timeout = milliseconds(20000);
  o.deadline = milliseconds(1500);
  HubClient c(o);
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  sim_->fault({{"kind", "stall"},
               {"seconds", 8},
               {"after_bytes", 100},
               {"count", 1},
               {"match", "exact-4MiB.bin"}});
  std::string out;
  const auto t0 = Clock::now();
  Status s = Read(c, f, 0, f.size, &out);
  const double took = Seconds(Clock::now() - t0);
  EXPECT_EQ(s.code(), Code::kTimeout) << s.to_string();
  EXPECT_LT(took, 1.5 + 1.0);
}

TEST_F(HubClientTest, ExpiredCdnUrlIsResolvedAgain) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  const std::string all = Local(f);
  std::string out;
  ASSERT_TRUE(Read(c, f, 0, 1000, &out).ok());
  sim_->fault({{"kind", "cdn_expire"}});
  Status s = Read(c, f, 5000, 1000, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, all.substr(5000, 1000));
  auto cnt = sim_->counters();
  EXPECT_EQ(Counter(cnt, "resolve"), 2);
  EXPECT_EQ(Counter(cnt, "cdn_denied"), 1);
  EXPECT_EQ(c.counters().errors, 0u);
  EXPECT_EQ(c.counters().redirects, 2u);
  // The new URL is cached again.
  ASSERT_TRUE(Read(c, f, 9000, 1000, &out).ok());
  EXPECT_EQ(Counter(sim_->counters(), "resolve"), 2);
}

TEST_F(HubClientTest, ShortCdnTtlReResolves) {
  HubOptions o = Options();
  o.cdn_url_ttl = std::chrono::seconds(0);
  HubClient c(o);
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  std::string out;
  ASSERT_TRUE(Read(c, f, 0, 10, &out).ok());
  ASSERT_TRUE(Read(c, f, 10, 10, &out).ok());
  EXPECT_EQ(Counter(sim_->counters(), "resolve"), 2);
}

TEST_F(HubClientTest, OfflineMakesNoRequest) {
  HubOptions o = Options();
  o.offline = true;
  HubClient c(o);
  RepoInfo info;
  std::vector<TreeEntry> tree;
  std::string out;
  EXPECT_EQ(c.repo_info(kEdge, "", &info).code(), Code::kOffline);
  EXPECT_EQ(c.list_tree(kEdge, sim_->branch_commit(kEdge), &tree).code(), Code::kOffline);
  EXPECT_EQ(Read(c, File(kEdge, "small.txt"), 0, 5, &out).code(), Code::kOffline);
  EXPECT_EQ(c.counters().requests, 0u);
  auto cnt = sim_->counters();
  EXPECT_EQ(
      Counter(cnt, "api") + Counter(cnt, "tree") + Counter(cnt, "resolve") + Counter(cnt, "cdn"),
      0);
}

TEST_F(HubClientTest, ConnectionRefusedIsNetworkErrorWithinDeadline) {
  HubOptions o = Options();
  o.endpoint = DeadEndpoint();
  o.deadline = milliseconds(3000);
  HubClient c(o);
  RepoInfo info;
  const auto t0 = Clock::now();
  Status s = c.repo_info(kEdge, "", &info);
  EXPECT_EQ(s.code(), Code::kNetwork) << s.to_string();
  EXPECT_LT(Seconds(Clock::now() - t0), 3.0 + 1.0);
  EXPECT_EQ(c.counters().requests, static_cast<uint64_t>(o.max_attempts));
}

TEST_F(HubClientTest, EtagMismatchIsProtocolError) {
  HubClient c(Options());
  std::string out;
  FileLocation lfs = File(kEdge, "exact-4MiB.bin");
  lfs.etag = std::string(64, '0');
  Status s = Read(c, lfs, 0, 100, &out);
  EXPECT_EQ(s.code(), Code::kProtocol) << s.to_string();
  EXPECT_TRUE(out.empty());

  FileLocation git = File(kEdge, "small.txt");
  git.etag = std::string(40, '0');
  s = Read(c, git, 0, 5, &out);
  EXPECT_EQ(s.code(), Code::kProtocol) << s.to_string();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(c.counters().retries, 0u);

  // Wrong expected size: the Content-Range total does not match.
  FileLocation sized = File(kEdge, "exact-4MiB.bin");
  sized.size += 1;
  s = Read(c, sized, 0, 100, &out);
  EXPECT_EQ(s.code(), Code::kProtocol) << s.to_string();
  // No etag known: accepted.
  FileLocation loose = File(kEdge, "exact-4MiB.bin");
  loose.etag.clear();
  ASSERT_TRUE(Read(c, loose, 0, 100, &out).ok());
}

TEST_F(HubClientTest, SinkCancelStopsWithoutRetry) {
  HubClient c(Options());
  FileLocation f = File(kEdge, "large.bin");
  uint64_t got = 0;
  Status s = c.read_range(f, 0, 64 * kMiB, [&got](const char*, size_t n) {
    got += n;
    return got < 1 * kMiB;
  });
  EXPECT_EQ(s.code(), Code::kCancelled) << s.to_string();
  EXPECT_EQ(c.counters().retries, 0u);
  EXPECT_EQ(c.counters().errors, 0u);
  EXPECT_LT(got, 2 * kMiB);
}

TEST_F(HubClientTest, RangesOfOldCommitsAndBranches) {
  HubClient c(Options());
  // Same path, different commits: each read gets its own version.
  for (const char* branch : {"main", "dev", "feature/x", "movable"}) {
    FileLocation f = File(kVersioned, "weights.bin", branch);
    std::string out;
    Status s = Read(c, f, 0, f.size, &out);
    ASSERT_TRUE(s.ok()) << branch << ": " << s.to_string();
    EXPECT_EQ(Sha256Hex(out), (*sim_->file(kVersioned, f.commit, f.path))["sha256"]) << branch;
  }
}

// ---------------------------------------------------------------------------- hostile servers
// ------------------------------------------------------------------------- endpoint failover

TEST_F(HubClientTest, ARefusedEndpointIsPassedOverAtOnce) {
  HubOptions o = Options();
  o.endpoint = DeadEndpoint();
  o.more_endpoints = {sim_->hub_url()};
  HubClient c(o);
  const auto t0 = Clock::now();
  RepoInfo info;
  ASSERT_TRUE(c.repo_info(kEdge, "", &info).ok());
  std::vector<TreeEntry> tree;
  ASSERT_TRUE(c.list_tree(kEdge, info.sha, &tree).ok());
  FileLocation f = File(kEdge, "large.bin");
  std::string out;
  Status s = Read(c, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(out == Local(f));
  // No backoff was paid: the refused endpoint cost one connect attempt, then was held down.
  EXPECT_LT(Seconds(Clock::now() - t0), 5.0);
  const HubCounters k = c.counters();
  EXPECT_EQ(k.retries, 0u);
  EXPECT_EQ(k.errors, 0u);
  EXPECT_EQ(k.failovers, 1u);
  ASSERT_EQ(k.endpoints.size(), 2u);
  EXPECT_EQ(k.endpoints[0].url, o.endpoint);
  EXPECT_EQ(k.endpoints[0].requests, 1u);
  EXPECT_EQ(k.endpoints[0].errors, 1u);
  EXPECT_EQ(k.endpoints[0].bytes, 0u);
  EXPECT_TRUE(k.endpoints[0].down);
  EXPECT_EQ(k.endpoints[1].bytes, f.size);
  EXPECT_FALSE(k.endpoints[1].down);
}

TEST_F(HubClientTest, AReadCutMidwayFinishesExactlyAtTheNextEndpoint) {
  // Two endpoints that are one simulator under two names: the fault cuts whichever is first.
  std::string other = sim_->hub_url();
  other.replace(other.find("127.0.0.1"), 9, "localhost");
  HubOptions o = Options();
  o.more_endpoints = {other};
  HubClient c(o);
  FileLocation f = File(kEdge, "large.bin");
  const std::string want = Local(f).substr(10 * kMiB, 12 * kMiB);
  sim_->fault({{"kind", "drop"},
               {"after_bytes", 3 * kMiB + 17},
               {"count", 1},
               {"port", "cdn"},
               {"match", "large.bin"}});
  std::string out;
  Status s = Read(c, f, 10 * kMiB, 12 * kMiB, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_EQ(out.size(), want.size());
  EXPECT_TRUE(out == want);
  const HubCounters k = c.counters();
  EXPECT_EQ(k.retries, 0u);
  EXPECT_EQ(k.failovers, 1u);
  EXPECT_EQ(k.endpoints[0].bytes, 3 * kMiB + 17);
  EXPECT_EQ(k.endpoints[1].bytes, 12 * kMiB - (3 * kMiB + 17));
  // The second endpoint was asked for the rest only.
  const auto cnt = sim_->counters();
  std::vector<int64_t> starts;
  for (const auto& r : cnt["ranges"]) {
    if (r["port"] == "cdn") starts.push_back(r["start"].get<int64_t>());
  }
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1], static_cast<int64_t>(10 * kMiB + 3 * kMiB + 17));
}

TEST_F(HubClientTest, AStalledEndpointIsLeftAfterTheFailoverStall) {
  std::string other = sim_->hub_url();
  other.replace(other.find("127.0.0.1"), 9, "localhost");
  HubOptions o = Options();
  o.more_endpoints = {other};
  o.stall_timeout = milliseconds(20000);  // alone, this read would wait 20 s
  o.failover_stall = milliseconds(700);
  HubClient c(o);
  FileLocation f = File(kEdge, "exact-4MiB.bin");
  sim_->fault({{"kind", "stall"},
               {"seconds", 10},
               {"after_bytes", 100000},
               {"count", 1},
               {"match", "exact-4MiB.bin"}});
  std::string out;
  const auto t0 = Clock::now();
  Status s = Read(c, f, 0, f.size, &out);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(out == Local(f));
  EXPECT_LT(Seconds(Clock::now() - t0), 0.7 + 4.0);
  EXPECT_EQ(c.counters().failovers, 1u);
  EXPECT_EQ(c.counters().endpoints[0].errors, 1u);
}

// The simulator plays by the rules; these cases need a server that does not. ScriptedServer
// answers each request (one per connection) with whatever its handler returns.

class ScriptedServer {
 public:
  struct Req {
    std::string target;
    std::map<std::string, std::string> headers;  // lowercase names
  };
  using Handler = std::function<std::string(const Req&)>;

  explicit ScriptedServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] { loop(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Req> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  static std::string Response(int status, const std::vector<std::string>& headers,
                              const std::string& body, bool content_length = true) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n";
    for (const auto& h : headers) r += h + "\r\n";
    if (content_length) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return r + "\r\n" + body;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{5, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      Req req;
      std::istringstream in(head);
      std::string line;
      std::getline(in, line);
      const size_t a = line.find(' ');
      const size_t b = line.find(' ', a + 1);
      if (a != std::string::npos && b != std::string::npos)
        req.target = line.substr(a + 1, b - a - 1);
      while (std::getline(in, line) && line != "\r") {
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
        while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
        req.headers[name] = value;
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      const std::string out = handler_(req);
      size_t sent = 0;
      while (sent < out.size()) {
        const ssize_t n = send(c, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      shutdown(c, SHUT_WR);
      close(c);
    }
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Req> requests_;  // guarded by mu_
  std::thread thread_;
};

const std::string kCommit(40, 'c');
const std::string kEtag(64, 'e');

std::string Payload() {
  std::string p;
  for (int i = 0; i < 100; ++i) p.push_back(static_cast<char>('A' + i % 26));
  return p;
}

HubOptions FakeOptions(const std::string& endpoint) {
  HubOptions o;
  o.endpoint = endpoint;
  o.token = "hf_secret_token";
  o.connect_timeout = milliseconds(1000);
  o.stall_timeout = milliseconds(2000);
  o.deadline = milliseconds(10000);
  o.max_attempts = 2;
  o.backoff_initial = milliseconds(10);
  o.backoff_max = milliseconds(20);
  return o;
}

FileLocation FakeFile() {
  FileLocation f;
  f.repo_id = "org/name";
  f.commit = kCommit;
  f.path = "f.bin";
  f.size = 100;
  f.etag = kEtag;
  return f;
}

// A CDN answering ranges of Payload() correctly.
std::string GoodCdn(const ScriptedServer::Req& r) {
  const std::string p = Payload();
  unsigned long first = 0, last = 0;
  if (std::sscanf(r.headers.count("range") ? r.headers.at("range").c_str() : "", "bytes=%lu-%lu",
                  &first, &last) != 2) {
    return ScriptedServer::Response(200, {"ETag: \"" + kEtag + "\""}, p);
  }
  return ScriptedServer::Response(
      206,
      {"ETag: \"" + kEtag + "\"",
       "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) + "/100"},
      p.substr(first, last - first + 1));
}

TEST(HubClientHostile, AuthGoesToTheHubOnlyAndRedirectIsChecked) {
  ScriptedServer cdn(GoodCdn);
  ScriptedServer hub([&](const ScriptedServer::Req&) {
    return ScriptedServer::Response(
        302,
        {"Location: " + cdn.url() + "/blob?sig=1", "X-Repo-Commit: " + kCommit,
         "X-Linked-Etag: \"" + kEtag + "\"", "X-Linked-Size: 100"},
        "Found.");
  });
  HubClient c(FakeOptions(hub.url()));
  std::string out;
  Status s = c.read_range(FakeFile(), 10, 20, [&](const char* d, size_t n) {
    out.append(d, n);
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Payload().substr(10, 20));
  ASSERT_EQ(hub.requests().size(), 1u);
  EXPECT_EQ(hub.requests()[0].headers["authorization"], "Bearer hf_secret_token");
  EXPECT_EQ(hub.requests()[0].target, "/org/name/resolve/" + kCommit + "/f.bin");
  ASSERT_EQ(cdn.requests().size(), 1u);
  EXPECT_EQ(cdn.requests()[0].headers.count("authorization"), 0u);
  EXPECT_EQ(cdn.requests()[0].headers["range"], "bytes=10-29");
}

std::function<std::string(const ScriptedServer::Req&)> RedirectTo(std::string location,
                                                                  bool with_commit = true) {
  return [location, with_commit](const ScriptedServer::Req&) {
    std::vector<std::string> h = {"Location: " + location};
    if (with_commit) h.push_back("X-Repo-Commit: " + kCommit);
    return ScriptedServer::Response(302, h, "");
  };
}

Status ReadFake(const std::string& endpoint) {
  HubClient c(FakeOptions(endpoint));
  return c.read_range(FakeFile(), 0, 10, [](const char*, size_t) { return true; });
}

TEST(HubClientHostile, BadRedirectTargetsAreProtocolErrors) {
  for (const char* loc :
       {"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/", "", "http://"}) {
    ScriptedServer hub(RedirectTo(loc));
    Status s = ReadFake(hub.url());
    EXPECT_EQ(s.code(), Code::kProtocol) << loc << ": " << s.to_string();
  }
}

TEST(HubClientHostile, RedirectLoopAndTooManyHops) {
  ScriptedServer loop_cdn([](const ScriptedServer::Req&) {
    return ScriptedServer::Response(302, {"Location: /blob"}, "");
  });
  ScriptedServer hub(RedirectTo(loop_cdn.url() + "/blob"));
  Status s = ReadFake(hub.url());
  EXPECT_EQ(s.code(), Code::kProtocol) << s.to_string();

  std::atomic<int> n{0};
  ScriptedServer chain_cdn([&n](const ScriptedServer::Req&) {
    return ScriptedServer::Response(302, {"Location: /hop" + std::to_string(++n)}, "");
  });
  ScriptedServer hub2(RedirectTo(chain_cdn.url() + "/hop0"));
  s = ReadFake(hub2.url());
  EXPECT_EQ(s.code(), Code::kProtocol) << s.to_string();
  EXPECT_LE(chain_cdn.requests().size(), 6u);
}

TEST(HubClientHostile, ResolveWithoutRepoCommitIsNotTheHub) {
  ScriptedServer cdn(GoodCdn);
  ScriptedServer hub(RedirectTo(cdn.url() + "/blob", /*with_commit=*/false));
  EXPECT_EQ(ReadFake(hub.url()).code(), Code::kProtocol);
  EXPECT_EQ(cdn.requests().size(), 0u);
  ScriptedServer hub200([](const ScriptedServer::Req& r) {
    std::string resp = GoodCdn(r);  // bytes, but no X-Repo-Commit
    return resp;
  });
  EXPECT_EQ(ReadFake(hub200.url()).code(), Code::kProtocol);
}

TEST(HubClientHostile, WrongContentRangeIsProtocolError) {
  for (const std::string cr : {"bytes 1-10/100", "bytes 0-9/101", "bytes 0-9/*", ""}) {
    ScriptedServer hub([&cr](const ScriptedServer::Req&) {
      std::vector<std::string> h = {"X-Repo-Commit: " + kCommit, "ETag: \"" + kEtag + "\""};
      if (!cr.empty()) h.push_back("Content-Range: " + cr);
      return ScriptedServer::Response(206, h, Payload().substr(0, 10));
    });
    EXPECT_EQ(ReadFake(hub.url()).code(), Code::kProtocol) << cr;
  }
}

TEST(HubClientHostile, TruncatedBodyResumesFromTheLastByte) {
  std::atomic<int> calls{0};
  ScriptedServer hub([&calls](const ScriptedServer::Req& r) {
    const std::string p = Payload();
    std::vector<std::string> h = {"X-Repo-Commit: " + kCommit, "ETag: \"" + kEtag + "\""};
    if (++calls == 1) {  // promises 100 bytes, sends 40, closes
      h.push_back("Content-Range: bytes 0-99/100");
      h.push_back("Content-Length: 100");
      return ScriptedServer::Response(206, h, p.substr(0, 40), /*content_length=*/false);
    }
    EXPECT_EQ(r.headers.at("range"), "bytes=40-99");
    h.push_back("Content-Range: bytes 40-99/100");
    return ScriptedServer::Response(206, h, p.substr(40));
  });
  HubClient c(FakeOptions(hub.url()));
  std::string out;
  Status s = c.read_range(FakeFile(), 0, 100, [&](const char* d, size_t n) {
    out.append(d, n);
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(out, Payload());
  EXPECT_EQ(calls.load(), 2);
}

TEST(HubClientHostile, NoResponseIsAStall) {
  ScriptedServer hub([](const ScriptedServer::Req&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));
    return std::string();
  });
  HubOptions o = FakeOptions(hub.url());
  o.stall_timeout = milliseconds(500);
  o.connect_timeout = milliseconds(500);
  o.max_attempts = 1;
  HubClient c(o);
  const auto t0 = Clock::now();
  Status s = c.read_range(FakeFile(), 0, 10, [](const char*, size_t) { return true; });
  EXPECT_EQ(s.code(), Code::kTimeout) << s.to_string();
  EXPECT_LT(Seconds(Clock::now() - t0), 1.0 + 1.5);
}

std::string TreeJson(const std::vector<std::string>& entries) {
  std::string j = "[";
  for (size_t i = 0; i < entries.size(); ++i) j += (i ? "," : "") + entries[i];
  return j + "]";
}

std::string TreeFile(const std::string& path) {
  return R"({"type":"file","oid":")" + std::string(40, '1') + R"(","size":5,"path":")" + path +
         R"("})";
}

std::string TreeDir(const std::string& path) {
  return R"({"type":"directory","oid":")" + std::string(40, '2') + R"(","size":0,"path":")" + path +
         R"("})";
}

TEST(HubClientHostile, TreeIsCleanedUp) {
  ScriptedServer hub([](const ScriptedServer::Req& r) {
    if (r.target.find("cursor=2") == std::string::npos) {
      return ScriptedServer::Response(
          200, {R"(Link: </api/models/org/name/tree/main?cursor=2>; rel="next")"},
          TreeJson({TreeFile("a/b.txt"), TreeFile("x"), TreeFile("../evil"), TreeFile("c")}));
    }
    return ScriptedServer::Response(200, {},
                                    TreeJson({TreeFile("a/b.txt"), TreeDir("x"), TreeFile("x/y"),
                                              TreeDir("c"), TreeFile("/abs"), TreeFile("d/e/f")}));
  });
  HubClient c(FakeOptions(hub.url()));
  std::vector<TreeEntry> tree;
  Status s = c.list_tree("org/name", "main", &tree);
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::vector<std::string> got;
  for (const auto& e : tree) got.push_back(e.path + (e.is_dir ? "/" : ""));
  EXPECT_EQ(got,
            (std::vector<std::string>{"a/", "a/b.txt", "c/", "d/", "d/e/", "d/e/f", "x/", "x/y"}));
  ASSERT_EQ(hub.requests().size(), 2u);
  EXPECT_EQ(hub.requests()[0].target,
            "/api/models/org/name/tree/main?recursive=true&expand=false&limit=1000");
  EXPECT_EQ(hub.requests()[0].headers["authorization"], "Bearer hf_secret_token");
}

TEST(HubClientHostile, PaginationLeavingTheHubOrLoopingIsRejected) {
  ScriptedServer other(
      [](const ScriptedServer::Req&) { return ScriptedServer::Response(200, {}, "[]"); });
  ScriptedServer hub([&other](const ScriptedServer::Req&) {
    return ScriptedServer::Response(200, {"Link: <" + other.url() + "/page2>; rel=\"next\""},
                                    TreeJson({TreeFile("a")}));
  });
  HubClient c(FakeOptions(hub.url()));
  std::vector<TreeEntry> tree;
  EXPECT_EQ(c.list_tree("org/name", "main", &tree).code(), Code::kProtocol);
  EXPECT_EQ(other.requests().size(), 0u);

  ScriptedServer looping([](const ScriptedServer::Req& r) {
    const std::string next = r.target.find("cursor=1") == std::string::npos ? "1" : "0";
    return ScriptedServer::Response(
        200, {"Link: </api/models/org/name/tree/main?cursor=" + next + ">; rel=\"next\""},
        TreeJson({TreeFile("a")}));
  });
  HubClient c2(FakeOptions(looping.url()));
  EXPECT_EQ(c2.list_tree("org/name", "main", &tree).code(), Code::kProtocol);
  EXPECT_LE(looping.requests().size(), 3u);
}

TEST(HubClientHostile, GarbageMetadataIsProtocolError) {
  ScriptedServer hub([](const ScriptedServer::Req&) {
    return ScriptedServer::Response(200, {}, "<html>not json</html>");
  });
  HubClient c(FakeOptions(hub.url()));
  RepoInfo info;
  EXPECT_EQ(c.repo_info("org/name", "", &info).code(), Code::kProtocol);
  std::vector<TreeEntry> tree;
  EXPECT_EQ(c.list_tree("org/name", "main", &tree).code(), Code::kProtocol);
}

// A fake Hub for FakeFile(): resolves to cdn, or answers `broken_status` while it is set.
class FakeHub {
 public:
  explicit FakeHub(const ScriptedServer& cdn)
      : server_([this, &cdn](const ScriptedServer::Req&) {
          if (const int b = broken.load(); b != 0) {
            return ScriptedServer::Response(b, {"X-Error-Code: " + error_code}, "{}");
          }
          return ScriptedServer::Response(
              302,
              {"Location: " + cdn.url() + "/blob", "X-Repo-Commit: " + kCommit,
               "X-Linked-Etag: \"" + kEtag + "\"", "X-Linked-Size: 100"},
              "");
        }) {}
  std::string url() const { return server_.url(); }
  size_t requests() const { return server_.requests().size(); }
  std::atomic<int> broken{0};
  std::string error_code;  // set before broken

 private:
  ScriptedServer server_;
};

Status ReadAll(HubClient& c, std::string* out) {
  out->clear();
  return c.read_range(FakeFile(), 0, 100, [out](const char* d, size_t n) {
    out->append(d, n);
    return true;
  });
}

TEST(HubClientFailover, ServerErrorsMoveOnAndTheFirstIsTriedAgainAfterTheHold) {
  ScriptedServer cdn(GoodCdn);
  FakeHub a(cdn), b(cdn);
  HubOptions o = FakeOptions(a.url());
  o.more_endpoints = {b.url()};
  o.failover_hold = milliseconds(400);
  HubClient c(o);
  a.broken = 503;
  std::string out;
  ASSERT_TRUE(ReadAll(c, &out).ok());
  EXPECT_EQ(out, Payload());
  EXPECT_EQ(a.requests(), 1u);
  EXPECT_EQ(b.requests(), 1u);
  // Held down: the next call does not knock at the first endpoint.
  ASSERT_TRUE(ReadAll(c, &out).ok());
  EXPECT_EQ(a.requests(), 1u);
  EXPECT_EQ(c.counters().endpoints[0].down, true);
  // Recovered, and the hold is over: calls go to the first endpoint again.
  a.broken = 0;
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_TRUE(ReadAll(c, &out).ok());
  EXPECT_EQ(out, Payload());
  EXPECT_EQ(a.requests(), 2u);
  ASSERT_TRUE(ReadAll(c, &out).ok());
  EXPECT_EQ(b.requests(), 1u) << "the second endpoint is left once the first answers";
  const HubCounters k = c.counters();
  EXPECT_FALSE(k.endpoints[0].down);
  EXPECT_EQ(k.endpoints[0].bytes, 200u);
  EXPECT_EQ(k.endpoints[1].bytes, 200u);
  EXPECT_EQ(k.failovers, 1u);
}

TEST(HubClientFailover, AFailedRetryDoublesTheHold) {
  ScriptedServer cdn(GoodCdn);
  FakeHub a(cdn), b(cdn);
  HubOptions o = FakeOptions(a.url());
  o.more_endpoints = {b.url()};
  o.failover_hold = milliseconds(300);
  o.failover_hold_max = milliseconds(5000);
  HubClient c(o);
  a.broken = 502;
  std::string out;
  ASSERT_TRUE(ReadAll(c, &out).ok());
  const double first = c.counters().endpoints[0].down_for_s;
  EXPECT_GT(first, 0.1);
  EXPECT_LE(first, 0.3);
  std::this_thread::sleep_for(milliseconds(350));
  ASSERT_TRUE(ReadAll(c, &out).ok());  // tries a again: still broken
  EXPECT_EQ(a.requests(), 2u);
  const double second = c.counters().endpoints[0].down_for_s;
  EXPECT_GT(second, 0.4);
  EXPECT_LE(second, 0.6);
}

TEST(HubClientFailover, AnswersAreNotFailedOver) {
  ScriptedServer cdn(GoodCdn);
  FakeHub a(cdn), b(cdn);
  HubOptions o = FakeOptions(a.url());
  o.more_endpoints = {b.url()};
  HubClient c(o);
  for (const auto& [status, code] : std::vector<std::pair<int, std::string>>{
           {404, "EntryNotFound"}, {403, "GatedRepo"}, {401, "RepoNotFound"}}) {
    a.error_code = code;
    a.broken = status;
    std::string out;
    EXPECT_FALSE(ReadAll(c, &out).ok()) << status;
  }
  EXPECT_EQ(b.requests(), 0u);
  EXPECT_EQ(c.counters().failovers, 0u);
  EXPECT_FALSE(c.counters().endpoints[0].down);
}

TEST(HubClientFailover, AllEndpointsDownFailsWithinTheDeadline) {
  HubOptions o = FakeOptions(DeadEndpoint());
  o.more_endpoints = {DeadEndpoint()};
  o.deadline = milliseconds(3000);
  HubClient c(o);
  const auto t0 = Clock::now();
  Status s = c.read_range(FakeFile(), 0, 10, [](const char*, size_t) { return true; });
  EXPECT_EQ(s.code(), Code::kNetwork) << s.to_string();
  EXPECT_LT(Seconds(Clock::now() - t0), 3.0 + 1.0);
  EXPECT_TRUE(c.counters().endpoints[0].down);
  EXPECT_TRUE(c.counters().endpoints[1].down);
}

TEST(HubClientFailover, CredentialsInAnEndpointUrlAreNotShown) {
  HubOptions o = FakeOptions("http://user:secret@127.0.0.1:9/hf");
  HubClient c(o);
  EXPECT_EQ(c.counters().endpoints[0].url, "http://127.0.0.1:9/hf");
}

TEST(HubClientHostile, ATreePageLinkNamingTheHubIsFollowedAtTheEndpoint) {
  // A site cache relays the Hub's Link, which names the Hub: the page is still asked of the
  // endpoint in use, never of the host in the link.
  ScriptedServer elsewhere(
      [](const ScriptedServer::Req&) { return ScriptedServer::Response(500, {}, ""); });
  ScriptedServer site([&elsewhere](const ScriptedServer::Req& r) {
    if (r.target.find("cursor=2") != std::string::npos) {
      return ScriptedServer::Response(200, {}, TreeJson({TreeFile("b")}));
    }
    return ScriptedServer::Response(
        200,
        {"Link: <" + elsewhere.url() +
         "/api/models/org/name/tree/main?recursive=true&cursor=2>; rel=\"next\""},
        TreeJson({TreeFile("a")}));
  });
  HubClient c(FakeOptions(site.url()));
  std::vector<TreeEntry> tree;
  ASSERT_TRUE(c.list_tree("org/name", "main", &tree).ok());
  ASSERT_EQ(tree.size(), 2u);
  EXPECT_EQ(tree[1].path, "b");
  EXPECT_EQ(elsewhere.requests().size(), 0u);
  ASSERT_EQ(site.requests().size(), 2u);
  EXPECT_EQ(site.requests()[1].target, "/api/models/org/name/tree/main?recursive=true&cursor=2");
}

}  // namespace
}  // namespace modelfs::fetch
