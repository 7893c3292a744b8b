// The one place that wires modelfs together: a cache directory, a Hub client, the filesystem
// core over both, and the cache operations over the core. `modelfs mount` serves it through
// FUSE and the control socket; the other commands use it directly when no mount owns the cache.
#pragma once

#include <memory>

#include "fetch/hub_client.h"
#include "fs/base/status.h"
#include "fs/control/service.h"
#include "fs/core.h"
#include "fs/options.h"
#include "index/cache.h"

namespace modelfs::cli {

struct StackOptions {
  index::CacheOptions cache;
  fetch::HubOptions hub;
  fs::CoreOptions core;
};

class Stack {
 public:
  // Opens (and locks) the cache: kBusy when another process owns it.
  static Status Open(StackOptions options, std::unique_ptr<Stack>* out);
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  index::Cache& cache() { return *cache_; }
  fetch::HubClient& hub() { return hub_; }
  fs::Core& core() { return core_; }
  fs::Service& service() { return service_; }

 private:
  Stack(StackOptions options, std::unique_ptr<index::Cache> cache);

  // Declaration order is construction order; destruction runs backwards, so the service and
  // the core are gone before the Hub client and the cache they use.
  std::unique_ptr<index::Cache> cache_;
  fetch::HubClient hub_;
  fs::Core core_;
  fs::Service service_;
};

}  // namespace modelfs::cli
