// How a CLI command reaches the cache: through a running mount's control socket when one
// answers, else directly on the cache directory (taking its lock, so two owners never write
// one cache at once). With no --socket, --mount or cache dir the machine's mount is looked for
// first: the control_socket (or mountpoint) of SystemConfigPath(), then RunDir()/control.sock,
// then the user's own cache. The choice is named in one line on stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace modelfs::cli {

struct CommonArgs {
  std::string cache_dir;  // default $MODELFS_CACHE_DIR or ~/.cache/modelfs
  std::string socket;     // explicit control socket
  std::string mount;      // a mount point: its root names the socket (user.modelfs.control_socket)
  std::vector<std::string> endpoints;  // for direct mode, in order
  std::string token_file;              // for direct mode
  std::string cache_size = "50G";      // for direct mode: the limit to enforce
  bool offline = false;
  bool json = false;
};
void AddCommonOptions(CLI::App* cmd, CommonArgs* args);

using EventFn = std::function<void(const nlohmann::json& event)>;

// Sends the request and streams events to on_event; fills *final (the last line). Returns an
// exit code for failures of the transport itself, or -1 when *final holds the answer.
int RunRequest(const CommonArgs& args, const nlohmann::json& request, const EventFn& on_event,
               nlohmann::json* final);

// Exit code for a final answer (settings.h).
int ExitCodeFor(const nlohmann::json& final);

// Set by SIGINT while a request runs (a signal handler can only set a flag).
bool Interrupted();

}  // namespace modelfs::cli
