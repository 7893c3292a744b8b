// ControlServer (fs/control.cc) over a Service and a Core backed by the hub simulator: many
// clients at once (stats, ls, info, prefetch, pin, unpin, gc, rm, verify) while other threads
// read files through the Core, plus malformed and abandoned requests. Every reply must be
// well-formed JSON lines with the right ok/code, and the server must keep serving.
// The test runs as root (SO_PEERCRED uid 0), so every caller is an admin; the non-admin paths
// are covered by the end-to-end tests. CI runs this binary under ThreadSanitizer.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/control/control.h"
#include "fs/control/service.h"
#include "fs/core.h"
#include "fs/inodes.h"
#include "index/cache.h"
#include "unit/concurrency.h"
#include "unit/hubsim.h"

namespace modelfs::fs {
namespace {

using modelfs::testing::HubSim;
using modelfs::testing::kEdge;
using modelfs::testing::kMiB;
using modelfs::testing::kTiny;
using modelfs::testing::kTsan;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// What a client saw: the event lines and the final line, or why the exchange broke.
struct Reply {
  std::string broken;  // empty when every line was a JSON object and a final line came
  std::vector<json> events;
  json done;
};

int Connect(const std::string& path, milliseconds timeout) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends `bytes` (the server may stop reading a huge line: EPIPE is then expected), optionally
// half-closes, and reads lines until the server closes the connection.
Reply Exchange(const std::string& path, const std::string& bytes, bool half_close = false,
               milliseconds timeout = milliseconds(180'000)) {
  Reply r;
  const int fd = Connect(path, timeout);
  if (fd < 0) {
    r.broken = std::string("connect: ") + std::strerror(errno);
    return r;
  }
  for (size_t off = 0; off < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server stopped reading; its answer is still to be read
    off += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string buf;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    // A server that closes with part of a huge request unread resets the connection after
    // its answer: that is the end of the stream here.
    if (n < 0 && errno == ECONNRESET) break;
    if (n < 0) {
      r.broken = std::string("recv: ") + std::strerror(errno);
      break;
    }
    if (n == 0) break;
    buf.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!r.broken.empty()) return r;
  size_t start = 0;
  while (start < buf.size()) {
    const size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) {
      r.broken = "unterminated line: " + buf.substr(start, 200);
      return r;
    }
    const std::string line = buf.substr(start, nl - start);
    start = nl + 1;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) {
      r.broken = "not a JSON object: " + line.substr(0, 200);
      return r;
    }
    if (!r.done.is_null()) {
      r.broken = "a line after the final one: " + line.substr(0, 200);
      return r;
    }
    if (j.contains("done")) {
      r.done = std::move(j);
    } else if (j.contains("event") && j["event"].is_string()) {
      r.events.push_back(std::move(j));
    } else {
      r.broken = "neither an event nor the final line: " + line.substr(0, 200);
      return r;
    }
  }
  if (r.done.is_null()) r.broken = "no final line (" + std::to_string(buf.size()) + " bytes)";
  return r;
}

// j at a path of object keys, or null if any is missing (const operator[] would not check).
json Get(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
  }
  return *cur;
}

std::string Line(const std::string& op, const json& args = json::object()) {
  return json{{"op", op}, {"args", args}}.dump() + "\n";
}

