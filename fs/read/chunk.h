// The bytes of one chunk held in memory, shared by whoever reads them (a FUSE reply, the hash
// cursor, the hot tier) without copying; and the pieces a read is answered with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modelfs::fs {

class ChunkData {
 public:
  // block: at least capacity bytes (from a BufferPool), not zeroed.
  ChunkData(std::shared_ptr<char[]> block, size_t capacity)
      : bytes_(std::move(block)), capacity_(capacity) {}
  const char* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  // Filling (by the one fetch that owns it, before it is shared).
  char* tail() { return bytes_.get() + size_; }
  size_t room() const { return capacity_ - size_; }
  void grow(size_t n) { size_ += n; }

 private:
  std::shared_ptr<char[]> bytes_;  // not zeroed: every byte is written before it is read
  size_t capacity_;
  size_t size_ = 0;
};
using ChunkRef = std::shared_ptr<const ChunkData>;

// An answer to a read: pieces of memory in file order, each kept alive by its owner.
struct ReadPieces {
  struct Piece {
    std::shared_ptr<const void> owner;
    const char* data = nullptr;
    size_t size = 0;
  };
  std::vector<Piece> pieces;
  size_t size = 0;

  void clear() {
    pieces.clear();
    size = 0;
  }
  void add(std::shared_ptr<const void> owner, const char* data, size_t n) {
    if (n == 0) return;
    pieces.push_back({std::move(owner), data, n});
    size += n;
  }
  std::string flatten() const {
    std::string out;
    out.reserve(size);
    for (const auto& p : pieces) out.append(p.data, p.size);
    return out;
  }
};

}  // namespace modelfs::fs
