// Stream sockets for the local control plane (Unix socket) and metrics (loopback TCP), as
// Status values. Every call that can wait is bounded by the timeout it is given.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fs/base/status.h"
#include "fs/base/unique_fd.h"

namespace modelfs {

// Binds a Unix stream socket at path (replacing a stale socket file), sets its mode and
// listens.
Status ListenUnix(const std::string& path, int mode, UniqueFd* out);
// Binds "IPv4:PORT" (port 0 picks one) and listens; *port gets the port bound.
Status ListenTcp(const std::string& host_port, UniqueFd* out, int* port);
// Waits for a connection. kCancelled once the listening socket was shut down.
Status Accept(int listen_fd, UniqueFd* out);
Status ConnectUnix(const std::string& path, UniqueFd* out);

// Sends all bytes (no SIGPIPE).
Status SendAll(int fd, std::string_view data);
// Receives what is there, waiting at most timeout_ms (negative: for ever) for the first byte.
// *got 0 with Ok means the peer closed; kTimeout when nothing came in time.
Status RecvSome(int fd, char* buf, size_t n, int timeout_ms, size_t* got);
// True if the peer has hung up (does not consume data).
bool PeerGone(int fd);
// The connecting process's user id (SO_PEERCRED); false if unknown.
bool PeerUid(int fd, uint32_t* uid);

}  // namespace modelfs
