// Readahead policy for one open file, as a pure function of its reads (unit-tested without
// threads or network). A run of sequential reads gets a window of bytes fetched ahead of it:
// it starts at what one connection's bandwidth-delay product asks for (at least `initial`),
// is topped up each time the reader has consumed half of it, and doubles (up to `max`) only
// when the reader had to wait for bytes still in flight: the window grows until it covers the
// bandwidth-delay product of the whole link, and no further (a window the measured rate does
// not grow with is cut back to what the link uses), so what lands ahead is usually still in
// memory when the reader gets there. It is cut into parts (range requests) of
// window/4 bounded by [chunk, part_max], so the number of requests in flight and their size
// ramp up together. A jump resets it: random readers fetch
// only what they ask for. Model files (GGUF, safetensors) read sequentially past their header
// for kLoadingRun go straight to the full window, whatever rate was measured so far: a loader
// maps and touches every byte.
#pragma once

#include <cstdint>

#include "fs/read/fetcher.h"

namespace modelfs::fs {

struct ReadaheadConfig {
  uint64_t initial = 4ull << 20;
  uint64_t max = 256ull << 20;
  uint64_t part_max = 8ull << 20;
  uint32_t chunk = 1u << 20;
};

struct ReadaheadState {
  uint64_t next_offset = 0;      // where the last read ended
  uint64_t run_start = 0;        // where the current sequential run began
  uint64_t run_bytes = 0;        // bytes read in it
  bool jumped = true;            // the last read did not follow on from the one before
  uint64_t window = 0;           // 0: not reading ahead
  uint64_t scheduled_until = 0;  // bytes before this are fetched or being fetched
  bool waited = false;           // a read since the last plan waited for bytes in flight
};

// What to fetch ahead: [from, to) in parts of `part` bytes. Empty when from >= to.
struct ReadaheadPlan {
  uint64_t from = 0, to = 0, part = 0;
  bool empty() const { return from >= to; }
};

struct ReadaheadInput {
  uint64_t offset = 0, end = 0;  // the read
  uint64_t file_size = 0;
  bool model_file = false;
  // With no room on disk, what is read ahead lives only in memory: keep within this (0: none).
  uint64_t memory_limit = 0;
  // The cache's size limit (0: none): a window beyond a quarter of it would evict what the
  // reader is about to read.
  uint64_t cache_limit = 0;
};

ReadaheadPlan PlanReadahead(ReadaheadState& st, const ReadaheadInput& in,
                            const ReadaheadConfig& cfg, const NetEstimate& net);

// A read counts as sequential if it lands near where the previous one ended: the kernel issues
// readahead out of order from several threads, so an exact match would be too strict.
inline constexpr uint64_t kSeqForward = 16ull << 20;
inline constexpr uint64_t kSeqBackward = 1ull << 20;
inline constexpr uint64_t kLoadingRun = 16ull << 20;

}  // namespace modelfs::fs
