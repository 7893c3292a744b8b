#include "fs/read/reader.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "fs/base/text.h"
#include "fs/snapshots.h"

namespace modelfs::fs {

// A running sha256 over chunks 0..next-1 of one file. Its mutex is held while hashing, so
// whoever stores a chunk either sees it consumed or consumes it itself.
struct Reader::HashCursor {
  std::mutex mu;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  bool ok = false;    // ctx initialised
  bool valid = true;  // false once replaced or finished: holders must drop it
  uint32_t next = 0;
};

namespace {

std::string Key(const std::string& cid, uint32_t index) {
  return cid + ':' + std::to_string(index);
}

// A read counts as sequential if it lands near where the previous one ended: the kernel issues
// readahead out of order from several threads, so an exact match would be too strict.
constexpr uint64_t kSeqForward = 16ull << 20;
constexpr uint64_t kSeqBackward = 1ull << 20;
// Memory for chunks just fetched (see hot_put).
constexpr uint64_t kHotBytes = 32ull << 20;
// Files being hashed at once; beyond it a file is hashed in one pass when it is complete.
constexpr size_t kMaxCursors = 256;

bool IsSha256Id(const std::string& cid) {
  return cid.size() == 64;
}

}  // namespace

Reader::Reader(const CoreOptions& options, index::ChunkStore& store, fetch::HubClient& hub)
    : options_(options),
      store_(store),
      hub_(hub),
      chunk_size_(store.chunk_size()),
      pool_(std::max(1u, options.fetch_threads)) {}

Reader::~Reader() {
  stopping_ = true;
}

std::unique_ptr<OpenFile> Reader::open(fetch::FileLocation loc, std::string content_id) {
  auto f = std::make_unique<OpenFile>();
  f->loc = std::move(loc);
  f->content_id = std::move(content_id);
  f->mismatch_epoch = mismatch_epoch(f->content_id);
  return f;
}

uint64_t Reader::chunk_len(uint64_t file_size, uint32_t index) const {
  uint64_t start = uint64_t{index} * chunk_size_;
  return start >= file_size ? 0 : std::min<uint64_t>(chunk_size_, file_size - start);
}

Reader::PendingList Reader::claim(const std::string& cid, uint32_t first, uint32_t end) {
  PendingList out;
  std::lock_guard lock(inflight_mu_);
  for (uint32_t i = first; i < end; ++i) {
    // contains() is checked under inflight_mu_: a chunk leaves inflight_ only after it is
    // stored, so a chunk is always visible in one of the two places.
    if (store_.contains(cid, i) || hot_get(cid, i)) break;
    auto [it, inserted] = inflight_.try_emplace(Key(cid, i), nullptr);
    if (!inserted) break;
    it->second = std::make_shared<Pending>();
    out.push_back(it->second);
  }
  return out;
}

void Reader::hot_put(const std::string& cid, uint32_t index,
                     std::shared_ptr<const std::string> data) {
  std::lock_guard lock(hot_mu_);
  std::string key = Key(cid, index);
  auto [it, inserted] = hot_.try_emplace(key, nullptr);
  if (!inserted) return;
  hot_bytes_ += data->size();
  it->second = std::move(data);
  hot_count_ = hot_.size();
  hot_order_.push_back(std::move(key));
  while (hot_bytes_ > kHotBytes && !hot_order_.empty()) {
    auto old = hot_.find(hot_order_.front());
    if (old != hot_.end()) {
      hot_bytes_ -= old->second->size();
      hot_.erase(old);
    }
    hot_order_.pop_front();
  }
  hot_count_ = hot_.size();
}

std::shared_ptr<const std::string> Reader::hot_get(const std::string& cid, uint32_t index) {
  if (hot_count_.load(std::memory_order_relaxed) == 0) return nullptr;  // the usual case
  std::lock_guard lock(hot_mu_);
  auto it = hot_.find(Key(cid, index));
  return it == hot_.end() ? nullptr : it->second;
}

void Reader::hot_forget(const std::string& cid) {
  std::lock_guard lock(hot_mu_);
  for (auto it = hot_.begin(); it != hot_.end();) {
    if (it->first.compare(0, cid.size(), cid) == 0 && it->first[cid.size()] == ':') {
      hot_bytes_ -= it->second->size();
      it = hot_.erase(it);  // its key stays in hot_order_ and is skipped when it comes up
    } else {
      ++it;
    }
  }
  hot_count_ = hot_.size();
}

std::shared_ptr<Reader::Pending> Reader::find_inflight(const std::string& cid, uint32_t index) {
  std::lock_guard lock(inflight_mu_);
  auto it = inflight_.find(Key(cid, index));
  return it == inflight_.end() ? nullptr : it->second;
}

void Reader::finish(const std::string& cid, uint32_t index, Pending& p, Status st,
                    std::shared_ptr<const std::string> data) {
  {
    std::lock_guard lock(inflight_mu_);
    inflight_.erase(Key(cid, index));
  }
  {
    std::lock_guard lock(p.mu);
    p.done = true;
    p.status = std::move(st);
    p.data = std::move(data);
  }
  p.cv.notify_all();
}

void Reader::fetch_run(const fetch::FileLocation& loc, const std::string& cid, uint32_t first,
                       PendingList pending) {
  const uint64_t begin = uint64_t{first} * chunk_size_;
  const uint64_t end = std::min(begin + pending.size() * uint64_t{chunk_size_}, loc.size);
  size_t done = 0;
  std::string buf;
  buf.reserve(chunk_len(loc.size, first));
  auto sink = [&](const char* data, size_t n) {
    if (stopping_) return false;
    while (n > 0 && done < pending.size()) {
      uint32_t index = first + static_cast<uint32_t>(done);
      size_t want = chunk_len(loc.size, index) - buf.size();
      size_t take = std::min(want, n);
      buf.append(data, take);
      data += take;
      n -= take;
      if (take < want) break;
      auto bytes = std::make_shared<const std::string>(std::move(buf));
      before_put(cid, index);
      if (Status s = store_.put(cid, index, *bytes); !s.ok()) {
        hot_put(cid, index, bytes);  // the only copy until the reader comes for it
        if (s.code() == Code::kNoSpace) store_full_ = true;
        spdlog::warn("cache: chunk {} of {} not stored: {}", index, loc.path, s.to_string());
      } else {
        store_full_ = false;
        // Before finish(): a reader woken for this chunk finds it already hashed.
        advance(loc, cid, index, bytes.get());
      }
      n_.bytes_fetched += bytes->size();
      n_.chunks_fetched++;
      finish(cid, index, *pending[done], Status::Ok(), std::move(bytes));
      ++done;
      buf = std::string();
      if (done < pending.size()) buf.reserve(chunk_len(loc.size, first + done));
    }
    return true;
  };
  Status st = stopping_ ? Status(Code::kCancelled, "shutting down")
                        : hub_.read_range(loc, begin, end - begin, sink);
  if (done < pending.size()) {
    Status err = st.ok() ? Status(Code::kIo, "upstream ended early") : st;
    // A file that vanished upstream is an I/O error to its reader, never "no such file".
    if (err.not_found()) err = Status(Code::kIo, err.to_string());
    spdlog::warn("fetch {}@{}/{} bytes {}-{}: {}", loc.repo_id, loc.commit.substr(0, 8), loc.path,
                 begin, end, st.to_string());
    for (size_t i = done; i < pending.size(); ++i) {
      finish(cid, first + static_cast<uint32_t>(i), *pending[i], err, nullptr);
    }
  }
}

std::shared_ptr<Reader::HashCursor> Reader::cursor(const std::string& cid, bool force) {
  std::lock_guard lock(cursors_mu_);
  auto it = cursors_.find(cid);
  if (it != cursors_.end()) return it->second;
  if (!force && cursors_.size() >= kMaxCursors) return nullptr;
  auto c = std::make_shared<HashCursor>();
  c->ok = c->ctx && EVP_DigestInit_ex(c->ctx.get(), EVP_sha256(), nullptr) == 1;
  cursors_.emplace(cid, c);
  return c;
}

// A chunk the cursor already hashed is about to be stored again (it was evicted): the running
// hash no longer describes the stored bytes, so start over.
void Reader::before_put(const std::string& cid, uint32_t index) {
  if (!IsSha256Id(cid)) return;
  std::shared_ptr<HashCursor> c;
  {
    std::lock_guard lock(cursors_mu_);
    auto it = cursors_.find(cid);
    if (it == cursors_.end()) return;
    c = it->second;
  }
  std::lock_guard clock(c->mu);
  if (c->valid && index < c->next) {
    c->valid = false;
    std::lock_guard lock(cursors_mu_);
    auto it = cursors_.find(cid);
    if (it != cursors_.end() && it->second == c) cursors_.erase(it);
  }
}

// Hashes the cursor forward over chunks already stored. Ok when it stops short or matched;
// kIo on a mismatch (the data is dropped by then). cursor mutex held.
Status Reader::consume_locked(HashCursor& c, const fetch::FileLocation& loc,
                              const std::string& cid) {
  const uint32_t n = static_cast<uint32_t>((loc.size + chunk_size_ - 1) / chunk_size_);
  std::unique_ptr<char[]> buf;
  while (c.valid && c.next < n) {
    if (!store_.contains(cid, c.next)) return Status::Ok();  // not yet: no buffer, no read
    const auto len = static_cast<uint32_t>(chunk_len(loc.size, c.next));
    if (!buf) buf = std::make_unique_for_overwrite<char[]>(chunk_size_);
    if (!store_.read(cid, c.next, 0, len, buf.get()).ok()) return Status::Ok();  // not yet
    if (EVP_DigestUpdate(c.ctx.get(), buf.get(), len) != 1) c.ok = false;
    ++c.next;
  }
  if (!c.valid || c.next < n) return Status::Ok();
  c.valid = false;
  {
    std::lock_guard lock(cursors_mu_);
    auto it = cursors_.find(cid);
    if (it != cursors_.end() && it->second.get() == &c) cursors_.erase(it);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!c.ok || EVP_DigestFinal_ex(c.ctx.get(), digest, &len) != 1) {
    return Status(Code::kIo, "sha256 of " + loc.path + " could not be computed");
  }
  const std::string hex = HexEncode(digest, len);
  if (hex == cid) {
    n_.files_verified++;
    if (Status s = store_.mark_verified(cid); !s.ok()) {
      spdlog::warn("cache: cannot record {} as verified: {}", loc.path, s.to_string());
    }
    return Status::Ok();
  }
  drop_bad_content(loc, cid, "sha256 mismatch: expected " + cid + ", got " + hex);
  return Status(Code::kIo, "sha256 mismatch for " + loc.path + ": the upstream bytes were wrong");
}

void Reader::drop_bad_content(const fetch::FileLocation& loc, const std::string& cid,
                              const std::string& why) {
  n_.sha256_mismatches++;
  {
    std::lock_guard lock(cursors_mu_);
    ++mismatch_epoch_[cid];
  }
  spdlog::error("{}@{}/{}: {}; dropped its cached data", loc.repo_id, loc.commit.substr(0, 8),
                loc.path, why);
  (void)store_.remove_content(cid);
  hot_forget(cid);
  if (on_dropped_) {
    pool_.submit([this, cid] { on_dropped_(cid); });
  }
}

// data: the bytes of chunk `index` just stored (hashed from memory when it is next in line).
void Reader::advance(const fetch::FileLocation& loc, const std::string& cid, uint32_t index,
                     const std::string* data) {
  if (!IsSha256Id(cid)) return;
  auto c = cursor(cid, /*force=*/false);
  if (!c) return;
  std::lock_guard lock(c->mu);
  if (!c->valid) return;
  if (index == c->next && data != nullptr) {
    if (EVP_DigestUpdate(c->ctx.get(), data->data(), data->size()) != 1) c->ok = false;
    ++c->next;
  }
  (void)consume_locked(*c, loc, cid);
}

Status Reader::verify_complete(const fetch::FileLocation& loc, const std::string& cid) {
  if (!IsSha256Id(cid) || store_.is_verified(cid)) return Status::Ok();
  if (store_.cached_bytes(cid) < loc.size) return {Code::kNotFound, loc.path + " is not complete"};
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (store_.is_verified(cid)) return Status::Ok();  // another reader's hashing finished
    auto c = cursor(cid, /*force=*/true);
    std::lock_guard lock(c->mu);
    if (!c->valid) continue;  // finished or replaced meanwhile: look again
    Status st = consume_locked(*c, loc, cid);
    if (!st.ok()) return st;
    if (!c->valid) break;  // finished: the verdict is recorded
    return {Code::kNotFound, loc.path + " is not complete"};
  }
  return store_.is_verified(cid) ? Status::Ok()
                                 : Status(Code::kNotFound, loc.path + " changed while hashing");
}

