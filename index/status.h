// Outcome of a call into the index (SQLite, chunk files). Errors are values at this boundary.
#pragma once

#include <string>

namespace modelfs::index {

enum class Code {
  kOk,
  kNotFound,  // no such record or chunk
  kCorrupt,   // a checksum or hash did not match; the bad data has been dropped
  kNoSpace,   // the cache limit or the disk is full and nothing more can be evicted
  kIo,        // a filesystem error other than ENOSPC
  kDb,        // SQLite reported an error
  kBusy,      // another process owns this cache directory
  kInvalid,   // bad argument (e.g. a content id that is not hex)
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

}  // namespace modelfs::index
