// `modelfs mount` and `modelfs umount`.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/settings.h"
#include "cli/size.h"
#include "cli/stack.h"
#include "fs/base/socket.h"
#include "fs/base/version.h"
#include "fs/control/control.h"
#include "fs/control/metrics.h"
#include "fs/fuse/adapter.h"
#include "fs/fuse/mount.h"

namespace modelfs::cli {
namespace {

struct MountArgs {
  std::string mountpoint;
  std::string cache_dir;
  std::string cache_size = "50G";
  std::vector<std::string> endpoints;  // in order; each item may be "a, b"
  std::string token_file;
  bool offline = false;
  bool strict_verify = false;
  bool foreground = false;
  bool allow_other = false;
  std::string log_level = "info";
  std::vector<std::string> fuse_options;
  unsigned revision_ttl = 300;
  unsigned negative_ttl = 60;
  unsigned read_timeout = 60;
  unsigned stall_timeout = 20;
  unsigned retries = 5;
  unsigned fetch_threads = 32;
  unsigned max_jobs = 2;                // download jobs run at once
  unsigned keep_finished_jobs = 86400;  // seconds a finished job stays listed
  std::string readahead_max = "256M";
  std::string model_prefetch = "on";
  unsigned max_threads = 64;
  std::string chunk_size = "1M";
  bool debug_fuse = false;
  std::string control_socket;  // default <cache-dir>/control.sock
  std::string admin_group = "modelfs";
  std::string config;   // key = value file; flags and -o win over it
  std::string metrics;  // "127.0.0.1:9464": Prometheus text; empty: off
  std::vector<std::string> allow, deny;
  bool refuse_gated = false;
  bool token_file_optional = false;  // from the config file: a missing file means anonymous
  std::set<std::string> fixed_keys;  // given by flags or -o: a config reload leaves them alone
};

std::vector<std::string> SplitList(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    std::string item =
        v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Sets one setting from the config file or -o; false with *error if the value is bad.
bool ApplyKey(MountArgs& a, const std::string& key, const std::string& value, std::string* error) {
  auto uint_value = [&](unsigned* out) {
    char* end = nullptr;
    unsigned long v = std::strtoul(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || v > 1000000) {
      *error = key + " must be a number of seconds, not '" + value + "'";
      return false;
    }
    *out = static_cast<unsigned>(v);
    return true;
  };
  auto bool_value = [&](bool* out) {
    if (ParseBool(value, out)) return true;
    *error = key + " must be true or false, not '" + value + "'";
    return false;
  };
  if (key == "cache_dir")
    a.cache_dir = value;
  else if (key == "cache_size")
    a.cache_size = value;
  else if (key == "endpoint")
    a.endpoints = {value};
  else if (key == "token_file")
    a.token_file = value;
  else if (key == "admin_group")
    a.admin_group = value;
  else if (key == "log_level")
    a.log_level = value;
  else if (key == "control_socket")
    a.control_socket = value;
  else if (key == "metrics")
    a.metrics = value;
  else if (key == "allow")
    a.allow = SplitList(value);
  else if (key == "deny")
    a.deny = SplitList(value);
  else if (key == "allow_other")
    return bool_value(&a.allow_other);
  else if (key == "refuse_gated")
    return bool_value(&a.refuse_gated);
  else if (key == "offline")
    return bool_value(&a.offline);
  else if (key == "strict_verify")
    return bool_value(&a.strict_verify);
  else if (key == "revision_ttl")
    return uint_value(&a.revision_ttl);
  else if (key == "read_timeout")
    return uint_value(&a.read_timeout);
  else if (key == "fetch_threads")
    return uint_value(&a.fetch_threads);
  else if (key == "max_jobs")
    return uint_value(&a.max_jobs);
  else if (key == "keep_finished_jobs")
    return uint_value(&a.keep_finished_jobs);
  else if (key == "readahead_max")
    a.readahead_max = value;
  else if (key == "model_prefetch")
    a.model_prefetch = value;
  return true;  // "config" and "mountpoint" are handled by the caller
}

// Merges, lowest first: the config file, then -o key=value options, then explicit flags.
int MergeSettings(MountArgs& a, CLI::App* cmd) {
  ConfigMap from_o;
  std::vector<std::string> fuse_opts;
  for (const auto& o : a.fuse_options) {
    size_t eq = o.find('=');
    std::string key = o.substr(0, eq);
    if (IsMountKey(key)) {
      std::string value = eq == std::string::npos ? "" : o.substr(eq + 1);
      // -o is split at commas, so a list of endpoints comes as endpoint=a,endpoint=b.
      if (key == "endpoint" && from_o.count(key)) {
        from_o[key].append(", ").append(value);
      } else {
        from_o[key] = value;
      }
    } else if (!IsIgnoredMountOption(key)) {
      fuse_opts.push_back(o);
    }
  }
  a.fuse_options = fuse_opts;
  if (a.config.empty() && from_o.count("config")) a.config = from_o["config"];
  ConfigMap merged;
  std::string error;
  if (!a.config.empty() && !ReadConfigFile(a.config, &merged, &error)) {
    std::fprintf(stderr, "modelfs: %s\n", error.c_str());
    return kExitUsage;
  }
  bool token_from_flags =
      cmd->get_option("--token-file")->count() > 0 || from_o.count("token_file");
  for (auto& [k, v] : from_o) merged[k] = v;
  static const std::map<std::string, std::string> flag_of = {
      {"cache_dir", "--cache-dir"},
      {"cache_size", "--cache-size"},
      {"endpoint", "--endpoint"},
      {"token_file", "--token-file"},
      {"admin_group", "--admin-group"},
      {"log_level", "--log-level"},
      {"control_socket", "--control-socket"},
      {"metrics", "--metrics"},
      {"allow", "--allow"},
      {"deny", "--deny"},
      {"allow_other", "--allow-other"},
      {"refuse_gated", "--refuse-gated"},
      {"offline", "--offline"},
      {"revision_ttl", "--revision-ttl"},
      {"read_timeout", "--read-timeout"},
      {"strict_verify", "--strict-verify"},
      {"fetch_threads", "--fetch-threads"},
      {"max_jobs", "--max-jobs"},
      {"keep_finished_jobs", "--keep-finished-jobs"},
      {"readahead_max", "--readahead-max"},
      {"model_prefetch", "--model-prefetch"}};
  for (const auto& [k, v] : from_o) a.fixed_keys.insert(k);
  for (const auto& [k, flag] : flag_of) {
    if (cmd->get_option(flag)->count() > 0) a.fixed_keys.insert(k);
  }
  for (const auto& [k, v] : merged) {
    if (a.fixed_keys.count(k)) continue;
    if (!ApplyKey(a, k, v, &error)) {
      std::fprintf(stderr, "modelfs: %s\n", error.c_str());
      return kExitUsage;
    }
  }
  a.token_file_optional = !a.token_file.empty() && !token_from_flags;
  return kExitOk;
}

// Journald reads "<N>" syslog priorities at the start of each line and adds its own time.
class SyslogPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPrio[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const char* p = kPrio[static_cast<int>(msg.level)];
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

void SetupLogging(bool foreground, const std::string& log_file) {
  if (!foreground) {
    spdlog::set_default_logger(spdlog::basic_logger_mt("modelfs", log_file));
  } else if (std::getenv("JOURNAL_STREAM")) {
    spdlog::set_default_logger(spdlog::stderr_logger_mt("modelfs"));
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*%v");
    spdlog::set_formatter(std::move(formatter));
  } else {
    spdlog::set_default_logger(spdlog::stderr_color_mt("modelfs"));
  }
}

// SIGHUP (systemctl reload) re-reads what is safe to change while mounted: log level, token,
// access policy. Signals are blocked in every thread and taken here with sigtimedwait.
class Reloader {
 public:
  Reloader(MountArgs args, fetch::HubClient& hub, fs::Core& core)
      : args_(std::move(args)), hub_(hub), core_(core), thread_([this] { run(); }) {}
  ~Reloader() {
    stop_ = true;
    thread_.join();
  }

 private:
  void run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    timespec ts{0, 200'000'000};
    while (!stop_) {
      if (sigtimedwait(&set, nullptr, &ts) == SIGHUP) reload();
    }
  }
  void reload() {
    MountArgs a = args_;
    ConfigMap conf;
    std::string error;
    if (!a.config.empty()) {
      if (!ReadConfigFile(a.config, &conf, &error)) {
        spdlog::error("reload: {}; keeping the current settings", error);
        return;
      }
      // A key removed from the file goes back to its default, unless a flag fixed it.
      static const std::map<std::string, std::string> defaults = {{"log_level", "info"},
                                                                  {"token_file", ""},
                                                                  {"allow", ""},
                                                                  {"deny", ""},
                                                                  {"refuse_gated", "false"}};
      for (const auto& [key, def] : defaults) {
        if (a.fixed_keys.count(key)) continue;
        const std::string& value = conf.count(key) ? conf[key] : def;
        if (!ApplyKey(a, key, value, &error)) {
          spdlog::error("reload: {}; keeping the current settings", error);
          return;
        }
      }
      if (!a.fixed_keys.count("token_file")) a.token_file_optional = !a.token_file.empty();
    }
    auto level = spdlog::level::from_str(a.log_level);
    if (level != spdlog::level::off || a.log_level == "off") spdlog::set_level(level);
    Token token;
    if (!a.token_file.empty() && access(a.token_file.c_str(), R_OK) != 0 && a.token_file_optional) {
      a.token_file.clear();
    }
    if (ResolveToken(a.token_file, &token, &error)) {
      hub_.set_token(token.value);
    } else {
      spdlog::error("reload: {}; keeping the current token", error);
    }
    core_.set_policy({a.allow, a.deny, a.refuse_gated});
    core_.forget_misses();  // a new token may open what was refused
    spdlog::info("reloaded: log level {}, token from {}, {} allow / {} deny rules{}", a.log_level,
                 token.source, a.allow.size(), a.deny.size(),
                 a.refuse_gated ? ", gated refused" : "");
  }

  MountArgs args_;
  fetch::HubClient& hub_;
  fs::Core& core_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The daemon reports "mounted" or an error through this pipe, so `modelfs mount` returns only
// once the mount is usable, with the daemon's exit code if it is not.
class ReadyPipe {
 public:
  void notify(int code, const std::string& message) {
    if (fd_ < 0) return;
    std::string msg = std::to_string(code) + " " + message;
    ssize_t n = ::write(fd_, msg.data(), msg.size());
    (void)n;
    ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

int Fail(ReadyPipe& ready, int code, const std::string& message) {
  spdlog::error("{}", message);
  ready.notify(code, message);
  return code;
}

// Forks; the parent waits for the child's report and exits with it.
int Daemonize(ReadyPipe* ready) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    if (msg.empty()) {
      std::fprintf(stderr, "modelfs: the mount process died before mounting\n");
      _exit(kExitError);
    }
    int code = std::atoi(msg.c_str());
    std::string text = msg.substr(std::min(msg.size(), msg.find(' ') + 1));
    if (code != 0) std::fprintf(stderr, "modelfs: %s\n", text.c_str());
    _exit(code);
  }
  ::close(fds[0]);
  ready->fd_ = fds[1];
  setsid();
  return 0;
}

void DetachStdio() {
  int fd = ::open("/dev/null", O_RDWR);
  if (fd < 0) return;
  dup2(fd, 0);
  dup2(fd, 1);
  dup2(fd, 2);
  if (fd > 2) ::close(fd);
}

int ExitFor(Code code) {
  switch (code) {
    case Code::kNoSpace:
      return kExitNoSpace;
    case Code::kInvalid:
      return kExitUsage;
    default:
      return kExitError;
  }
}

// Where the control socket goes when --control-socket does not say. A mount only its owner can
// use keeps it in the private cache dir. A mount for other users (--allow-other) needs one they
// can reach: RunDir()/control.sock (made 0755) when root, or when that folder is already this
// user's (the service's RuntimeDirectory); else the cache dir becomes 0711 (searchable, not
// listable: its files stay 0600) so the socket inside can be reached. A RunDir() socket where
// another mount answers is left to it.
std::string DefaultControlSocket(const std::string& cache_dir, bool allow_other) {
  std::string in_cache = cache_dir + "/control.sock";
  if (!allow_other) return in_cache;
  const std::string run = RunDir();
  std::error_code ec;
  if (geteuid() == 0 && !std::filesystem::exists(run, ec)) {
    const mode_t old = ::umask(022);  // every folder made here is 0755: users walk to the socket
    std::filesystem::create_directories(run, ec);
    ::umask(old);
  }
  struct stat st {};
  const bool usable = ::stat(run.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                      (geteuid() == 0 || st.st_uid == geteuid()) && access(run.c_str(), W_OK) == 0;
  if (usable) {
    UniqueFd probe;
    if (!ConnectUnix(run + "/control.sock", &probe).ok()) return run + "/control.sock";
    spdlog::warn("another mount answers at {}/control.sock; this one's socket is {}", run,
                 in_cache);
  }
  ::chmod(cache_dir.c_str(), 0711);
  return in_cache;
}

// <cache-dir>/control.sock as a symlink to a socket kept elsewhere, so that `--cache-dir DIR`
// (and a user's default cache) finds the mount of DIR. Removed when the mount ends.
class CacheSocketLink {
 public:
  CacheSocketLink(const std::string& cache_dir, const std::string& socket)
      : link_(cache_dir + "/control.sock") {
    std::error_code ec;
    if (std::filesystem::equivalent(std::filesystem::path(socket).parent_path(), cache_dir, ec) &&
        std::filesystem::path(socket).filename() == "control.sock")
      return;
    ::unlink(link_.c_str());  // the cache lock is ours: what is there is stale
    if (::symlink(socket.c_str(), link_.c_str()) == 0) {
      made_ = true;
    } else {
      spdlog::warn("cannot link {} to the control socket {}", link_, socket);
    }
  }
  ~CacheSocketLink() {
    if (made_) ::unlink(link_.c_str());
  }
  CacheSocketLink(const CacheSocketLink&) = delete;
  CacheSocketLink& operator=(const CacheSocketLink&) = delete;

 private:
  std::string link_;
  bool made_ = false;
};

int RunMount(const MountArgs& a) {
  // Everything that can be checked without side effects is checked before forking.
  std::error_code ec;
  if (!std::filesystem::is_directory(a.mountpoint, ec)) {
    std::fprintf(stderr,
                 "modelfs: mount point %s is not a directory; create it first (mkdir -p %s)\n",
                 a.mountpoint.c_str(), a.mountpoint.c_str());
    return kExitUsage;
  }
  auto capacity = ParseSize(a.cache_size);
  if (!capacity || *capacity == 0) {
    std::fprintf(stderr,
                 "modelfs: --cache-size '%s' is not a size; use e.g. 500M, 20G or a byte count\n",
                 a.cache_size.c_str());
    return kExitUsage;
  }
  auto chunk = ParseSize(a.chunk_size);
  if (!chunk || *chunk < index::kMinChunkSize || *chunk > index::kMaxChunkSize ||
      (*chunk & (*chunk - 1))) {
    std::fprintf(stderr, "modelfs: --chunk-size must be a power of two from %s to %s\n",
                 FormatSize(index::kMinChunkSize).c_str(),
                 FormatSize(index::kMaxChunkSize).c_str());
    return kExitUsage;
  }
  auto readahead_max = ParseSize(a.readahead_max);
  if (!readahead_max || *readahead_max < (1u << 20)) {
    std::fprintf(stderr, "modelfs: --readahead-max '%s' must be a size of at least 1M\n",
                 a.readahead_max.c_str());
    return kExitUsage;
  }
  bool model_prefetch = true;
  if (a.model_prefetch.empty() || !ParseBool(a.model_prefetch, &model_prefetch)) {
    std::fprintf(stderr, "modelfs: --model-prefetch must be on or off, not '%s'\n",
                 a.model_prefetch.c_str());
    return kExitUsage;
  }
  if (a.fetch_threads == 0 || a.fetch_threads > 256) {
    std::fprintf(stderr, "modelfs: --fetch-threads must be 1 to 256\n");
    return kExitUsage;
  }
  Token token;
  std::string error;
  MountArgs effective = a;
  if (a.token_file_optional && access(a.token_file.c_str(), R_OK) != 0)
    effective.token_file.clear();
  if (!ResolveToken(effective.token_file, &token, &error)) {
    std::fprintf(stderr, "modelfs: %s\n", error.c_str());
    return kExitUsage;
  }
  std::string cache_dir = a.cache_dir.empty() ? DefaultCacheDir() : a.cache_dir;
  const std::vector<std::string> endpoints = EndpointList(a.endpoints);
  std::string endpoint_list;
  for (const auto& e : endpoints) endpoint_list += (endpoint_list.empty() ? "" : ", ") + e;
  bool offline = a.offline || EnvOffline();
  auto level = spdlog::level::from_str(a.log_level);
  if (level == spdlog::level::off && a.log_level != "off") {
    std::fprintf(stderr,
                 "modelfs: --log-level must be one of trace, debug, info, warn, error, off\n");
    return kExitUsage;
  }

  ReadyPipe ready;
  if (!a.foreground && Daemonize(&ready) != 0) {
    std::fprintf(stderr, "modelfs: cannot start the background process: %s\n",
                 std::strerror(errno));
    return kExitError;
  }
  // Every thread started from here on inherits a blocked SIGHUP; the Reloader takes it.
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, nullptr);
  // Everything the mount creates (cache dir, index, chunks, log) is its own, whatever umask it
  // was started with (umask 000 would make the log world-writable); the control socket gets
  // its mode explicitly.
  ::umask(077);
  std::filesystem::create_directories(cache_dir, ec);
  ::chmod(cache_dir.c_str(), 0700);
  try {
    SetupLogging(a.foreground, cache_dir + "/modelfs.log");
  } catch (const spdlog::spdlog_ex& e) {
    return Fail(ready, kExitError, std::string("cannot open the log file: ") + e.what());
  }
  spdlog::set_level(level);
  spdlog::flush_on(spdlog::level::info);

  StackOptions so;
  so.cache.dir = cache_dir;
  so.cache.capacity_bytes = *capacity;
  so.cache.chunk_size = static_cast<uint32_t>(*chunk);
  so.hub.endpoint = endpoints.front();
  so.hub.more_endpoints.assign(endpoints.begin() + 1, endpoints.end());
  so.hub.token = token.value;
  so.hub.offline = offline;
  so.hub.stall_timeout = std::chrono::seconds(a.stall_timeout);
  so.hub.deadline = std::chrono::seconds(a.read_timeout);
  so.hub.max_attempts = static_cast<int>(std::max(1u, a.retries));
  so.core.revision_ttl = std::chrono::seconds(a.revision_ttl);
  so.core.negative_ttl = std::chrono::seconds(a.negative_ttl);
  so.core.read_timeout = std::chrono::seconds(a.read_timeout);
  so.core.fetch_threads = std::max(1u, a.fetch_threads);
  so.core.readahead_max = *readahead_max;
  so.core.model_prefetch = model_prefetch;
  // Idle connections kept: one per range request in flight, plus the readers' own misses.
  so.hub.max_idle_connections = std::max<size_t>(32, a.fetch_threads + 16);
  so.core.offline = offline;
  so.core.strict_verify = a.strict_verify;
  so.core.control_socket =
      a.control_socket.empty() ? DefaultControlSocket(cache_dir, a.allow_other) : a.control_socket;
  const std::string control_socket = so.core.control_socket;
  std::unique_ptr<Stack> stack;
  if (Status s = Stack::Open(std::move(so), &stack); !s.ok()) {
    if (s.code() == Code::kBusy) {
      return Fail(ready, kExitError,
                  "cache " + cache_dir + " is in use by another modelfs process (" + s.message() +
                      "); unmount it first or pass a different --cache-dir");
    }
    return Fail(ready, ExitFor(s.code()), "cannot open cache " + cache_dir + ": " + s.to_string());
  }
  if (!stack->cache().recovered_from().empty()) {
    spdlog::warn("cache: {}", stack->cache().recovered_from());
  }
  fs::Core& core = stack->core();
  fetch::HubClient& hub = stack->hub();
  core.set_policy({a.allow, a.deny, a.refuse_gated});
  // Download jobs go on where the last mount of this cache left them.
  fs::Jobs jobs(stack->service(), stack->cache().jobs(),
                {std::max(1u, a.max_jobs), std::chrono::seconds(a.keep_finished_jobs)});
  fs::ControlServer control(stack->service(), &jobs, control_socket,
                            {static_cast<uint32_t>(getuid()), a.admin_group, a.allow_other});
  if (Status s = control.start(); !s.ok()) return Fail(ready, kExitError, s.message());
  CacheSocketLink cache_link(cache_dir, control_socket);
  std::unique_ptr<fs::MetricsServer> metrics;
  if (!a.metrics.empty()) {
    metrics = std::make_unique<fs::MetricsServer>(core);
    if (Status s = metrics->start(a.metrics); !s.ok()) return Fail(ready, kExitUsage, s.message());
  }
  Reloader reloader(a, hub, core);
  spdlog::info("modelfs {} on {}: endpoint {}{}, cache {} ({} limit), token from {}",
               MODELFS_VERSION, a.mountpoint, endpoint_list, offline ? " (offline)" : "", cache_dir,
               FormatSize(*capacity), token.source);

  fs::MountOptions mopts;
  mopts.mountpoint = a.mountpoint;
  mopts.allow_other = a.allow_other;
  mopts.fuse_options = a.fuse_options;
  mopts.max_threads = a.max_threads;
  mopts.debug = a.debug_fuse;
  bool mounted = false;
  Status st = fs::ServeFuse(core, mopts, [&] {
    mounted = true;
    ready.notify(0, "mounted");
    if (!a.foreground) DetachStdio();
  });
  if (!st.ok()) {
    return mounted ? kExitError : Fail(ready, kExitError, st.message());
  }
  return kExitOk;
}

}  // namespace

Runner AddMountCommand(CLI::App& app) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* cmd = app.add_subcommand(
      "mount",
      "Mount the Hub as a filesystem: MOUNTPOINT/<org>/<name>[@revision]/<path>.\n"
      "Examples:\n"
      "  modelfs mount /mnt/models\n"
      "  modelfs mount /mnt/models --cache-dir /var/cache/modelfs --cache-size 500G --allow-other\n"
      "  HF_HUB_OFFLINE=1 modelfs mount /mnt/models     # serve only what is cached");
  cmd->add_option("mountpoint", a->mountpoint, "Empty directory to mount on")->required();
  cmd->add_option("--cache-dir", a->cache_dir,
                  "Chunk cache and index (default $MODELFS_CACHE_DIR or ~/.cache/modelfs)");
  cmd->add_option("--cache-size", a->cache_size, "Cache limit: 500M, 20G or bytes")
      ->capture_default_str();
  cmd->add_option("--endpoint", a->endpoints,
                  "Hub URL (default $HF_ENDPOINT or https://huggingface.co). Given more than "
                  "once (or as a,b): tried in order, e.g. a site cache, then the Hub; reads move "
                  "to the next within seconds when one fails and come back when it recovers")
      ->delimiter(',')
      ->allow_extra_args(false);
  cmd->add_option("--token-file", a->token_file,
                  "File holding a Hub token (default: $HF_TOKEN, $HF_TOKEN_PATH, $HF_HOME/token)");
  cmd->add_flag("--offline", a->offline,
                "No network: list and read only what is cached (also HF_HUB_OFFLINE=1)");
  cmd->add_flag(
      "--strict-verify", a->strict_verify,
      "Serve no byte of an LFS file until the whole file is cached and its sha256 checked "
      "(the first read waits for the whole file; default: a read of the file's end fails "
      "if the sha256 is wrong)");
  cmd->add_flag("-f,--foreground", a->foreground, "Stay in the foreground and log to stderr");
  cmd->add_flag(
      "--allow-other", a->allow_other,
      "Let other users use the mount (needs user_allow_other in /etc/fuse.conf unless root)");
  cmd->add_option("--log-level", a->log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  cmd->add_option("-o", a->fuse_options, "libfuse mount option, passed through (repeatable)")
      ->delimiter(',');
  cmd->add_option("--revision-ttl", a->revision_ttl,
                  "Seconds before a branch or tag is re-resolved (commits never are)")
      ->capture_default_str();
  cmd->add_option("--negative-ttl", a->negative_ttl, "Seconds a missing repo or file is remembered")
      ->capture_default_str();
  cmd->add_option("--read-timeout", a->read_timeout,
                  "Seconds a read may wait for the network before it fails with EIO")
      ->capture_default_str();
  cmd->add_option("--stall-timeout", a->stall_timeout,
                  "Seconds without a byte before a download is retried")
      ->capture_default_str();
  cmd->add_option("--retries", a->retries, "Attempts per download before giving up")
      ->capture_default_str();
  cmd->add_option("--fetch-threads", a->fetch_threads,
                  "Range requests in flight at most (readahead and prefetch)")
      ->capture_default_str();
  cmd->add_option("--max-jobs", a->max_jobs,
                  "Download jobs (prefetch --detach) that run at once; the rest wait, in order")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--keep-finished-jobs", a->keep_finished_jobs,
                  "Seconds a finished download job stays listed by `modelfs jobs`")
      ->capture_default_str();
  cmd->add_option("--readahead-max", a->readahead_max,
                  "Largest readahead window of a sequential reader (it ramps up to this)")
      ->capture_default_str();
  cmd->add_option("--model-prefetch", a->model_prefetch,
                  "on: opening a shard of a sharded model (or its index) fetches the other shards, "
                  "and model files read past their header are read ahead at full width; off: no")
      ->capture_default_str();
  cmd->add_option("--max-threads", a->max_threads, "FUSE worker threads")->capture_default_str();
  cmd->add_option("--chunk-size", a->chunk_size, "Chunk size of a new cache (power of two)")
      ->capture_default_str();
  cmd->add_flag("--debug-fuse", a->debug_fuse, "Print every FUSE request (implies -f)");
  cmd->add_option("--control-socket", a->control_socket,
                  "Unix socket for the modelfs CLI (default <cache-dir>/control.sock; with "
                  "--allow-other /run/modelfs/control.sock when root)");
  cmd->add_option("--config", a->config,
                  "Config file of key = value lines (see packaging/modelfs.conf); flags win");
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics on IPv4:PORT (e.g. 127.0.0.1:9464)");
  cmd->add_option("--allow", a->allow, "Only show repos matching these org/name globs")
      ->delimiter(',');
  cmd->add_option("--deny", a->deny, "Never show repos matching these org/name globs")
      ->delimiter(',');
  cmd->add_flag("--refuse-gated", a->refuse_gated,
                "Refuse gated repos even if the token may read them");
  cmd->add_option(
         "--admin-group", a->admin_group,
         "Group whose members may pin, unpin, gc, rm and verify (besides root and the owner)")
      ->capture_default_str();
  return [a, cmd] {
    if (a->debug_fuse) a->foreground = true;
    if (int rc = MergeSettings(*a, cmd)) return rc;
    return RunMount(*a);
  };
}

Runner AddUmountCommand(CLI::App& app) {
  auto mountpoint = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("umount",
                                     "Unmount a modelfs mount (like fusermount3 -u).\n"
                                     "Example:\n  modelfs umount /mnt/models");
  cmd->add_option("mountpoint", *mountpoint, "Where modelfs is mounted")->required();
  return [mountpoint] {
    Status st = fs::Unmount(*mountpoint);
    if (!st.ok()) {
      std::fprintf(stderr, "modelfs: %s\n", st.message().c_str());
      return static_cast<int>(kExitError);
    }
    return static_cast<int>(kExitOk);
  };
}

}  // namespace modelfs::cli
