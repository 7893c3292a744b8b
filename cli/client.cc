#include "cli/client.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "cli/config.h"
#include "cli/settings.h"
#include "cli/size.h"
#include "cli/stack.h"
#include "fs/base/socket.h"
#include "fs/control/control.h"

namespace modelfs::cli {
namespace {

using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;  // the one global: written by the SIGINT handler

void OnSigint(int) {
  g_interrupted = 1;
}

struct SigintGuard {
  struct sigaction old {};
  SigintGuard() {
    struct sigaction sa {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
  }
  ~SigintGuard() { sigaction(SIGINT, &old, nullptr); }
};

std::string MountSocket(const std::string& mount) {
  char buf[4096];
  ssize_t n = getxattr(mount.c_str(), "user.modelfs.control_socket", buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// The cache the user chose (--cache-dir or $MODELFS_CACHE_DIR), or "".
std::string ChosenCacheDir(const CommonArgs& a) {
  if (!a.cache_dir.empty()) return a.cache_dir;
  return CacheDirFromEnv() ? DefaultCacheDir() : "";
}

// Where a command goes: a control socket that answered, or (fd invalid) the cache directly.
struct Target {
  UniqueFd fd;
  std::string socket;   // the socket that answered
  std::string how;      // why this one, for the line that names it
  std::string missing;  // the machine's mount that was expected and did not answer
};

bool TryConnect(const std::string& socket, const std::string& how, Target* t,
                std::string* error = nullptr) {
  if (socket.empty()) return false;
  Status s = ConnectUnix(socket, &t->fd);
  if (!s.ok()) {
    if (error) *error = s.message();
    return false;
  }
  t->socket = socket;
  t->how = how;
  return true;
}

// With no --socket, --mount or chosen cache: the machine's mount (the config's control_socket,
// or its mountpoint's xattr), then RunDir()/control.sock, then the mount of the user's cache.
void FindMachineMount(const std::string& cache_dir, Target* t) {
  const std::string conf_path = SystemConfigPath();
  ConfigMap conf;
  std::string ignored;
  if (access(conf_path.c_str(), R_OK) == 0 && ReadConfigFile(conf_path, &conf, &ignored)) {
    if (auto it = conf.find("control_socket"); it != conf.end() && !it->second.empty()) {
      if (TryConnect(it->second, "control_socket in " + conf_path, t)) return;
      t->missing = it->second + " (control_socket in " + conf_path + ")";
    }
    if (auto it = conf.find("mountpoint"); it != conf.end() && !it->second.empty()) {
      if (TryConnect(MountSocket(it->second), "mountpoint " + it->second + " in " + conf_path, t))
        return;
      if (t->missing.empty()) t->missing = it->second + " (mountpoint in " + conf_path + ")";
    }
  }
  const std::string run = RunDir() + "/control.sock";
  if (TryConnect(run, "the machine's mount", t)) return;
  if (TryConnect(cache_dir + "/control.sock", "the mount of your cache " + cache_dir, t)) return;
  if (t->missing.empty() && access(run.c_str(), F_OK) == 0) t->missing = run;
}

int RunRemote(UniqueFd fd, const json& request, const EventFn& on_event, json* final) {
  if (!SendAll(fd.get(), request.dump() + "\n").ok()) {
    std::fprintf(stderr, "modelfs: the mount's control socket did not take the request\n");
    return kExitError;
  }
  std::string buf;
  char chunk[65536];
  for (;;) {
    if (g_interrupted) return 130;  // closing the connection cancels the request
    size_t n = 0;
    Status st = RecvSome(fd.get(), chunk, sizeof chunk, 200, &n);
    if (st.code() == Code::kTimeout) continue;
    if (!st.ok() || n == 0) break;
    buf.append(chunk, n);
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      json msg = json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (msg.is_object() && msg.value("done", false)) {
        *final = msg;
        return -1;
      }
      if (msg.is_object()) on_event(msg);
    }
  }
  std::fprintf(stderr, "modelfs: the mount closed the connection without an answer\n");
  return kExitError;
}

int RunDirect(const CommonArgs& a, const json& request, const EventFn& on_event, json* final) {
  const std::string dir = a.cache_dir.empty() ? DefaultCacheDir() : a.cache_dir;
  auto capacity = ParseSize(a.cache_size);
  if (!capacity || *capacity == 0) {
    std::fprintf(stderr, "modelfs: --cache-size '%s' is not a size; use e.g. 500M or 20G\n",
                 a.cache_size.c_str());
    return kExitUsage;
  }
  Token token;
  std::string error;
  if (!ResolveToken(a.token_file, &token, &error)) {
    std::fprintf(stderr, "modelfs: %s\n", error.c_str());
    return kExitUsage;
  }
  spdlog::set_level(spdlog::level::warn);
  StackOptions so;
  so.cache.dir = dir;
  so.cache.capacity_bytes = *capacity;
  const std::vector<std::string> endpoints = EndpointList(a.endpoints);
  so.hub.endpoint = endpoints.front();
  so.hub.more_endpoints.assign(endpoints.begin() + 1, endpoints.end());
  so.hub.token = token.value;
  so.hub.offline = a.offline || EnvOffline();
  so.core.offline = so.hub.offline;
  std::unique_ptr<Stack> stack;
  if (Status s = Stack::Open(std::move(so), &stack); !s.ok()) {
    if (s.code() == Code::kBusy) {
      std::fprintf(stderr,
                   "modelfs: cache %s is owned by a running mount, but its control socket does not "
                   "answer; pass --socket or --mount, or check the mount's log\n",
                   dir.c_str());
    } else {
      std::fprintf(stderr, "modelfs: cannot open cache %s: %s\n", dir.c_str(),
                   s.to_string().c_str());
    }
    return s.code() == Code::kNoSpace ? kExitNoSpace : kExitError;
  }
  // Without a mount the caller acts on a cache it can open: the OS already decided.
  const fs::Caller caller{static_cast<uint32_t>(getuid()), true, true};
  const std::string last =
      fs::Dispatch(stack->service(), nullptr, request.dump(), caller, [&](const std::string& line) {
        json e = json::parse(line, nullptr, false);
        if (e.is_object()) on_event(e);
        return !g_interrupted;
      });
  *final = json::parse(last, nullptr, false);
  return -1;
}

}  // namespace

bool Interrupted() {
  return g_interrupted != 0;
}

void AddCommonOptions(CLI::App* cmd, CommonArgs* a) {
  cmd->add_option("--cache-dir", a->cache_dir,
                  "This cache, through its mount or directly (default $MODELFS_CACHE_DIR; with "
                  "no flags: the machine's mount, from /etc/modelfs/modelfs.conf or "
                  "/run/modelfs/control.sock, else ~/.cache/modelfs)");
  cmd->add_option("--mount", a->mount, "Talk to the modelfs mounted here");
  cmd->add_option("--socket", a->socket, "Control socket of a running mount");
  cmd->add_flag("--json", a->json, "Machine-readable output (JSON; events as JSON lines)");
  auto* g = cmd->add_option_group("without a running mount");
  g->add_option("--endpoint", a->endpoints,
                "Hub URL (default $HF_ENDPOINT or https://huggingface.co); more than once: "
                "tried in order")
      ->delimiter(',')
      ->allow_extra_args(false);
  g->add_option("--token-file", a->token_file,
                "Hub token file (default: $HF_TOKEN, $HF_HOME/token)");
  g->add_option("--cache-size", a->cache_size, "Cache limit to enforce")->capture_default_str();
  g->add_flag("--offline", a->offline, "No network (also HF_HUB_OFFLINE=1)");
}

int RunRequest(const CommonArgs& args, const json& request, const EventFn& on_event, json* final) {
  SigintGuard guard;
  g_interrupted = 0;
  Target t;
  std::string error;
  const std::string chosen = ChosenCacheDir(args);
  const std::string cache_dir = chosen.empty() ? DefaultCacheDir() : chosen;
  if (!args.socket.empty()) {
    if (!TryConnect(args.socket, "--socket", &t, &error)) {
      std::fprintf(stderr, "modelfs: no modelfs mount answers at %s (%s)\n", args.socket.c_str(),
                   error.c_str());
      return kExitNotFound;
    }
  } else if (!args.mount.empty()) {
    const std::string socket = MountSocket(args.mount);
    if (socket.empty() && (errno == EACCES || errno == EPERM)) {
      std::fprintf(stderr,
                   "modelfs: you cannot use the mount at %s: it was mounted by another user "
                   "without --allow-other\n",
                   args.mount.c_str());
      return kExitNoAccess;
    }
    if (socket.empty()) {
      std::fprintf(stderr,
                   "modelfs: %s is not a running modelfs mount (its root names no control "
                   "socket); mount one with: modelfs mount %s\n",
                   args.mount.c_str(), args.mount.c_str());
      return kExitNotFound;
    }
    if (!TryConnect(socket, "--mount " + args.mount, &t, &error)) {
      std::fprintf(stderr,
                   "modelfs: no modelfs mount answers at %s: its control socket %s cannot be "
                   "reached (%s)\n",
                   args.mount.c_str(), socket.c_str(), error.c_str());
      return kExitNotFound;
    }
  } else if (!chosen.empty()) {
    TryConnect(chosen + "/control.sock", "the mount of cache " + chosen, &t);
  } else {
    FindMachineMount(cache_dir, &t);
  }
  if (t.fd.valid()) {
    // One line naming the mount, on stderr so that --json output stays JSON.
    std::fprintf(stderr, "modelfs: using the mount at %s (%s)\n", t.socket.c_str(), t.how.c_str());
    return RunRemote(std::move(t.fd), request, on_event, final);
  }
  if (!t.missing.empty()) {
    std::fprintf(stderr,
                 "modelfs: no modelfs mount is running: nothing answers at %s; start it with "
                 "`systemctl start modelfs` (or `modelfs mount MOUNTPOINT`). Using the cache %s "
                 "directly\n",
                 t.missing.c_str(), cache_dir.c_str());
  } else {
    std::fprintf(stderr,
                 "modelfs: no modelfs mount is running; using the cache %s directly (to share "
                 "it with a mount, run `modelfs mount MOUNTPOINT`)\n",
                 cache_dir.c_str());
  }
  return RunDirect(args, request, on_event, final);
}

int ExitCodeFor(const json& final) {
  if (final.value("ok", false)) return kExitOk;
  const Code code = CodeFromName(final.value("code", ""));
  if (IsNotFound(code)) return kExitNotFound;
  if (IsNoAccess(code)) return kExitNoAccess;
  if (IsUpstream(code) || code == Code::kIo || code == Code::kCorrupt) return kExitNetwork;
  if (code == Code::kNoSpace) return kExitNoSpace;
  if (code == Code::kInvalid) return kExitUsage;
  if (code == Code::kCancelled) return 130;
  return kExitError;
}

}  // namespace modelfs::cli
