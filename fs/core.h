// The filesystem core: the <org>/<name>[@rev]/<path> namespace and reads, in terms of
// inode numbers and byte ranges. The FUSE adapter is a thin layer over it; the CLI can use it
// without a mount.
//
// Layout: 1 = root (holds the orgs and .hub, the Hugging Face cache view), then orgs, repos at a
// revision, folders and files. Files are read-only and immutable per inode.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/inodes.h"
#include "fs/options.h"
#include "fs/read/reader.h"
#include "fs/snapshots.h"
#include "index/cache.h"

namespace modelfs::fs {

struct Attr {
  uint64_t ino = 0;
  bool is_dir = false;
  uint64_t size = 0;
  int64_t mtime = 0;
  double timeout = 1.0;  // seconds the kernel may cache this entry and its attributes
};

struct DirEntry {
  std::string name;
  Attr attr;
};

struct CoreStats {
  ReaderStats reader;
  index::ChunkStoreStats cache;
  fetch::HubCounters hub;
  uint64_t inodes = 0;
  uint64_t trees_in_memory = 0;  // repo@revision trees held (others are rebuilt from the index)
  uint64_t open_files = 0;
  int64_t uptime_seconds = 0;
};

class Core {
 public:
  Core(CoreOptions options, index::Cache& cache, fetch::HubClient& hub);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // A successful lookup hands the kernel one reference to out->ino; forget returns them.
  Status lookup(uint64_t parent, std::string_view name, Attr* out);
  void forget(uint64_t ino, uint64_t lookups);
  Status getattr(uint64_t ino, Attr* out);
  Status readdir(uint64_t ino, std::vector<DirEntry>* out);

  // Opens a file for reading; *handle is passed back to read and release.
  Status open(uint64_t ino, uint64_t* handle);
  // *out points into chunk buffers kept alive by it: a reply needs no copy.
  Status read(uint64_t handle, uint64_t offset, size_t size, ReadPieces* out);
  Status read(uint64_t handle, uint64_t offset, size_t size, std::string* out);
  void release(uint64_t handle);

  // Extended attributes: user.modelfs.{revision,commit,content_id,sha256,cached_bytes,pinned}.
  Status getxattr(uint64_t ino, std::string_view name, std::string* value);
  Status listxattr(uint64_t ino, std::vector<std::string>* names);

  // Called with each inode whose cached pages must be dropped (its data turned out wrong).
  // The FUSE adapter sets it while mounted; it must not block on FUSE requests.
  void set_kernel_invalidator(std::function<void(uint64_t ino)> fn);

  // Seconds the kernel may cache a negative lookup.
  double negative_timeout() const;
  CoreStats stats() const;
  const CoreOptions& options() const { return options_; }

  // The commit and tree of repo_id at revision ("" = default branch), as a lookup sees them.
  Status snapshot(const std::string& repo_id, const std::string& revision,
                  std::shared_ptr<const Snapshot>* out);
  // Makes every chunk of a file present and checks its sha256 (see Reader::fetch_all).
  Status fetch_all(const fetch::FileLocation& loc, const std::string& content_id, unsigned jobs,
                   const std::function<bool(uint64_t)>& progress);

  // Which repos are shown (replaceable at run time, e.g. on a config reload), and forgetting
  // remembered misses and refusals after a new token or policy.
  void set_policy(PolicyRules rules);
  void forget_misses();
  // The content's bytes kept in memory go too, once its chunks are removed from the cache.
  void forget_content(const std::string& content_id) { reader_.forget_content(content_id); }

 private:
  // Whether a node found is handed to the kernel (a lookup reply) or only shown (a listing).
  enum class Ref { kKernel, kNone };
  std::shared_ptr<const Node> intern(Ref ref, const std::string& key, Node proto);
  Status child_of(Ref ref, const Node& dir, std::string_view name,
                  std::shared_ptr<const Node>* out);
  Status snapshot_of(const Node& node, std::shared_ptr<const Snapshot>* out);
  Attr attr_of(const Node& node) const;
  // Model-aware prefetch: the other shards of a sharded checkpoint, on opening one of them.
  void prefetch_model_set(const Node& node);
  std::shared_ptr<const Node> repo_child(Ref ref, const Node& parent, const Snapshot& snap,
                                         const std::string& rel_path, const Snapshot::Child& c);

  CoreOptions options_;
  index::Cache& cache_;
  fetch::HubClient& hub_;
  AccessPolicy policy_;
  Snapshots snapshots_;
  InodeTable inodes_;
  HubUpstream upstream_;
  Reader reader_;
  std::atomic<uint64_t> open_files_{0};
  // Most inodes alive at once since the heap was last trimmed (see forget).
  static constexpr uint64_t kTrimAfterInodes = 10000;
  std::atomic<uint64_t> inode_peak_{0};
  // Handles still open when the mount goes away (a lazy unmount sends no release) are freed
  // by the destructor.
  Mutex handles_mu_;
  std::unordered_set<OpenFile*> handles_ GUARDED_BY(handles_mu_);
  const int64_t started_;
  Mutex invalidator_mu_;
  std::function<void(uint64_t)> invalidator_ GUARDED_BY(invalidator_mu_);
};

}  // namespace modelfs::fs
