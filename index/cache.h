// A cache directory: its lock, its database, its metadata and its chunks.
//
// Layout: <dir>/index.sqlite, <dir>/chunks/, <dir>/lock (flock: one owner process at a time),
// <dir>/dirty (present while an owner runs; found at open = the last owner did not exit
// cleanly, so the chunk store reconciles). Directories are created 0700.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "fs/base/status.h"
#include "index/chunk_store.h"
#include "index/db.h"
#include "index/job_store.h"
#include "index/meta_store.h"

namespace modelfs::index {

struct CacheOptions {
  std::filesystem::path dir;
  uint64_t capacity_bytes = 50ull << 30;
  uint32_t chunk_size = 1u << 20;  // used when creating; an existing cache keeps its own
};

class Cache {
 public:
  // kBusy if another process holds the lock. A corrupt or unreadable index is moved aside
  // (index.sqlite.corrupt-<time>) and a clean one started; recovered_from() says why.
  static Status Open(const CacheOptions& options, std::unique_ptr<Cache>* out);
  ~Cache();  // flushes, removes the dirty sentinel, releases the lock
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  MetaStore& meta();
  JobStore& jobs();
  ChunkStore& chunks();
  const std::filesystem::path& dir() const;
  // Frees the index's page cache (SQLite refills it as queries need it).
  void release_memory();
  // Empty after a clean open; otherwise a sentence for the log ("unclean shutdown: ...").
  const std::string& recovered_from() const;

 private:
  struct Impl;
  explicit Cache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modelfs::index
