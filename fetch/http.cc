#include "fetch/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "fs/base/mutex.h"
#include "fs/base/text.h"

namespace modelfs::fetch::http {
namespace {

constexpr size_t kMaxHeaderValue = 8 << 10;
constexpr size_t kMaxHeaderCount = 128;
constexpr size_t kMaxHeaderTotal = 64 << 10;

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using UrlPtr = std::unique_ptr<CURLU, UrlDeleter>;

struct CurlFree {
  void operator()(char* p) const { curl_free(p); }
};
using CurlString = std::unique_ptr<char, CurlFree>;

std::optional<std::string> GetPart(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* raw = nullptr;
  if (curl_url_get(u, part, &raw, flags) != CURLUE_OK || raw == nullptr) return std::nullopt;
  CurlString owned(raw);
  return std::string(owned.get());
}

bool HasBadUrlChars(std::string_view s) {
  return s.empty() || std::any_of(s.begin(), s.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u <= 0x20 || u == 0x7f;
         });
}

std::optional<Url> FromHandle(CURLU* u) {
  auto scheme = GetPart(u, CURLUPART_SCHEME);
  auto host = GetPart(u, CURLUPART_HOST);
  auto port = GetPart(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
  auto full = GetPart(u, CURLUPART_URL);
  if (!scheme || !host || !port || !full || host->empty()) return std::nullopt;
  Url out;
  out.scheme = AsciiLower(*scheme);
  if (out.scheme != "http" && out.scheme != "https") return std::nullopt;
  out.host = AsciiLower(*host);
  out.port = std::atoi(port->c_str());
  if (out.port <= 0 || out.port > 65535) return std::nullopt;
  out.url = std::move(*full);
  return out;
}

}  // namespace

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::optional<Url> ParseUrl(std::string_view url) {
  if (HasBadUrlChars(url)) return std::nullopt;
  UrlPtr u(curl_url());
  if (!u) return std::nullopt;
  const std::string s(url);
  if (curl_url_set(u.get(), CURLUPART_URL, s.c_str(), 0) != CURLUE_OK) return std::nullopt;
  return FromHandle(u.get());
}

std::optional<Url> ResolveUrl(std::string_view base, std::string_view ref) {
  if (HasBadUrlChars(base) || HasBadUrlChars(ref)) return std::nullopt;
  UrlPtr u(curl_url());
  if (!u) return std::nullopt;
  const std::string b(base);
  const std::string r(ref);
  if (curl_url_set(u.get(), CURLUPART_URL, b.c_str(), 0) != CURLUE_OK) return std::nullopt;
  if (curl_url_set(u.get(), CURLUPART_URL, r.c_str(), 0) != CURLUE_OK) return std::nullopt;
  return FromHandle(u.get());
}

bool Headers::add(std::string_view name, std::string_view value) {
  if (items_.size() >= kMaxHeaderCount) return false;
  if (value.size() > kMaxHeaderValue) value = value.substr(0, kMaxHeaderValue);
  if (total_ + name.size() + value.size() > kMaxHeaderTotal) return false;
  total_ += name.size() + value.size();
  items_.emplace_back(AsciiLower(name), std::string(value));
  return true;
}

const std::string* Headers::get(std::string_view lower_name) const {
  // The last one wins.
  auto it = std::find_if(items_.rbegin(), items_.rend(),
                         [&](const auto& item) { return item.first == lower_name; });
  return it == items_.rend() ? nullptr : &it->second;
}

// Idle easy handles, kept per origin so a reused handle finds its kept-alive connection.
struct Transport::Pool {
  explicit Pool(size_t max) : max_idle(max) {}
  EasyPtr acquire(const std::string& origin) {
    {
      MutexLock lock(mu);
      auto it = idle.find(origin);
      if (it != idle.end() && !it->second.empty()) {
        EasyPtr h = std::move(it->second.back());
        it->second.pop_back();
        if (it->second.empty()) idle.erase(it);
        --count;
        return h;
      }
    }
    return EasyPtr(curl_easy_init());
  }
  void release(const std::string& origin, EasyPtr h) {
    curl_easy_reset(h.get());  // drops our callbacks and pointers; keeps the connection cache
    {
      MutexLock lock(mu);
      if (count < max_idle) {
        idle[origin].push_back(std::move(h));
        ++count;
        return;
      }
    }
    h.reset();  // pool full: close this handle and its connections outside the lock
  }

