// Chunk-sized buffers for fetched and read-back chunks, reused. Left to malloc, 1 MiB blocks
// freed by one thread and wanted by another piled up in glibc's per-thread arenas: with the
// fetch and FUSE threads the mount's peak RSS was about 100 MiB above what it held (measured
// against MALLOC_ARENA_MAX=1). Blocks are mapped directly, and those beyond `keep` idle ones
// go back to the kernel at once.
//
// Thread safety: all methods may be called concurrently; a block may be dropped by any thread,
// also after the pool itself is gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace modelfs::fs {

struct BufferPoolStats {
  uint64_t mapped = 0;  // blocks mapped now (in use or idle)
  uint64_t idle = 0;
  uint64_t peak_mapped = 0;
};

class BufferPool {
 public:
  BufferPool(size_t block_size, size_t keep);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A block of block_size() bytes, not zeroed. Throws std::bad_alloc when nothing can be
  // mapped, as operator new would.
  std::shared_ptr<char[]> get();
  size_t block_size() const;
  BufferPoolStats stats() const;

 private:
  struct State;
  struct Return;  // the blocks' deleter
  std::shared_ptr<State> state_;
};

}  // namespace modelfs::fs
