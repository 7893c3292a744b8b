#include "fs/read/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <vector>

#include "fs/base/mutex.h"

namespace modelfs::fs {

struct BufferPool::State {
  State(size_t size, size_t keep_blocks) : block_size(size), keep(keep_blocks) {}
  ~State() {
    for (void* p : idle) ::munmap(p, block_size);
  }

  void put(char* p) {
    {
      MutexLock lock(mu);
      if (idle.size() < keep) {
        idle.push_back(p);
        return;
      }
      --mapped;
    }
    ::munmap(p, block_size);
  }

  const size_t block_size;
  const size_t keep;
  Mutex mu;
  std::vector<void*> idle GUARDED_BY(mu);
  uint64_t mapped GUARDED_BY(mu) = 0;
  uint64_t peak GUARDED_BY(mu) = 0;
};

// Hands a block back to the pool's state, which it keeps alive.
struct BufferPool::Return {
  std::shared_ptr<State> state;
  void operator()(char* p) const { state->put(p); }
};

BufferPool::BufferPool(size_t block_size, size_t keep)
    : state_(std::make_shared<State>(block_size, keep)) {}

BufferPool::~BufferPool() = default;

std::shared_ptr<char[]> BufferPool::get() {
  void* p = nullptr;
  {
    MutexLock lock(state_->mu);
    if (!state_->idle.empty()) {
      p = state_->idle.back();
      state_->idle.pop_back();
    }
  }
  if (p == nullptr) {
    p = ::mmap(nullptr, state_->block_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
               0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    MutexLock lock(state_->mu);
    state_->peak = std::max(state_->peak, ++state_->mapped);
  }
  return {static_cast<char*>(p), Return{state_}};
}

size_t BufferPool::block_size() const {
  return state_->block_size;
}

BufferPoolStats BufferPool::stats() const {
  MutexLock lock(state_->mu);
  return {state_->mapped, state_->idle.size(), state_->peak};
}

}  // namespace modelfs::fs