  const size_t max_idle;
  Mutex mu;
  std::map<std::string, std::vector<EasyPtr>> idle GUARDED_BY(mu);
  size_t count GUARDED_BY(mu) = 0;
};

namespace {

struct TransferState {
  const Request* req = nullptr;
  Response* resp = nullptr;
  Clock::time_point start;
  Clock::time_point last_progress;
  curl_off_t last_dlnow = -1;
  bool any_progress = false;
  bool headers_done = false;
  BodyMode mode = BodyMode::kBuffer;
  bool stalled = false;
  bool deadline_hit = false;
  bool aborted = false;
  bool too_large = false;
  bool headers_too_large = false;

  void progress() {
    last_progress = Clock::now();
    any_progress = true;
  }

  // Returns false when the transfer must be aborted.
  bool finish_headers() {
    headers_done = true;
    mode = req->on_headers ? req->on_headers(*resp) : BodyMode::kBuffer;
    if (mode == BodyMode::kAbort) {
      aborted = true;
      return false;
    }
    return true;
  }
};

size_t HeaderCallback(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* st = static_cast<TransferState*>(userdata);
  const size_t n = size * nitems;
  st->progress();
  std::string_view line(buffer, n);
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    // A new status line: an interim (1xx) response may precede the final one.
    st->resp->headers.clear();
    st->resp->status = 0;
    st->headers_done = false;
    const size_t sp = line.find(' ');
    if (sp != std::string_view::npos && sp + 4 <= line.size()) {
      int code = 0;
      bool ok = true;
      for (size_t i = sp + 1; i < sp + 4; ++i) {
        if (line[i] < '0' || line[i] > '9') ok = false;
        code = code * 10 + (line[i] - '0');
      }
      if (ok) st->resp->status = code;
    }
    return n;
  }
  const std::string_view trimmed = TrimSpace(line);
  if (trimmed.empty()) {
    if (st->resp->status >= 200 && !st->headers_done) {
      if (!st->finish_headers()) return 0;
    }
    return n;
  }
  if (line.front() == ' ' || line.front() == '\t') return n;  // obsolete folding: ignored
  const size_t colon = trimmed.find(':');
  if (colon == std::string_view::npos || colon == 0) return n;
  if (!st->resp->headers.add(TrimSpace(trimmed.substr(0, colon)),
                             TrimSpace(trimmed.substr(colon + 1)))) {
    st->headers_too_large = true;
    return 0;
  }
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* st = static_cast<TransferState*>(userdata);
  const size_t n = size * nmemb;
  st->progress();
  if (!st->headers_done && !st->finish_headers()) return 0;
  if (st->mode == BodyMode::kStream) {
    if (!st->req->on_body || !st->req->on_body(data, n)) {
      st->aborted = true;
      return 0;
    }
    return n;
  }
  if (st->resp->body.size() + n > st->req->max_buffered_body) {
    st->too_large = true;
    return 0;
  }
  st->resp->body.append(data, n);
  return n;
}

int XferInfoCallback(void* clientp, curl_off_t /*dltotal*/, curl_off_t dlnow,
                     curl_off_t /*ultotal*/, curl_off_t /*ulnow*/) {
  auto* st = static_cast<TransferState*>(clientp);
  const auto now = Clock::now();
  if (dlnow != st->last_dlnow) {
    if (st->last_dlnow >= 0 && dlnow > st->last_dlnow) st->progress();
    st->last_dlnow = dlnow;
  }
  if (now >= st->req->deadline) {
    st->deadline_hit = true;
    return 1;
  }
  // Until the first byte arrives the connect phase has its own bound, so allow it on top.
  const auto allowed =
      st->any_progress ? st->req->stall_timeout : st->req->stall_timeout + st->req->connect_timeout;
  if (now - st->last_progress > allowed) {
    st->stalled = true;
    return 1;
  }
  return 0;
}

long ClampMs(std::chrono::milliseconds ms) {
  return static_cast<long>(std::clamp<int64_t>(ms.count(), 1, 365LL * 24 * 3600 * 1000));
}

Failure Classify(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return Failure::kNone;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      return Failure::kConnect;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_OUT_OF_MEMORY:
      return Failure::kPermanent;
    default:
      return Failure::kNetwork;
  }
}

}  // namespace

