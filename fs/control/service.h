// Cache operations behind the `modelfs` CLI: ls, info, stats, prefetch, pin, unpin, gc, rm,
// verify. The same code runs inside a mount (reached through the control socket) and in the CLI
// itself when no mount owns the cache. Operations return plain values; the control socket's
// JSON is made from them in wire.cc.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/status.h"
#include "fs/core.h"
#include "fs/formats/model_info.h"
#include "index/cache.h"

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

struct FileUsage {
  std::string path;
  std::string commit;
  uint64_t size = 0;
  uint64_t cached_bytes = 0;
  bool pinned = false;
  int64_t last_access = 0;  // unix seconds, 0 = never
};

struct RepoUsage {
  std::string repo;
  uint64_t size_on_disk = 0;
  int cached_files = 0;
  int complete_files = 0;
  int pinned_files = 0;
  int64_t last_access = 0;
  std::map<std::string, std::string> revisions;  // revision as asked ("" = default) -> commit
  std::vector<FileUsage> files;                  // only when ls was asked about one repo
};

struct LsResult {
  std::vector<RepoUsage> repos;
  bool per_file = false;  // one repo was asked about: RepoUsage::files is filled
};

struct FileInfo {
  std::string path;
  uint64_t size = 0;
  uint64_t cached_bytes = 0;
  bool lfs = false;
  std::optional<ModelInfo> model;  // GGUF or safetensors header, when readable
  std::string model_error;         // why a model header could not be read
};

struct InfoResult {
  std::string repo;
  std::string revision;  // "main" for the default branch
  std::string commit;
  std::vector<std::string> architectures;  // config.json "architectures", when present
  std::vector<FileInfo> files;
  uint64_t total_bytes = 0;
  uint64_t cached_bytes = 0;
};

struct StatsResult {
  std::string cache_dir;
  bool model_prefetch = false;
  CoreStats core;
};

// Progress of a prefetch, in order: one kStart, kProgress at most every 100 ms, one kFileDone
// per file.
struct PrefetchEvent {
  enum class Kind { kStart, kProgress, kFileDone };
  Kind kind = Kind::kStart;
  std::string repo, commit;   // kStart
  size_t files = 0;           // kStart: files to fetch
  uint64_t cached_bytes = 0;  // kStart: already cached
  std::string file;           // kProgress, kFileDone
  uint64_t size = 0;          // kFileDone
  uint64_t fetched = 0;       // kFileDone: bytes this file needed
  int files_done = 0;         // kProgress, kFileDone
  uint64_t bytes_done = 0;    // every kind after kStart
  uint64_t total_bytes = 0;
};
// Returns false when the client went away (the operation then stops).
using PrefetchProgress = std::function<bool(const PrefetchEvent&)>;

struct PrefetchResult {
  std::string repo, commit;
  int files = 0;
  uint64_t total_bytes = 0;
  uint64_t already_cached_bytes = 0;
  uint64_t fetched_bytes = 0;
  double seconds = 0;
  bool pinned = false;
};

struct UnpinResult {
  std::string repo;
  int unpinned_files = 0;
};

struct GcResult {
  uint64_t freed_bytes = 0, used_bytes = 0, target_bytes = 0, pinned_bytes = 0;
};

struct RmResult {
  int removed_files = 0;
  uint64_t freed_bytes = 0;
  uint64_t pinned_bytes_kept = 0;
};

struct VerifyEvent {
  std::string repo, file;
  bool ok = true;
};
using VerifyProgress = std::function<bool(const VerifyEvent&)>;

struct CorruptFile {
  std::string repo, path, content_id;
};
struct VerifyResult {
  int checked_files = 0;
  int corrupt_files = 0;
  uint64_t verified_bytes = 0;
  std::vector<CorruptFile> corrupt;
};

class Service {
 public:
  // hub reads small header ranges for info without caching them.
  Service(Core& core, index::Cache& cache, fetch::HubClient& hub);

  Status ls(const std::optional<RepoArg>& repo, LsResult* out);
  Status info(const RepoArg& repo, InfoResult* out);
  Status stats(StatsResult* out);
  // Fetches whole files; pin also marks them so eviction never takes them. *out is filled on
  // failure too (what was done before it).
  Status prefetch(const RepoArg& repo, const Selection& sel, unsigned jobs, bool pin,
                  const PrefetchProgress& progress, PrefetchResult* out);
  Status unpin(const RepoArg& repo, const Selection& sel, UnpinResult* out);
  Status gc(std::optional<uint64_t> to_bytes, GcResult* out);
  // kNoAccess (with *out filled) when pinned data was kept because force was not given.
  Status rm(const std::optional<RepoArg>& repo, const Selection& sel, bool force, RmResult* out);
  Status verify(const std::optional<RepoArg>& repo, const VerifyProgress& progress,
                VerifyResult* out);

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
  index::ChunkStore& chunks_;
  index::MetaStore& meta_;
  std::string cache_dir_;
  fetch::HubClient& hub_;
};

}  // namespace modelfs::fs
