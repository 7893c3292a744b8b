// Cache operations behind the `modelfs` CLI: ls, info, stats, prefetch, pin, unpin, gc, rm,
// verify. The same code runs inside a mount (reached through the control socket) and in the CLI
// itself when no mount owns the cache. Results and progress events are JSON, which is both the
// wire format and what `--json` prints.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fs/core.h"
#include "fs/status.h"

namespace modelfs::fs {

// "org/name" or "org/name@revision" (the revision as typed: feature/x, v1.0, a commit).
struct RepoArg {
  std::string repo_id;
  std::string revision;
};
bool ParseRepoArg(const std::string& text, RepoArg* out);

// Which files of a repo: positional patterns and --include globs select (all files when both
// are empty), --exclude globs remove. Globs are fnmatch(3) patterns where '*' also matches '/'.
struct Selection {
  std::vector<std::string> patterns;
  std::vector<std::string> include;
  std::vector<std::string> exclude;
};
// Empty if every glob is well formed, else a sentence naming the bad one.
std::string CheckGlobs(const Selection& sel);

// Progress events; returns false when the client went away (the operation then stops).
using Emit = std::function<bool(const nlohmann::json& event)>;

class Service {
 public:
  explicit Service(Core& core);

  Status ls(const std::optional<RepoArg>& repo, nlohmann::json* out);
  Status info(const RepoArg& repo, nlohmann::json* out);
  Status stats(nlohmann::json* out);
  // Fetches whole files; pin also marks them so eviction never takes them.
  Status prefetch(const RepoArg& repo, const Selection& sel, unsigned jobs, bool pin,
                  const Emit& emit, nlohmann::json* out);
  Status unpin(const RepoArg& repo, const Selection& sel, nlohmann::json* out);
  Status gc(std::optional<uint64_t> to_bytes, nlohmann::json* out);
  Status rm(const std::optional<RepoArg>& repo, const Selection& sel, bool force,
            nlohmann::json* out);
  Status verify(const std::optional<RepoArg>& repo, const Emit& emit, nlohmann::json* out);

 private:
  struct FileRef {
    std::string repo_id;
    std::string commit;
    index::FileRecord file;
  };
  Status select(const RepoArg& repo, const Selection& sel, std::shared_ptr<const Snapshot>* snap,
                std::vector<FileRef>* files);
  // Every file of every revision known locally (for ls, rm, verify).
  std::vector<FileRef> known_files(const std::optional<RepoArg>& repo);

  Core& core_;
  const int64_t started_;
};

}  // namespace modelfs::fs
