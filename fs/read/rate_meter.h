// What the link delivers with all requests together, measured over busy time only: a time when
// no request is in flight (a mount waiting for its first reader, an engine parsing a header)
// says nothing about the link, and counting it would make readahead start small after every
// pause. A period ends after kPeriod of busy time. A sample above the estimate replaces it (the
// window it feeds must ramp within a model load of a second or two); one below is mixed in
// slowly, so one short or starved period does not cut the window.
#pragma once

#include <chrono>
#include <cstdint>

namespace modelfs::fs {

class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kPeriod = 0.25;  // seconds of busy time per sample
  static constexpr double kAlpha = 0.2;    // weight of a lower sample

  void started(Clock::time_point now) {
    if (busy_++ == 0) busy_since_ = now;
  }

  void ended(Clock::time_point now, uint64_t bytes) {
    bytes_ += bytes;
    if (busy_ > 0 && --busy_ == 0) {
      busy_s_ += Seconds(now - busy_since_);
    }
    const double busy = busy_s_ + (busy_ > 0 ? Seconds(now - busy_since_) : 0.0);
    if (busy < kPeriod) return;
    const double sample = static_cast<double>(bytes_) / busy;
    rate_ = sample > rate_ ? sample : (1 - kAlpha) * rate_ + kAlpha * sample;
    bytes_ = 0;
    busy_s_ = 0;
    busy_since_ = now;
  }

  double rate() const { return rate_; }  // bytes/s; 0 until a period was measured

 private:
  static double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

  uint64_t busy_ = 0;  // requests in flight
  Clock::time_point busy_since_{};
  double busy_s_ = 0;  // busy time of the period before busy_since_
  uint64_t bytes_ = 0;
  double rate_ = 0;
};

}  // namespace modelfs::fs
