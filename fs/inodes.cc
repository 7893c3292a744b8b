#include "fs/inodes.h"

#include <functional>
#include <mutex>

namespace modelfs::fs {

namespace {

// Hashed numbers start above the fixed ones; 63 bits keep them positive as an off_t or ino_t.
constexpr uint64_t kFirstHashed = 16;
constexpr uint64_t kInoMask = (uint64_t{1} << 63) - 1;

uint64_t Clamp(uint64_t n) {
  n &= kInoMask;
  return n < kFirstHashed ? n + kFirstHashed : n;
}

}  // namespace

InodeTable::InodeTable(KeyHash hash) : hash_(hash) {
  auto root = std::make_shared<Node>();
  root->ino = kRootIno;
  root->kind = NodeKind::kRoot;
  by_ino_[kRootIno] = {"/", root, 0, true};
}

std::shared_ptr<const Node> InodeTable::get(uint64_t ino) const {
  ReaderLock lock(mu_);
  auto it = by_ino_.find(ino);
  return it == by_ino_.end() ? nullptr : it->second.node;
}

uint64_t InodeTable::home_of(const std::string& key) const {
  // libstdc++'s string hash has no per-process seed: numbers also stay the same across mounts.
  return Clamp(hash_ ? hash_(key) : std::hash<std::string>{}(key));
}

uint64_t InodeTable::number_of(const std::string& key, bool* live) const {
  if (auto moved = displaced_.find(key); moved != displaced_.end()) {
    *live = true;
    return moved->second;
  }
  uint64_t n = home_of(key);
  auto it = by_ino_.find(n);
  *live = it != by_ino_.end() && it->second.key == key;
  if (it == by_ino_.end() || *live) return n;
  // Another key holds this number: take the next free one (lookup records it in displaced_).
  while (by_ino_.count(n) != 0) n = Clamp(n + 1);
  return n;
}

std::shared_ptr<const Node> InodeTable::lookup(const std::string& key, Node proto) {
  WriterLock lock(mu_);
  bool live = false;
  uint64_t n = number_of(key, &live);
  if (live) {
    Entry& e = by_ino_.at(n);
    ++e.refs;
    return e.node;
  }
  proto.ino = n;
  auto node = std::make_shared<const Node>(std::move(proto));
  if (n != home_of(key)) displaced_.emplace(key, n);
  by_ino_.emplace(n, Entry{key, node, 1, false});
  return node;
}

std::shared_ptr<const Node> InodeTable::peek(const std::string& key, Node proto) const {
  ReaderLock lock(mu_);
  bool live = false;
  uint64_t n = number_of(key, &live);
  if (live) return by_ino_.at(n).node;
  proto.ino = n;
  return std::make_shared<const Node>(std::move(proto));
}

std::shared_ptr<const Node> InodeTable::forget(uint64_t ino, uint64_t n) {
  WriterLock lock(mu_);
  auto it = by_ino_.find(ino);
  if (it == by_ino_.end() || it->second.fixed) return nullptr;
  Entry& e = it->second;
  e.refs = n >= e.refs ? 0 : e.refs - n;
  if (e.refs != 0) return nullptr;
  auto node = std::move(e.node);
  displaced_.erase(e.key);
  by_ino_.erase(it);
  return node;
}

void InodeTable::compact() {
  WriterLock lock(mu_);
  by_ino_.rehash(0);
  displaced_.rehash(0);
}

size_t InodeTable::size() const {
  ReaderLock lock(mu_);
  return by_ino_.size();
}

std::vector<uint64_t> InodeTable::files_with_content(const std::string& content_id) const {
  std::vector<uint64_t> out;
  ReaderLock lock(mu_);
  for (const auto& [ino, e] : by_ino_) {
    if (e.node->kind == NodeKind::kFile && e.node->file.content_id() == content_id) {
      out.push_back(ino);
    }
  }
  return out;
}

}  // namespace modelfs::fs
