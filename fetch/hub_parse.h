// Pure parsers for what the Hub sends, kept apart so unit tests and fuzzers can drive them.
// None of them throws; none trusts its input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/status.h"

namespace modelfs::fetch {

// One page of the tree API. Appends valid entries to out; skips (and counts in *skipped)
// entries with unsafe paths, absurd sizes or missing fields. Malformed JSON is kProtocol.
Status ParseTreePage(std::string_view json, std::vector<TreeEntry>* out, size_t* skipped);

// Repo metadata JSON -> RepoInfo. Requires "id" and a 40-hex "sha".
Status ParseRepoInfo(std::string_view json, RepoInfo* out);

// The rel="next" URL from a Link header, if any.
std::optional<std::string> ParseLinkNext(std::string_view link_header);

struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
  uint64_t total = 0;
};
// "bytes a-b/total" (total may not be '*' here).
std::optional<ContentRange> ParseContentRange(std::string_view value);

// Strips W/ and quotes: W/"abc" -> abc.
std::string NormalizeEtag(std::string_view etag);

// Percent-encoding as the Hub's client does: revisions with no safe characters, paths keep '/'.
// A segment that is exactly "." or ".." has its dots encoded too: curl would otherwise drop it
// from the URL and silently ask for another resource (the default branch for "@..").
std::string EncodeRevision(std::string_view revision);
std::string EncodePath(std::string_view path);

// A safe relative path: no empty parts, no "." or "..", no leading '/', no control chars,
// not longer than 4096 bytes, each part at most 255 bytes.
bool IsSafeRelativePath(std::string_view path);

// "org/name" with the Hub's allowed characters ([A-Za-z0-9._-], not starting with '.' or '-',
// no "..", each part 1..96 chars).
bool IsValidRepoId(std::string_view repo_id);

// Seconds to wait from Retry-After (delta-seconds) or a RateLimit header ("...;t=55").
std::optional<int> ParseRetryAfterSeconds(std::string_view retry_after, std::string_view ratelimit);

}  // namespace modelfs::fetch
