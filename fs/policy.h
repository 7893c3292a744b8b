// Which repos the mount shows, for shared machines where the service's token could expose a
// gated model to every local user. Globs (fnmatch) over "org/name". Default: everything the
// token can read. Replaceable at run time (config reload).
#pragma once

#include <fnmatch.h>

#include <string>
#include <vector>

#include "fs/base/mutex.h"

namespace modelfs::fs {

struct PolicyRules {
  std::vector<std::string> allow;  // empty: every repo
  std::vector<std::string> deny;   // wins over allow
  bool refuse_gated = false;       // refuse gated repos even when the token could read them
};

class AccessPolicy {
 public:
  void set(PolicyRules rules) {
    MutexLock lock(mu_);
    rules_ = std::move(rules);
  }
  // Empty if repo_id may be shown, else why not.
  std::string check(const std::string& repo_id) const {
    MutexLock lock(mu_);
    for (const auto& g : rules_.deny) {
      if (fnmatch(g.c_str(), repo_id.c_str(), 0) == 0)
        return "denied by the policy (deny " + g + ")";
    }
    if (rules_.allow.empty()) return "";
    for (const auto& g : rules_.allow) {
      if (fnmatch(g.c_str(), repo_id.c_str(), 0) == 0) return "";
    }
    return "not in the policy's allow list";
  }
  bool refuse_gated() const {
    MutexLock lock(mu_);
    return rules_.refuse_gated;
  }

 private:
  mutable Mutex mu_;
  PolicyRules rules_ GUARDED_BY(mu_);
};

}  // namespace modelfs::fs
