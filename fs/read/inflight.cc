#include "fs/read/inflight.h"

namespace modelfs::fs {

bool Pending::wait_until(std::chrono::steady_clock::time_point deadline) {
  MutexLock lock(mu_);
  while (!done_) {
    if (!cv_.wait_until(lock, deadline) && !done_) return false;
  }
  return true;
}

void Pending::wait() {
  MutexLock lock(mu_);
  while (!done_) cv_.wait(lock);
}

Status Pending::status() {
  MutexLock lock(mu_);
  return status_;
}

ChunkRef Pending::data() {
  MutexLock lock(mu_);
  return data_;
}

PendingList Inflight::claim(const std::string& cid, uint32_t first, uint32_t end,
                            const std::function<bool(uint32_t)>& present) {
  PendingList out;
  MutexLock lock(mu_);
  for (uint32_t i = first; i < end; ++i) {
    if (present(i)) break;
    auto [it, inserted] = chunks_.try_emplace(Key{cid, i}, nullptr);
    if (!inserted) break;
    it->second = std::make_shared<Pending>();
    out.push_back(it->second);
  }
  return out;
}

std::shared_ptr<Pending> Inflight::find(const std::string& cid, uint32_t index) {
  MutexLock lock(mu_);
  auto it = chunks_.find(Key{cid, index});
  return it == chunks_.end() ? nullptr : it->second;
}

void Inflight::finish(const std::string& cid, uint32_t index, Pending& p, Status status,
                      ChunkRef data) {
  {
    MutexLock lock(mu_);
    chunks_.erase(Key{cid, index});
  }
  {
    MutexLock lock(p.mu_);
    p.done_ = true;
    p.status_ = std::move(status);
    p.data_ = std::move(data);
  }
  p.cv_.notify_all();
}

size_t Inflight::size() const {
  MutexLock lock(mu_);
  return chunks_.size();
}

}  // namespace modelfs::fs
