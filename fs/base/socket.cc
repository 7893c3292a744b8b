#include "fs/base/socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "fs/base/sys.h"

namespace modelfs {

Status ListenUnix(const std::string& path, int mode, UniqueFd* out) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    return {Code::kInvalid, "socket path too long: " + path};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return LastError("socket");
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0 || ::listen(fd.get(), 64) != 0) {
    return LastError("cannot listen on " + path);
  }
  *out = std::move(fd);
  return Status::Ok();
}

Status ListenTcp(const std::string& host_port, UniqueFd* out, int* port) {
  const size_t colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  const int p = colon == std::string::npos ? -1 : std::atoi(host_port.c_str() + colon + 1);
  if (p < 0 || p > 65535 ||
      inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return {Code::kInvalid,
            "address must be IPv4:PORT, e.g. 127.0.0.1:9464, not '" + host_port + "'"};
  }
  addr.sin_port = htons(static_cast<uint16_t>(p));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return LastError("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 16) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return LastError("cannot listen on " + host_port);
  }
  *port = ntohs(addr.sin_port);
  *out = std::move(fd);
  return Status::Ok();
}

Status Accept(int listen_fd, UniqueFd* out) {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      *out = UniqueFd(fd);
      return Status::Ok();
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    return {Code::kCancelled, "listening socket closed"};
  }
}

Status ConnectUnix(const std::string& path, UniqueFd* out) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return {Code::kInvalid, "bad socket path '" + path + "'"};
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return LastError("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return LastError("connecting to " + path);
  }
  *out = std::move(fd);
  return Status::Ok();
}

Status SendAll(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return LastError("send");
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status RecvSome(int fd, char* buf, size_t n, int timeout_ms, size_t* got) {
  *got = 0;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return LastError("poll");
    if (r == 0) return {Code::kTimeout, "no data"};
    const ssize_t k = ::recv(fd, buf, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return LastError("recv");
    *got = static_cast<size_t>(k);
    return Status::Ok();
  }
}

bool PeerGone(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR)) return true;
  char c;
  return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

bool PeerUid(int fd, uint32_t* uid) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  *uid = cred.uid;
  return true;
}

}  // namespace modelfs
