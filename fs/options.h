// Tunables of the filesystem core. Defaults are what `modelfs mount` uses.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace modelfs::fs {

struct CoreOptions {
  // A branch or tag is re-resolved to a commit after this long; commits never are.
  std::chrono::seconds revision_ttl{300};
  // "No such repo/revision" and "no access" answers are remembered this long.
  std::chrono::seconds negative_ttl{60};
  // Longest a read waits for its bytes; then it fails with EIO.
  std::chrono::milliseconds read_timeout{60'000};
  // Sequential readahead starts at readahead_initial (or what the measured bandwidth-delay
  // product asks for) and doubles up to readahead_max, in range requests of up to fetch_unit
  // bytes (fs/read/readahead.h).
  uint64_t readahead_initial = 4ull << 20;  // 0: no readahead
  uint64_t readahead_max = 256ull << 20;
  uint64_t fetch_unit = 8ull << 20;
  // Range requests in flight at most (readahead, prefetch); a reader's own miss is fetched by
  // its thread on top.
  unsigned fetch_threads = 32;
  // Opening one shard of a sharded checkpoint (or its index) fetches the others in the
  // background; model files read past their header are read ahead at full width.
  bool model_prefetch = true;
  // Memory for the chunks fetched last (the reader right behind readahead gets them from here,
  // and they are the only copy when the disk cache had no room), and for chunks that arrived
  // ahead of the sha256 cursor (hashed from memory instead of being read back).
  uint64_t hot_bytes = 64ull << 20;
  uint64_t hash_backlog_bytes = 64ull << 20;
  // Kernel cache timeouts for paths pinned to a commit (immutable).
  std::chrono::seconds immutable_ttl{86'400};
  bool offline = false;
  // Serve no byte of an LFS file before the whole file is cached and its sha256 checked.
  bool strict_verify = false;
  // Shown as user.modelfs.control_socket on the mount root, so the CLI can find the mount.
  std::string control_socket;
};

}  // namespace modelfs::fs
