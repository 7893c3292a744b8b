#include "fs/status.h"

namespace modelfs::fs {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not found";
    case Code::kNoAccess: return "no access";
    case Code::kNotDir: return "not a directory";
    case Code::kIsDir: return "is a directory";
    case Code::kReadOnly: return "read-only";
    case Code::kIo: return "I/O error";
    case Code::kNoSpace: return "no space";
    case Code::kInvalid: return "invalid";
    case Code::kNoData: return "no data";
    case Code::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return message_.empty() ? CodeName(code_) : std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace modelfs::fs
