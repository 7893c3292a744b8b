#include "fetch/hub_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "fetch/http.h"
#include "fetch/hub_parse.h"
#include "fs/base/mutex.h"
#include "fs/base/text.h"

namespace modelfs::fetch {
namespace {

using Clock = http::Clock;
using Ms = std::chrono::milliseconds;

constexpr int kMaxRedirects = 5;
constexpr size_t kMaxTreeEntries = 1'000'000;
constexpr size_t kMaxTreePages = 100'000;
// Consecutive pages that add no new valid path (empty, all duplicates or all invalid) while
// still linking to a next page: the Hub never sends them, so a run of them is a loop with
// changing URLs, cut here instead of at the deadline.
constexpr size_t kMaxStalledPages = 3;
constexpr size_t kMaxApiBody = 64 << 20;
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxCdnEntries = 8192;

// One try of a request; retryable failures are retried by RunWithRetries.
struct Attempt {
  Status status;
  bool retryable = false;
  std::optional<Ms> retry_after;
  bool connect_failed = false;  // no connection could be made at all
};

Attempt Fail(Code code, std::string message, int http_status = 0) {
  return {Status(code, std::move(message), http_status), false, std::nullopt};
}

Attempt Retryable(Code code, std::string message, int http_status = 0) {
  return {Status(code, std::move(message), http_status), true, std::nullopt};
}

// Server-supplied text made safe for messages and logs: no control characters, bounded.
std::string Sanitize(std::string_view s, size_t max = 300) {
  std::string out;
  for (char c : s.substr(0, std::min(s.size(), max))) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  if (s.size() > max) out += "...";
  return out;
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool IsRetryableStatus(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

// X-Error-Message, else the {"error": "..."} body.
std::string ErrorDetail(const http::Response& r) {
  if (const auto* m = r.headers.get("x-error-message"); m != nullptr && !m->empty()) {
    return Sanitize(*m);
  }
  if (!r.body.empty() && r.body.size() <= kMaxErrorBody) {
    auto doc = nlohmann::json::parse(r.body, nullptr, false);
    if (doc.is_object()) {
      auto it = doc.find("error");
      if (it != doc.end() && it->is_string()) return Sanitize(it->get_ref<const std::string&>());
    }
  }
  return {};
}

std::optional<Ms> RetryAfter(const http::Response& r) {
  const auto* ra = r.headers.get("retry-after");
  const auto* rl = r.headers.get("ratelimit");
  auto secs = ParseRetryAfterSeconds(ra != nullptr ? *ra : std::string_view{},
                                     rl != nullptr ? *rl : std::string_view{});
  if (!secs) return std::nullopt;
  return Ms(int64_t{*secs} * 1000);
}

// Maps a non-2xx, non-redirect answer of the Hub (or the CDN) to a Status.
Attempt HttpError(const http::Response& r, const std::string& what, Code not_found,
                  bool have_token) {
  const int s = r.status;
  const std::string* code_hdr = r.headers.get("x-error-code");
  const std::string code = code_hdr != nullptr ? *code_hdr : std::string();
  std::string detail = ErrorDetail(r);
  auto with_detail = [&detail](std::string m) {
    if (!detail.empty()) m += " (" + detail + ")";
    return m;
  };
  if (code == "GatedRepo" && s >= 400 && s < 500) {
    return Fail(Code::kGated,
                with_detail(what + " is gated: " +
                            (have_token ? "the token has not been granted access; request it "
                                          "on the Hub"
                                        : "log in and set HF_TOKEN to a token with access")),
                s);
  }
  if (s == 404 || s == 401) {
    if (code == "RepoNotFound") return Fail(Code::kRepoNotFound, with_detail(what), s);
    if (code == "RevisionNotFound") return Fail(Code::kRevisionNotFound, with_detail(what), s);
    if (code == "EntryNotFound") return Fail(Code::kEntryNotFound, with_detail(what), s);
  }
  if (s == 404) return Fail(not_found, with_detail(what + ": not found"), s);
  if (s == 401 && !have_token) {
    return Fail(Code::kRepoNotFound,
                with_detail(what + ": the repository does not exist, or it is private and needs a "
                                   "token (set HF_TOKEN)"),
                s);
  }
  if (s == 401 || s == 403) {
    return Fail(Code::kNoAccess,
                with_detail(what + (have_token ? ": the token has no access"
                                               : ": access denied (set HF_TOKEN)")),
                s);
  }
  if (s == 429) {
    Attempt a = Retryable(Code::kRateLimited, with_detail(what + ": rate limited"), s);
    a.retry_after = RetryAfter(r);
    return a;
  }
  if (IsRetryableStatus(s)) {
    Attempt a = Retryable(Code::kNetwork, with_detail(what + ": server error"), s);
    a.retry_after = RetryAfter(r);
    return a;
  }
  if (s == 416) return Fail(Code::kProtocol, what + ": requested range not satisfiable", s);
  if (s >= 500) return Fail(Code::kNetwork, with_detail(what + ": server error"), s);
  return Fail(Code::kProtocol, with_detail(what + ": unexpected HTTP status"), s);
}

Attempt TransportError(const http::Result& r, const std::string& what) {
  const std::string msg = what + ": " + Sanitize(r.error);
  switch (r.failure) {
    case http::Failure::kNone:
      break;
    case http::Failure::kConnect: {
      Attempt a = Retryable(Code::kNetwork, msg);
      a.connect_failed = true;
      return a;
    }
    case http::Failure::kNetwork:
      return Retryable(Code::kNetwork, msg);
    case http::Failure::kStall:
      return Retryable(Code::kTimeout, msg);
    case http::Failure::kDeadline:
      return Fail(Code::kTimeout, msg);
    case http::Failure::kTooLarge:
      return Fail(Code::kProtocol, msg);
    case http::Failure::kAborted:
    case http::Failure::kPermanent:
      return Fail(Code::kNetwork, msg);
  }
  return Fail(Code::kNetwork, msg);
}

Ms Backoff(const HubOptions& o, int retry) {
  const int64_t initial = std::max<int64_t>(1, o.backoff_initial.count());
  const int64_t cap = std::max<int64_t>(initial, o.backoff_max.count());
  int64_t base = initial;
  for (int i = 1; i < retry && base < cap; ++i) base *= 2;
  base = std::min(base, cap);
  thread_local std::minstd_rand rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> dist(base / 2, base);  // "equal jitter"
  return Ms(dist(rng));
}

// The path and query of a tree page link, if it is a page of the listing at tree_path (any
// host: only the path is followed, at the endpoint in use).
std::optional<std::string> TreePageTarget(const std::string& url, const std::string& tree_path) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return std::nullopt;
  const size_t slash = url.find('/', scheme + 3);
  if (slash == std::string::npos) return std::nullopt;
  std::string target = url.substr(slash);
  const std::string path = target.substr(0, target.find('?'));
  // Behind a path prefix (http://proxy/hf) the link may carry it: compare the tail.
  if (path.size() < tree_path.size() ||
      path.compare(path.size() - tree_path.size(), tree_path.size(), tree_path) != 0) {
    return std::nullopt;
  }
  return target.substr(path.size() - tree_path.size());
}

struct CdnEntry {
  std::string url;
  std::string linked_etag;
  Clock::time_point expires;
};

std::string WithoutUserinfo(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return Sanitize(url);
  const size_t end = url.find_first_of("/?#", scheme + 3);
  const size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
  if (at == std::string::npos || at < scheme) return Sanitize(url);
  return Sanitize(url.substr(0, scheme + 3) + url.substr(at + 1));
}

// One configured endpoint and its health. Counters are atomics: calls update them concurrently.
struct Endpoint {
  explicit Endpoint(std::string b)
      : base(std::move(b)), shown(WithoutUserinfo(base)), url(http::ParseUrl(base)) {}
  std::string base;              // as configured, no trailing '/'
  std::string shown;             // for logs and stats: any user:password@ removed
  std::optional<http::Url> url;  // nullopt when it is not a valid http(s) URL
  std::atomic<int64_t> down_until_ms{0};
  std::atomic<int> strikes{0};  // failed holds in a row, for the doubling
  std::atomic<uint64_t> requests{0}, bytes{0}, errors{0}, failovers{0};
};

int64_t NowMs() {
  return std::chrono::duration_cast<Ms>(Clock::now().time_since_epoch()).count();
}

// Network trouble at this endpoint (as opposed to an answer about the request).
bool WorthFailingOver(const Attempt& a) {
  if (a.connect_failed) return true;
  if (!a.retryable) return false;
  return a.status.code() == Code::kNetwork || a.status.code() == Code::kTimeout;
}

}  // namespace

struct HubClient::Impl {
  explicit Impl(const HubOptions& o) : opt(o), transport(o.max_idle_connections), token(o.token) {
    eps.push_back(std::make_unique<Endpoint>(opt.endpoint));
    for (std::string e : opt.more_endpoints) {
      while (!e.empty() && e.back() == '/') e.pop_back();
      if (!e.empty()) eps.push_back(std::make_unique<Endpoint>(std::move(e)));
    }
  }

