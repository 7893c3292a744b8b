// Internal to fetch/: one HTTP exchange over a pool of reused libcurl easy handles.
// libcurl itself stays inside http.cc. No redirects are followed here (the Hub client follows
// them itself so that credentials never leave the Hub's origin).
//
// Thread safety: Transport may be used from many threads at once; each perform() takes its own
// handle from the pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace modelfs::fetch::http {

using Clock = std::chrono::steady_clock;

// Initialises libcurl once per process (thread-safe, std::call_once). libcurl requires a
// process-wide init before any handle exists; it is never cleaned up, because another library
// in the process may still use libcurl at exit.
void GlobalInit();

// An absolute http(s) URL split into what the client needs.
struct Url {
  std::string url;     // normalised full URL
  std::string scheme;  // "http" or "https", lowercase
  std::string host;    // lowercase
  int port = 0;        // explicit or scheme default
  std::string origin() const { return scheme + "://" + host + ":" + std::to_string(port); }
};

// Parses an absolute http/https URL; nullopt for anything else.
std::optional<Url> ParseUrl(std::string_view url);
// Resolves ref (absolute or relative) against base; nullopt unless the result is http/https.
std::optional<Url> ResolveUrl(std::string_view base, std::string_view ref);

// Response headers with lowercased names. Sizes are capped: long values are cut, and headers
// past the count/total limits are dropped.
class Headers {
 public:
  // False (and nothing added) past the limits on count and total size: the caller fails the
  // response rather than act on a partial set.
  bool add(std::string_view name, std::string_view value);
  void clear() {
    items_.clear();
    total_ = 0;
  }
  // Last value of a header (names are compared lowercase); nullptr when absent.
  const std::string* get(std::string_view lower_name) const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
  size_t total_ = 0;
};

struct Response {
  int status = 0;
  Headers headers;
  std::string body;  // only when the body was buffered (BodyMode::kBuffer)
};

enum class BodyMode { kBuffer, kStream, kAbort };

struct Request {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  Clock::time_point deadline;        // the attempt ends by then (kDeadline)
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds stall_timeout{20'000};
  std::string ca_bundle;
  std::string user_agent;
  bool accept_compressed = false;  // let curl negotiate and decode gzip/deflate (not for ranges)
  size_t max_buffered_body = 64 << 20;
  // Called once the final response's status and headers are in. Decides what to do with the
  // body: buffer it (capped), stream it to on_body, or abort the transfer. Default: buffer.
  std::function<BodyMode(const Response&)> on_headers;
  // Streamed body bytes; return false to abort the transfer.
  std::function<bool(const char* data, size_t n)> on_body;
};

enum class Failure {
  kNone,
  kConnect,    // could not resolve or connect (includes the connect timeout)
  kNetwork,    // the connection broke, a body was cut short, TLS/HTTP framing error
  kStall,      // no bytes for stall_timeout
  kDeadline,   // the request's deadline passed
  kAborted,    // on_headers said kAbort or on_body returned false
  kTooLarge,   // the buffered body exceeded max_buffered_body
  kPermanent,  // retrying will not help: bad URL, unsupported protocol, certificate failure
};

struct Result {
  Failure failure = Failure::kNone;
  std::string error;  // human-readable cause when failure != kNone
};

class Transport {
 public:
  explicit Transport(size_t max_idle_handles);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // One HTTP GET; no redirect is followed. Fills *response (status, headers, buffered body).
  Result perform(const Request& request, Response* response);

 private:
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace modelfs::fetch::http
