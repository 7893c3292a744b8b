// Serves a Core through a libfuse (3.14, low-level API) mount. The only place that turns a
// Status into an errno value.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "fs/base/status.h"
#include "fs/core.h"

namespace modelfs::fs {

struct MountOptions {
  std::string mountpoint;
  bool allow_other = false;
  std::vector<std::string> fuse_options;  // passed through as -o values
  unsigned max_threads = 64;              // a read waiting on the network holds a thread
  bool debug = false;
};

// Mounts, calls on_ready once the mount is live, serves until unmounted or SIGINT/SIGTERM/SIGHUP,
// then unmounts. An error before the mount is live is returned without calling on_ready.
Status ServeFuse(Core& core, const MountOptions& options, const std::function<void()>& on_ready);

}  // namespace modelfs::fs
