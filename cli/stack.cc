#include "cli/stack.h"

namespace modelfs::cli {

Status Stack::Open(StackOptions options, std::unique_ptr<Stack>* out) {
  std::unique_ptr<index::Cache> cache;
  if (Status s = index::Cache::Open(options.cache, &cache); !s.ok()) return s;
  out->reset(new Stack(std::move(options), std::move(cache)));
  return Status::Ok();
}

Stack::Stack(StackOptions options, std::unique_ptr<index::Cache> cache)
    : cache_(std::move(cache)),
      hub_(std::move(options.hub)),
      core_(options.core, *cache_, hub_),
      service_(core_, *cache_, hub_) {}

}  // namespace modelfs::cli
