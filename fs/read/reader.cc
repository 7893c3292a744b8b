#include "fs/read/reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "fs/read/model_prefetch.h"

namespace modelfs::fs {
namespace {

ReadaheadConfig MakeConfig(const CoreOptions& o, uint32_t chunk) {
  ReadaheadConfig c;
  c.initial = std::max<uint64_t>(o.readahead_initial, chunk);
  c.max = std::max(c.initial, o.readahead_max);
  c.part_max = std::max<uint64_t>(o.fetch_unit, chunk);
  c.chunk = chunk;
  return c;
}

// Idle chunk buffers kept for reuse: a few per fetch worker, so a steady stream maps nothing.
size_t KeepBuffers(const CoreOptions& o, uint32_t chunk) {
  return std::max<size_t>(o.fetch_threads + 8, (32u << 20) / chunk);
}

}  // namespace

Reader::Reader(const CoreOptions& options, index::ChunkStore& store, Upstream& upstream)
    : options_(options),
      store_(store),
      upstream_(upstream),
      chunk_size_(store.chunk_size()),
      ra_config_(MakeConfig(options, store.chunk_size())),
      buffers_(store.chunk_size(), KeepBuffers(options, store.chunk_size())),
      hot_(options.hot_bytes),
      verifier_(store, hot_, buffers_, options.hash_backlog_bytes),
      fetcher_(store, upstream, inflight_, hot_, verifier_, buffers_,
               std::max(1u, options.fetch_threads)) {
  // The kernel is told from a worker: the verdict may be found under locks of a FUSE request.
  verifier_.set_on_dropped([this](const std::string& cid) {
    if (on_dropped_) fetcher_.post([this, cid] { on_dropped_(cid); });
  });
}

Reader::~Reader() = default;

std::unique_ptr<OpenFile> Reader::open(fetch::FileLocation loc, std::string content_id) {
  auto f = std::make_unique<OpenFile>();
  f->model_file = options_.model_prefetch && IsModelFile(loc.path);
  f->loc = std::move(loc);
  f->content_id = std::move(content_id);
  f->mismatch_epoch = verifier_.mismatch_epoch(f->content_id);
  return f;
}

uint64_t Reader::chunk_len(uint64_t file_size, uint32_t index) const {
  const uint64_t start = uint64_t{index} * chunk_size_;
  return start >= file_size ? 0 : std::min<uint64_t>(chunk_size_, file_size - start);
}

void Reader::release_if_read(const OpenFile& f, uint32_t index, uint64_t read_end,
                             uint64_t chunk_bytes) {
  // Read to its end: the kernel's page cache has it now, and the disk copy serves any later
  // read (and is where damage would be noticed). Kept while it is the only copy.
  if (read_end == chunk_bytes && store_.contains(f.content_id, index)) {
    hot_.drop(f.content_id, index);
  }
}

Status Reader::read_chunk(OpenFile& f, uint32_t index, uint32_t offset, uint32_t length,
                          uint32_t last_needed, std::chrono::steady_clock::time_point deadline,
                          ReadPieces* out, bool* waited) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (auto hot = hot_.get(f.content_id, index); hot && hot->size() >= uint64_t{offset} + length) {
      out->add(hot, hot->data() + offset, length);
      n_.bytes_from_memory += length;
      release_if_read(f, index, offset + length, hot->size());
      return Status::Ok();
    }
    auto buf = buffers_.get();  // kept alive by the reply that points into it
    Status s = store_.read(f.content_id, index, offset, length, buf.get());
    if (s.ok()) {
      out->add(buf, buf.get(), length);
      n_.bytes_from_cache += length;
      return Status::Ok();
    }
    if (s.code() == Code::kCorrupt) {
      n_.corrupt_chunks++;
      spdlog::warn("cache: chunk {} of {} failed its checksum; fetching it again", index,
                   f.loc.path);
    } else if (!s.not_found()) {
      spdlog::warn("cache: reading chunk {} of {}: {}", index, f.loc.path, s.to_string());
    }
    *waited = true;
    auto p = inflight_.find(f.content_id, index);
    if (p) {
      n_.shared_waits++;
    } else {
      PendingList claimed = fetcher_.claim(f.content_id, index, last_needed + 1);
      if (claimed.empty()) continue;  // it landed meanwhile
      p = claimed.front();
      // The reader's own miss: fetched by this thread, no queue in front of it.
      fetcher_.run({f.loc, f.content_id, index, std::move(claimed), FetchPriority::kReadahead, {}});
    }
    if (!p->wait_until(deadline)) return {Code::kIo, "timed out waiting for " + f.loc.path};
    if (Status st = p->status(); !st.ok()) return st;
    ChunkRef data = p->data();
    out->add(data, data->data() + offset, length);
    release_if_read(f, index, offset + length, data->size());
    return Status::Ok();
  }
  return {Code::kIo, "chunk of " + f.loc.path + " could not be kept in the cache"};
}

