// Fuzzes the HTTP header parsers of fetch/hub_parse.h: ParseContentRange, NormalizeEtag and
// ParseRetryAfterSeconds. Each input is tried as a raw header value, and its bytes also seed
// well-formed headers whose parse result is known exactly, so a parser that rejects (or
// mangles) valid values fails as surely as one that accepts garbage.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fetch/hub_parse.h"

namespace {

constexpr uint64_t kMaxDecimal = 9'999'999'999'999'999'999u;  // 19 digits, the parser's bound
constexpr int kMaxWait = 24 * 3600;

void Check(bool property) {
  if (!property) __builtin_trap();
}

uint64_t Read64(std::string_view bytes, size_t at) {
  uint64_t v = 0;
  if (at < bytes.size()) std::memcpy(&v, bytes.data() + at, std::min<size_t>(8, bytes.size() - at));
  return v;
}

void CheckContentRange(std::string_view text) {
  if (const auto cr = modelfs::fetch::ParseContentRange(text)) {
    Check(cr->first <= cr->last && cr->last < cr->total);
    // What was accepted is a range the caller can turn back into the same header.
    const std::string canonical = "bytes " + std::to_string(cr->first) + "-" +
                                  std::to_string(cr->last) + "/" + std::to_string(cr->total);
    const auto again = modelfs::fetch::ParseContentRange(canonical);
    Check(again && again->first == cr->first && again->last == cr->last &&
          again->total == cr->total);
  }
  // Any three numbers: accepted exactly when they form a satisfiable range the parser can hold.
  const uint64_t a = Read64(text, 0), b = Read64(text, 8), c = Read64(text, 16);
  const auto cr = modelfs::fetch::ParseContentRange("bytes " + std::to_string(a) + "-" +
                                                    std::to_string(b) + "/" + std::to_string(c));
  const bool valid = a <= b && b < c && c <= kMaxDecimal;
  Check(cr.has_value() == valid);
  if (cr) Check(cr->first == a && cr->last == b && cr->total == c);
  // The unsatisfiable-range form of a 416 is never a range.
  Check(!modelfs::fetch::ParseContentRange("bytes */" + std::to_string(c)));
}

void CheckEtag(std::string_view text) {
  const std::string etag = modelfs::fetch::NormalizeEtag(text);
  Check(etag.size() <= text.size() && text.find(etag) != std::string_view::npos);
  // An opaque tag with nothing to strip survives every form a server may send it in.
  const bool plain =
      text.find('"') == std::string_view::npos &&
      !(text.size() >= 2 && (text[0] == 'W' || text[0] == 'w') && text[1] == '/') &&
      (text.empty() || std::string_view(" \t\r\n").find(text.front()) == std::string_view::npos) &&
      (text.empty() || std::string_view(" \t\r\n").find(text.back()) == std::string_view::npos);
  if (plain) {
    const std::string tag(text);
    Check(etag == tag);
    Check(modelfs::fetch::NormalizeEtag("\"" + tag + "\"") == tag);
    Check(modelfs::fetch::NormalizeEtag("W/\"" + tag + "\"") == tag);
    Check(modelfs::fetch::NormalizeEtag(" W/\"" + tag + "\"\r\n") == tag);
  }
}

void CheckRetryAfter(std::string_view text) {
  // The two headers arrive separately; split the input between them, and try each alone.
  const size_t nl = text.find('\n');
  const std::string_view retry_after = text.substr(0, nl);
  const std::string_view ratelimit =
      nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  for (const auto& [r, l] : {std::pair{retry_after, ratelimit}, std::pair{text, std::string_view{}},
                             std::pair{std::string_view{}, text}}) {
    if (const auto wait = modelfs::fetch::ParseRetryAfterSeconds(r, l)) {
      Check(*wait >= 0 && *wait <= kMaxWait);
    }
  }
  // Known waits: the longer of the two is honoured, capped at a day.
  const uint64_t a = Read64(text, 0) % (kMaxDecimal + 1), b = Read64(text, 8) % (kMaxDecimal + 1);
  const auto wait = modelfs::fetch::ParseRetryAfterSeconds(std::to_string(a),
                                                           "\"api\";r=0;t=" + std::to_string(b));
  Check(wait && *wait == static_cast<int>(std::min<uint64_t>(std::max(a, b), kMaxWait)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckContentRange(text);
  CheckEtag(text);
  CheckRetryAfter(text);
  return 0;
}
