// Outcome of a call into the fetch layer. Errors are values here; errno never crosses this boundary.
#pragma once

#include <string>

namespace modelfs::fetch {

enum class Code {
  kOk,
  kRepoNotFound,      // 404 RepoNotFound, or an anonymous 401 (the Hub hides private repos)
  kRevisionNotFound,  // 404 RevisionNotFound
  kEntryNotFound,     // 404 EntryNotFound
  kNoAccess,          // 401/403 on a private repo with a token, or a token the Hub rejects
  kGated,             // 401/403 GatedRepo: no token, or the token is not approved
  kRateLimited,       // 429 still refused after the bounded retries
  kNetwork,           // connect/DNS failure, dropped connection, 5xx after the bounded retries
  kTimeout,           // stall (no bytes for stall_timeout) or the call's deadline passed
  kProtocol,          // a response that breaks the Hub's contract (bad JSON, wrong range, ...)
  kOffline,           // offline mode: no network call was made
  kCancelled,         // the sink asked to stop
};

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message, int http_status = 0)
      : code_(code), http_status_(http_status), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int http_status() const { return http_status_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message> (HTTP n)" for logs.
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  int http_status_ = 0;
  std::string message_;
};

const char* CodeName(Code code);

}  // namespace modelfs::fetch
