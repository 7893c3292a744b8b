// Test helper (header-only): runs tests/hubsim/hubsim.py as a child process over the fixtures
// of tests/fixtures/gen_fixtures.py, and drives its control API (/_sim/...).
//
//   modelfs::testing::HubSim sim;            // fixtures + simulator, bounded wait for ready
//   ASSERT_TRUE(sim.ok()) << sim.error();
//   sim.hub_url(); sim.cdn_url(); sim.counters()["resolve"]; sim.fault({...}); sim.reset();
//
// Fixtures: $MODELFS_FIXTURES when set (ctest prepares it), else generated once per user into
// $TMPDIR/modelfs-fixtures-<uid> (without --gguf), serialised across processes with flock.
// Source tree: $MODELFS_SOURCE_DIR, else derived from this header's path.
// The simulator gets SIGTERM (then SIGKILL) and is reaped in the destructor; it also gets
// SIGTERM if the test process dies (PR_SET_PDEATHSIG). All traffic stays on 127.0.0.1.
//
// Thread safety: control calls may be made from any thread (each uses its own curl handle);
// construction and destruction must not race with them.
#pragma once

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace modelfs::testing {

inline constexpr uint64_t kMiB = 1 << 20;
// Fixture repos the simulator serves (tests/fixtures).
inline constexpr char kEdge[] = "modelfs-test/edge-cases";
inline constexpr char kTiny[] = "modelfs-test/tiny-safetensors";

class HubSim {
 public:
  struct Options {
    int page_size = 0;  // tree entries per page; 0 = the simulator's default
    int cdn_ttl = 0;    // CDN URL lifetime in seconds; 0 = the simulator's default
    std::vector<std::string> extra_args;
    std::chrono::seconds ready_timeout{60};
  };

  HubSim() : HubSim(Options{}) {}
  explicit HubSim(Options options) : options_(std::move(options)) { start(); }
  ~HubSim() { stop(); }
  HubSim(const HubSim&) = delete;
  HubSim& operator=(const HubSim&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& hub_url() const { return hub_url_; }
  const std::string& cdn_url() const { return cdn_url_; }
  pid_t pid() const { return pid_; }
  const std::string& fixtures_dir() const { return fixtures_dir_; }
  const nlohmann::json& manifest() const { return manifest_; }

  // --- control API ---------------------------------------------------------------------------
  nlohmann::json counters() const { return Call("GET", "/_sim/counters", ""); }
  // Clears counters and faults; refs=true also moves every branch back to its fixture commit.
  void reset(bool refs = false) const {
    Call("POST", "/_sim/reset", refs ? R"({"refs":true})" : "{}");
  }
  // e.g. {"kind":"status","status":503,"count":2,"match":"large.bin"}; returns the answer.
  nlohmann::json fault(const nlohmann::json& spec) const {
    return Call("POST", "/_sim/fault", spec.dump());
  }
  void clear_faults() const { Call("POST", "/_sim/clear_faults", "{}"); }
  nlohmann::json move_branch(const std::string& repo, const std::string& branch,
                             const std::string& to) const {
    return Call("POST", "/_sim/move_branch",
                nlohmann::json{{"repo", repo}, {"branch", branch}, {"to", to}}.dump());
  }

  // --- manifest helpers ----------------------------------------------------------------------
  const nlohmann::json& repo(const std::string& id) const { return manifest_.at("repos").at(id); }
  std::string branch_commit(const std::string& id, const std::string& branch = "main") const {
    return repo(id).at("branches").at(branch).get<std::string>();
  }
  // The manifest entry {path, size, sha256, oid, lfs, etag, ...} of a file, or nullptr.
  const nlohmann::json* file(const std::string& id, const std::string& commit,
                             const std::string& path) const {
    for (const auto& f : repo(id).at("commits").at(commit).at("files")) {
      if (f.at("path") == path) return &f;
    }
    return nullptr;
  }
  // Where the simulator reads that file's bytes from.
  std::string local_path(const std::string& id, const std::string& commit,
                         const std::string& path) const {
    return fixtures_dir_ + "/repos/" + id + "/" + commit + "/" + path;
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static std::string SourceDir() {
    if (const char* s = std::getenv("MODELFS_SOURCE_DIR"); s != nullptr && *s != 0) return s;
    // this file is <root>/tests/unit/hubsim.h
    return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();
  }

  // The fixture folder, prepared on first use (once per process).
  static const std::string& Fixtures(std::string* error) {
    static std::once_flag once;
    static std::string dir;
    static std::string err;
    std::call_once(once, [] { dir = PrepareFixtures(&err); });
    if (error != nullptr) *error = err;
    return dir;
  }

 private:
  static std::string PrepareFixtures(std::string* error) {
    if (const char* env = std::getenv("MODELFS_FIXTURES"); env != nullptr && *env != 0) {
      if (std::filesystem::exists(std::string(env) + "/manifest.json")) return env;
    }
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = std::string(tmp != nullptr && *tmp != 0 ? tmp : "/tmp") +
                            "/modelfs-fixtures-" + std::to_string(getuid());
    std::filesystem::create_directories(dir);
    // Serialise generators of concurrent test processes; the generator is idempotent.
    const int lock = open((dir + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (lock >= 0) flock(lock, LOCK_EX);
    const std::string cmd = "python3 '" + SourceDir() + "/tests/fixtures/gen_fixtures.py' --out '" +
                            dir + "' >/dev/null";
    const int rc = std::system(cmd.c_str());
    if (lock >= 0) close(lock);  // releases the lock
    if (rc != 0) *error = "gen_fixtures.py failed: " + cmd;
    return dir;
  }

  void start() {
    static std::once_flag curl_once;  // curl_easy_init would do it lazily, but not thread-safely
    std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string err;
    fixtures_dir_ = Fixtures(&err);
    if (!err.empty()) {
      error_ = err;
      return;
    }
    {
      std::ifstream in(fixtures_dir_ + "/manifest.json");
      manifest_ = nlohmann::json::parse(in, nullptr, false);
      if (manifest_.is_discarded()) {
        error_ = "cannot read " + fixtures_dir_ + "/manifest.json";
        return;
      }
    }
    char tmpl[] = "/tmp/modelfs-hubsim-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    run_dir_ = tmpl;
    const std::string ready = run_dir_ + "/ready.json";
    std::vector<std::string> args = {"python3",      SourceDir() + "/tests/hubsim/hubsim.py",
                                     "--fixtures",   fixtures_dir_,
                                     "--host",       "127.0.0.1",
                                     "--port",       "0",
                                     "--cdn-port",   "0",
                                     "--ready-file", ready};
    if (options_.page_size > 0) {
      args.push_back("--page-size");
      args.push_back(std::to_string(options_.page_size));
    }
    if (options_.cdn_ttl > 0) {
      args.push_back("--cdn-ttl");
      args.push_back(std::to_string(options_.cdn_ttl));
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      error_ = "fork failed";
      pid_ = -1;
      return;
    }
    if (pid_ == 0) {  // child: async-signal-safe calls only
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(127);
      const int devnull = open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
      }
      execvp(argv[0], argv.data());
      _exit(127);
    }

    const auto until = std::chrono::steady_clock::now() + options_.ready_timeout;
    while (std::chrono::steady_clock::now() < until) {
      int wstatus = 0;
      if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "hubsim exited early (status " + std::to_string(wstatus) + ")";
        return;
      }
      std::ifstream in(ready);
      if (in) {
        auto j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_object() && j.contains("hub") && j.contains("cdn")) {
          hub_url_ = j["hub"].get<std::string>();
          cdn_url_ = j["cdn"].get<std::string>();
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error_ = "hubsim not ready within " + std::to_string(options_.ready_timeout.count()) + " s";
  }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      bool reaped = false;
      while (std::chrono::steady_clock::now() < until) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          reaped = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!reaped) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
      pid_ = -1;
    }
    if (!run_dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(run_dir_, ec);
    }
  }

  static size_t Collect(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  }

  // One control call; returns the JSON answer (a discarded value on any failure).
  nlohmann::json Call(const std::string& method, const std::string& path,
                      const std::string& body) const {
    if (hub_url_.empty()) return nlohmann::json(nlohmann::json::value_t::discarded);
    struct EasyFree {
      void operator()(CURL* c) const { curl_easy_cleanup(c); }
    };
    struct ListFree {
      void operator()(curl_slist* l) const { curl_slist_free_all(l); }
    };
    std::unique_ptr<CURL, EasyFree> easy(curl_easy_init());
    std::unique_ptr<curl_slist, ListFree> headers(
        curl_slist_append(nullptr, "Content-Type: application/json"));
    if (!easy || !headers) return nlohmann::json(nlohmann::json::value_t::discarded);
    CURL* h = easy.get();
    std::string out;
    const std::string url = hub_url_ + path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    if (method == "POST") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    const CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) return nlohmann::json(nlohmann::json::value_t::discarded);
    return nlohmann::json::parse(out, nullptr, false);
  }

  Options options_;
  std::string error_;
  std::string fixtures_dir_;
  std::string run_dir_;
  std::string hub_url_;
  std::string cdn_url_;
  nlohmann::json manifest_;
  pid_t pid_ = -1;
};

}  // namespace modelfs::testing
