// Fuzzes what the Hub's JSON and pagination answers go through: ParseTreePage, ParseRepoInfo and
// ParseLinkNext. Beyond "no crash", it checks the contracts the rest of modelfs relies on: every
// kept tree entry is a safe relative path with a bounded size and a well-formed content id,
// nothing is lost silently (kept + skipped = array length), and errors are kProtocol values
// that leave the output alone.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/hub_parse.h"

namespace {

using modelfs::Code;
using modelfs::Status;
using modelfs::fetch::RepoInfo;
using modelfs::fetch::TreeEntry;

void Check(bool property) {
  if (!property) __builtin_trap();
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool HasControl(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// Written from the header's contract, independently of IsSafeRelativePath.
bool PathIsSafe(std::string_view p) {
  if (p.empty() || p.size() > 4096 || p.front() == '/' || p.back() == '/' || HasControl(p)) {
    return false;
  }
  if (p.find("//") != std::string_view::npos) return false;
  for (size_t start = 0; start <= p.size();) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    const std::string_view part = p.substr(start, end - start);
    if (part == "." || part == ".." || part.size() > 255) return false;
    start = end + 1;
  }
  return true;
}

void CheckTreePage(std::string_view text) {
  // A sentinel entry and a non-zero counter: a page appends and accumulates, never resets.
  std::vector<TreeEntry> out(1);
  out[0].path = "sentinel";
  size_t skipped = 7;
  const Status st = modelfs::fetch::ParseTreePage(text, &out, &skipped);
  Check(out.size() >= 1 && out[0].path == "sentinel");

  const auto doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (!st.ok()) {
    Check(st.code() == Code::kProtocol && !st.message().empty());
    Check(out.size() == 1 && skipped == 7);
    Check(doc.is_discarded() || !doc.is_array());
    return;
  }
  Check(doc.is_array());
  const size_t kept = out.size() - 1;
  Check(kept + (skipped - 7) == doc.size());

  // Kept entries come out in page order, each with the path the page gave it.
  size_t k = 1;
  for (const auto& e : doc) {
    if (k == out.size()) break;
    if (!e.is_object()) continue;
    auto p = e.find("path");
    if (p != e.end() && p->is_string() && p->get_ref<const std::string&>() == out[k].path) ++k;
  }
  Check(k == out.size());

  for (size_t i = 1; i < out.size(); ++i) {
    const TreeEntry& e = out[i];
    Check(modelfs::fetch::IsSafeRelativePath(e.path) && PathIsSafe(e.path));
    Check(e.size <= (uint64_t{1} << 50));
    Check(e.oid.empty() || ((e.oid.size() == 40 || e.oid.size() == 64) && IsLowerHex(e.oid)));
    Check(e.lfs_sha256.empty() || (e.lfs_sha256.size() == 64 && IsLowerHex(e.lfs_sha256)));
    if (e.is_dir) {
      Check(e.size == 0 && e.lfs_sha256.empty());
    } else {
      Check(!e.oid.empty());  // a file without a content id cannot be cached
    }
  }
}

void CheckRepoInfo(std::string_view text) {
  RepoInfo info;
  info.id = "untouched";
  const Status st = modelfs::fetch::ParseRepoInfo(text, &info);
  if (!st.ok()) {
    Check(st.code() == Code::kProtocol && !st.message().empty());
    Check(info.id == "untouched");
    return;
  }
  Check(modelfs::fetch::IsValidRepoId(info.id));
  Check(info.sha.size() == 40 && IsLowerHex(info.sha));
  Check(info.gated.empty() || info.gated == "auto" || info.gated == "manual");
  Check(info.last_modified.size() <= 64 && !HasControl(info.last_modified));
}

void CheckLinkNext(std::string_view text) {
  const auto next = modelfs::fetch::ParseLinkNext(text);
  if (next) {
    // The URL is taken verbatim from the header: never empty, never split by a space.
    Check(!next->empty() && text.find(*next) != std::string_view::npos);
    Check(!HasControl(*next) && next->find(' ') == std::string::npos);
    Check(next->find('>') == std::string::npos);
  }
  // Any URL a server could put between <> is found again behind a rel="prev" link.
  const bool usable =
      !text.empty() && !HasControl(text) && text.find_first_of("> ") == std::string_view::npos;
  if (usable) {
    const std::string header = "</api/models/o/n/tree/main?cursor=prev>; rel=\"prev\", <" +
                               std::string(text) + ">; rel=\"next\"";
    const auto found = modelfs::fetch::ParseLinkNext(header);
    Check(found && *found == text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckTreePage(text);
  CheckRepoInfo(text);
  CheckLinkNext(text);
  return 0;
}
