// The control plane: requests to a Service as JSON lines over a Unix socket.
//
// Wire format: the client sends one line {"op": "...", "args": {...}}. The server answers with
// zero or more event lines ({"event": ...}) and one final line
// {"done": true, "ok": bool, "code": "<fs::Code name>", "error": "...", "result": {...}}.
// Closing the connection cancels a running prefetch or verify.
//
// Who may do what is decided from the peer's credentials (SO_PEERCRED), never from anything
// the client sends: ls, stats, info: anyone; prefetch: anyone who can read the mount; pin,
// unpin, gc, rm, verify: root, the mount's owner, or members of the admin group.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fs/service.h"
#include "fs/status.h"

namespace modelfs::fs {

struct Caller {
  uint32_t uid = 0;
  bool admin = false;     // may pin, unpin, gc, rm, verify
  bool can_read = false;  // may prefetch
};

// Runs one request; returns the final line. Used by the server and by the CLI without a mount.
nlohmann::json Dispatch(Service& service, const nlohmann::json& request, const Caller& caller,
                        const Emit& emit);
bool IsAdminOp(const std::string& op);

struct ControlPolicy {
  uint32_t owner_uid = 0;   // the mount's owner: always admin
  std::string admin_group;  // members are admins; empty: none
  bool allow_other = false; // other users can read the mount, so they may prefetch
};

class ControlServer {
 public:
  ControlServer(Service& service, std::string socket_path, ControlPolicy policy);
  ~ControlServer();  // stops accepting, cancels running requests, joins
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds (replacing a stale socket file), makes it connectable by everyone (0666: access is
  // checked per request) and starts accepting.
  Status start();
  const std::string& path() const { return path_; }

 private:
  void accept_loop();
  void serve(int fd);
  Caller identify(int fd) const;

  Service& service_;
  std::string path_;
  ControlPolicy policy_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> clients_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;  // finished ones are joined on the next accept
};

}  // namespace modelfs::fs
