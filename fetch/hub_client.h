// Client for the Hugging Face Hub HTTP API (fetch/hub-api.md says what it relies on): repo
// metadata, the tree listing, and byte ranges of files through the resolve endpoint and its CDN
// redirect.
//
// Thread safety: every method may be called from many threads at once. Connections are pooled
// and reused; a resolved CDN URL is reused until it expires or the CDN refuses it.
// Every call is bounded in time by HubOptions::deadline, retries included.
//
// Endpoints: `endpoint` first, then `more_endpoints`, in order (e.g. a site cache, then the Hub
// itself). A call goes to the first endpoint that is not held down; an attempt that fails on
// the network (refused, reset, stalled, 5xx) holds its endpoint down for a while and the call
// goes on at once with the next one, resuming a read where it stopped; once the hold ends, the
// next call tries that endpoint again. Answers (404, 401, 403, 429) are never failed over.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/status.h"
#include "fs/base/version.h"

namespace modelfs::fetch {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";  // trailing '/' is stripped
  std::vector<std::string> more_endpoints;          // tried in order when the ones before fail
  std::string token;                                // empty: anonymous
  bool offline = false;                             // every call returns kOffline
  std::string ca_bundle;                            // extra CA file; TLS verification is always on
  std::string user_agent = "modelfs/" MODELFS_VERSION;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds stall_timeout{20'000};  // no byte for this long ends an attempt
  std::chrono::milliseconds deadline{60'000};       // bound on one call, retries and waits included
  int max_attempts = 5;
  std::chrono::milliseconds backoff_initial{200};  // doubled per retry, with jitter
  std::chrono::milliseconds backoff_max{5'000};
  std::chrono::seconds cdn_url_ttl{1800};  // reuse a presigned URL at most this long
  size_t max_idle_connections = 32;        // pooled curl handles kept between calls
  // With another endpoint to go to, a stall or connect wait this long moves the call there.
  std::chrono::milliseconds failover_stall{5'000};
  std::chrono::milliseconds failover_hold{5'000};  // first hold; doubled per failed retry
  std::chrono::milliseconds failover_hold_max{30'000};
};

struct RepoInfo {
  std::string id;   // canonical id from the Hub ("org/name")
  std::string sha;  // 40-hex commit of the requested revision
  bool is_private = false;
  std::string gated;          // "" when not gated, else "auto" or "manual"
  std::string last_modified;  // ISO 8601 as sent
};

struct TreeEntry {
  std::string
      path;  // relative, '/'-separated, validated (no "..", no empty parts, no control chars)
  bool is_dir = false;
  uint64_t size = 0;       // lfs.size when present
  std::string oid;         // git blob sha1 (40 hex)
  std::string lfs_sha256;  // 64 hex for LFS files, else empty
};

// One immutable file: a path in a repo at a commit.
struct FileLocation {
  std::string repo_id;
  std::string commit;  // 40 hex
  std::string path;
  uint64_t size = 0;
  std::string etag;  // expected content id (sha256 or git oid); a different ETag is kProtocol
};

// Receives the requested bytes in order, each exactly once. Return false to stop (kCancelled).
using Sink = std::function<bool(const char* data, size_t n)>;

struct EndpointCounters {
  std::string url;
  uint64_t requests = 0;   // HTTP requests of calls sent to this endpoint (its CDN legs too)
  uint64_t bytes = 0;      // range body bytes of those calls
  uint64_t errors = 0;     // attempts that failed on the network here
  uint64_t failovers = 0;  // times a call moved away from this endpoint
  bool down = false;       // held down now
  double down_for_s = 0;   // seconds left of the hold
};

struct HubCounters {
  uint64_t requests = 0;  // HTTP requests sent (hub + CDN)
  uint64_t bytes = 0;     // body bytes of ranges received
  uint64_t retries = 0;
  uint64_t errors = 0;     // calls that ended in an error (kCancelled is not counted)
  uint64_t redirects = 0;  // resolve calls that returned a CDN URL
  uint64_t failovers = 0;  // calls moved from one endpoint to the next
  std::vector<EndpointCounters> endpoints;  // in the configured order
};

class HubClient {
 public:
  explicit HubClient(HubOptions options);
  ~HubClient();
  HubClient(const HubClient&) = delete;
  HubClient& operator=(const HubClient&) = delete;

  // GET /api/models/{id} (revision empty) or /api/models/{id}/revision/{rev}.
  Status repo_info(const std::string& repo_id, const std::string& revision, RepoInfo* out);

  // Full recursive tree of a commit, following Link pagination. Invalid or duplicate entries
  // are dropped with a warning; a pagination loop (a next URL seen before, or 3 pages in a row
  // bringing no new path) is kProtocol, and so is a listing whose entries were all invalid.
  // Output is sorted by path; every parent of an entry is present as a directory entry (added
  // when the listing lacks it). A path listed both as a file and a directory stays a directory.
  Status list_tree(const std::string& repo_id, const std::string& commit,
                   std::vector<TreeEntry>* out);

  // Streams bytes [offset, offset + length) of the file to sink. Goes through
  // /{id}/resolve/{commit}/{path}, follows a redirect to the CDN and caches that URL. A failed
  // attempt resumes where the sink stopped receiving; a 200 answering a Range request is
  // handled by skipping to the wanted bytes. length 0 returns Ok without a request.
  Status read_range(const FileLocation& file, uint64_t offset, uint64_t length, const Sink& sink);

  // Replaces the token for the requests that start after this call (e.g. on a config reload);
  // empty means anonymous. Thread-safe. options().token keeps the value given at construction.
  void set_token(std::string token);

  HubCounters counters() const;
  const HubOptions& options() const { return options_; }

 private:
  struct Impl;
  HubOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modelfs::fetch
