// sha256 verification of LFS files (content id = sha256) as their chunks land. The Hub gives
// one sha256 per file, so chunks are hashed in file order by one cursor per file: a chunk that
// arrives in order is hashed from memory; one that arrives early waits in memory (bounded)
// until the cursor reaches it, or is read back from the store then. A match is recorded in the
// store (mark_verified); a mismatch drops the content everywhere (drop_bad_content).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "fetch/hub_client.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"
#include "fs/read/buffer_pool.h"
#include "fs/read/chunk.h"
#include "fs/read/hot_tier.h"
#include "index/chunk_store.h"

namespace modelfs::fs {

struct VerifierStats {
  uint64_t files_verified = 0;
  uint64_t sha256_mismatches = 0;
  uint64_t hashed_from_memory = 0;  // bytes
  uint64_t hashed_from_disk = 0;    // bytes read back from the store to be hashed
};

class Verifier {
 public:
  Verifier(index::ChunkStore& store, HotTier& hot, BufferPool& buffers, uint64_t backlog_bytes);
  ~Verifier();

  static bool IsSha256(const std::string& cid) { return cid.size() == 64; }

  // A chunk is about to be stored (again): if the cursor already hashed it, the running hash
  // no longer describes the stored bytes, so it starts over.
  void before_put(const std::string& cid, uint32_t index);
  // Chunk `index` was just stored; data holds its bytes (may be null: read back if needed).
  void advance(const fetch::FileLocation& loc, const std::string& cid, uint32_t index,
               const ChunkRef& data);
  // Ok if the file is verified (or not an LFS file); kNotFound if chunks are missing; kIo on
  // a mismatch (the bad data is dropped by then).
  Status verify_complete(const fetch::FileLocation& loc, const std::string& cid);
  // The upstream sent wrong bytes: count and log it, drop the content from the store and the
  // hot tier, tell on_dropped (for the kernel's page cache) and bump the content's epoch.
  void drop_bad_content(const fetch::FileLocation& loc, const std::string& cid,
                        const std::string& why);
  // Mismatches found for the content so far: a handle opened before one may hold bad bytes.
  uint32_t mismatch_epoch(const std::string& cid);

  // Called after a content was dropped; must not block (the reader hands it to a thread).
  void set_on_dropped(std::function<void(const std::string& cid)> fn) {
    on_dropped_ = std::move(fn);
  }
  VerifierStats stats() const;

 private:
  struct Cursor;
  std::shared_ptr<Cursor> cursor(const std::string& cid, bool force);
  void forget_cursor(const std::string& cid, const Cursor* c);
  // Called with c.mu held (Cursor is opaque here, so the analysis cannot be told).
  Status consume(Cursor& c, const fetch::FileLocation& loc,
                 const std::string& cid) NO_THREAD_SAFETY_ANALYSIS;
  // The verdict of a cursor that has hashed the whole file (c.mu held, as for consume).
  Status finish(Cursor& c, const fetch::FileLocation& loc,
                const std::string& cid) NO_THREAD_SAFETY_ANALYSIS;

  index::ChunkStore& store_;
  HotTier& hot_;
  BufferPool& buffers_;
  const uint32_t chunk_size_;
  const uint64_t backlog_max_;
  std::atomic<uint64_t> backlog_bytes_{0};  // chunk bytes waiting in cursors, all files

  Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Cursor>> cursors_ GUARDED_BY(mu_);
  std::unordered_map<std::string, uint32_t> epochs_ GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_dropped_;

  std::atomic<uint64_t> verified_{0}, mismatches_{0}, from_memory_{0}, from_disk_{0};
};

}  // namespace modelfs::fs
