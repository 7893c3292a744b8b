#include "fs/inodes.h"

#include <mutex>

namespace modelfs::fs {

InodeTable::InodeTable() {
  auto root = std::make_shared<Node>();
  root->ino = kRootIno;
  root->kind = NodeKind::kRoot;
  by_ino_[kRootIno] = root;
}

std::shared_ptr<const Node> InodeTable::get(uint64_t ino) const {
  ReaderLock lock(mu_);
  auto it = by_ino_.find(ino);
  return it == by_ino_.end() ? nullptr : it->second;
}

std::shared_ptr<const Node> InodeTable::intern(const std::string& key, Node proto) {
  {
    ReaderLock lock(mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) return by_ino_.at(it->second);
  }
  WriterLock lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) return by_ino_.at(it->second);
  proto.ino = next_++;
  auto node = std::make_shared<const Node>(std::move(proto));
  by_key_.emplace(key, node->ino);
  by_ino_.emplace(node->ino, node);
  return node;
}

size_t InodeTable::size() const {
  ReaderLock lock(mu_);
  return by_ino_.size();
}

std::vector<uint64_t> InodeTable::files_with_content(const std::string& content_id) const {
  std::vector<uint64_t> out;
  ReaderLock lock(mu_);
  for (const auto& [ino, node] : by_ino_) {
    if (node->kind == NodeKind::kFile && node->file.content_id() == content_id) out.push_back(ino);
  }
  return out;
}

}  // namespace modelfs::fs