// Strict mode: bytes only from the disk cache, and only while the file is marked verified
// (a chunk stored since the check clears the mark, so it is checked again first).
Status Reader::read_strict(OpenFile& f, uint64_t offset, uint64_t end, char* dst) {
  const uint32_t c0 = static_cast<uint32_t>(offset / chunk_size_);
  const uint32_t c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool present = store_.is_verified(f.content_id);
    for (uint32_t c = c0; c <= c1 && present; ++c) present = store_.contains(f.content_id, c);
    if (!present) {  // fetching what is missing clears the mark, so the file is checked again
      if (Status st = strict_check(f); !st.ok()) return st;
    }
    bool all = true;
    for (uint32_t c = c0; c <= c1 && all; ++c) {
      const uint64_t cstart = uint64_t{c} * chunk_size_;
      const uint64_t a = std::max(offset, cstart);
      const uint64_t b = std::min(end, cstart + chunk_len(f.loc.size, c));
      all = store_
                .read(f.content_id, c, static_cast<uint32_t>(a - cstart),
                      static_cast<uint32_t>(b - a), dst + (a - offset))
                .ok();
    }
    if (all && store_.is_verified(f.content_id)) {
      n_.bytes_from_cache += end - offset;
      return Status::Ok();
    }
  }
  return {Code::kIo, f.loc.path + " could not be kept verified in the cache (is it too small?)"};
}

