// The inode table: every name the kernel has been given, with a stable number.
//
// Numbers are handed out once per key and never reused while mounted, so the kernel can cache
// freely. A file's key includes its content id: when a branch moves and a file changes, the
// path gets a new inode while open handles keep the old content.
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

enum class NodeKind { kRoot, kOrg, kRepo, kDir, kFile };

struct Node {
  uint64_t ino = 0;
  NodeKind kind = NodeKind::kRoot;
  std::string org;       // kOrg and below
  std::string repo_id;   // kRepo and below: "org/name"
  std::string revision;  // kRepo and below: "" = default branch
  std::string rel_path;  // kDir, kFile: path inside the repo ("" for the repo root)
  // kFile only: the file as it was when looked up.
  index::FileRecord file;
  std::string commit;
  int64_t mtime = 0;
  bool immutable = false;
};

inline constexpr uint64_t kRootIno = 1;

class InodeTable {
 public:
  InodeTable();
  std::shared_ptr<const Node> get(uint64_t ino) const;
  // Returns the node for key, creating it from proto (whose ino is ignored) if new.
  std::shared_ptr<const Node> intern(const std::string& key, Node proto);
  size_t size() const;
  // File inodes whose bytes are this content (a rare full scan: used after a sha256 mismatch).
  std::vector<uint64_t> files_with_content(const std::string& content_id) const;

 private:
  mutable SharedMutex mu_;
  uint64_t next_ GUARDED_BY(mu_) = kRootIno + 1;
  std::unordered_map<uint64_t, std::shared_ptr<const Node>> by_ino_ GUARDED_BY(mu_);
  std::unordered_map<std::string, uint64_t> by_key_ GUARDED_BY(mu_);
};

}  // namespace modelfs::fs
