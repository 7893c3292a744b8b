// Outcome of a filesystem-core call, in filesystem terms. Only the FUSE adapter turns these
// into errno values.
#pragma once

#include <string>

namespace modelfs::fs {

enum class Code {
  kOk,
  kNotFound,     // no such repo, revision or path (ENOENT)
  kNoAccess,     // private or gated without a usable token (EACCES)
  kNotDir,       // a path component is a file (ENOTDIR)
  kIsDir,        // file operation on a directory (EISDIR)
  kReadOnly,     // write attempted (EROFS)
  kIo,           // network failure, timeout, corrupt data that could not be refetched (EIO)
  kNoSpace,      // the cache cannot hold the data (ENOSPC to a reader is wrong; adapter: EIO)
  kInvalid,      // malformed request (EINVAL)
  kNoData,       // no such extended attribute (ENODATA)
  kCancelled,    // the caller stopped the operation (EINTR)
};

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

const char* CodeName(Code code);

}  // namespace modelfs::fs