uint32_t Reader::mismatch_epoch(const std::string& cid) {
  std::lock_guard lock(cursors_mu_);
  auto it = mismatch_epoch_.find(cid);
  return it == mismatch_epoch_.end() ? 0 : it->second;
}

// Strict mode: the whole file, downloaded and checked, before its first byte is served. One
// retry, as a mismatch can be a transient upstream fault.
Status Reader::strict_check(OpenFile& f) {
  Status st;
  for (int attempt = 0; attempt < 2; ++attempt) {
    st = fetch_all(f.loc, f.content_id, std::max(1u, options_.fetch_threads), nullptr);
    if (st.ok()) return st;
    if (st.code() == Code::kNotFound) st = Status(Code::kIo, st.message());
  }
  return st;
}

Status Reader::read_chunk(OpenFile& f, uint32_t index, uint32_t offset, uint32_t length, char* dst,
                          uint32_t last_needed, std::chrono::steady_clock::time_point deadline) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (auto hot = hot_get(f.content_id, index); hot && hot->size() >= uint64_t{offset} + length) {
      std::memcpy(dst, hot->data() + offset, length);
      n_.bytes_from_memory += length;
      return Status::Ok();
    }
    Status s = store_.read(f.content_id, index, offset, length, dst);
    if (s.ok()) {
      n_.bytes_from_cache += length;
      return Status::Ok();
    }
    if (s.code() == Code::kCorrupt) {
      n_.corrupt_chunks++;
      spdlog::warn("cache: chunk {} of {} failed its checksum; fetching it again", index,
                   f.loc.path);
    } else if (s.code() != Code::kNotFound) {
      spdlog::warn("cache: reading chunk {} of {}: {}", index, f.loc.path, s.to_string());
    }
    auto p = find_inflight(f.content_id, index);
    if (p) {
      n_.shared_waits++;
    } else {
      PendingList claimed = claim(f.content_id, index, last_needed + 1);
      if (claimed.empty()) continue;  // it landed in the store meanwhile
      p = claimed.front();
      fetch_run(f.loc, f.content_id, index, std::move(claimed));
    }
    std::unique_lock lock(p->mu);
    if (!p->cv.wait_until(lock, deadline, [&] { return p->done; })) {
      return {Code::kIo, "timed out waiting for " + f.loc.path};
    }
    if (!p->status.ok()) return p->status;
    std::memcpy(dst, p->data->data() + offset, length);
    return Status::Ok();
  }
  return {Code::kIo, "chunk of " + f.loc.path + " could not be kept in the cache"};
}

