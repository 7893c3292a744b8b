// The control plane: requests to a Service as JSON lines over a Unix socket (the protocol is
// described in wire.h). Closing the connection cancels a running prefetch or verify.
//
// Who may do what is decided from the peer's credentials (SO_PEERCRED), never from anything
// the client sends: ls, stats, info: anyone; prefetch: anyone who can read the mount; pin,
// unpin, gc, rm, verify: root, the mount's owner, or members of the admin group.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/base/unique_fd.h"
#include "fs/control/jobs.h"
#include "fs/control/service.h"

namespace modelfs::fs {

struct Caller {
  uint32_t uid = 0;
  bool admin = false;     // may pin, unpin, gc, rm, verify
  bool can_read = false;  // may prefetch
};

bool IsAdminOp(const std::string& op);

// Runs one request line; each event line goes to emit (which returns false to cancel); returns
// the final line. The server uses it, and the CLI without a mount.
std::string Dispatch(Service& service, Jobs* jobs, std::string_view request_line,
                     const Caller& caller,
                     const std::function<bool(const std::string& event_line)>& emit);

struct ControlPolicy {
  uint32_t owner_uid = 0;    // the mount's owner: always admin
  std::string admin_group;   // members are admins; empty: none
  bool allow_other = false;  // other users can read the mount, so they may prefetch
};

class ControlServer {
 public:
  // jobs may be null (no download jobs).
  ControlServer(Service& service, Jobs* jobs, std::string socket_path, ControlPolicy policy);
  ~ControlServer();  // stops accepting, cancels running requests, joins
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds (replacing a stale socket file), makes it connectable by everyone (0666: access is
  // checked per request) and starts accepting.
  Status start();
  const std::string& path() const { return path_; }

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void accept_loop();
  void serve(int fd);
  Caller identify(int fd) const;

  Service& service_;
  Jobs* const jobs_;
  const std::string path_;
  const ControlPolicy policy_;
  UniqueFd listen_fd_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  Mutex mu_;
  std::vector<int> clients_ GUARDED_BY(mu_);
  std::vector<Worker> workers_ GUARDED_BY(mu_);  // finished ones are joined on the next accept
};

}  // namespace modelfs::fs
