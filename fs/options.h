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
  // Sequential readahead starts at readahead_initial and doubles up to readahead_max.
  uint64_t readahead_initial = 4ull << 20;
  uint64_t readahead_max = 64ull << 20;
  // Readahead is split into HTTP range requests of this many bytes, run in parallel.
  uint64_t fetch_unit = 8ull << 20;
  unsigned fetch_threads = 8;
  // Kernel cache timeouts for paths pinned to a commit (immutable).
  std::chrono::seconds immutable_ttl{86'400};
  bool offline = false;
  // Serve no byte of an LFS file before the whole file is cached and its sha256 checked.
  bool strict_verify = false;
  // Shown as user.modelfs.control_socket on the mount root, so the CLI can find the mount.
  std::string control_socket;
};

}  // namespace modelfs::fs
