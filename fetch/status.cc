#include "fetch/status.h"

namespace modelfs::fetch {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "Ok";
    case Code::kRepoNotFound:
      return "RepoNotFound";
    case Code::kRevisionNotFound:
      return "RevisionNotFound";
    case Code::kEntryNotFound:
      return "EntryNotFound";
    case Code::kNoAccess:
      return "NoAccess";
    case Code::kGated:
      return "Gated";
    case Code::kRateLimited:
      return "RateLimited";
    case Code::kNetwork:
      return "Network";
    case Code::kTimeout:
      return "Timeout";
    case Code::kProtocol:
      return "Protocol";
    case Code::kOffline:
      return "Offline";
    case Code::kCancelled:
      return "Cancelled";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  std::string s = CodeName(code_);
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  if (http_status_ != 0) {
    s += " (HTTP ";
    s += std::to_string(http_status_);
    s += ")";
  }
  return s;
}

}  // namespace modelfs::fetch