Transport::Transport(size_t max_idle_handles) : pool_(std::make_unique<Pool>(max_idle_handles)) {
  GlobalInit();
}

Transport::~Transport() = default;

Result Transport::perform(const Request& request, Response* response) {
  *response = Response{};
  const auto url = ParseUrl(request.url);
  if (!url) return {Failure::kPermanent, "not an http(s) URL"};
  const auto start = Clock::now();
  if (start >= request.deadline) return {Failure::kDeadline, "deadline passed"};
  const auto remaining =
      std::chrono::duration_cast<std::chrono::milliseconds>(request.deadline - start);

  const std::string origin = url->origin();
  EasyPtr easy = pool_->acquire(origin);
  if (!easy) return {Failure::kPermanent, "curl_easy_init failed"};
  CURL* h = easy.get();

  SlistPtr headers;
  for (const auto& line : request.headers) {
    curl_slist* list = curl_slist_append(headers.get(), line.c_str());
    if (list == nullptr) return {Failure::kPermanent, "out of memory building headers"};
    if (!headers) headers.reset(list);  // otherwise appended in place to the same list
  }

  TransferState st;
  st.req = &request;
  st.resp = response;
  st.start = start;
  st.last_progress = start;
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(h, CURLOPT_URL, url->url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!request.ca_bundle.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, request.ca_bundle.c_str());
  if (!request.user_agent.empty()) {
    curl_easy_setopt(h, CURLOPT_USERAGENT, request.user_agent.c_str());
  }
  if (headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  if (request.accept_compressed) curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // Bigger receive buffer than the 16 KiB default: fewer recv calls and write callbacks per MiB.
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &XferInfoCallback);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   ClampMs(std::min(request.connect_timeout, remaining)));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ClampMs(remaining));

  const CURLcode rc = curl_easy_perform(h);
  if (response->status == 0) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    response->status = static_cast<int>(code);
  }
  pool_->release(origin, std::move(easy));

  Result result;
  if (st.aborted) {
    result = {Failure::kAborted, "aborted by the receiver"};
  } else if (st.too_large) {
    result = {Failure::kTooLarge, "response body too large"};
  } else if (st.headers_too_large || (rc == CURLE_OUT_OF_MEMORY && !st.headers_done)) {
    // (libcurl reports a header line over its 100 KiB limit as out of memory.)
    result = {Failure::kTooLarge,
              "response headers too large (over " + std::to_string(kMaxHeaderCount) + " headers, " +
                  std::to_string(kMaxHeaderTotal / 1024) + " KiB, or a line over 100 KiB)"};
  } else if (st.deadline_hit) {
    result = {Failure::kDeadline, "deadline passed"};
  } else if (st.stalled) {
    result = {Failure::kStall,
              "no data received for " + std::to_string(request.stall_timeout.count()) + " ms"};
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    // Only two timers can fire: the overall one (set to the deadline) or the connect one.
    if (Clock::now() + std::chrono::milliseconds(20) >= request.deadline) {
      result = {Failure::kDeadline, "deadline passed"};
    } else {
      result = {Failure::kConnect, errbuf[0] != 0 ? errbuf : curl_easy_strerror(rc)};
    }
  } else if (rc != CURLE_OK) {
    result = {Classify(rc), errbuf[0] != 0 ? errbuf : curl_easy_strerror(rc)};
  } else if (!st.headers_done && response->status >= 200) {
    // A response without a body never reached the write callback; decide now so callers
    // always see on_headers for a completed response.
    if (!st.finish_headers()) result = {Failure::kAborted, "aborted by the receiver"};
  }
  return result;
}

}  // namespace modelfs::fetch::http
