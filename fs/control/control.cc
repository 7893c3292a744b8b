#include "fs/control/control.h"

#include <grp.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "fs/base/socket.h"
#include "fs/control/wire.h"

namespace modelfs::fs {
namespace {

using nlohmann::json;

constexpr size_t kMaxRequest = 64 * 1024;
constexpr int kRequestTimeoutMs = 10'000;  // a client must send its request promptly

bool InGroup(uint32_t uid, const std::string& name) {
  if (name.empty()) return false;
  struct group* g = getgrnam(name.c_str());
  passwd* pw = getpwuid(uid);
  if (!g || !pw) return false;
  if (pw->pw_gid == g->gr_gid) return true;
  for (char** m = g->gr_mem; m && *m; ++m) {
    if (std::strcmp(*m, pw->pw_name) == 0) return true;
  }
  return false;
}

std::string Line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace

bool IsAdminOp(const std::string& op) {
  return op == "pin" || op == "unpin" || op == "gc" || op == "rm" || op == "verify";
}

std::string Dispatch(Service& service, Jobs* jobs, std::string_view request_line,
                     const Caller& caller, const std::function<bool(const std::string&)>& emit) {
  const json request = json::parse(request_line, nullptr, false);
  if (!request.is_object()) {
    return Line({{"done", true},
                 {"ok", false},
                 {"code", CodeName(Code::kInvalid)},
                 {"error", "malformed request"},
                 {"result", json::object()}});
  }
  if (auto op = request.find("op"); op != request.end() && op->is_string()) {
    spdlog::info("control: uid {} asks {}", caller.uid, op->get<std::string>());
  }
  return Line(
      wire::Run(service, jobs, request, caller, [&](const json& e) { return emit(Line(e)); }));
}

ControlServer::ControlServer(Service& service, Jobs* jobs, std::string socket_path,
                             ControlPolicy policy)
    : service_(service), jobs_(jobs), path_(std::move(socket_path)), policy_(std::move(policy)) {}

ControlServer::~ControlServer() {
  stopping_ = true;
  if (listen_fd_.valid()) ::shutdown(listen_fd_.get(), SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<Worker> workers;
  {
    MutexLock lock(mu_);
    for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.thread.join();  // outside mu_: serve() takes it to finish
  if (listen_fd_.valid()) {
    listen_fd_.reset();
    ::unlink(path_.c_str());
  }
}

Status ControlServer::start() {
  // The cache lock already guarantees that no other owner is alive, so a socket file left at
  // path_ is stale.
  if (Status s = ListenUnix(path_, 0666, &listen_fd_); !s.ok()) return s;
  acceptor_ = std::thread([this] { accept_loop(); });
  spdlog::info("control socket {}", path_);
  return Status::Ok();
}

void ControlServer::accept_loop() {
  while (!stopping_) {
    UniqueFd conn;
    if (!Accept(listen_fd_.get(), &conn).ok()) return;  // shut down
    MutexLock lock(mu_);
    if (stopping_) return;
    const int fd = conn.get();
    clients_.push_back(fd);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (*it->done) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers_.push_back({std::thread([this, c = std::make_shared<UniqueFd>(std::move(conn)), done] {
                          serve(c->get());
                          {
                            MutexLock l(mu_);
                            clients_.erase(std::remove(clients_.begin(), clients_.end(), c->get()),
                                           clients_.end());
                          }
                          c->reset();
                          *done = true;
                        }),
                        done});
  }
}

Caller ControlServer::identify(int fd) const {
  Caller c;
  if (!PeerUid(fd, &c.uid)) return c;  // nobody
  c.admin = c.uid == 0 || c.uid == policy_.owner_uid || InGroup(c.uid, policy_.admin_group);
  c.can_read = c.admin || policy_.allow_other;
  return c;
}

void ControlServer::serve(int fd) {
  std::string line;
  char buf[4096];
  while (line.find('\n') == std::string::npos && line.size() < kMaxRequest) {
    size_t n = 0;
    if (!RecvSome(fd, buf, sizeof buf, kRequestTimeoutMs, &n).ok() || n == 0) break;
    line.append(buf, n);
  }
  const Caller caller = identify(fd);
  const std::string reply =
      Dispatch(service_, jobs_, std::string_view(line).substr(0, line.find('\n')), caller,
               [&](const std::string& event) {
                 return !stopping_ && !PeerGone(fd) && SendAll(fd, event).ok();
               });
  (void)SendAll(fd, reply);
}

}  // namespace modelfs::fs
