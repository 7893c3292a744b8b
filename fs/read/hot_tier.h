// The chunks fetched last, kept in memory (bounded): the reader that asked for them is usually
// right behind, and when the disk cache has no room they are the only copy.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "fs/base/mutex.h"
#include "fs/read/chunk.h"

namespace modelfs::fs {

class HotTier {
 public:
  explicit HotTier(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  // Keeps the chunk, dropping the oldest beyond max_bytes. A chunk already kept stays as is.
  void put(const std::string& cid, uint32_t index, ChunkRef data);
  ChunkRef get(const std::string& cid, uint32_t index);
  void drop(const std::string& cid, uint32_t index);
  void forget(const std::string& cid);  // every chunk of the content
  uint64_t bytes() const;
  uint64_t max_bytes() const { return max_bytes_; }

 private:
  static std::string Key(const std::string& cid, uint32_t index) {
    return cid + ':' + std::to_string(index);
  }
  const uint64_t max_bytes_;
  mutable Mutex mu_;
  std::unordered_map<std::string, ChunkRef> chunks_ GUARDED_BY(mu_);
  std::deque<std::string> order_ GUARDED_BY(mu_);  // oldest first; may name forgotten keys
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  std::atomic<size_t> count_{0};  // chunks_.size(), read without the lock on the common path
};

}  // namespace modelfs::fs