void Reader::schedule(const fetch::FileLocation& loc, const std::string& cid, uint64_t from,
                      uint64_t to, uint64_t part, FetchPriority priority) {
  const auto unit = static_cast<uint32_t>(std::max<uint64_t>(1, part / chunk_size_));
  auto c = static_cast<uint32_t>(from / chunk_size_);
  const auto last = static_cast<uint32_t>((to - 1) / chunk_size_) + 1;
  while (c < last) {
    PendingList claimed = fetcher_.claim(cid, c, std::min(c + unit, last));
    if (claimed.empty()) {
      store_.will_need(cid, c);  // cached: have the kernel read it from disk now
      ++c;
      continue;
    }
    const uint32_t first = c;
    c += static_cast<uint32_t>(claimed.size());
    fetcher_.submit({loc, cid, first, std::move(claimed), priority, {}});
  }
}

void Reader::schedule_readahead(OpenFile& f, uint64_t offset, uint64_t end) {
  ReadaheadInput in;
  in.offset = offset;
  in.end = end;
  in.file_size = f.loc.size;
  in.model_file = f.model_file;
  in.memory_limit = fetcher_.store_full() ? hot_.max_bytes() : 0;
  in.cache_limit = store_.capacity();
  ReadaheadPlan plan;
  {
    MutexLock lock(f.mu);
    plan = PlanReadahead(f.ra, in, ra_config_, fetcher_.net());
  }
  // readahead_initial 0 turns readahead off (the state above still tells random readers apart).
  if (!plan.empty() && options_.readahead_initial > 0) {
    schedule(f.loc, f.content_id, plan.from, plan.to, plan.part, FetchPriority::kReadahead);
  }
}

Status Reader::read(OpenFile& f, uint64_t offset, size_t size, std::string* out) {
  ReadPieces pieces;
  Status st = read(f, offset, size, &pieces);
  *out = pieces.flatten();
  return st;
}

Status Reader::read(OpenFile& f, uint64_t offset, size_t size, ReadPieces* out) {
  n_.reads++;
  out->clear();
  const uint64_t fsize = f.loc.size;
  if (offset >= fsize || size == 0) return Status::Ok();
  const uint64_t end = std::min<uint64_t>(offset + size, fsize);
  if ((fsize - 1) / chunk_size_ > UINT32_MAX) {  // Core::open refuses these; never wrap
    return {Code::kIo, f.loc.path + " is too large for the cache's chunk size"};
  }
  auto fail = [&](Status st) {
    n_.read_errors++;
    out->clear();
    return st;
  };
  if (options_.strict_verify && Verifier::IsSha256(f.content_id)) {
    if (Status st = read_strict(f, offset, end, out); !st.ok()) return fail(st);
    n_.bytes_read += out->size;
    return Status::Ok();
  }
  schedule_readahead(f, offset, end);
  const auto deadline = std::chrono::steady_clock::now() + options_.read_timeout;
  const auto c0 = static_cast<uint32_t>(offset / chunk_size_);
  const auto c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  const bool direct = read_direct(f, offset, end, out);
  bool waited = false;
  for (uint32_t c = direct ? c1 + 1 : c0; c <= c1; ++c) {
    const uint64_t cstart = uint64_t{c} * chunk_size_;
    const uint64_t a = std::max(offset, cstart);
    const uint64_t b = std::min(end, cstart + chunk_len(fsize, c));
    Status st = read_chunk(f, c, static_cast<uint32_t>(a - cstart), static_cast<uint32_t>(b - a),
                           c1, deadline, out, &waited);
    if (!st.ok()) return fail(st);
  }
  if (waited) {
    MutexLock lock(f.mu);
    f.ra.waited = true;
  }
  // The end of an LFS file is only served once the whole file's sha256 is known to be right
  // (usually it is by now: chunks are hashed as they land).
  const auto last = static_cast<uint32_t>((fsize - 1) / chunk_size_);
  if (c1 == last && Verifier::IsSha256(f.content_id)) {
    Status st;
    if (!store_.is_verified(f.content_id)) {
      st = verifier_.verify_complete(f.loc, f.content_id);
      if (st.not_found()) st = Status::Ok();  // parts never fetched: no verdict
    }
    if (st.ok() && verifier_.mismatch_epoch(f.content_id) != f.mismatch_epoch) {
      st = Status(Code::kIo, "sha256 mismatch for " + f.loc.path +
                                 " while it was open: reopen it to read the refetched bytes");
    }
    if (!st.ok()) return fail(st);
  }
  n_.bytes_read += out->size;
  return Status::Ok();
}