void Reader::schedule_readahead(OpenFile& f, uint64_t offset, uint64_t end) {
  uint64_t from = 0, to = 0;
  {
    std::lock_guard lock(f.mu);
    bool sequential =
        offset <= f.next_offset + kSeqForward && offset + kSeqBackward >= f.next_offset;
    f.jumped = !sequential;
    if (!sequential) {
      // A jump: fetch only what is asked until the reader shows a pattern again.
      f.window = 0;
      f.scheduled_until = 0;
      f.next_offset = end;
      f.run_start = offset;
      return;
    }
    f.next_offset = std::max(f.next_offset, end);
    // The kernel splits one large pread into several reads: only a run longer than two chunks
    // is a sequential reader worth reading ahead for.
    if (f.window == 0 &&
        f.next_offset - std::min(f.run_start, f.next_offset) <= 2ull * chunk_size_) {
      return;
    }
    if (f.window == 0) {
      f.window = options_.readahead_initial;
    } else if (end + f.window / 2 >= f.scheduled_until) {
      // The reader is halfway through what was scheduled: it keeps up, so look further ahead.
      f.window = std::min(f.window * 2, options_.readahead_max);
      // With no room on disk, what is read ahead lives only in memory: keep it within that.
      if (store_full_) f.window = std::min(f.window, kHotBytes / 2);
    } else {
      return;
    }
    to = std::min(end + f.window, f.loc.size);
    from = std::max(end, f.scheduled_until);
    if (from >= to) return;
    f.scheduled_until = to;
  }
  const uint32_t unit =
      static_cast<uint32_t>(std::max<uint64_t>(1, options_.fetch_unit / chunk_size_));
  uint32_t c = static_cast<uint32_t>(from / chunk_size_);
  const uint32_t last = static_cast<uint32_t>((to - 1) / chunk_size_) + 1;
  while (c < last) {
    PendingList claimed = claim(f.content_id, c, std::min(c + unit, last));
    if (claimed.empty()) {
      store_.will_need(f.content_id, c);  // cached: have the kernel read it from disk now
      ++c;
      continue;
    }
    uint32_t first = c;
    c += static_cast<uint32_t>(claimed.size());
    pool_.submit(
        [this, loc = f.loc, cid = f.content_id, first, claimed = std::move(claimed)]() mutable {
          fetch_run(loc, cid, first, std::move(claimed));
        });
  }
}

