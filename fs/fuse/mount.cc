#include "fs/fuse/mount.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace modelfs::fs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string DecodeOctalEscapes(const std::string& s) {
  std::string out;
  auto octal = [&](size_t k) { return s[k] >= '0' && s[k] <= '7'; };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string MountDevice(std::string_view mountinfo, const std::string& mountpoint) {
  std::istringstream in{std::string(mountinfo)};
  std::string line, dev;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, majmin, root, point;
    if (!(fields >> id >> parent >> majmin >> root >> point)) continue;
    if (DecodeOctalEscapes(point) == mountpoint) dev = majmin;  // the last one is on top
  }
  return dev;
}

void RaiseKernelReadahead(const std::string& real_mountpoint, unsigned want_kb) {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  const std::string dev = MountDevice(text.str(), real_mountpoint);
  if (dev.empty()) {
    spdlog::debug("{} not found in /proc/self/mountinfo; kernel readahead left alone",
                  real_mountpoint);
    return;
  }
  const std::string path = "/sys/class/bdi/" + dev + "/read_ahead_kb";
  unsigned current = 0;
  if (std::ifstream cur(path); !(cur >> current) || current >= want_kb) return;
  const std::string value = std::to_string(want_kb) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::write(fd, value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    spdlog::info(
        "kernel readahead for the mount stays at {} KiB ({}: {}); reads arrive in smaller "
        "pieces (raising it needs root)",
        current, path, std::strerror(errno));
  } else {
    spdlog::debug("kernel readahead for the mount raised from {} to {} KiB", current, want_kb);
  }
  if (fd >= 0) ::close(fd);
}

Status Unmount(const std::string& mountpoint) {
  pid_t pid = fork();
  if (pid < 0) return {Code::kIo, std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", mountpoint.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return {Code::kIo, "fusermount3 not found (install the fuse3 package)"};
  }
  return {Code::kIo, "fusermount3 -u " + mountpoint + " failed"};
}

}  // namespace modelfs::fs
