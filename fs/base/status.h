// The outcome of a call across a module boundary, for every module: errors are values, never
// exceptions or errno. Codes say what went wrong in the caller's terms; the FUSE adapter is the
// only place that turns them into errno values (fs/fuse/adapter.cc), the CLI the only place
// that turns them into exit codes (cli/client.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace modelfs {

enum class Code : uint8_t {
  kOk,
  // Not found (ENOENT).
  kNotFound,          // no such path, record or chunk
  kRepoNotFound,      // 404 RepoNotFound, or an anonymous 401 (the Hub hides private repos)
  kRevisionNotFound,  // 404 RevisionNotFound
  kEntryNotFound,     // 404 EntryNotFound
  // No access (EACCES).
  kNoAccess,  // private without a usable token, refused by policy, or not allowed to do this
  kGated,     // 401/403 GatedRepo: no token, or the token is not approved
  // Filesystem shapes.
  kNotDir,        // a path component is a file (ENOTDIR)
  kIsDir,         // file operation on a directory (EISDIR)
  kReadOnly,      // write attempted (EROFS)
  kNoData,        // no such extended attribute (ENODATA)
  kNotSupported,  // an extended-attribute namespace this file system does not have (EOPNOTSUPP)
  kInvalid,       // malformed request or argument (EINVAL)
  // Local failures.
  kIo,       // a local file system error, or data that could not be served (EIO)
  kCorrupt,  // a checksum or hash did not match; the bad data has been dropped
  kNoSpace,  // the cache limit or the disk is full and nothing more can be evicted
  kBusy,     // another process owns the cache directory
  kDb,       // SQLite reported an error
  // Upstream failures (EIO).
  kNetwork,      // connect/DNS failure, dropped connection, 5xx after the bounded retries
  kTimeout,      // stall, or the call's deadline passed
  kProtocol,     // an answer that breaks the Hub's contract (bad JSON, wrong range, ...)
  kRateLimited,  // 429 still refused after the bounded retries
  kOffline,      // offline mode: no network call was made
  kCancelled,    // the caller stopped the operation
};

// Families of codes, for callers that only care about the kind of failure.
bool IsNotFound(Code code);
bool IsNoAccess(Code code);
bool IsUpstream(Code code);  // network, timeout, protocol, rate limited, offline

// Lowercase words, stable: the control protocol sends them ("not found", "no access", ...).
const char* CodeName(Code code);
// The inverse of CodeName; kIo for a name it does not know.
Code CodeFromName(std::string_view name);

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message, int http_status = 0)
      : code_(code), http_status_(http_status), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool not_found() const { return IsNotFound(code_); }
  bool no_access() const { return IsNoAccess(code_); }
  int http_status() const { return http_status_; }  // 0 unless an HTTP answer caused it
  const std::string& message() const { return message_; }
  // "<code name>: <message> (HTTP n)", for logs and error lines.
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  int http_status_ = 0;
  std::string message_;
};

}  // namespace modelfs
