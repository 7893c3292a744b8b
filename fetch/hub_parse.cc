// Pure parsers for Hub responses. Everything here must survive hostile input: no exceptions
// escape, every number is range-checked, every string is bounded.
#include "fetch/hub_parse.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "fs/base/text.h"

namespace modelfs::fetch {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxFileSize = uint64_t{1} << 50;  // 1 PiB: anything larger is absurd
constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxPartBytes = 255;
constexpr size_t kMaxRepoPart = 96;
constexpr int kMaxRetryAfterSeconds = 24 * 3600;

bool IsControl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// Decimal digits only (no sign, no spaces), at most 19 digits so it fits in uint64_t.
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// A JSON number that is a non-negative integer no larger than kMaxFileSize.
std::optional<uint64_t> JsonSize(const json& v) {
  if (v.is_number_unsigned()) {
    const auto n = v.get<uint64_t>();
    if (n > kMaxFileSize) return std::nullopt;
    return n;
  }
  if (v.is_number_integer()) {
    const auto n = v.get<int64_t>();
    if (n < 0 || static_cast<uint64_t>(n) > kMaxFileSize) return std::nullopt;
    return static_cast<uint64_t>(n);
  }
  return std::nullopt;  // floats, strings, null: not a size
}

const json* Member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end()) return nullptr;
  return &*it;
}

// Parses one tree entry; nullopt when it must be skipped.
std::optional<TreeEntry> ParseTreeEntry(const json& e) {
  if (!e.is_object()) return std::nullopt;
  const json* type = Member(e, "type");
  const json* path = Member(e, "path");
  if (type == nullptr || path == nullptr || !type->is_string() || !path->is_string()) {
    return std::nullopt;
  }
  TreeEntry out;
  const auto& type_str = type->get_ref<const std::string&>();
  if (type_str == "directory") {
    out.is_dir = true;
  } else if (type_str != "file") {
    return std::nullopt;
  }
  out.path = path->get<std::string>();
  if (!IsSafeRelativePath(out.path)) return std::nullopt;

  const json* oid = Member(e, "oid");
  if (oid != nullptr && oid->is_string()) {
    const auto& s = oid->get_ref<const std::string&>();
    if ((s.size() == 40 || s.size() == 64) && IsHex(s)) out.oid = AsciiLower(s);
  }
  if (out.is_dir) return out;  // a directory's size and oid do not matter

  if (out.oid.empty()) return std::nullopt;  // a file without a valid content id
  const json* size = Member(e, "size");
  if (size == nullptr) return std::nullopt;
  auto git_size = JsonSize(*size);
  if (!git_size) return std::nullopt;
  out.size = *git_size;

  const json* lfs = Member(e, "lfs");
  if (lfs != nullptr && !lfs->is_null()) {
    if (!lfs->is_object()) return std::nullopt;
    const json* lfs_oid = Member(*lfs, "oid");
    const json* lfs_size = Member(*lfs, "size");
    if (lfs_oid == nullptr || !lfs_oid->is_string() || lfs_size == nullptr) return std::nullopt;
    const auto& s = lfs_oid->get_ref<const std::string&>();
    if (s.size() != 64 || !IsHex(s)) return std::nullopt;
    auto n = JsonSize(*lfs_size);
    if (!n) return std::nullopt;
    out.lfs_sha256 = AsciiLower(s);
    out.size = *n;
  }
  return out;
}

// Whether the segment starting at `rest` is "." or "..". URL normalisation (libcurl's too)
// removes such segments, so ".../revision/.." would ask for the repo's default branch: their
// dots must be encoded.
bool IsDotSegment(std::string_view rest, bool keep_slash) {
  const std::string_view segment = keep_slash ? rest.substr(0, rest.find('/')) : rest;
  return segment == "." || segment == "..";
}

