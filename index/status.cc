#include "index/status.h"

namespace modelfs::index {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not found";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kNoSpace:
      return "no space";
    case Code::kIo:
      return "i/o error";
    case Code::kDb:
      return "database error";
    case Code::kBusy:
      return "busy";
    case Code::kInvalid:
      return "invalid argument";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (message_.empty()) return CodeName(code_);
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace modelfs::index
