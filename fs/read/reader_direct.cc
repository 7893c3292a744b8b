// Small random misses: answered by their own short range request (the latency of one round
// trip, not of a whole chunk) while the whole chunk is fetched for the cache in the background.
#include <spdlog/spdlog.h>

#include <cstring>

#include "fs/read/reader.h"

namespace modelfs::fs {
namespace {

constexpr uint64_t kDirectMax = 256 * 1024;

}  // namespace

bool Reader::read_direct(OpenFile& f, uint64_t offset, uint64_t end, ReadPieces* out) {
  // Offset 0 is where sequential readers start: they want whole chunks from the first read.
  if (end - offset > kDirectMax || offset == 0) return false;
  {
    MutexLock lock(f.mu);
    if (!f.ra.jumped) return false;  // a sequential reader: whole chunks and readahead
  }
  const auto c0 = static_cast<uint32_t>(offset / chunk_size_);
  const auto c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  // The end of a file waits for its sha256 verdict, which needs the chunks: no shortcut there.
  if (c1 == (f.loc.size - 1) / chunk_size_) return false;
  PendingList claimed = fetcher_.claim(f.content_id, c0, c1 + 1);
  if (claimed.size() != c1 - c0 + 1) {
    // Some chunk is cached or already coming: the normal path waits for it. Fetch ours anyway.
    for (size_t i = 0; i < claimed.size(); ++i) {
      fetcher_.submit({f.loc,
                       f.content_id,
                       c0 + static_cast<uint32_t>(i),
                       {claimed[i]},
                       FetchPriority::kBackground,
                       {}});
    }
    return false;
  }
  const uint64_t want = end - offset;
  auto buf = std::make_shared_for_overwrite<char[]>(want);
  uint64_t got = 0;
  Status st = upstream_.read_range(f.loc, offset, want, [&](const char* data, size_t n) {
    const auto take = static_cast<size_t>(std::min<uint64_t>(n, want - got));
    std::memcpy(buf.get() + got, data, take);
    got += take;
    return true;
  });
  const bool ok = st.ok() && got == want;
  // Readers of these chunks wait for the whole-chunk fetch, which also fills the cache. The
  // bytes served here never pass through the file's sha256, so they are compared with the
  // chunks: a difference counts as a mismatch (handles that read them fail at the end).
  std::shared_ptr<const char[]> served = ok ? buf : nullptr;
  PendingList waits = claimed;
  FetchJob job{f.loc, f.content_id, c0, std::move(claimed), FetchPriority::kBackground, {}};
  job.after = [this, loc = f.loc, cid = f.content_id, c0, offset, want, served, waits] {
    if (!served) return;
    for (size_t i = 0; i < waits.size(); ++i) {
      ChunkRef data = waits[i]->data();
      if (!waits[i]->status().ok() || !data) return;  // nothing to compare with
      const uint64_t cstart = uint64_t{c0 + static_cast<uint32_t>(i)} * chunk_size_;
      const uint64_t a = std::max(offset, cstart);
      const uint64_t b = std::min(offset + want, cstart + data->size());
      if (a < b &&
          std::memcmp(served.get() + (a - offset), data->data() + (a - cstart), b - a) != 0) {
        verifier_.drop_bad_content(
            loc, cid,
            "two downloads of bytes " + std::to_string(a) + "-" + std::to_string(b) + " differ");
        return;
      }
    }
  };
  fetcher_.submit(std::move(job));
  if (!ok) return false;  // the normal path waits for the chunk fetch instead
  out->add(buf, buf.get(), want);
  n_.direct_reads++;
  return true;
}

}  // namespace modelfs::fs
