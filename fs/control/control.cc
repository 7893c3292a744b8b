#include "fs/control.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "index/cache.h"

namespace modelfs::fs {
namespace {

using nlohmann::json;

constexpr size_t kMaxRequest = 64 * 1024;

std::vector<std::string> Strings(const json& args, const char* key) {
  std::vector<std::string> out;
  if (args.contains(key) && args[key].is_array()) {
    for (const auto& v : args[key]) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// True if the peer has hung up (a closed connection cancels the request).
bool PeerGone(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR)) return true;
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

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

}  // namespace

bool IsAdminOp(const std::string& op) {
  return op == "pin" || op == "unpin" || op == "gc" || op == "rm" || op == "verify";
}

namespace {

// Reads a string member; anything else (absent, a number, an object) is `fallback`. A client
// decides what types it sends, so nothing here may throw (json::value() would).
std::string StringField(const json& obj, const char* key, const std::string& fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool BoolField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

json DispatchChecked(Service& service, const json& request, const Caller& caller,
                     const Emit& emit);

}  // namespace

json Dispatch(Service& service, const json& request, const Caller& caller, const Emit& emit) {
  try {
    return DispatchChecked(service, request, caller, emit);
  } catch (const json::exception& e) {
    return {{"done", true}, {"ok", false}, {"code", CodeName(Code::kInvalid)},
            {"error", std::string("malformed request: ") + e.what()}, {"result", json::object()}};
  }
}

namespace {

json DispatchChecked(Service& service, const json& request, const Caller& caller,
                     const Emit& emit) {
  json result = json::object();
  Status st;
  std::string op = StringField(request, "op", "");
  json args = request.contains("args") && request["args"].is_object() ? request["args"] : json::object();
  auto repo_arg = [&](std::optional<RepoArg>* out, bool required) -> bool {
    std::string text = StringField(args, "repo", "");
    if (text.empty()) {
      if (required) st = {Code::kInvalid, "a repo (org/name[@revision]) is required"};
      return !required;
    }
    RepoArg r;
    if (!ParseRepoArg(text, &r)) {
      st = {Code::kInvalid, "'" + text + "' is not a repo; expected org/name or org/name@revision"};
      return false;
    }
    *out = r;
    return true;
  };
  Selection sel{Strings(args, "patterns"), Strings(args, "include"), Strings(args, "exclude")};
  std::optional<RepoArg> repo;
  if (IsAdminOp(op) && !caller.admin) {
    st = {Code::kNoAccess, "'" + op + "' needs root or membership in the modelfs admin group"};
  } else if (op == "prefetch" && !caller.can_read) {
    st = {Code::kNoAccess, "prefetch is for users who can read the mount"};
  } else if (op == "ls") {
    if (repo_arg(&repo, false)) st = service.ls(repo, &result);
  } else if (op == "info") {
    if (repo_arg(&repo, true)) st = service.info(*repo, &result);
  } else if (op == "stats") {
    st = service.stats(&result);
  } else if (op == "prefetch" || op == "pin") {
    if (repo_arg(&repo, true)) {
      unsigned jobs = args.contains("jobs") && args["jobs"].is_number_unsigned()
                          ? std::clamp(args["jobs"].get<unsigned>(), 1u, 64u)
                          : 8u;
      st = service.prefetch(*repo, sel, jobs, op == "pin", emit, &result);
    }
  } else if (op == "unpin") {
    if (repo_arg(&repo, true)) st = service.unpin(*repo, sel, &result);
  } else if (op == "gc") {
    std::optional<uint64_t> to;
    if (args.contains("to") && args["to"].is_number_unsigned()) to = args["to"].get<uint64_t>();
    st = service.gc(to, &result);
  } else if (op == "rm") {
    bool all = BoolField(args, "all");
    if (all || repo_arg(&repo, true)) {
      st = service.rm(all ? std::nullopt : repo, sel, BoolField(args, "force"), &result);
    }
  } else if (op == "verify") {
    if (repo_arg(&repo, false)) st = service.verify(repo, emit, &result);
  } else {
    st = {Code::kInvalid, "unknown request '" + op + "'"};
  }
  return {{"done", true}, {"ok", st.ok()}, {"code", CodeName(st.code())},
          {"error", st.message()}, {"result", result}};
}

}  // namespace

ControlServer::ControlServer(Service& service, std::string socket_path, ControlPolicy policy)
    : service_(service), path_(std::move(socket_path)), policy_(std::move(policy)) {}

ControlServer::~ControlServer() {
  stopping_ = true;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& w : workers_) w.thread.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
}

Status ControlServer::start() {
  sockaddr_un addr{};
  if (path_.size() >= sizeof(addr.sun_path)) return {Code::kInvalid, "socket path too long: " + path_};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return {Code::kIo, std::string("socket: ") + std::strerror(errno)};
  ::unlink(path_.c_str());  // the cache lock already guarantees no other owner is alive
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path_.c_str(), 0666) != 0 || ::listen(listen_fd_, 64) != 0) {
    return {Code::kIo, "cannot listen on " + path_ + ": " + std::strerror(errno)};
  }
  acceptor_ = std::thread([this] { accept_loop(); });
  spdlog::info("control socket {}", path_);
  return Status::Ok();
}

void ControlServer::accept_loop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    std::lock_guard lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
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
    workers_.push_back({std::thread([this, fd, done] {
                          serve(fd);
                          *done = true;
                        }),
                        done});
  }
}

Caller ControlServer::identify(int fd) const {
  Caller c;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return c;  // nobody
  c.uid = cred.uid;
  c.admin = cred.uid == 0 || cred.uid == policy_.owner_uid || InGroup(cred.uid, policy_.admin_group);
  c.can_read = c.admin || policy_.allow_other;
  return c;
}

void ControlServer::serve(int fd) {
  timeval tv{10, 0};  // a client must send its request promptly
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string line;
  char buf[4096];
  while (line.find('\n') == std::string::npos && line.size() < kMaxRequest) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  json reply;
  json request = json::parse(line.substr(0, line.find('\n')), nullptr, false);
  Caller caller = identify(fd);
  if (!request.is_object()) {
    reply = {{"done", true}, {"ok", false}, {"code", CodeName(Code::kInvalid)},
             {"error", "malformed request"}, {"result", json::object()}};
  } else {
    spdlog::info("control: uid {} asks {}", caller.uid, StringField(request, "op", "?"));
    Emit emit = [&](const json& event) {
      return !stopping_ && !PeerGone(fd) &&
             WriteAll(fd, event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
    };
    reply = Dispatch(service_, request, caller, emit);
  }
  WriteAll(fd, reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  std::lock_guard lock(mu_);
  clients_.erase(std::remove(clients_.begin(), clients_.end(), fd), clients_.end());
  ::close(fd);
}

}  // namespace modelfs::fs
