#include "fs/read/readahead.h"

#include <algorithm>

namespace modelfs::fs {
namespace {

uint64_t RoundUp(uint64_t v, uint64_t unit) {
  return (v + unit - 1) / unit * unit;
}

// The first window: enough to keep one request's worth of bytes flowing while the next waits
// for its first byte, times the four parts of a window (at least cfg.initial).
uint64_t FirstWindow(const ReadaheadConfig& cfg, const NetEstimate& net) {
  uint64_t w = cfg.initial;
  if (net.samples > 0 && net.conn_rate > 0) {
    const double bdp = net.conn_rate * net.ttfb_s;
    w = std::max<uint64_t>(w, static_cast<uint64_t>(4 * bdp));
  }
  return std::min(RoundUp(w, cfg.chunk), cfg.max);
}

// How far ahead the link can use: three times what it delivers (all requests together) while
// one part is requested and received. While the window is what bounds the rate, that is about
// three times the window, so it keeps ramping; once the rate stops growing with it (the CPU or
// the link is the bound, as on a LAN), a longer window only holds bytes that have left memory
// (hot tier, hash backlog) by the time the reader gets there.
uint64_t LinkWindow(const ReadaheadConfig& cfg, const NetEstimate& net, uint64_t window) {
  if (net.rate <= 0 || net.conn_rate <= 0) return cfg.max;  // not measured yet
  const auto part = static_cast<double>(std::clamp<uint64_t>(window / 4, cfg.chunk, cfg.part_max));
  const double seconds = net.ttfb_s + part / net.conn_rate;
  const auto w = static_cast<uint64_t>(3 * net.rate * seconds);
  return std::max(FirstWindow(cfg, net), std::min(RoundUp(w, cfg.chunk), cfg.max));
}

}  // namespace

ReadaheadPlan PlanReadahead(ReadaheadState& st, const ReadaheadInput& in,
                            const ReadaheadConfig& cfg, const NetEstimate& net) {
  const bool near =
      in.offset <= st.next_offset + kSeqForward && in.offset + kSeqBackward >= st.next_offset;
  uint64_t run = 0;
  bool sequential = near;
  if (near) {
    // Near, but a reader that skips more than it reads is a random reader that happens to
    // move forward: it must not grow a window (the run must be at least half read).
    const uint64_t next = std::max(st.next_offset, in.end);
    const uint64_t span = next - std::min(st.run_start, next);
    const uint64_t bytes = st.run_bytes + (in.end - in.offset);
    sequential = 2 * bytes >= span;
    if (sequential) {
      st.next_offset = next;
      st.run_bytes = bytes;
      run = span;
    }
  }
  st.jumped = !sequential;
  if (!sequential) {
    // A jump: fetch only what is asked until the reader shows a pattern again.
    st.window = 0;
    st.scheduled_until = 0;
    st.next_offset = in.end;
    st.run_start = in.offset;
    st.run_bytes = in.end - in.offset;
    return {};
  }
  // A loader reading tensor data reads everything: a model file read sequentially for more
  // than kLoadingRun past its header goes to the full window at once. (One large pread, which
  // the kernel's own readahead stretches to a few MiB, is not a loader.)
  const bool loading = in.model_file && in.offset >= 2ull * cfg.chunk && run >= kLoadingRun;
  const uint64_t before = st.window;
  if (st.window == 0) {
    // The kernel splits one large pread into several reads: only a run longer than two chunks
    // is a sequential reader worth reading ahead for.
    if (run <= 2ull * cfg.chunk && !loading) return {};
    st.window = loading ? cfg.max : FirstWindow(cfg, net);
  } else if (loading && st.window < cfg.max) {
    st.window = cfg.max;
  } else if (st.waited) {
    // The reader caught up with bytes in flight: the window is shorter than the pipe.
    st.window = std::min(st.window * 2, cfg.max);
  }
  const bool grew = st.window != before;
  // A loader touches every byte: its window is not held to the rate measured so far, which
  // right after the header's small reads is far below what the link gives.
  uint64_t window = loading ? st.window : std::min(st.window, LinkWindow(cfg, net, st.window));
  if (!st.waited && !grew && in.end + window / 2 < st.scheduled_until) {
    return {};  // still more than half a window ahead
  }
  st.waited = false;
  if (in.memory_limit > 0)
    window = std::min(window, std::max<uint64_t>(cfg.chunk, in.memory_limit / 2));
  if (in.cache_limit > 0)
    window = std::min(window, std::max<uint64_t>(cfg.chunk, in.cache_limit / 4));
  ReadaheadPlan p;
  p.to = std::min(in.end + window, in.file_size);
  p.from = std::max(in.end, st.scheduled_until);
  if (p.from >= p.to) return {};
  st.scheduled_until = p.to;
  p.part = std::clamp<uint64_t>(RoundUp(window / 4, cfg.chunk), cfg.chunk,
                                std::max<uint64_t>(cfg.chunk, cfg.part_max));
  return p;
}

}  // namespace modelfs::fs
