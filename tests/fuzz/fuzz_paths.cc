// Fuzzes the name and path checks that stand between hostile names and the Hub URL / the
// mount: IsSafeRelativePath, IsValidRepoId, EncodeRevision/EncodePath (fetch/hub_parse.h), the
// mount's "<name>@<revision>" directory names (ParseRepoSpec, IsValidOrgName, IsCommitSha in
// fs/snapshots.h) and the control socket's "org/name@revision" (ParseRepoArg in fs/service.h).
// The checks are compared with independent implementations of the documented rules, and every
// revision the Hub could have must be reachable through the mount once percent-encoded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fetch/hub_parse.h"
#include "fs/control/service.h"
#include "fs/snapshots.h"

namespace {

void Check(bool property) {
  if (!property) __builtin_trap();
}

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

bool HasControl(std::string_view s) {
  for (char c : s) {
    if (IsControl(c)) return true;
  }
  return false;
}

// The rules of IsSafeRelativePath, written out again segment by segment.
bool SpecSafePath(std::string_view p) {
  if (p.empty() || p.size() > 4096 || HasControl(p)) return false;
  size_t start = 0;
  while (true) {
    const size_t slash = p.find('/', start);
    const size_t end = slash == std::string_view::npos ? p.size() : slash;
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.size() > 255) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool SpecRepoPart(std::string_view part) {
  if (part.empty() || part.size() > 96 || part.front() == '.' || part.front() == '-') return false;
  char prev = 0;
  for (char c : part) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

bool SpecRepoId(std::string_view id) {
  const size_t slash = id.find('/');
  return slash != std::string_view::npos && SpecRepoPart(id.substr(0, slash)) &&
         SpecRepoPart(id.substr(slash + 1));
}

// A revision the mount must be able to name: what git and the Hub could hand out.
bool SpecRevision(std::string_view rev) {
  return !rev.empty() && rev.size() <= 255 && !HasControl(rev) && rev != "." && rev != "..";
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // the encoders write upper case only
}

// Decodes what the encoders wrote; false if the encoding is not of the documented form.
bool DecodeStrict(std::string_view in, bool slash_allowed, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = Hex(in[i + 1]), lo = Hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
      continue;
    }
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~' || (slash_allowed && c == '/');
    if (!unreserved) return false;
    out->push_back(c);
  }
  return true;
}

void CheckEncoding(std::string_view text) {
  const std::string rev = modelfs::fetch::EncodeRevision(text);
  const std::string path = modelfs::fetch::EncodePath(text);
  std::string decoded;
  Check(DecodeStrict(rev, false, &decoded) && decoded == text);
  Check(DecodeStrict(path, true, &decoded) && decoded == text);
  // "." and ".." segments are removed by URL normalisation (libcurl does it): left as they are,
  // "revision/.." would ask for the repo's default branch instead.
  bool dot_segment = false;
  for (size_t start = 0; start <= text.size();) {
    const size_t slash = std::min(text.find('/', start), text.size());
    const std::string_view part = text.substr(start, slash - start);
    dot_segment = dot_segment || part == "." || part == "..";
    start = slash + 1;
  }
  Check(rev != "." && rev != "..");
  Check(("/" + path + "/").find("/./") == std::string::npos);
  Check(("/" + path + "/").find("/../") == std::string::npos);
  // Otherwise the two differ only in '/', which a revision must not keep (refs/pr/1 is one URL
  // segment).
  if (!dot_segment) {
    std::string slashes_encoded;
    for (char c : path) {
      if (c == '/') {
        slashes_encoded += "%2F";
      } else {
        slashes_encoded += c;
      }
    }
    Check(slashes_encoded == rev);
  }
}

void CheckMountName(std::string_view text) {
  // A lookup under MOUNT/<org>/ passes the org (already accepted) and the entry name.
  const size_t slash = text.find('/');
  const std::string org(text.substr(0, slash));
  const std::string entry(slash == std::string_view::npos ? text : text.substr(slash + 1));

  const bool org_ok = modelfs::fs::IsValidOrgName(org);
  Check(org_ok == (SpecRepoPart(org) && org.find('.') == std::string::npos));

  std::string repo_id = "untouched", revision = "untouched";
  if (modelfs::fs::ParseRepoSpec(org, entry, &repo_id, &revision)) {
    const size_t at = entry.find('@');
    Check(repo_id == org + "/" + entry.substr(0, at));
    Check(SpecRepoId(repo_id));
    Check(revision.empty() == (at == std::string::npos));
    if (!revision.empty()) Check(SpecRevision(revision));
    // The canonical spelling of the same directory resolves to the same repo and revision.
    const std::string name = entry.substr(0, at);
    const std::string canonical =
        revision.empty() ? name : name + "@" + modelfs::fetch::EncodeRevision(revision);
    std::string repo_id2, revision2;
    Check(modelfs::fs::ParseRepoSpec(org, canonical, &repo_id2, &revision2));
    Check(repo_id2 == repo_id && revision2 == revision);
  }

  // Every revision the Hub could have can be named: "name@" + its percent-encoding.
  if (SpecRevision(text)) {
    std::string rid, rev;
    Check(modelfs::fs::ParseRepoSpec("org", "name@" + modelfs::fetch::EncodeRevision(text), &rid,
                                     &rev));
    Check(rid == "org/name" && rev == text);
  }

  const bool commit = modelfs::fs::IsCommitSha(std::string(text));
  bool spec_commit = text.size() == 40;
  for (char c : text)
    spec_commit = spec_commit && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  Check(commit == spec_commit);
}

void CheckControlArg(std::string_view text) {
  modelfs::fs::RepoArg arg;
  if (modelfs::fs::ParseRepoArg(std::string(text), &arg)) {
    Check(SpecRepoId(arg.repo_id));
    Check(arg.revision.size() <= 255 && !HasControl(arg.revision));
    Check((arg.revision.empty() ? arg.repo_id : arg.repo_id + "@" + arg.revision) == text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const bool safe = modelfs::fetch::IsSafeRelativePath(text);
  Check(safe == SpecSafePath(text));
  if (safe) {  // spelled out, as the issue states the contract
    Check(text.front() != '/' && text.find('\0') == std::string_view::npos);
    Check(("/" + std::string(text) + "/").find("/../") == std::string::npos);
  }
  Check(modelfs::fetch::IsValidRepoId(text) == SpecRepoId(text));

  CheckEncoding(text);
  CheckMountName(text);
  CheckControlArg(text);
  return 0;
}
