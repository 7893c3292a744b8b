// Single-flight fetching: at most one fetch per chunk, however many readers want it. A reader
// claims the chunks it will fetch; others find them in flight and wait for the same bytes.
//
// Invariant: a chunk leaves the registry only after it was stored (or failed), and claim()
// checks presence under the registry's lock, so a chunk is always visible in one of the two.
//
// Thread safety: all methods may be called concurrently. Lock order: the registry's lock, then
// whatever `present` takes (the chunk store, the hot tier).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/read/chunk.h"

namespace modelfs::fs {

// A chunk being fetched, and then its outcome.
class Pending {
 public:
  // Waits until the fetch finished or the deadline passed; false on timeout.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  void wait();  // for fetches bounded by their own deadline
  Status status();
  ChunkRef data();  // null unless the fetch succeeded

 private:
  friend class Inflight;
  Mutex mu_;
  CondVar cv_;
  bool done_ GUARDED_BY(mu_) = false;
  Status status_ GUARDED_BY(mu_);
  ChunkRef data_ GUARDED_BY(mu_);
};
using PendingList = std::vector<std::shared_ptr<Pending>>;

class Inflight {
 public:
  // Registers chunks first, first+1, ... (< end) that are neither present nor in flight,
  // stopping at the first that is; the caller must then fetch exactly those, in order.
  PendingList claim(const std::string& cid, uint32_t first, uint32_t end,
                    const std::function<bool(uint32_t index)>& present);
  std::shared_ptr<Pending> find(const std::string& cid, uint32_t index);
  // Removes the chunk from the registry, then wakes its waiters with the outcome.
  void finish(const std::string& cid, uint32_t index, Pending& p, Status status, ChunkRef data);
  size_t size() const;

 private:
  struct Key {
    std::string cid;
    uint32_t index = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept {
      return std::hash<std::string>()(k.cid) ^ (size_t{k.index} * 0x9e3779b97f4a7c15ull);
    }
  };
  mutable Mutex mu_;
  std::unordered_map<Key, std::shared_ptr<Pending>, KeyHash> chunks_ GUARDED_BY(mu_);
};

}  // namespace modelfs::fs
