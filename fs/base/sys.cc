#include "fs/base/sys.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace modelfs {

Status ErrnoStatus(const std::string& what, int err) {
  Code code = Code::kIo;
  if (err == ENOSPC || err == EDQUOT) code = Code::kNoSpace;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kNoAccess;
  return Status(code, what + ": " + std::system_category().message(err));
}

Status LastError(const std::string& what) {
  return ErrnoStatus(what, errno);
}

int LastErrno() {
  return errno;
}

Status PreadAll(int fd, void* buf, size_t n, off_t off, size_t* got) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd, static_cast<char*>(buf) + done, n - done, off + static_cast<off_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      *got = done;
      return LastError("read");
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  *got = done;
  return Status::Ok();
}

Status PwriteAll(int fd, const void* buf, size_t n, off_t off) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t w = off < 0 ? ::write(fd, p, n) : ::pwrite(fd, p, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return LastError("write");
    }
    p += w;
    n -= static_cast<size_t>(w);
    if (off >= 0) off += w;
  }
  return Status::Ok();
}

Status OpenFile(const std::string& path, int flags, int mode, UniqueFd* out) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return LastError("opening " + path);
  *out = UniqueFd(fd);
  return Status::Ok();
}

Status MakeDirs(const std::string& path, int mode) {
  if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) == 0 || errno == EEXIST) return Status::Ok();
  if (errno != ENOENT) return LastError("creating " + path);
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return ErrnoStatus("creating " + path, ENOENT);
  if (Status s = MakeDirs(path.substr(0, slash), mode); !s.ok()) return s;
  if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) == 0 || errno == EEXIST) return Status::Ok();
  return LastError("creating " + path);
}

void ReturnFreeMemory() {
  ::malloc_trim(0);
}

}  // namespace modelfs