bool Reader::read_direct(OpenFile& f, uint64_t offset, uint64_t end, char* dst) {
  constexpr uint64_t kDirectMax = 256 * 1024;
  // Offset 0 is where sequential readers start: they want whole chunks from the first read.
  if (end - offset > kDirectMax || offset == 0) return false;
  {
    std::lock_guard lock(f.mu);
    if (!f.jumped) return false;  // a sequential reader: whole chunks and readahead
  }
  const uint32_t c0 = static_cast<uint32_t>(offset / chunk_size_);
  const uint32_t c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  // The end of a file waits for its sha256 verdict, which needs the chunks: no shortcut there.
  if (c1 == (f.loc.size - 1) / chunk_size_) return false;
  PendingList claimed = claim(f.content_id, c0, c1 + 1);
  if (claimed.size() != c1 - c0 + 1) {
    // Some chunk is cached or already coming: the normal path waits for it. Release ours.
    for (size_t i = 0; i < claimed.size(); ++i) {
      pool_.submit(
          [this, loc = f.loc, cid = f.content_id, first = c0 + static_cast<uint32_t>(i),
           p = PendingList{claimed[i]}]() mutable { fetch_run(loc, cid, first, std::move(p)); });
    }
    return false;
  }
  uint64_t got = 0;
  const uint64_t want = end - offset;
  Status st = hub_.read_range(f.loc, offset, want, [&](const char* data, size_t n) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, want - got));
    std::memcpy(dst + got, data, take);
    got += take;
    return true;
  });
  const bool ok = st.ok() && got == want;
  // Readers of these chunks wait for the whole-chunk fetch; it also fills the cache. The bytes
  // served directly never pass through the file's sha256, so they are checked against the
  // chunks: a difference counts as a mismatch (handles that read them fail at the end).
  std::shared_ptr<std::string> served;
  if (ok) served = std::make_shared<std::string>(dst, want);
  pool_.submit([this, loc = f.loc, cid = f.content_id, c0, offset, served,
                claimed = std::move(claimed)]() mutable {
    PendingList waits = claimed;
    fetch_run(loc, cid, c0, std::move(claimed));
    if (!served) return;
    for (size_t i = 0; i < waits.size(); ++i) {
      std::lock_guard lock(waits[i]->mu);
      if (!waits[i]->status.ok() || !waits[i]->data) return;  // nothing to compare with
      const uint64_t cstart = uint64_t{c0 + static_cast<uint32_t>(i)} * chunk_size_;
      const uint64_t a = std::max(offset, cstart);
      const uint64_t b = std::min(offset + served->size(), cstart + waits[i]->data->size());
      if (a < b && std::memcmp(served->data() + (a - offset), waits[i]->data->data() + (a - cstart),
                               b - a) != 0) {
        drop_bad_content(
            loc, cid,
            "two downloads of bytes " + std::to_string(a) + "-" + std::to_string(b) + " differ");
        return;
      }
    }
  });
  if (!ok) return false;  // the normal path waits for the chunk fetch instead
  n_.direct_reads++;
  return true;
}

