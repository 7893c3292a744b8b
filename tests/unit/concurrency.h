// Helpers shared by the concurrent unit tests.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define MODELFS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MODELFS_TSAN 1
#endif
#endif

namespace modelfs::testing {

// Under TSan everything runs ~10x slower: tests scale their iteration counts by this.
#ifdef MODELFS_TSAN
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif

// Collects failures from worker threads (gtest assertions belong on the main thread).
class Failures {
 public:
  void add(std::string what) {
    std::lock_guard lock(mu_);
    if (list_.size() < 20) list_.push_back(std::move(what));
    ++count_;
  }
  int count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::string text() const {
    std::lock_guard lock(mu_);
    std::string s;
    for (const auto& f : list_) s += "  " + f + "\n";
    return s;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
  int count_ = 0;
};

}  // namespace modelfs::testing
