#include "cli/client.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

#include "cli/settings.h"
#include "cli/size.h"
#include "fetch/hub_client.h"
#include "fs/control.h"
#include "fs/core.h"
#include "fs/service.h"
#include "index/cache.h"

namespace modelfs::cli {
namespace {

using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;  // the one global: written by the SIGINT handler

void OnSigint(int) { g_interrupted = 1; }

struct SigintGuard {
  struct sigaction old{};
  SigintGuard() {
    struct sigaction sa{};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
  }
  ~SigintGuard() { sigaction(SIGINT, &old, nullptr); }
};

std::string SocketPath(const CommonArgs& a) {
  if (!a.socket.empty()) return a.socket;
  if (!a.mount.empty()) {
    char buf[4096];
    ssize_t n = getxattr(a.mount.c_str(), "user.modelfs.control_socket", buf, sizeof buf);
    if (n > 0) return std::string(buf, static_cast<size_t>(n));
    return "";
  }
  return (a.cache_dir.empty() ? DefaultCacheDir() : a.cache_dir) + "/control.sock";
}

int Connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return -1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int RunRemote(int fd, const json& request, const EventFn& on_event, json* final) {
  std::string line = request.dump() + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    ::close(fd);
    std::fprintf(stderr, "modelfs: the mount's control socket did not take the request\n");
    return kExitError;
  }
  std::string buf;
  char chunk[65536];
  for (;;) {
    if (g_interrupted) {
      ::close(fd);  // the mount cancels the request when the connection closes
      return 130;
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      json msg = json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (msg.is_object() && msg.value("done", false)) {
        *final = msg;
        ::close(fd);
        return -1;
      }
      if (msg.is_object()) on_event(msg);
    }
  }
  ::close(fd);
  std::fprintf(stderr, "modelfs: the mount closed the connection without an answer\n");
  return kExitError;
}

int RunDirect(const CommonArgs& a, const json& request, const EventFn& on_event, json* final) {
  std::string dir = a.cache_dir.empty() ? DefaultCacheDir() : a.cache_dir;
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
  index::CacheOptions copts;
  copts.dir = dir;
  copts.capacity_bytes = *capacity;
  std::unique_ptr<index::Cache> cache;
  if (index::Status s = index::Cache::Open(copts, &cache); !s.ok()) {
    if (s.code() == index::Code::kBusy) {
      std::fprintf(stderr,
                   "modelfs: cache %s is owned by a running mount, but its control socket does not "
                   "answer; pass --socket or --mount, or check the mount's log\n",
                   dir.c_str());
    } else {
      std::fprintf(stderr, "modelfs: cannot open cache %s: %s\n", dir.c_str(), s.ToString().c_str());
    }
    return s.code() == index::Code::kNoSpace ? kExitNoSpace : kExitError;
  }
  fetch::HubOptions hopts;
  hopts.endpoint = a.endpoint.empty() ? DefaultEndpoint() : a.endpoint;
  hopts.token = token.value;
  hopts.offline = a.offline || EnvOffline();
  fetch::HubClient hub(hopts);
  fs::CoreOptions core_opts;
  core_opts.offline = hopts.offline;
  fs::Core core(core_opts, *cache, hub);
  fs::Service service(core);
  // Without a mount the caller acts on a cache it can open: the OS already decided.
  fs::Caller caller{static_cast<uint32_t>(getuid()), true, true};
  *final = fs::Dispatch(service, request, caller, [&](const json& e) {
    on_event(e);
    return !g_interrupted;
  });
  return -1;
}

}  // namespace

bool Interrupted() { return g_interrupted != 0; }

void AddCommonOptions(CLI::App* cmd, CommonArgs* a) {
  cmd->add_option("--cache-dir", a->cache_dir,
                  "Cache directory (default $MODELFS_CACHE_DIR or ~/.cache/modelfs)");
  cmd->add_option("--mount", a->mount, "Talk to the modelfs mounted here");
  cmd->add_option("--socket", a->socket, "Control socket of a running mount");
  cmd->add_flag("--json", a->json, "Machine-readable output (JSON; events as JSON lines)");
  auto* g = cmd->add_option_group("without a running mount");
  g->add_option("--endpoint", a->endpoint, "Hub URL (default $HF_ENDPOINT or https://huggingface.co)");
  g->add_option("--token-file", a->token_file, "Hub token file (default: $HF_TOKEN, $HF_HOME/token)");
  g->add_option("--cache-size", a->cache_size, "Cache limit to enforce")->capture_default_str();
  g->add_flag("--offline", a->offline, "No network (also HF_HUB_OFFLINE=1)");
}

int RunRequest(const CommonArgs& args, const json& request, const EventFn& on_event, json* final) {
  SigintGuard guard;
  g_interrupted = 0;
  int fd = Connect(SocketPath(args));
  if (fd >= 0) return RunRemote(fd, request, on_event, final);
  if (!args.socket.empty() || !args.mount.empty()) {
    std::fprintf(stderr, "modelfs: no modelfs mount answers at %s\n",
                 (args.socket.empty() ? args.mount : args.socket).c_str());
    return kExitNotFound;
  }
  return RunDirect(args, request, on_event, final);
}

int ExitCodeFor(const json& final) {
  if (final.value("ok", false)) return kExitOk;
  std::string code = final.value("code", "");
  if (code == fs::CodeName(fs::Code::kNotFound)) return kExitNotFound;
  if (code == fs::CodeName(fs::Code::kNoAccess)) return kExitNoAccess;
  if (code == fs::CodeName(fs::Code::kIo)) return kExitNetwork;
  if (code == fs::CodeName(fs::Code::kNoSpace)) return kExitNoSpace;
  if (code == fs::CodeName(fs::Code::kInvalid)) return kExitUsage;
  if (code == fs::CodeName(fs::Code::kCancelled)) return 130;
  return kExitError;
}

}  // namespace modelfs::cli