  const HubOptions& opt;
  std::vector<std::unique_ptr<Endpoint>> eps;  // fixed after construction
  http::Transport transport;

  mutable Mutex token_mu;
  std::string token GUARDED_BY(token_mu);  // starts as opt.token, changed by set_token

  std::string current_token() const {
    MutexLock lock(token_mu);
    return token;
  }

  Mutex cdn_mu;
  std::unordered_map<std::string, CdnEntry> cdn GUARDED_BY(cdn_mu);

  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> retries{0};
  // After a call has spent its retries failing to connect, later calls fail at once for a
  // short while instead of each paying the whole backoff: offline reads must fail fast.
  static constexpr Ms kUnreachableHold{3000};
  std::atomic<int64_t> unreachable_until_ms{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> redirects{0};
  std::atomic<uint64_t> failovers{0};

  static bool same_origin(const Endpoint& ep, const http::Url& u) {
    return ep.url && u.origin() == ep.url->origin();
  }

  // The first endpoint not held down; when all are, the one whose hold ends first.
  size_t pick() const {
    const int64_t now = NowMs();
    size_t best = 0;
    int64_t best_until = INT64_MAX;
    for (size_t i = 0; i < eps.size(); ++i) {
      const int64_t until = eps[i]->down_until_ms.load(std::memory_order_relaxed);
      if (until <= now) return i;
      if (until < best_until) {
        best_until = until;
        best = i;
      }
    }
    return best;
  }

  // Holds ep down after a failed attempt; only the first failure of an outage (or of a retry
  // after the hold) counts, so many readers failing at once do not stretch the hold.
  void hold_down(size_t i, const Status& why) {
    Endpoint& ep = *eps[i];
    const int64_t now = NowMs();
    int64_t until = ep.down_until_ms.load(std::memory_order_relaxed);
    if (until > now) return;
    const int strikes = std::min(ep.strikes.fetch_add(1, std::memory_order_relaxed), 16);
    int64_t hold = std::max<int64_t>(1, opt.failover_hold.count());
    for (int k = 0; k < strikes && hold < opt.failover_hold_max.count(); ++k) hold *= 2;
    hold = std::min<int64_t>(hold, std::max(opt.failover_hold_max.count(), int64_t{1}));
    if (ep.down_until_ms.compare_exchange_strong(until, now + hold, std::memory_order_relaxed)) {
      spdlog::warn("modelfs fetch: endpoint {} failed ({}); using the next one for {} s", ep.shown,
                   why.to_string(), (hold + 999) / 1000);
    }
  }

  void mark_up(size_t i) {
    Endpoint& ep = *eps[i];
    if (ep.strikes.exchange(0, std::memory_order_relaxed) > 0) {
      ep.down_until_ms.store(0, std::memory_order_relaxed);
      if (eps.size() > 1) spdlog::info("modelfs fetch: endpoint {} answers again", ep.shown);
    }
  }

  // Whether an attempt at endpoint i has somewhere else to go if it fails.
  bool can_fail_over(size_t i) const {
    const int64_t now = NowMs();
    for (size_t j = 0; j < eps.size(); ++j) {
      if (j != i && eps[j]->url && eps[j]->down_until_ms.load(std::memory_order_relaxed) <= now)
        return true;
    }
    return false;
  }

  Status precheck() const {
    if (opt.offline) return {Code::kOffline, "offline mode: no network call made"};
    for (const auto& ep : eps) {
      if (!ep->url) {
        return {Code::kNetwork, "the Hub endpoint " + ep->shown + " is not an http(s) URL"};
      }
    }
    return Status::Ok();
  }

  Status finish(Status s) {
    if (!s.ok() && s.code() != Code::kCancelled) errors.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  void count_request(Endpoint& ep) {
    requests.fetch_add(1, std::memory_order_relaxed);
    ep.requests.fetch_add(1, std::memory_order_relaxed);
  }

  http::Request base_request(const Endpoint& ep, const http::Url& url, Clock::time_point deadline,
                             const std::string& bearer, bool failover) const {
    http::Request req;
    req.url = url.url;
    req.deadline = deadline;
    req.connect_timeout = opt.connect_timeout;
    req.stall_timeout = opt.stall_timeout;
    if (failover) {
      req.connect_timeout = std::min(req.connect_timeout, opt.failover_stall);
      req.stall_timeout = std::min(req.stall_timeout, opt.failover_stall);
    }
    req.ca_bundle = opt.ca_bundle;
    req.user_agent = opt.user_agent;
    // Credentials go to the endpoint's own origin only, never to the CDN or any other host.
    if (same_origin(ep, url) && !bearer.empty()) {
      req.headers.push_back("Authorization: Bearer " + bearer);
    }
    return req;
  }

  // attempt_fn(endpoint index, can fail over) -> Attempt. A network failure with another
  // endpoint available moves the call there at once (no backoff, not counted as a retry).
  template <class F>
  Status run_with_retries(Clock::time_point deadline, const std::string& what, F&& attempt_fn) {
    const int max_attempts = std::max(1, opt.max_attempts);
    if (NowMs() < unreachable_until_ms.load(std::memory_order_relaxed)) {
      return {Code::kNetwork, what + ": upstream unreachable (a connection failed moments ago)"};
    }
    size_t ep = pick();
    int moves = 0;
    const int max_moves = 2 * static_cast<int>(eps.size());
    for (int attempt = 1;; ++attempt) {
      const bool failover = eps.size() > 1 && can_fail_over(ep);
      Attempt a = attempt_fn(ep, failover);
      if (a.status.ok()) {
        unreachable_until_ms.store(0, std::memory_order_relaxed);
        mark_up(ep);
        return a.status;
      }
      if (WorthFailingOver(a)) eps[ep]->errors.fetch_add(1, std::memory_order_relaxed);
      if (eps.size() > 1 && WorthFailingOver(a) && Clock::now() < deadline) {
        hold_down(ep, a.status);
        const size_t next = pick();
        if (next != ep && moves < max_moves) {
          ++moves;
          --attempt;
          eps[ep]->failovers.fetch_add(1, std::memory_order_relaxed);
          failovers.fetch_add(1, std::memory_order_relaxed);
          spdlog::debug("modelfs fetch: {} failed at {} ({}), going on at {}", what, eps[ep]->shown,
                        a.status.to_string(), eps[next]->shown);
          ep = next;
          continue;
        }
      }
      // Marks the upstream unreachable when this call gives up on a failed connection.
      auto give_up = [&] {
        if (a.connect_failed) {
          unreachable_until_ms.store(NowMs() + kUnreachableHold.count(), std::memory_order_relaxed);
        }
        return a.status;
      };
      if (!a.retryable || attempt >= max_attempts) return give_up();
      const auto remaining = std::chrono::duration_cast<Ms>(deadline - Clock::now());
      Ms wait;
      if (a.retry_after) {
        if (*a.retry_after > remaining) {
          if (a.status.code() == Code::kRateLimited) {
            return {Code::kRateLimited,
                    a.status.message() + "; the server asks to wait " +
                        std::to_string(a.retry_after->count() / 1000) +
                        " s, beyond this call's deadline",
                    a.status.http_status()};
          }
          return a.status;
        }
        wait = *a.retry_after;
      } else {
        wait = Backoff(opt, attempt);
        if (wait >= remaining) return give_up();
      }
      retries.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("modelfs fetch: {} failed ({}), retry {} in {} ms", what, a.status.to_string(),
                    attempt, wait.count());
      std::this_thread::sleep_for(wait);
      ep = pick();
    }
  }

  // One GET of target (a path and query below the endpoint) at endpoint i, following
  // same-origin redirects. The body is buffered.
  Attempt api_get(size_t i, bool failover, const std::string& target, Clock::time_point deadline,
                  const std::string& what, Code not_found, http::Response* out,
                  std::string* final_url) {
    Endpoint& ep = *eps[i];
    std::string url = ep.base + target;
    const std::string bearer = current_token();
    std::set<std::string> seen;
    for (int hop = 0;; ++hop) {
      if (hop > kMaxRedirects) return Fail(Code::kProtocol, what + ": too many redirects");
      if (!seen.insert(url).second) return Fail(Code::kProtocol, what + ": redirect loop");
      auto u = http::ParseUrl(url);
      if (!u || !same_origin(ep, *u)) {
        return Fail(Code::kProtocol, what + ": redirected off the Hub");
      }
      http::Request req = base_request(ep, *u, deadline, bearer, failover);
      req.accept_compressed = true;
      req.max_buffered_body = kMaxApiBody;
      req.headers.emplace_back("Accept: application/json");
      http::Response resp;
      count_request(ep);
      const http::Result r = transport.perform(req, &resp);
      if (r.failure != http::Failure::kNone) return TransportError(r, what);
      if (IsRedirect(resp.status)) {
        const auto* loc = resp.headers.get("location");
        auto next = loc != nullptr ? http::ResolveUrl(u->url, *loc) : std::nullopt;
        if (!next) return Fail(Code::kProtocol, what + ": bad redirect", resp.status);
        url = next->url;
        continue;
      }
      if (resp.status >= 200 && resp.status < 300) {
        *out = std::move(resp);
        *final_url = u->url;
        return {};
      }
      return HttpError(resp, what, not_found, !bearer.empty());
    }
  }

  // --- CDN URL cache -------------------------------------------------------------------------
  std::optional<CdnEntry> cdn_get(const std::string& key) {
    MutexLock lock(cdn_mu);
    auto it = cdn.find(key);
    if (it == cdn.end()) return std::nullopt;
    if (Clock::now() >= it->second.expires) {
      cdn.erase(it);
      return std::nullopt;
    }
    return it->second;
  }
  void cdn_put(const std::string& key, CdnEntry e) {
    MutexLock lock(cdn_mu);
    if (cdn.size() >= kMaxCdnEntries && cdn.find(key) == cdn.end()) {
      const auto now = Clock::now();
      std::erase_if(cdn, [now](const auto& kv) { return now >= kv.second.expires; });
      if (cdn.size() >= kMaxCdnEntries) cdn.erase(cdn.begin());
    }
    cdn[key] = std::move(e);
  }
  void cdn_drop(const std::string& key) {
    MutexLock lock(cdn_mu);
    cdn.erase(key);
  }

  Attempt read_attempt(size_t i, bool failover, const FileLocation& f, uint64_t offset,
                       uint64_t length, uint64_t* delivered, const Sink& sink,
                       Clock::time_point deadline);
};

namespace {

// Checks the headers of a 2xx answer to a range request before any byte reaches the sink.
Status CheckRangeHeaders(const http::Response& r, const FileLocation& f, bool from_hub,
                         const std::string& linked_etag, uint64_t first, uint64_t last,
                         const std::string& what) {
  if (from_hub) {
    const auto* commit = r.headers.get("x-repo-commit");
    if (commit == nullptr) return {Code::kProtocol, what + ": no X-Repo-Commit: not the Hub"};
    if (!EqualsIgnoreCase(*commit, f.commit)) {
      return {Code::kProtocol, what + ": the Hub answered for another commit"};
    }
  }
  if (const auto* enc = r.headers.get("content-encoding");
      enc != nullptr && !EqualsIgnoreCase(*enc, "identity")) {
    return {Code::kProtocol, what + ": unexpected Content-Encoding"};
  }
  if (!f.etag.empty()) {
    const auto* etag_hdr = r.headers.get("etag");
    if (etag_hdr == nullptr && linked_etag.empty()) {
      return {Code::kProtocol, what + ": no ETag to check the file version against"};
    }
    if (etag_hdr != nullptr && !EqualsIgnoreCase(NormalizeEtag(*etag_hdr), f.etag)) {
      return {Code::kProtocol, what + ": ETag mismatch: the file changed"};
    }
    if (!linked_etag.empty() && !EqualsIgnoreCase(linked_etag, f.etag)) {
      return {Code::kProtocol, what + ": linked ETag mismatch: the file changed"};
    }
  }
  if (r.status == 206) {
    const auto* cr_hdr = r.headers.get("content-range");
    auto cr = cr_hdr != nullptr ? ParseContentRange(*cr_hdr) : std::nullopt;
    if (!cr) return {Code::kProtocol, what + ": 206 without a valid Content-Range"};
    if (cr->first != first || cr->last != last || (f.size > 0 && cr->total != f.size)) {
      return {Code::kProtocol, what + ": Content-Range " + Sanitize(*cr_hdr, 80) +
                                   " does not match bytes " + std::to_string(first) + "-" +
                                   std::to_string(last) + "/" + std::to_string(f.size)};
    }
    return Status::Ok();
  }
  if (r.status == 200) {
    // The server ignored Range and sends the whole file: it must be the file we expect.
    if (const auto* cl = r.headers.get("content-length"); cl != nullptr && f.size > 0) {
      if (*cl != std::to_string(f.size)) {
        return {Code::kProtocol, what + ": full-body answer has the wrong length"};
      }
    }
    return Status::Ok();
  }
  return {Code::kProtocol, what + ": unexpected HTTP status", r.status};
}

}  // namespace

Attempt HubClient::Impl::read_attempt(size_t i, bool failover, const FileLocation& f,
                                      uint64_t offset, uint64_t length, uint64_t* delivered,
                                      const Sink& sink, Clock::time_point deadline) {
  Endpoint& ep = *eps[i];
  const std::string what = f.repo_id + "/" + f.path;
  // CDN URLs are per endpoint: a site cache's URL points at the site cache.
  const std::string key = std::to_string(i) + '\n' + f.repo_id + '\n' + f.commit + '\n' + f.path;
  const std::string resolve_url =
      ep.base + "/" + f.repo_id + "/resolve/" + EncodeRevision(f.commit) + "/" + EncodePath(f.path);

  std::string url;
  std::string linked_etag;
  bool from_cache = false;
  if (auto cached = cdn_get(key)) {
    url = cached->url;
    linked_etag = cached->linked_etag;
    from_cache = true;
  } else {
    url = resolve_url;
  }
  const std::string bearer = current_token();
  std::set<std::string> seen;
  int hops = 0;
  bool re_resolved = false;
  std::optional<CdnEntry> keep_on_success;

  while (true) {
    if (hops > kMaxRedirects) return Fail(Code::kProtocol, what + ": more than 5 redirects");
    if (!seen.insert(url).second) return Fail(Code::kProtocol, what + ": redirect loop");
    auto u = http::ParseUrl(url);
    if (!u) return Fail(Code::kProtocol, what + ": bad URL");
    const bool from_hub = same_origin(ep, *u);

    const uint64_t first = offset + *delivered;
    const uint64_t last = offset + length - 1;
    const uint64_t want = length - *delivered;
    http::Request req = base_request(ep, *u, deadline, bearer, failover);
    req.headers.push_back("Range: bytes=" + std::to_string(first) + "-" + std::to_string(last));
    req.max_buffered_body = kMaxErrorBody;

    Status verdict;
    bool cancelled = false;
    uint64_t skip = 0;  // bytes to drop first (a 200 answer to a Range request)
    uint64_t got = 0;
    int status = 0;
    req.on_headers = [&](const http::Response& r) {
      status = r.status;
      if (r.status < 200 || r.status >= 300) return http::BodyMode::kBuffer;
      verdict = CheckRangeHeaders(r, f, from_hub, linked_etag, first, last, what);
      if (!verdict.ok()) return http::BodyMode::kAbort;
      skip = r.status == 200 ? first : 0;
      return http::BodyMode::kStream;
    };
    req.on_body = [&](const char* data, size_t n) {
      bytes.fetch_add(n, std::memory_order_relaxed);
      ep.bytes.fetch_add(n, std::memory_order_relaxed);
      if (skip > 0) {
        const uint64_t drop = std::min<uint64_t>(skip, n);
        skip -= drop;
        data += drop;
        n -= static_cast<size_t>(drop);
      }
      if (n == 0) return true;
      if (got >= want) {
        if (status == 200) return false;  // the rest of an ignored-Range body: stop reading
        verdict = {Code::kProtocol, what + ": more bytes than the requested range"};
        return false;
      }
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, want - got));
      if (!sink(data, take)) {
        cancelled = true;
        return false;
      }
      got += take;
      *delivered += take;
      if (take < n) {
        if (status == 200) return false;
        verdict = {Code::kProtocol, what + ": more bytes than the requested range"};
        return false;
      }
      // Whole range delivered from a full-body answer: stop the transfer now.
      return !(status == 200 && got == want);
    };

    http::Response resp;
    count_request(ep);
    const http::Result r = transport.perform(req, &resp);
    if (cancelled) return Fail(Code::kCancelled, what + ": cancelled by the reader");
    if (!verdict.ok()) return {verdict, false, std::nullopt};
    const bool success_status = resp.status >= 200 && resp.status < 300;
    if (success_status && got == want) {
      if (keep_on_success && !from_cache) cdn_put(key, std::move(*keep_on_success));
      return {};
    }
    if (r.failure != http::Failure::kNone) {
      Attempt a = TransportError(r, what + (from_hub ? "" : " (CDN)"));
      if (success_status && a.status.code() == Code::kNetwork) a.retryable = true;
      return a;
    }
    if (success_status) {
      return Retryable(Code::kNetwork, what + ": body ended early (" + std::to_string(got) +
                                           " of " + std::to_string(want) + " bytes)");
    }

    if (IsRedirect(resp.status)) {
      if (from_hub) {
        const auto* commit = resp.headers.get("x-repo-commit");
        if (commit == nullptr) {
          return Fail(Code::kProtocol, what + ": redirect without X-Repo-Commit: not the Hub");
        }
        if (!EqualsIgnoreCase(*commit, f.commit)) {
          return Fail(Code::kProtocol, what + ": the Hub answered for another commit");
        }
        if (const auto* le = resp.headers.get("x-linked-etag")) {
          linked_etag = NormalizeEtag(*le);
          if (!f.etag.empty() && !EqualsIgnoreCase(linked_etag, f.etag)) {
            return Fail(Code::kProtocol, what + ": X-Linked-Etag mismatch: the file changed");
          }
        }
        if (const auto* ls = resp.headers.get("x-linked-size");
            ls != nullptr && f.size > 0 && *ls != std::to_string(f.size)) {
          return Fail(Code::kProtocol, what + ": X-Linked-Size does not match the file size");
        }
      }
      const auto* loc = resp.headers.get("location");
      auto next = loc != nullptr ? http::ResolveUrl(u->url, *loc) : std::nullopt;
      if (!next) return Fail(Code::kProtocol, what + ": redirect to a non-http(s) URL");
      if (u->scheme == "https" && next->scheme != "https") {
        return Fail(Code::kProtocol, what + ": redirect downgrades https to http");
      }
      ++hops;
      // Kept for the file's next ranges: the CDN URL at once; a URL of the endpoint itself
      // (a site cache's, serving the bytes without a resolve at the Hub) only once it has
      // served them, so a chain of same-origin redirects that fails is not remembered.
      if (from_hub) {
        redirects.fetch_add(1, std::memory_order_relaxed);
        CdnEntry e{next->url, linked_etag,
                   Clock::now() + std::chrono::duration_cast<Clock::duration>(opt.cdn_url_ttl)};
        if (same_origin(ep, *next)) {
          keep_on_success = std::move(e);
        } else {
          cdn_put(key, std::move(e));
          keep_on_success.reset();
        }
      }
      url = next->url;
      continue;
    }

    if (!from_hub && (resp.status == 403 || resp.status == 404 || resp.status == 410)) {
      // The presigned URL expired or was revoked: forget it and ask the Hub again, once.
      cdn_drop(key);
      if (from_cache && !re_resolved) {
        spdlog::debug("modelfs fetch: CDN refused a cached URL for {} (HTTP {}), re-resolving",
                      what, resp.status);
        re_resolved = true;
        from_cache = false;
        linked_etag.clear();
        url = resolve_url;
        seen.clear();
        hops = 0;
        continue;
      }
      return Retryable(Code::kNetwork, what + ": the CDN refused a fresh URL", resp.status);
    }
    return HttpError(resp, what + (from_hub ? "" : " (CDN)"), Code::kEntryNotFound,
                     !bearer.empty());
  }
}

HubClient::HubClient(HubOptions options) : options_(std::move(options)) {
  while (!options_.endpoint.empty() && options_.endpoint.back() == '/') {
    options_.endpoint.pop_back();
  }
  http::GlobalInit();
  impl_ = std::make_unique<Impl>(options_);
}

HubClient::~HubClient() = default;

Status HubClient::repo_info(const std::string& repo_id, const std::string& revision,
                            RepoInfo* out) {
  if (Status s = impl_->precheck(); !s.ok()) return impl_->finish(s);
  if (!IsValidRepoId(repo_id)) {
    return impl_->finish({Code::kRepoNotFound, "invalid repo id: " + Sanitize(repo_id, 200)});
  }
  const auto deadline = Clock::now() + options_.deadline;
  std::string target = "/api/models/" + repo_id;
  if (!revision.empty()) target += "/revision/" + EncodeRevision(revision);
  // Built with append: GCC 12 at -O3 misreports `"@" + std::string` here (-Wrestrict).
  std::string what = repo_id;
  if (!revision.empty()) what.append("@").append(Sanitize(revision, 200));
  http::Response resp;
  std::string final_url;
  Status s = impl_->run_with_retries(deadline, what, [&](size_t ep, bool failover) {
    return impl_->api_get(ep, failover, target, deadline, what, Code::kRepoNotFound, &resp,
                          &final_url);
  });
  if (!s.ok()) return impl_->finish(s);
  RepoInfo info;
  s = ParseRepoInfo(resp.body, &info);
  if (!s.ok()) return impl_->finish({s.code(), what + ": " + s.message()});
  *out = std::move(info);
  return s;
}

Status HubClient::list_tree(const std::string& repo_id, const std::string& commit,
                            std::vector<TreeEntry>* out) {
  if (Status s = impl_->precheck(); !s.ok()) return impl_->finish(s);
  if (!IsValidRepoId(repo_id)) {
    return impl_->finish({Code::kRepoNotFound, "invalid repo id: " + Sanitize(repo_id, 200)});
  }
  if (commit.empty()) return impl_->finish({Code::kRevisionNotFound, "empty revision"});
  const auto deadline = Clock::now() + options_.deadline;
  const std::string what = repo_id + "@" + Sanitize(commit, 200) + " tree";
  // Pages are targets below whichever endpoint is in use: the Hub's Link names its own host
  // even when a site cache relayed it, and a failover mid-listing goes on at the next endpoint.
  const std::string tree_path = "/api/models/" + repo_id + "/tree/" + EncodeRevision(commit);
  std::string url = tree_path + "?recursive=true&expand=false&limit=1000";

  std::vector<TreeEntry> all;
  size_t skipped = 0;
  std::unordered_set<std::string> seen_urls;
  std::unordered_set<size_t> seen_paths;  // hashes: a collision only looks like no progress
  size_t stalled = 0;
  for (size_t page = 0;; ++page) {
    if (page >= kMaxTreePages) {
      return impl_->finish({Code::kProtocol, what + ": too many pages"});
    }
    if (!seen_urls.insert(url).second) {
      return impl_->finish({Code::kProtocol, what + ": pagination loop"});
    }
    http::Response resp;
    std::string final_url;
    Status s = impl_->run_with_retries(deadline, what, [&](size_t ep, bool failover) {
      return impl_->api_get(ep, failover, url, deadline, what, Code::kRepoNotFound, &resp,
                            &final_url);
    });
    if (!s.ok()) return impl_->finish(s);
    const size_t before = all.size();
    s = ParseTreePage(resp.body, &all, &skipped);
    if (!s.ok()) return impl_->finish({s.code(), what + ": " + s.message()});
    bool progress = false;
    for (size_t i = before; i < all.size(); ++i) {
      progress |= seen_paths.insert(std::hash<std::string>{}(all[i].path)).second;
    }
    if (all.size() > kMaxTreeEntries) {
      return impl_->finish({Code::kProtocol, what + ": more than 1000000 entries"});
    }
    const auto* link = resp.headers.get("link");
    auto next = link != nullptr ? ParseLinkNext(*link) : std::nullopt;
    if (!next) break;
    stalled = progress ? 0 : stalled + 1;
    if (stalled >= kMaxStalledPages) {
      return impl_->finish({Code::kProtocol, what + ": pagination makes no progress (" +
                                                 std::to_string(stalled) +
                                                 " pages in a row with no new entry)"});
    }
    auto next_url = http::ResolveUrl(final_url, *next);
    auto next_target = next_url ? TreePageTarget(next_url->url, tree_path) : std::nullopt;
    if (!next_target) {
      return impl_->finish({Code::kProtocol, what + ": next page link leaves the listing"});
    }
    url = *next_target;
  }

  // Entries that were all invalid are not an (empty) repo: refuse, so that nothing is cached.
  if (all.empty() && skipped > 0) {
    return impl_->finish({Code::kProtocol, what + ": no valid entry in the listing (" +
                                               std::to_string(skipped) + " invalid)"});
  }
  // Duplicates keep the first entry; a path that is both a file and a directory stays a
  // directory (its children would otherwise be orphans), and the file entry is dropped.
  std::map<std::string, TreeEntry> by_path;
  size_t duplicates = 0;
  size_t conflicts = 0;
  std::string example;
  for (auto& e : all) {
    auto [it, inserted] = by_path.try_emplace(e.path, e);
    if (inserted) continue;
    if (it->second.is_dir == e.is_dir) {
      ++duplicates;
    } else {
      ++conflicts;
      if (example.empty()) example = e.path;
      if (e.is_dir) it->second = std::move(e);
    }
  }
  // Every parent of an entry is a directory: drop files in the way, add missing parents.
  std::set<std::string> parents;
  for (const auto& [path, e] : by_path) {
    for (size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      parents.insert(path.substr(0, slash));
    }
  }
  for (const auto& p : parents) {
    auto it = by_path.find(p);
    if (it == by_path.end()) {
      TreeEntry dir;
      dir.path = p;
      dir.is_dir = true;
      by_path.emplace(p, std::move(dir));
    } else if (!it->second.is_dir) {
      ++conflicts;
      if (example.empty()) example = p;
      TreeEntry dir;
      dir.path = p;
      dir.is_dir = true;
      it->second = std::move(dir);
    }
  }
  if (skipped > 0 || duplicates > 0 || conflicts > 0) {
    spdlog::warn(
        "modelfs fetch: {}: dropped {} invalid, {} duplicate and {} file/directory conflicting "
        "entries{}",
        what, skipped, duplicates, conflicts,
        example.empty() ? std::string() : " (e.g. \"" + Sanitize(example, 100) + "\")");
  }
  out->clear();
  out->reserve(by_path.size());
  for (auto& [path, e] : by_path) out->push_back(std::move(e));
  return Status::Ok();
}

Status HubClient::read_range(const FileLocation& file, uint64_t offset, uint64_t length,
                             const Sink& sink) {
  if (Status s = impl_->precheck(); !s.ok()) return impl_->finish(s);
  if (length == 0) return Status::Ok();
  if (!IsValidRepoId(file.repo_id)) {
    return impl_->finish({Code::kRepoNotFound, "invalid repo id: " + Sanitize(file.repo_id, 200)});
  }
  if (file.commit.empty()) return impl_->finish({Code::kRevisionNotFound, "empty commit"});
  if (!IsSafeRelativePath(file.path)) {
    return impl_->finish({Code::kEntryNotFound, "unsafe path: " + Sanitize(file.path, 200)});
  }
  if (offset > UINT64_MAX - length || (file.size > 0 && offset + length > file.size)) {
    return impl_->finish({Code::kProtocol, file.path + ": range " + std::to_string(offset) + "+" +
                                               std::to_string(length) + " is past the end (" +
                                               std::to_string(file.size) + " bytes)"});
  }
  const auto deadline = Clock::now() + options_.deadline;
  uint64_t delivered = 0;
  Status s = impl_->run_with_retries(deadline, file.path, [&](size_t ep, bool failover) {
    return impl_->read_attempt(ep, failover, file, offset, length, &delivered, sink, deadline);
  });
  return impl_->finish(std::move(s));
}

void HubClient::set_token(std::string token) {
  MutexLock lock(impl_->token_mu);
  impl_->token = std::move(token);
}

HubCounters HubClient::counters() const {
  HubCounters c;
  c.requests = impl_->requests.load(std::memory_order_relaxed);
  c.bytes = impl_->bytes.load(std::memory_order_relaxed);
  c.retries = impl_->retries.load(std::memory_order_relaxed);
  c.errors = impl_->errors.load(std::memory_order_relaxed);
  c.redirects = impl_->redirects.load(std::memory_order_relaxed);
  c.failovers = impl_->failovers.load(std::memory_order_relaxed);
  const int64_t now = NowMs();
  for (const auto& ep : impl_->eps) {
    EndpointCounters e;
    e.url = ep->shown;
    e.requests = ep->requests.load(std::memory_order_relaxed);
    e.bytes = ep->bytes.load(std::memory_order_relaxed);
    e.errors = ep->errors.load(std::memory_order_relaxed);
    e.failovers = ep->failovers.load(std::memory_order_relaxed);
    const int64_t until = ep->down_until_ms.load(std::memory_order_relaxed);
    e.down = until > now;
    e.down_for_s = e.down ? static_cast<double>(until - now) / 1000.0 : 0.0;
    c.endpoints.push_back(std::move(e));
  }
  return c;
}

}  // namespace modelfs::fetch