std::string PercentEncode(std::string_view in, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() * 3);
  bool dot_segment = IsDotSegment(in, keep_slash);
  for (size_t i = 0; i < in.size(); ++i) {
    const char ch = in[i];
    const auto c = static_cast<unsigned char>(ch);
    if (keep_slash && c == '/') dot_segment = IsDotSegment(in.substr(i + 1), keep_slash);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || (c == '.' && !dot_segment) ||
                            c == '_' || c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace

Status ParseTreePage(std::string_view json_text, std::vector<TreeEntry>* out, size_t* skipped) {
  size_t skipped_here = 0;
  json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return {Code::kProtocol, "tree page is not valid JSON"};
  if (!doc.is_array()) return {Code::kProtocol, "tree page is not a JSON array"};
  for (const auto& e : doc) {
    try {
      auto entry = ParseTreeEntry(e);
      if (entry) {
        out->push_back(std::move(*entry));
      } else {
        ++skipped_here;
      }
    } catch (const std::exception&) {  // defensive: get<> on unexpected types
      ++skipped_here;
    }
  }
  if (skipped != nullptr) *skipped += skipped_here;
  return Status::Ok();
}

Status ParseRepoInfo(std::string_view json_text, RepoInfo* out) {
  json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return {Code::kProtocol, "repo info is not valid JSON"};
  if (!doc.is_object()) return {Code::kProtocol, "repo info is not a JSON object"};
  try {
    RepoInfo info;
    const json* id = Member(doc, "id");
    if (id == nullptr || !id->is_string() || !IsValidRepoId(id->get_ref<const std::string&>())) {
      return {Code::kProtocol, "repo info lacks a valid \"id\""};
    }
    info.id = id->get<std::string>();
    const json* sha = Member(doc, "sha");
    if (sha == nullptr || !sha->is_string()) return {Code::kProtocol, "repo info lacks \"sha\""};
    const auto& sha_str = sha->get_ref<const std::string&>();
    if (sha_str.size() != 40 || !IsHex(sha_str)) {
      return {Code::kProtocol, "repo info \"sha\" is not a 40-hex commit"};
    }
    info.sha = AsciiLower(sha_str);
    if (const json* p = Member(doc, "private"); p != nullptr && p->is_boolean()) {
      info.is_private = p->get<bool>();
    }
    if (const json* g = Member(doc, "gated"); g != nullptr) {
      if (g->is_string()) {
        const auto& s = g->get_ref<const std::string&>();
        // Unknown gating modes are treated as gated (the conservative reading).
        info.gated = (s == "auto" || s == "manual") ? s : (s.empty() ? "" : "manual");
      } else if (g->is_boolean() && g->get<bool>()) {
        info.gated = "manual";
      }
    }
    if (const json* lm = Member(doc, "lastModified"); lm != nullptr && lm->is_string()) {
      const auto& s = lm->get_ref<const std::string&>();
      if (s.size() <= 64 && std::none_of(s.begin(), s.end(), [](char c) { return IsControl(c); })) {
        info.last_modified = s;
      }
    }
    *out = std::move(info);
    return Status::Ok();
  } catch (const std::exception& e) {
    return {Code::kProtocol, std::string("repo info: ") + e.what()};
  }
}

std::optional<std::string> ParseLinkNext(std::string_view header) {
  // Link: <url>; rel="next", <url2>; rel="last"   (RFC 8288). URLs are inside <>, so commas
  // and semicolons in them do not split anything.
  size_t i = 0;
  while (i < header.size()) {
    const size_t lt = header.find('<', i);
    if (lt == std::string_view::npos) return std::nullopt;
    const size_t gt = header.find('>', lt + 1);
    if (gt == std::string_view::npos) return std::nullopt;
    const std::string_view url = header.substr(lt + 1, gt - lt - 1);
    // Parameters run until the next '<' that follows a ','.
    size_t end = gt + 1;
    bool in_quotes = false;
    while (end < header.size()) {
      const char c = header[end];
      if (c == '"') in_quotes = !in_quotes;
      if (c == ',' && !in_quotes) break;
      ++end;
    }
    std::string_view params = header.substr(gt + 1, end - gt - 1);
    bool is_next = false;
    while (!params.empty()) {
      const size_t semi = params.find(';');
      std::string_view param = TrimSpace(params.substr(0, semi));
      params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
      const size_t eq = param.find('=');
      if (eq == std::string_view::npos) continue;
      if (!EqualsIgnoreCase(TrimSpace(param.substr(0, eq)), "rel")) continue;
      std::string_view value = TrimSpace(param.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      // rel may hold several space-separated relation types.
      while (!value.empty()) {
        const size_t sp = value.find(' ');
        if (EqualsIgnoreCase(value.substr(0, sp), "next")) is_next = true;
        value = sp == std::string_view::npos ? std::string_view{} : value.substr(sp + 1);
      }
    }
    const std::string_view trimmed_url = TrimSpace(url);
    if (is_next && !trimmed_url.empty() &&
        std::none_of(trimmed_url.begin(), trimmed_url.end(),
                     [](char c) { return IsControl(c) || c == ' '; })) {
      return std::string(trimmed_url);
    }
    i = end + 1;
  }
  return std::nullopt;
}

std::optional<ContentRange> ParseContentRange(std::string_view value) {
  value = TrimSpace(value);
  const size_t sp = value.find(' ');
  if (sp == std::string_view::npos || !EqualsIgnoreCase(value.substr(0, sp), "bytes")) {
    return std::nullopt;
  }
  std::string_view rest = TrimSpace(value.substr(sp + 1));
  const size_t dash = rest.find('-');
  const size_t slash = rest.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) {
    return std::nullopt;
  }
  auto first = ParseDecimal(rest.substr(0, dash));
  auto last = ParseDecimal(rest.substr(dash + 1, slash - dash - 1));
  auto total = ParseDecimal(rest.substr(slash + 1));
  if (!first || !last || !total) return std::nullopt;
  if (*first > *last || *last >= *total) return std::nullopt;
  return ContentRange{*first, *last, *total};
}

std::string NormalizeEtag(std::string_view etag) {
  etag = TrimSpace(etag);
  if (etag.size() >= 2 && (etag[0] == 'W' || etag[0] == 'w') && etag[1] == '/') {
    etag.remove_prefix(2);
  }
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  return std::string(etag);
}

std::string EncodeRevision(std::string_view revision) {
  return PercentEncode(revision, false);
}

std::string EncodePath(std::string_view path) {
  return PercentEncode(path, true);
}

bool IsSafeRelativePath(std::string_view path) {
  if (path.empty() || path.size() > kMaxPathBytes) return false;
  if (std::any_of(path.begin(), path.end(),
                  [](char c) { return IsControl(static_cast<unsigned char>(c)); })) {
    return false;
  }
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string_view part = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == ".." || part.size() > kMaxPartBytes) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool IsValidRepoId(std::string_view repo_id) {
  const size_t slash = repo_id.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view parts[2] = {repo_id.substr(0, slash), repo_id.substr(slash + 1)};
  for (std::string_view part : parts) {
    if (part.empty() || part.size() > kMaxRepoPart) return false;
    if (part.front() == '.' || part.front() == '-') return false;
    if (part.find("..") != std::string_view::npos) return false;
    for (char c : part) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      if (!ok) return false;  // also rejects a second '/'
    }
  }
  return true;
}

std::optional<int> ParseRetryAfterSeconds(std::string_view retry_after,
                                          std::string_view ratelimit) {
  std::optional<int> result;
  auto consider = [&result](uint64_t v) {
    const int capped = static_cast<int>(std::min<uint64_t>(v, kMaxRetryAfterSeconds));
    if (!result || capped > *result) result = capped;
  };
  // Retry-After: delta-seconds only; an HTTP-date is ignored (the backoff applies instead).
  if (auto v = ParseDecimal(TrimSpace(retry_after))) consider(*v);
  // RateLimit: "api";r=0;t=55  -- t is the number of seconds until the window resets.
  std::string_view rest = ratelimit;
  while (!rest.empty()) {
    const size_t semi = rest.find_first_of(";,");
    std::string_view param = TrimSpace(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    if (param.size() > 2 && (param[0] == 't' || param[0] == 'T') && param[1] == '=') {
      if (auto v = ParseDecimal(TrimSpace(param.substr(2)))) consider(*v);
    }
  }
  return result;
}

}  // namespace modelfs::fetch