Status Reader::read(OpenFile& f, uint64_t offset, size_t size, std::string* out) {
  n_.reads++;
  const uint64_t fsize = f.loc.size;
  if (offset >= fsize || size == 0) {
    out->clear();
    return Status::Ok();
  }
  const uint64_t end = std::min<uint64_t>(offset + size, fsize);
  if ((fsize - 1) / chunk_size_ > UINT32_MAX) {  // Core::open refuses these; never wrap
    return {Code::kIo, f.loc.path + " is too large for the cache's chunk size"};
  }
  if (options_.strict_verify && IsSha256Id(f.content_id)) {
    out->resize(end - offset);
    if (Status st = read_strict(f, offset, end, out->data()); !st.ok()) {
      n_.read_errors++;
      return st;
    }
    n_.bytes_read += out->size();
    return Status::Ok();
  }
  out->resize(end - offset);
  schedule_readahead(f, offset, end);
  auto deadline = std::chrono::steady_clock::now() + options_.read_timeout;
  const uint32_t c0 = static_cast<uint32_t>(offset / chunk_size_);
  const uint32_t c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  const bool direct = !options_.strict_verify && read_direct(f, offset, end, out->data());
  for (uint32_t c = direct ? c1 + 1 : c0; c <= c1; ++c) {
    uint64_t cstart = uint64_t{c} * chunk_size_;
    uint64_t a = std::max(offset, cstart);
    uint64_t b = std::min(end, cstart + chunk_len(fsize, c));
    Status st = read_chunk(f, c, static_cast<uint32_t>(a - cstart), static_cast<uint32_t>(b - a),
                           out->data() + (a - offset), c1, deadline);
    if (!st.ok()) {
      n_.read_errors++;
      return st;
    }
  }
  // The end of an LFS file is only served once the whole file's sha256 is known to be right
  // (usually it is by now: chunks are hashed as they land).
  const uint32_t last = static_cast<uint32_t>((fsize - 1) / chunk_size_);
  if (c1 == last && IsSha256Id(f.content_id)) {
    Status st;
    if (!store_.is_verified(f.content_id)) {
      st = verify_complete(f.loc, f.content_id);
      if (st.code() == Code::kNotFound) st = Status::Ok();  // parts never fetched: no verdict
    }
    // (In strict mode every byte served was verified first: nothing to take back.)
    if (st.ok() && !options_.strict_verify && mismatch_epoch(f.content_id) != f.mismatch_epoch) {
      st = Status(Code::kIo, "sha256 mismatch for " + f.loc.path +
                                 " while it was open: reopen it to read the refetched bytes");
    }
    if (!st.ok()) {
      n_.read_errors++;
      return st;
    }
  }
  n_.bytes_read += out->size();
  return Status::Ok();
}