Status Reader::fetch_all(const fetch::FileLocation& loc, const std::string& cid, unsigned jobs,
                         const std::function<bool(uint64_t)>& progress) {
  if (loc.size == 0) return Status::Ok();
  if ((loc.size - 1) / chunk_size_ > UINT32_MAX) {  // chunk numbers are 32-bit
    return {Code::kIo, loc.path + " is too large for the cache's chunk size"};
  }
  const uint32_t epoch = verifier_.mismatch_epoch(cid);
  const auto unit = static_cast<uint32_t>(std::max<uint64_t>(1, options_.fetch_unit / chunk_size_));
  const auto nchunks = static_cast<uint32_t>((loc.size - 1) / chunk_size_) + 1;
  // At most `jobs` ranges in flight; each wait is bounded by the fetch's own deadline.
  std::deque<PendingList> runs;
  Status result;
  bool cancelled = false;
  auto wait_front = [&] {
    for (auto& p : runs.front()) {
      p->wait();
      if (Status st = p->status(); !st.ok()) {
        if (result.ok()) result = st;
      } else if (!cancelled && progress && !progress(p->data()->size())) {
        cancelled = true;
      }
    }
    runs.pop_front();
  };
  for (uint32_t c = 0; c < nchunks && !cancelled && result.ok();) {
    if (store_.contains(cid, c)) {
      ++c;
      continue;
    }
    if (auto p = inflight_.find(cid, c)) {
      runs.push_back({p});
      ++c;
    } else {
      PendingList claimed = fetcher_.claim(cid, c, std::min(c + unit, nchunks));
      if (claimed.empty()) {
        // Only in memory (fetched when the disk had no room): store that copy.
        if (auto hot = hot_.get(cid, c);
            hot && !store_.contains(cid, c) && !inflight_.find(cid, c)) {
          verifier_.before_put(cid, c);
          if (Status s = store_.put(cid, c, std::string_view(hot->data(), hot->size())); !s.ok()) {
            result = s.code() == Code::kNoSpace ? s : Status(Code::kIo, s.message());
            break;
          }
          verifier_.advance(loc, cid, c, hot);
          if (progress && !progress(hot->size())) cancelled = true;
          ++c;
        }
        continue;
      }
      runs.push_back(claimed);
      const uint32_t first = c;
      c += static_cast<uint32_t>(claimed.size());
      fetcher_.submit({loc, cid, first, std::move(claimed), FetchPriority::kBackground, {}});
    }
    while (runs.size() >= std::max(1u, jobs)) wait_front();
  }
  while (!runs.empty()) wait_front();
  if (cancelled && result.ok()) return {Code::kCancelled, "cancelled"};
  if (!result.ok()) return result;
  Status st = verifier_.verify_complete(loc, cid);
  if ((st.ok() || st.not_found()) && verifier_.mismatch_epoch(cid) != epoch) {
    // Found while the chunks landed; the data is gone.
    return {Code::kIo, "sha256 mismatch for " + loc.path + ": the upstream bytes were wrong"};
  }
  return st;
}

void Reader::prefetch_files(const std::vector<std::pair<fetch::FileLocation, std::string>>& files) {
  uint64_t missing = 0;
  std::vector<const std::pair<fetch::FileLocation, std::string>*> todo;
  {
    MutexLock lock(model_mu_);
    for (const auto& f : files) {
      if (!model_prefetched_.insert(f.second).second) continue;
      const uint64_t cached = store_.cached_bytes(f.second);
      if (cached >= f.first.size) continue;
      missing += f.first.size - cached;
      todo.push_back(&f);
    }
  }
  if (todo.empty()) return;
  // Never at the cost of what is pinned, nor of what this set itself would evict again.
  const index::ChunkStoreStats cs = store_.stats();
  const uint64_t room =
      static_cast<uint64_t>(static_cast<double>(cs.capacity_bytes) * 0.9) -
      std::min(cs.pinned_bytes,
               static_cast<uint64_t>(static_cast<double>(cs.capacity_bytes) * 0.9));
  if (missing > room) {
    n_.model_skipped++;
    spdlog::info(
        "model prefetch: {} files ({} bytes missing) would not fit the cache ({} bytes "
        "free of pins); reading them as they are asked for",
        todo.size(), missing, room);
    return;
  }
  for (const auto* f : todo) {
    n_.model_files++;
    schedule(f->first, f->second, 0, f->first.size, options_.fetch_unit, FetchPriority::kModel);
  }
  spdlog::debug("model prefetch: {} files, {} bytes", todo.size(), missing);
}

ReaderStats Reader::stats() const {
  ReaderStats s;
  s.reads = n_.reads;
  s.bytes_read = n_.bytes_read;
  s.bytes_from_cache = n_.bytes_from_cache;
  s.bytes_from_memory = n_.bytes_from_memory;
  s.shared_waits = n_.shared_waits;
  s.direct_reads = n_.direct_reads;
  s.corrupt_chunks = n_.corrupt_chunks;
  s.read_errors = n_.read_errors;
  s.inflight_chunks = inflight_.size();
  s.model_prefetch_files = n_.model_files;
  s.model_prefetch_skipped = n_.model_skipped;
  s.fetch = fetcher_.stats();
  s.verify = verifier_.stats();
  return s;
}

}  // namespace modelfs::fs