// The final line has the documented shape and ok agrees with code.
::testing::AssertionResult WellFormed(const Reply& r) {
  if (!r.broken.empty()) return ::testing::AssertionFailure() << r.broken;
  const json& d = r.done;
  if (!(d.contains("done") && d["done"] == true && d.contains("ok") && d["ok"].is_boolean() &&
        d.contains("code") && d["code"].is_string() && d.contains("error") &&
        d["error"].is_string() && d.contains("result") && d["result"].is_object())) {
    return ::testing::AssertionFailure() << "bad final line: " << d.dump();
  }
  if (d["ok"].get<bool>() != (d["code"] == "ok")) {
    return ::testing::AssertionFailure() << "ok and code disagree: " << d.dump();
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Outcome(const Reply& r, const std::string& code) {
  if (auto w = WellFormed(r); !w) return w;
  if (r.done["code"] != code) {
    return ::testing::AssertionFailure() << "expected '" << code << "', got " << r.done.dump();
  }
  return ::testing::AssertionSuccess();
}

using modelfs::testing::Failures;

class CoreControlTest : public ::testing::Test {
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
        (std::filesystem::temp_directory_path() / "core_control_test.XXXXXX").string();
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
    ho.stall_timeout = milliseconds(30000);
    ho.deadline = milliseconds(60000);
    ho.backoff_initial = milliseconds(20);
    ho.backoff_max = milliseconds(200);
    hub_ = std::make_unique<fetch::HubClient>(ho);
    CoreOptions o;
    o.read_timeout = milliseconds(60000);
    socket_ = (dir_ / "control.sock").string();
    o.control_socket = socket_;
    core_ = std::make_unique<Core>(o, *cache_, *hub_);
    service_ = std::make_unique<Service>(*core_, *cache_, *hub_);
    jobs_ = std::make_unique<Jobs>(*service_, cache_->jobs(), JobsOptions{});
    server_ = std::make_unique<ControlServer>(
        *service_, jobs_.get(), socket_, ControlPolicy{static_cast<uint32_t>(getuid()), "", false});
    Status st = server_->start();
    ASSERT_TRUE(st.ok()) << st.to_string();
  }

  void TearDown() override {
    server_.reset();
    jobs_.reset();
    service_.reset();
    core_.reset();
    hub_.reset();
    cache_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Resolves a file through the Core as the FUSE adapter would; 0 on failure.
  uint64_t lookup(const std::string& repo_name, const std::string& path) {
    Attr org, repo, file;
    if (!core_->lookup(kRootIno, "modelfs-test", &org).ok()) return 0;
    if (!core_->lookup(org.ino, repo_name, &repo).ok()) return 0;
    if (!core_->lookup(repo.ino, path, &file).ok()) return 0;
    return file.ino;
  }

  static std::string Fixture(const std::string& repo, const std::string& path) {
    return HubSim::ReadFile(sim_->local_path(repo, sim_->branch_commit(repo), path));
  }

  Reply call(const std::string& bytes) { return Exchange(socket_, bytes); }

  static HubSim* sim_;
  std::filesystem::path dir_;
  std::string socket_;
  std::unique_ptr<index::Cache> cache_;
  std::unique_ptr<fetch::HubClient> hub_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<Jobs> jobs_;
  std::unique_ptr<ControlServer> server_;
};

HubSim* CoreControlTest::sim_ = nullptr;

// The namespace the Core presents at the mount root (fs/core.cc): the root (inode 1) holds the
// orgs, an org its repos, and below that the repo's files, read byte-exact from the hub
// simulator. Names starting with '.' are never orgs (".hub" stays free for another view), and
// "models" is an org like any other. The root alone names the control socket.
// (Same fixture as the control tests: a Core over a fresh cache and the simulator.)
class CoreNamespaceTest : public CoreControlTest {
 protected:
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
};

constexpr char kOrg[] = "modelfs-test";
constexpr char kTinyName[] = "tiny-safetensors";

TEST_F(CoreNamespaceTest, RootHoldsTheOrgsAndFilesAreBelowThem) {
  Attr root;
  ASSERT_TRUE(core_->getattr(kRootIno, &root).ok());
  EXPECT_EQ(root.ino, 1u);
  EXPECT_TRUE(root.is_dir);
  EXPECT_EQ(names(kRootIno), std::vector<std::string>{".hub"}) << "a fresh cache knows no org";

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
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, ".hub");
  EXPECT_EQ(entries[1].name, kOrg);
  EXPECT_EQ(entries[1].attr.ino, org.ino);
  EXPECT_TRUE(entries[1].attr.is_dir);
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
  EXPECT_EQ(names(kRootIno), std::vector<std::string>{".hub"}) << "nothing became known";
}

TEST_F(CoreNamespaceTest, NamesWithADotAreNotOrgsAndNeverReachTheHub) {
  for (const char* name : {".git", ".Trash", ".Trash-1000", ".", "..", "autorun.inf"}) {
    Attr a;
    Status st = core_->lookup(kRootIno, name, &a);
    // not_found is what the FUSE adapter answers with a cached negative entry.
    EXPECT_EQ(st.code(), Code::kNotFound) << name << ": " << st.to_string();
  }
  EXPECT_EQ(api_calls(), 0);
  EXPECT_EQ(names(kRootIno), std::vector<std::string>{".hub"});
}

// MOUNT/.hub is the Hub cache layout (models--org--name/refs/<branch>, snapshots/<commit>/...)
// over the same repos and the same cached bytes.
TEST_F(CoreNamespaceTest, TheHubCacheViewShowsRefsAndSnapshotsOfTheSameBytes) {
  Attr hub, repo, refs, ref, snaps, snap, file;
  ASSERT_TRUE(core_->lookup(kRootIno, ".hub", &hub).ok());
  EXPECT_TRUE(hub.is_dir);
  EXPECT_TRUE(names(hub.ino).empty()) << "a fresh cache knows no repo";
  Status missing = core_->lookup(hub.ino, "models--modelfs-test--nope", &repo);
  EXPECT_TRUE(missing.not_found()) << missing.to_string();
  for (const char* bad : {"models--modelfs-test", "datasets--modelfs-test--tiny-safetensors",
                          "models--modelfs-test--tiny-safetensors@main", "tiny-safetensors"}) {
    EXPECT_EQ(core_->lookup(hub.ino, bad, &repo).code(), Code::kNotFound) << bad;
  }
  const std::string dir = std::string("models--") + kOrg + "--" + kTinyName;
  Status st = core_->lookup(hub.ino, dir, &repo);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(names(hub.ino), std::vector<std::string>{dir});
  EXPECT_EQ(names(repo.ino), (std::vector<std::string>{"refs", "snapshots"}));
  ASSERT_TRUE(core_->lookup(repo.ino, "refs", &refs).ok());
  ASSERT_TRUE(core_->lookup(repo.ino, "snapshots", &snaps).ok());
  EXPECT_EQ(core_->lookup(repo.ino, ".locks", &ref).code(), Code::kNotFound);

  // refs/main holds the commit, exactly (huggingface_hub reads it without stripping).
  const std::string commit = sim_->branch_commit(kTiny);
  ASSERT_TRUE(core_->lookup(refs.ino, "main", &ref).ok());
  EXPECT_FALSE(ref.is_dir);
  EXPECT_EQ(ref.size, commit.size());
  uint64_t handle = 0;
  ASSERT_TRUE(core_->open(ref.ino, &handle).ok());
  std::string got;
  ASSERT_TRUE(core_->read(handle, 0, 4096, &got).ok());
  ReadPieces pieces;
  ASSERT_TRUE(core_->read(handle, 8, 4096, &pieces).ok());
  core_->release(handle);
  EXPECT_EQ(got, commit);
  ASSERT_EQ(pieces.pieces.size(), 1u);
  EXPECT_EQ(std::string(pieces.pieces[0].data, pieces.size), commit.substr(8));
  EXPECT_EQ(names(refs.ino), std::vector<std::string>{"main"});
  EXPECT_EQ(core_->lookup(refs.ino, commit, &snap).code(), Code::kNotFound) << "refs name branches";

  // snapshots/<commit>: the commit's tree; a branch name is not a snapshot.
  EXPECT_EQ(names(snaps.ino), std::vector<std::string>{commit});
  EXPECT_EQ(core_->lookup(snaps.ino, "main", &snap).code(), Code::kNotFound);
  st = core_->lookup(snaps.ino, commit, &snap);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_TRUE(core_->lookup(snap.ino, "model.safetensors", &file).ok());
  const std::string want = HubSim::ReadFile(sim_->local_path(kTiny, commit, "model.safetensors"));
  ASSERT_TRUE(core_->open(file.ino, &handle).ok());
  st = core_->read(handle, 0, want.size() + 4096, &got);
  core_->release(handle);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(got == want) << "bytes differ from the fixture";

  // The same bytes as MOUNT/org/name@commit, under inodes of their own (a directory must not
  // appear under two parents), and stored once: nothing more is fetched for the second path.
  Attr org, main_repo, main_file;
  ASSERT_TRUE(core_->lookup(kRootIno, kOrg, &org).ok());
  ASSERT_TRUE(core_->lookup(org.ino, std::string(kTinyName) + "@" + commit, &main_repo).ok());
  ASSERT_TRUE(core_->lookup(main_repo.ino, "model.safetensors", &main_file).ok());
  EXPECT_NE(main_repo.ino, snap.ino);
  EXPECT_NE(main_file.ino, file.ino);
  const auto before = sim_->counters();
  ASSERT_TRUE(core_->open(main_file.ino, &handle).ok());
  st = core_->read(handle, 0, want.size() + 4096, &got);
  core_->release(handle);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(got == want);
  EXPECT_EQ(sim_->counters().value("bytes_served", int64_t{0}),
            before.value("bytes_served", int64_t{0}));

  // A second repo's snapshot is its own directory with its own tree.
  Attr edge, edge_snaps, edge_snap;
  ASSERT_TRUE(core_->lookup(hub.ino, std::string("models--") + kOrg + "--edge-cases", &edge).ok());
  ASSERT_TRUE(core_->lookup(edge.ino, "snapshots", &edge_snaps).ok());
  st = core_->lookup(edge_snaps.ino, sim_->branch_commit(kEdge), &edge_snap);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_NE(edge_snap.ino, snap.ino);
  EXPECT_NE(names(edge_snap.ino), names(snap.ino));
  EXPECT_EQ(core_->lookup(edge_snap.ino, "model.safetensors", &file).code(), Code::kNotFound);
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

// Four clients send random admin and read-only requests at once while two threads read the
// same files through the Core and one sends malformed lines. Every reply is checked for shape
// and for the outcome the request must have; reads must return the right bytes.
TEST_F(CoreControlTest, ConcurrentRequestsWhileReading) {
  struct Target {
    uint64_t ino;
    std::string bytes;
  };
  // Known to the cache index (ls, rm and verify look there) before the clients start.
  std::vector<Target> targets = {
      {lookup("tiny-safetensors", "model.safetensors"), Fixture(kTiny, "model.safetensors")},
      {lookup("edge-cases", "exact-4MiB-plus-1.bin"), Fixture(kEdge, "exact-4MiB-plus-1.bin")}};
  for (const auto& t : targets) {
    ASSERT_NE(t.ino, 0u);
    ASSERT_FALSE(t.bytes.empty());
  }

  const std::string tiny_file = json{{"repo", kTiny}, {"patterns", {"model.safetensors"}}}.dump();
  const std::string edge_file =
      json{{"repo", kEdge}, {"patterns", {"exact-4MiB-plus-1.bin"}}}.dump();
  const std::vector<std::string> ops = {"stats", "ls", "ls_repo",  "info", "prefetch", "pin",
                                        "unpin", "gc", "rm_force", "rm",   "verify"};
  const int per_client = kTsan ? 16 : 24;
  constexpr int kClients = 4;

  Failures failures;
  std::mutex mu;
  std::map<std::string, int> done_ops;
  std::atomic<int> clients_left{kClients + 1};
  std::atomic<uint64_t> reads_ok{0};
  std::vector<std::thread> threads;

  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(6000 + c);
      for (int i = 0; i < per_client; ++i) {
        const std::string op = ops[std::uniform_int_distribution<size_t>(0, ops.size() - 1)(rng)];
        const bool on_tiny = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
        json args = json::parse(on_tiny ? tiny_file : edge_file);
        std::string wire = op;
        if (op == "ls") {
          args = json::object();
        } else if (op == "ls_repo") {
          wire = "ls";
          args = {{"repo", on_tiny ? kTiny : kEdge}};
        } else if (op == "info") {
          args = {{"repo", kTiny}};
        } else if (op == "prefetch" || op == "pin") {
          args["jobs"] = std::uniform_int_distribution<unsigned>(1, 4)(rng);
        } else if (op == "gc") {
          args = {{"to", std::uniform_int_distribution<uint64_t>(0, 8 * kMiB)(rng)}};
        } else if (op == "rm_force") {
          wire = "rm";
          args["force"] = true;
        }
        const Reply r = call(Line(wire, args));
        const std::string what = op + " " + args.dump() + ": ";
        if (auto w = WellFormed(r); !w) {
          failures.add(what + w.message());
          continue;
        }
        const json& d = r.done;
        const json& res = d["result"];
        bool right = d["ok"] == true;
        if (op == "rm" && !right) {
          // Without --force a pinned file is kept, and that is reported as no access.
          right = d["code"] == "no access" && res.value("pinned_bytes_kept", 0) > 0;
        } else if (op == "verify" && right) {
          right = res.value("corrupt_files", -1) == 0;  // nothing is corrupt: no false verdict
        } else if (op == "stats" && right) {
          right = Get(res, {"cache", "used_bytes"}).is_number() &&
                  Get(res, {"cache", "used_bytes"}) <= Get(res, {"cache", "limit_bytes"});
        } else if ((op == "prefetch" || op == "pin") && right) {
          for (const auto& e : r.events) {
            const std::string ev = e["event"];
            right = right && (ev == "start" || ev == "progress" || ev == "file_done");
          }
          right = right && !r.events.empty() && r.events.front()["event"] == "start";
        }
        if (!right) failures.add(what + d.dump());
        std::lock_guard lock(mu);
        done_ops[op]++;
      }
      clients_left--;
    });
  }
  // Malformed requests in between: each gets its error and the server carries on.
  threads.emplace_back([&] {
    const std::vector<std::string> bad = {"hello\n", "[1,2]\n", "{\"op\":5}\n",
                                          Line("prefetch", {{"repo", 5}}), "{\"op\":\"sta"};
    for (int i = 0; i < per_client; ++i) {
      const std::string& b = bad[static_cast<size_t>(i) % bad.size()];
      // The unterminated one is sent with a half-close: a client that gave up mid-request.
      const Reply r = Exchange(socket_, b, /*half_close=*/b.back() != '\n');
      if (auto o = Outcome(r, "invalid"); !o) failures.add("malformed " + b + ": " + o.message());
    }
    clients_left--;
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(7000 + t);
      std::string out;
      while (clients_left > 0) {
        const Target& tg = targets[static_cast<size_t>(t)];
        uint64_t h = 0;
        if (Status st = core_->open(tg.ino, &h); !st.ok()) {
          failures.add("open: " + st.to_string());
          return;
        }
        for (int r = 0; r < 8; ++r) {
          const uint64_t off = std::uniform_int_distribution<uint64_t>(0, tg.bytes.size() - 1)(rng);
          const size_t n = std::uniform_int_distribution<size_t>(1, 2 * kMiB)(rng);
          Status st = core_->read(h, off, n, &out);
          const size_t want = std::min<size_t>(n, tg.bytes.size() - off);
          if (!st.ok()) {
            failures.add("read: " + st.to_string());
          } else if (out.size() != want || std::memcmp(out.data(), tg.bytes.data() + off, want)) {
            failures.add("read at " + std::to_string(off) + ": wrong bytes");
          } else {
            reads_ok++;
          }
        }
        core_->release(h);
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(failures.count(), 0) << failures.text();
  EXPECT_GT(reads_ok.load(), 0u);
  int total = 0;
  for (const auto& [op, n] : done_ops) total += n;
  EXPECT_EQ(total, kClients * per_client);
  // Quiet now: the server still answers, nothing is corrupt, the cache adds up.
  const Reply v = call(Line("verify"));
  ASSERT_TRUE(Outcome(v, "ok"));
  EXPECT_EQ(Get(v.done, {"result", "corrupt_files"}), 0);
  const Reply s = call(Line("stats"));
  ASSERT_TRUE(Outcome(s, "ok"));
  EXPECT_TRUE(Get(s.done, {"result", "cache", "used_bytes"}).is_number());
  EXPECT_LE(Get(s.done, {"result", "cache", "used_bytes"}),
            Get(s.done, {"result", "cache", "limit_bytes"}));
  EXPECT_EQ(Get(s.done, {"result", "reads", "errors"}), 0);
  EXPECT_EQ(Get(s.done, {"result", "reads", "sha256_mismatches"}), 0);
  EXPECT_EQ(Get(s.done, {"result", "open_files"}), 0);
}

// Malformed, oversized, wrongly typed and abandoned requests: each gets the right error (or
// is answered normally when the mistake is harmless), and the server keeps serving.
// Listing a repo creates no inodes; lookups do, and forget returns them. ls -l's questions about
// SELinux labels and ACLs get "not supported" (it then stops asking), ours about a name we do not
// have get "no data".
TEST_F(CoreControlTest, ListingCreatesNoInodesAndForgetFreesThem) {
  Attr org, repo;
  ASSERT_TRUE(core_->lookup(kRootIno, "modelfs-test", &org).ok());
  ASSERT_TRUE(core_->lookup(org.ino, "many-files", &repo).ok());
  const uint64_t before = core_->stats().inodes;
  std::vector<DirEntry> top;
  ASSERT_TRUE(core_->readdir(repo.ino, &top).ok());
  ASSERT_GT(top.size(), 1u);
  EXPECT_EQ(core_->stats().inodes, before) << "readdir made nodes";

  std::vector<Attr> found;
  for (const auto& d : top) {
    Attr a;
    ASSERT_TRUE(core_->lookup(repo.ino, d.name, &a).ok()) << d.name;
    EXPECT_EQ(a.ino, d.attr.ino) << d.name << ": the listing showed another number";
    found.push_back(a);
  }
  EXPECT_EQ(core_->stats().inodes, before + top.size());
  Attr twice;
  ASSERT_TRUE(core_->lookup(repo.ino, top[0].name, &twice).ok());
  for (const auto& a : found) core_->forget(a.ino, 1);
  EXPECT_EQ(core_->stats().inodes, before + 1) << "the name looked up twice keeps one reference";
  Attr still;
  EXPECT_TRUE(core_->getattr(twice.ino, &still).ok());
  core_->forget(twice.ino, 1);
  EXPECT_EQ(core_->stats().inodes, before);
  EXPECT_EQ(core_->getattr(twice.ino, &still).code(), Code::kNotFound);

  // The repo's inode goes too: its tree leaves memory, and comes back from the index, without
  // a request to the Hub while the branch is fresh, listing the same names and numbers.
  const auto api_before = sim_->counters().value("api", 0);
  const auto tree_before = sim_->counters().value("tree", 0);
  EXPECT_EQ(core_->stats().trees_in_memory, 1u);
  core_->forget(repo.ino, 1);
  EXPECT_EQ(core_->stats().trees_in_memory, 0u);
  Attr repo2;
  ASSERT_TRUE(core_->lookup(org.ino, "many-files", &repo2).ok());
  EXPECT_EQ(repo2.ino, repo.ino);
  std::vector<DirEntry> again;
  ASSERT_TRUE(core_->readdir(repo2.ino, &again).ok());
  ASSERT_EQ(again.size(), top.size());
  for (size_t i = 0; i < top.size(); ++i) {
    EXPECT_EQ(again[i].name, top[i].name);
    EXPECT_EQ(again[i].attr.ino, top[i].attr.ino);
    EXPECT_EQ(again[i].attr.size, top[i].attr.size);
  }
  EXPECT_EQ(sim_->counters().value("api", 0), api_before);
  EXPECT_EQ(sim_->counters().value("tree", 0), tree_before);
  EXPECT_EQ(core_->stats().trees_in_memory, 1u);

  std::string value;
  EXPECT_EQ(core_->getxattr(repo.ino, "security.selinux", &value).code(), Code::kNotSupported);
  EXPECT_EQ(core_->getxattr(repo.ino, "system.posix_acl_access", &value).code(),
            Code::kNotSupported);
  EXPECT_EQ(core_->getxattr(repo.ino, "user.other", &value).code(), Code::kNoData);
  ASSERT_TRUE(core_->getxattr(repo.ino, "user.modelfs.revision", &value).ok());
  EXPECT_EQ(value, "main");
}

TEST_F(CoreControlTest, MalformedRequestsGetErrorsAndTheServerKeepsServing) {
  ASSERT_NE(lookup("tiny-safetensors", "config.json"), 0u);  // the repo is known locally
  struct Case {
    std::string bytes;
    std::string code;
  };
  const std::string pad(60 * 1024, 'p');  // a long line that still fits the 64 KiB limit
  const std::vector<Case> cases = {
      {"hello\n", "invalid"},
      {"\n", "invalid"},
      {"[1,2,3]\n", "invalid"},
      {"\"stats\"\n", "invalid"},
      {"{\"op\":5}\n", "invalid"},
      {"{\"op\":\"stats\"}{\"op\":\"ls\"}\n", "invalid"},  // two objects on one line
      {"{\"op\":\"\xff\xfe\"}\n", "invalid"},              // not UTF-8
      {"{\"op\":\"format-disk\"}\n", "invalid"},
      {Line("prefetch", {{"repo", 5}}), "invalid"},
      {Line("pin", {{"repo", "../../etc"}}), "invalid"},
      {Line("rm", {{"all", "yes"}}), "invalid"},  // not a boolean: not --all
      {Line("info", {{"repo", std::string(kTiny) + "@"}}), "invalid"},
      {Line("prefetch", {{"repo", kTiny}, {"patterns", {"[bad"}}}), "invalid"},
      {Line("prefetch", {{"repo", kTiny}, {"patterns", {"nothing-matches-*"}}}), "not found"},
      {Line("ls", {{"repo", "modelfs-test/never-seen"}}), "not found"},
      // Harmless: wrong types are ignored where there is a default.
      {Line("gc", {{"to", "all"}}), "ok"},
      {"{\"op\":\"ls\",\"args\":[1]}\n", "ok"},
      {Line("stats", {{"repo", {{"nested", {1, 2}}}}}), "ok"},
      {Line("verify", {{"repo", 7}}), "ok"},
      {Line("prefetch", {{"repo", kTiny}, {"jobs", "many"}, {"patterns", {"config.json"}}}), "ok"},
      {"{\"op\":\"stats\"}\ntrailing bytes", "ok"},  // only the first line is read
      {Line("stats", {{"pad", pad}}), "ok"},
      // Over 64 KiB without a newline: cut off and refused, not buffered without end.
      {"{\"op\":\"stats\",\"pad\":\"" + std::string(200 * 1024, 'x') + "\"}\n", "invalid"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.bytes.substr(0, 60));
    EXPECT_TRUE(Outcome(Exchange(socket_, c.bytes), c.code));
  }

  // A client that sends half a request and half-closes gets an error...
  EXPECT_TRUE(Outcome(Exchange(socket_, "{\"op\":\"sta", /*half_close=*/true), "invalid"));
  // ...one that closes without reading gets nothing, and one that hangs up during a prefetch
  // cancels it. Neither may disturb the server.
  for (const std::string& b :
       {std::string("{\"op\":\"sta"),
        Line("prefetch",
             json::parse(R"({"repo":"modelfs-test/edge-cases","patterns":["exact-*.bin"]})"))}) {
    const int fd = Connect(socket_, milliseconds(10000));
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
    ::close(fd);
  }
  // A client that connects and sends nothing holds a worker; others are still served.
  const int idle = Connect(socket_, milliseconds(10000));
  ASSERT_GE(idle, 0);

  // Many clients at once, good and bad mixed.
  Failures failures;
  std::vector<std::thread> threads;
  const int rounds = kTsan ? 10 : 20;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        const Case& c = cases[static_cast<size_t>(t * rounds + i) % cases.size()];
        if (auto o = Outcome(Exchange(socket_, c.bytes), c.code); !o) {
          failures.add(c.bytes.substr(0, 60) + ": " + o.message());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.count(), 0) << failures.text();

  const Reply s = call(Line("stats"));
  ASSERT_TRUE(Outcome(s, "ok"));
  EXPECT_EQ(Get(s.done, {"result", "reads", "errors"}), 0);

  ::close(idle);

  // A client connected and silent when the server stops: the destructor must end its worker
  // (blocked in recv) at once, not after the 10 s receive timeout.
  const int silent = Connect(socket_, milliseconds(10000));
  ASSERT_GE(silent, 0);
  std::this_thread::sleep_for(milliseconds(300));  // let the worker reach recv
  const auto t0 = Clock::now();
  server_.reset();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  ::close(silent);
}

// ---------------------------------------------------------------------------- download jobs

TEST_F(CoreControlTest, AJobRunsInTheBackgroundAndOutlivesItsJobsObject) {
  const std::string repo = "modelfs-test/edge-cases";
  Reply r = call(Line("job_start", {{"repo", repo}, {"patterns", {"exact-4MiB*.bin"}}}));
  ASSERT_TRUE(Outcome(r, "ok"));
  const int64_t id = Get(r.done, {"result", "id"}).get<int64_t>();
  EXPECT_EQ(Get(r.done, {"result", "op"}), "prefetch");
  Reply w = call(Line("job_wait", {{"id", id}}));
  ASSERT_TRUE(Outcome(w, "ok"));
  EXPECT_EQ(Get(w.done, {"result", "state"}), "completed");
  const uint64_t total = (4u << 20) * 2 + 1;
  EXPECT_EQ(Get(w.done, {"result", "bytes_done"}), total);
  EXPECT_EQ(Get(w.done, {"result", "files_done"}), 2);
  EXPECT_EQ(Get(w.done, {"result", "fraction"}), 1.0);
  EXPECT_EQ(sim_->counters()["bytes_served"].get<uint64_t>(), total);
  // The bytes are in the cache: reading them fetches nothing more.
  const uint64_t ino = lookup("edge-cases", "exact-4MiB.bin");
  ASSERT_NE(ino, 0u);
  uint64_t handle = 0;
  ASSERT_TRUE(core_->open(ino, &handle).ok());
  std::string got;
  Status st = core_->read(handle, 0, 4u << 20, &got);
  core_->release(handle);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(got == Fixture(repo, "exact-4MiB.bin"));
  EXPECT_EQ(sim_->counters()["bytes_served"].get<uint64_t>(), total);

  // A new Jobs over the same index (a restart) still lists it, finished.
  server_.reset();
  jobs_ = std::make_unique<Jobs>(*service_, cache_->jobs(), JobsOptions{});
  JobView v;
  ASSERT_TRUE(jobs_->get(id, &v).ok());
  EXPECT_EQ(v.record.state, "completed");
  EXPECT_EQ(v.record.bytes_done, total);
  EXPECT_EQ(v.record.patterns, std::vector<std::string>{"exact-4MiB*.bin"});
}

TEST_F(CoreControlTest, PausedJobsStayPausedAcrossARestartAndResumeWithoutRefetching) {
  // One job at a time: the second waits as pending behind the first.
  server_.reset();
  jobs_ = std::make_unique<Jobs>(*service_, cache_->jobs(), JobsOptions{1, std::chrono::hours(1)});
  JobView a, b;
  const Selection big{{"exact-4MiB-plus-1.bin"}, {}, {}};
  // Its first MiB comes, then the Hub stalls: paused midway.
  sim_->fault({{"kind", "stall"},
               {"seconds", 3},
               {"after_bytes", 1 << 20},
               {"count", -1},
               {"match", "exact-4MiB-plus-1.bin"}});
  ASSERT_TRUE(jobs_->start(0, false, "modelfs-test/edge-cases", big, 2, &a).ok());
  ASSERT_TRUE(
      jobs_->start(0, false, "modelfs-test/edge-cases", {{"exact-4MiB.bin"}, {}, {}}, 2, &b).ok());
  EXPECT_EQ(a.record.state, "running");
  EXPECT_EQ(b.record.state, "pending");
  ASSERT_TRUE(jobs_->pause(b.record.id).ok());
  for (int i = 0; i < 100 && sim_->counters()["bytes_served"].get<uint64_t>() < (1u << 20); ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(jobs_->pause(a.record.id).ok());
  // The restart: both stay paused, nothing runs.
  jobs_ = std::make_unique<Jobs>(*service_, cache_->jobs(), JobsOptions{1, std::chrono::hours(1)});
  for (const auto& j : jobs_->list()) EXPECT_EQ(j.record.state, "paused") << j.record.id;
  sim_->clear_faults();
  const uint64_t before = sim_->counters()["bytes_served"].get<uint64_t>();
  ASSERT_TRUE(jobs_->resume(a.record.id).ok());
  JobView done;
  ASSERT_TRUE(jobs_
                  ->wait(
                      a.record.id, milliseconds(100), [](const JobView&) { return true; }, &done)
                  .ok());
  EXPECT_EQ(done.record.state, "completed");
  const uint64_t size = (4u << 20) + 1;
  EXPECT_EQ(done.record.bytes_done, size);
  // The resumed run fetched only what the first one had not: its first MiB was kept.
  EXPECT_GE(before, 1u << 20);
  EXPECT_LE(sim_->counters()["bytes_served"].get<uint64_t>() - before, size - (1u << 20));
  JobView pb;
  ASSERT_TRUE(jobs_->get(b.record.id, &pb).ok());
  EXPECT_EQ(pb.record.state, "paused");
  ASSERT_TRUE(jobs_->cancel(b.record.id).ok());
  ASSERT_TRUE(jobs_->get(b.record.id, &pb).ok());
  EXPECT_EQ(pb.record.state, "cancelled");
  EXPECT_EQ(jobs_->resume(b.record.id).code(), Code::kInvalid);
}

TEST_F(CoreControlTest, AFailedJobSaysWhyAndWhatToDo) {
  Reply r = call(Line("job_start", {{"repo", "modelfs-test/never-was"}}));
  ASSERT_TRUE(Outcome(r, "ok"));
  const int64_t id = Get(r.done, {"result", "id"}).get<int64_t>();
  Reply w = call(Line("job_wait", {{"id", id}}));
  EXPECT_TRUE(Outcome(w, "repo not found"));
  EXPECT_EQ(Get(w.done, {"result", "state"}), "failed");
  EXPECT_EQ(Get(w.done, {"result", "error", "code"}), "repo not found");
  EXPECT_NE(Get(w.done, {"result", "error", "hint"}).get<std::string>().find("repo name"),
            std::string::npos);
  EXPECT_TRUE(Outcome(call(Line("job_pause", {{"id", id}})), "invalid"));
  EXPECT_TRUE(Outcome(call(Line("job", {{"id", 9999}})), "not found"));
  EXPECT_TRUE(Outcome(call(Line("job_cancel", {})), "invalid"));
  Reply l = call(Line("jobs"));
  ASSERT_TRUE(Outcome(l, "ok"));
  EXPECT_EQ(Get(l.done, {"result", "jobs"}).size(), 1u);
}

}  // namespace
}  // namespace modelfs::fs