Status Reader::fetch_all(const fetch::FileLocation& loc, const std::string& cid, unsigned jobs,
                         const std::function<bool(uint64_t)>& progress) {
  if (loc.size == 0) return Status::Ok();
  if ((loc.size - 1) / chunk_size_ > UINT32_MAX) {  // chunk numbers are 32-bit
    return {Code::kIo, loc.path + " is too large for the cache's chunk size"};
  }
  const uint32_t epoch = mismatch_epoch(cid);
  const uint32_t unit =
      static_cast<uint32_t>(std::max<uint64_t>(1, options_.fetch_unit / chunk_size_));
  const uint32_t nchunks = static_cast<uint32_t>((loc.size - 1) / chunk_size_) + 1;
  // At most `jobs` ranges in flight; each wait is bounded by the fetch's own deadline.
  std::deque<PendingList> runs;
  Status result;
  bool cancelled = false;
  auto wait_front = [&] {
    for (auto& p : runs.front()) {
      std::unique_lock lock(p->mu);
      p->cv.wait(lock, [&] { return p->done; });
      if (!p->status.ok()) {
        if (result.ok()) result = p->status;
      } else if (!cancelled && progress && !progress(p->data->size())) {
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
    if (auto p = find_inflight(cid, c)) {
      runs.push_back({p});
      ++c;
    } else {
      PendingList claimed = claim(cid, c, std::min(c + unit, nchunks));
      if (claimed.empty()) {
        // Only in memory (fetched when the disk had no room): store that copy.
        if (auto hot = hot_get(cid, c); hot && !store_.contains(cid, c) && !find_inflight(cid, c)) {
          before_put(cid, c);
          if (Status s = store_.put(cid, c, *hot); !s.ok()) {
            result = Status(s.code() == Code::kNoSpace ? Code::kNoSpace : Code::kIo, s.message());
            break;
          }
          advance(loc, cid, c, hot.get());
          if (progress && !progress(hot->size())) cancelled = true;
          ++c;
        }
        continue;
      }
      runs.push_back(claimed);
      uint32_t first = c;
      c += static_cast<uint32_t>(claimed.size());
      pool_.submit([this, loc, cid, first, claimed = std::move(claimed)]() mutable {
        fetch_run(loc, cid, first, std::move(claimed));
      });
    }
    while (runs.size() >= std::max(1u, jobs)) wait_front();
  }
  while (!runs.empty()) wait_front();
  if (cancelled && result.ok()) return {Code::kCancelled, "cancelled"};
  if (!result.ok()) return result;
  Status st = verify_complete(loc, cid);
  if (st.ok() || st.code() == Code::kNotFound) {
    if (mismatch_epoch(cid) != epoch) {  // found while the chunks landed; the data is gone
      return {Code::kIo, "sha256 mismatch for " + loc.path + ": the upstream bytes were wrong"};
    }
  }
  return st;
}

ReaderStats Reader::stats() const {
  ReaderStats s;
  s.reads = n_.reads;
  s.bytes_read = n_.bytes_read;
  s.bytes_from_cache = n_.bytes_from_cache;
  s.bytes_fetched = n_.bytes_fetched;
  s.chunks_fetched = n_.chunks_fetched;
  s.shared_waits = n_.shared_waits;
  s.direct_reads = n_.direct_reads;
  s.bytes_from_memory = n_.bytes_from_memory;
  s.corrupt_chunks = n_.corrupt_chunks;
  s.files_verified = n_.files_verified;
  s.sha256_mismatches = n_.sha256_mismatches;
  s.read_errors = n_.read_errors;
  {
    std::lock_guard lock(inflight_mu_);
    s.inflight_chunks = inflight_.size();
  }
  return s;
}

}  // namespace modelfs::fs
