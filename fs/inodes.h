// The inode table: the names the kernel holds, each with a number derived from its key.
//
// A node lives while the kernel holds a reference to it: each lookup reply adds one, each
// forget drops what the kernel says it dropped, and at zero the node goes (the root never does).
// So memory follows the kernel's dentry cache, not every name ever listed. A key's number is a
// hash of the key, so a name forgotten and looked up again gets the number it had, and a listing
// can show the number a later lookup will give without creating a node. A file's key includes
// its content id: when a branch moves and a file changes, the path gets a new inode while open
// handles keep the old content.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fs/base/mutex.h"
#include "index/meta_store.h"

namespace modelfs::fs {

// kHub*: the Hugging Face cache view at MOUNT/.hub (models--org--name/{refs,snapshots}); a
// snapshot there is a kRepo at a commit with hub set, so its inodes are its own.
enum class NodeKind {
  kRoot,
  kOrg,
  kRepo,
  kDir,
  kFile,
  kHubRoot,
  kHubRepo,
  kHubRefs,
  kHubRef,
  kHubSnapshots
};

struct Node {
  uint64_t ino = 0;
  NodeKind kind = NodeKind::kRoot;
  std::string org;       // kOrg and below
  std::string repo_id;   // kRepo and below: "org/name"
  std::string revision;  // kRepo and below: "" = default branch
  std::string rel_path;  // kDir, kFile: path inside the repo ("" for the repo root)
  bool hub = false;      // kRepo and below: seen through MOUNT/.hub
  // kFile only: the file as it was when looked up.
  index::FileRecord file;
  std::string commit;  // kFile, kHubRef (its content)
  int64_t mtime = 0;
  bool immutable = false;
};

inline constexpr uint64_t kRootIno = 1;

class InodeTable {
 public:
  using KeyHash = uint64_t (*)(const std::string& key);
  // hash: for tests that force collisions; the default is the standard string hash.
  explicit InodeTable(KeyHash hash = nullptr);
  std::shared_ptr<const Node> get(uint64_t ino) const;
  // The node for key, created from proto (whose ino is ignored) if new, with one more kernel
  // reference: call it only for a node a lookup reply hands to the kernel.
  std::shared_ptr<const Node> lookup(const std::string& key, Node proto);
  // The node for key as a listing shows it, without a kernel reference: the live node if there
  // is one, else proto numbered as lookup would number it now.
  std::shared_ptr<const Node> peek(const std::string& key, Node proto) const;
  // The kernel dropped n references to ino; a node left with none is removed and returned.
  std::shared_ptr<const Node> forget(uint64_t ino, uint64_t n);
  // Shrinks the table's index to what the live nodes need (it never shrinks by itself).
  void compact();
  // Nodes alive (the kernel holds them, plus the fixed ones).
  size_t size() const;
  // File inodes whose bytes are this content (a rare full scan: used after a sha256 mismatch).
  std::vector<uint64_t> files_with_content(const std::string& content_id) const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Node> node;
    uint64_t refs = 0;
    bool fixed = false;  // the root: never forgotten
  };
  // The number key has, or would get: its hash, or the next free number when another key holds
  // that one (rare in 2^63, but two names must never share a number).
  uint64_t home_of(const std::string& key) const;
  uint64_t number_of(const std::string& key, bool* live) const REQUIRES_SHARED(mu_);

  const KeyHash hash_;
  mutable SharedMutex mu_;
  std::unordered_map<uint64_t, Entry> by_ino_ GUARDED_BY(mu_);
  // Live keys that are not at their hash's number.
  std::unordered_map<std::string, uint64_t> displaced_ GUARDED_BY(mu_);
};

}  // namespace modelfs::fs
