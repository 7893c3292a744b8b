#include "fs/base/status.h"

#include <array>

namespace modelfs {
namespace {

constexpr std::array<std::pair<Code, const char*>, 24> kNames = {{
    {Code::kOk, "ok"},
    {Code::kNotFound, "not found"},
    {Code::kRepoNotFound, "repo not found"},
    {Code::kRevisionNotFound, "revision not found"},
    {Code::kEntryNotFound, "entry not found"},
    {Code::kNoAccess, "no access"},
    {Code::kGated, "gated"},
    {Code::kNotDir, "not a directory"},
    {Code::kIsDir, "is a directory"},
    {Code::kReadOnly, "read-only"},
    {Code::kNoData, "no data"},
    {Code::kNotSupported, "not supported"},
    {Code::kInvalid, "invalid"},
    {Code::kIo, "I/O error"},
    {Code::kCorrupt, "corrupt"},
    {Code::kNoSpace, "no space"},
    {Code::kBusy, "busy"},
    {Code::kDb, "database error"},
    {Code::kNetwork, "network error"},
    {Code::kTimeout, "timeout"},
    {Code::kProtocol, "protocol error"},
    {Code::kRateLimited, "rate limited"},
    {Code::kOffline, "offline"},
    {Code::kCancelled, "cancelled"},
}};

}  // namespace

bool IsNotFound(Code code) {
  return code == Code::kNotFound || code == Code::kRepoNotFound ||
         code == Code::kRevisionNotFound || code == Code::kEntryNotFound;
}

bool IsNoAccess(Code code) {
  return code == Code::kNoAccess || code == Code::kGated;
}

bool IsUpstream(Code code) {
  return code == Code::kNetwork || code == Code::kTimeout || code == Code::kProtocol ||
         code == Code::kRateLimited || code == Code::kOffline;
}

const char* CodeName(Code code) {
  for (const auto& [c, name] : kNames) {
    if (c == code) return name;
  }
  return "unknown";
}

Code CodeFromName(std::string_view name) {
  for (const auto& [c, n] : kNames) {
    if (name == n) return c;
  }
  return Code::kIo;
}

std::string Status::to_string() const {
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

}  // namespace modelfs
