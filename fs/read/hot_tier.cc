#include "fs/read/hot_tier.h"

namespace modelfs::fs {

void HotTier::put(const std::string& cid, uint32_t index, ChunkRef data) {
  if (max_bytes_ == 0 || !data) return;
  MutexLock lock(mu_);
  std::string key = Key(cid, index);
  auto [it, inserted] = chunks_.try_emplace(key, nullptr);
  if (!inserted) return;
  bytes_ += data->size();
  it->second = std::move(data);
  order_.push_back(std::move(key));
  while (bytes_ > max_bytes_ && !order_.empty()) {
    auto old = chunks_.find(order_.front());
    if (old != chunks_.end()) {
      bytes_ -= old->second->size();
      chunks_.erase(old);
    }
    order_.pop_front();
  }
  // Forgotten keys left in order_ are skipped when they come up; keep the queue bounded.
  if (order_.size() > 4 * chunks_.size() + 64) {
    std::deque<std::string> kept;
    for (auto& k : order_) {
      if (chunks_.count(k)) kept.push_back(std::move(k));
    }
    order_.swap(kept);
  }
  count_ = chunks_.size();
}

ChunkRef HotTier::get(const std::string& cid, uint32_t index) {
  if (count_.load(std::memory_order_relaxed) == 0) return nullptr;  // the usual case
  MutexLock lock(mu_);
  auto it = chunks_.find(Key(cid, index));
  return it == chunks_.end() ? nullptr : it->second;
}

void HotTier::drop(const std::string& cid, uint32_t index) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  MutexLock lock(mu_);
  auto it = chunks_.find(Key(cid, index));
  if (it == chunks_.end()) return;
  bytes_ -= it->second->size();
  chunks_.erase(it);
  count_ = chunks_.size();
}

void HotTier::forget(const std::string& cid) {
  MutexLock lock(mu_);
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    if (it->first.size() > cid.size() && it->first.compare(0, cid.size(), cid) == 0 &&
        it->first[cid.size()] == ':') {
      bytes_ -= it->second->size();
      it = chunks_.erase(it);
    } else {
      ++it;
    }
  }
  count_ = chunks_.size();
}

uint64_t HotTier::bytes() const {
  MutexLock lock(mu_);
  return bytes_;
}

}  // namespace modelfs::fs
