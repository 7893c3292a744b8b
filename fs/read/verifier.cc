#include "fs/read/verifier.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "fs/base/text.h"

namespace modelfs::fs {
namespace {

// Files being hashed at once; beyond it a file is hashed in one pass when it is complete.
constexpr size_t kMaxCursors = 256;

}  // namespace

// A running sha256 over chunks 0..next-1 of one file. Its mutex is held while hashing, so
// whoever stores a chunk either sees it consumed or consumes it itself.
struct Verifier::Cursor {
  Mutex mu;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx GUARDED_BY(mu){EVP_MD_CTX_new(),
                                                                             &EVP_MD_CTX_free};
  bool ok GUARDED_BY(mu) = false;    // ctx initialised
  bool valid GUARDED_BY(mu) = true;  // false once replaced or finished: holders drop it
  uint32_t next GUARDED_BY(mu) = 0;
  std::map<uint32_t, ChunkRef> early GUARDED_BY(mu);  // landed ahead of next
  uint64_t early_bytes GUARDED_BY(mu) = 0;
  // The content's mismatch epoch when hashing began: a verdict after another cursor dropped the
  // content covers bytes of two generations and means nothing.
  uint32_t epoch GUARDED_BY(mu) = 0;
};

Verifier::Verifier(index::ChunkStore& store, HotTier& hot, BufferPool& buffers,
                   uint64_t backlog_bytes)
    : store_(store),
      hot_(hot),
      buffers_(buffers),
      chunk_size_(store.chunk_size()),
      backlog_max_(backlog_bytes) {}

Verifier::~Verifier() = default;

std::shared_ptr<Verifier::Cursor> Verifier::cursor(const std::string& cid, bool force) {
  {
    MutexLock lock(mu_);
    auto it = cursors_.find(cid);
    if (it != cursors_.end()) return it->second;
    if (!force && cursors_.size() >= kMaxCursors) return nullptr;
  }
  // Set up outside mu_: consume() takes mu_ while holding a cursor's lock, so mu_ is never
  // held while taking one.
  auto c = std::make_shared<Cursor>();
  const uint32_t epoch = mismatch_epoch(cid);
  {
    MutexLock cl(c->mu);
    c->ok = c->ctx && EVP_DigestInit_ex(c->ctx.get(), EVP_sha256(), nullptr) == 1;
    c->epoch = epoch;
  }
  MutexLock lock(mu_);
  return cursors_.try_emplace(cid, std::move(c)).first->second;  // or one set up meanwhile
}

void Verifier::forget_cursor(const std::string& cid, const Cursor* c) {
  MutexLock lock(mu_);
  auto it = cursors_.find(cid);
  if (it != cursors_.end() && it->second.get() == c) cursors_.erase(it);
}

void Verifier::before_put(const std::string& cid, uint32_t index) {
  if (!IsSha256(cid)) return;
  std::shared_ptr<Cursor> c;
  {
    MutexLock lock(mu_);
    auto it = cursors_.find(cid);
    if (it == cursors_.end()) return;
    c = it->second;
  }
  MutexLock cl(c->mu);
  if (c->valid && index < c->next) {
    c->valid = false;
    backlog_bytes_ -= c->early_bytes;
    c->early.clear();
    c->early_bytes = 0;
    forget_cursor(cid, c.get());
  }
}

// Hashes the cursor forward over what it can reach: early chunks in memory, then chunks in the
// store. Ok when it stops short or matched; kIo on a mismatch (the data is dropped by then).
Status Verifier::consume(Cursor& c, const fetch::FileLocation& loc, const std::string& cid) {
  const uint32_t n = static_cast<uint32_t>((loc.size + chunk_size_ - 1) / chunk_size_);
  std::shared_ptr<char[]> buf;
  while (c.valid && c.next < n) {
    const auto len = static_cast<uint32_t>(
        std::min<uint64_t>(chunk_size_, loc.size - uint64_t{c.next} * chunk_size_));
    if (auto e = c.early.find(c.next); e != c.early.end()) {
      if (EVP_DigestUpdate(c.ctx.get(), e->second->data(), e->second->size()) != 1) c.ok = false;
      from_memory_ += e->second->size();
      c.early_bytes -= e->second->size();
      backlog_bytes_ -= e->second->size();
      c.early.erase(e);
    } else if (auto hot = hot_.get(cid, c.next); hot && hot->size() == len) {
      if (EVP_DigestUpdate(c.ctx.get(), hot->data(), len) != 1) c.ok = false;
      from_memory_ += len;
    } else {
      if (!store_.contains(cid, c.next)) return Status::Ok();  // not yet: no buffer, no read
      if (!buf) buf = buffers_.get();
      if (!store_.read(cid, c.next, 0, len, buf.get()).ok()) return Status::Ok();  // not yet
      if (EVP_DigestUpdate(c.ctx.get(), buf.get(), len) != 1) c.ok = false;
      from_disk_ += len;
    }
    ++c.next;
  }
  if (!c.valid || c.next < n) return Status::Ok();
  c.valid = false;
  backlog_bytes_ -= c.early_bytes;
  c.early.clear();
  c.early_bytes = 0;
  // The cursor leaves the map only after its verdict is acted on: a cursor set up meanwhile
  // would hash the same wrong chunks again and count a second mismatch.
  Status verdict = finish(c, loc, cid);
  forget_cursor(cid, &c);
  return verdict;
}

Status Verifier::finish(Cursor& c, const fetch::FileLocation& loc, const std::string& cid) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!c.ok || EVP_DigestFinal_ex(c.ctx.get(), digest, &len) != 1) {
    return {Code::kIo, "sha256 of " + loc.path + " could not be computed"};
  }
  const std::string hex = HexEncode(digest, len);
  if (mismatch_epoch(cid) != c.epoch) {
    // Some of what this cursor hashed was dropped as wrong meanwhile (and counted once, there);
    // a fresh cursor gives the verdict on what is cached now.
    return {Code::kNotFound, loc.path + " was dropped while hashing"};
  }
  if (hex == cid) {
    verified_++;
    if (Status s = store_.mark_verified(cid); !s.ok()) {
      spdlog::warn("cache: cannot record {} as verified: {}", loc.path, s.to_string());
    }
    return Status::Ok();
  }
  drop_bad_content(loc, cid, "sha256 mismatch: expected " + cid + ", got " + hex);
  return {Code::kIo, "sha256 mismatch for " + loc.path + ": the upstream bytes were wrong"};
}

void Verifier::advance(const fetch::FileLocation& loc, const std::string& cid, uint32_t index,
                       const ChunkRef& data) {
  if (!IsSha256(cid)) return;
  auto c = cursor(cid, /*force=*/false);
  if (!c) return;
  MutexLock cl(c->mu);
  if (!c->valid) return;
  if (index > c->next && data && !c->early.count(index) &&
      backlog_bytes_.load() + data->size() <= backlog_max_) {
    c->early.emplace(index, data);
    c->early_bytes += data->size();
    backlog_bytes_ += data->size();
    return;
  }
  if (index == c->next && data) {
    if (EVP_DigestUpdate(c->ctx.get(), data->data(), data->size()) != 1) c->ok = false;
    from_memory_ += data->size();
    ++c->next;
  }
  (void)consume(*c, loc, cid);
}

Status Verifier::verify_complete(const fetch::FileLocation& loc, const std::string& cid) {
  if (!IsSha256(cid) || store_.is_verified(cid)) return Status::Ok();
  if (store_.cached_bytes(cid) < loc.size) return {Code::kNotFound, loc.path + " is not complete"};
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (store_.is_verified(cid)) return Status::Ok();  // another reader's hashing finished
    auto c = cursor(cid, /*force=*/true);
    MutexLock cl(c->mu);
    if (!c->valid) continue;  // finished or replaced meanwhile: look again
    Status st = consume(*c, loc, cid);
    if (st.not_found()) continue;  // dropped while hashing: a fresh cursor hashes what is left
    if (!st.ok()) return st;
    if (!c->valid) break;  // finished: the verdict is recorded
    return {Code::kNotFound, loc.path + " is not complete"};
  }
  return store_.is_verified(cid) ? Status::Ok()
                                 : Status(Code::kNotFound, loc.path + " changed while hashing");
}

void Verifier::drop_bad_content(const fetch::FileLocation& loc, const std::string& cid,
                                const std::string& why) {
  mismatches_++;
  {
    MutexLock lock(mu_);
    ++epochs_[cid];
  }
  spdlog::error("{}@{}/{}: {}; dropped its cached data", loc.repo_id, loc.commit.substr(0, 8),
                loc.path, why);
  (void)store_.remove_content(cid);
  hot_.forget(cid);
  if (on_dropped_) on_dropped_(cid);
}

uint32_t Verifier::mismatch_epoch(const std::string& cid) {
  MutexLock lock(mu_);
  auto it = epochs_.find(cid);
  return it == epochs_.end() ? 0 : it->second;
}

VerifierStats Verifier::stats() const {
  return {verified_.load(), mismatches_.load(), from_memory_.load(), from_disk_.load()};
}

}  // namespace modelfs::fs
