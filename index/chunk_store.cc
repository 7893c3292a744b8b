// The chunk store's put and read paths, its chunk file I/O and its public methods. Opening and
// crash recovery are in chunk_store_recover.cc, LRU and eviction in chunk_store_lru.cc, the file
// format in chunk_file.cc.
#include "index/chunk_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "fs/base/clock.h"
#include "fs/base/sys.h"
#include "fs/base/text.h"
#include "fs/base/unique_fd.h"
#include "index/chunk_file.h"
#include "index/chunk_store_impl.h"

namespace modelfs::index {

using chunk_file::DecodeHeader;
using chunk_file::EncodeHeader;
using chunk_file::Header;
using chunk_file::kBlockSize;
using chunk_file::kHeaderSize;
using chunk_file::ValidContentId;
using chunk_store_internal::ContentInfo;
using chunk_store_internal::Entry;
using chunk_store_internal::FileResult;
using chunk_store_internal::kEvictBatch;
using chunk_store_internal::Key;
using chunk_store_internal::kFlushThreshold;
using chunk_store_internal::kOpenChunks;
using chunk_store_internal::OpenChunk;
using chunk_store_internal::PreadAll;
using chunk_store_internal::State;

namespace {

Status InvalidId(std::string_view id) {
  return Status(Code::kInvalid,
                "content id must be 40 or 64 lowercase hex characters: '" + std::string(id) + "'");
}

int WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// mkdir -p with mode 0700 for every directory it creates. Returns 0 or errno.
int MakeDirsErrno(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return 0;
  if (errno != ENOENT) return errno;
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return ENOENT;
  if (int e = MakeDirsErrno(path.substr(0, slash)); e != 0) return e;
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return 0;
  return errno;
}

}  // namespace

ssize_t chunk_store_internal::PreadAll(int fd, void* buf, size_t n, off_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t r =
        ::pread(fd, static_cast<char*>(buf) + done, n - done, off + static_cast<off_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// ---- files ----

// Writes the chunk to a temp file in its directory and renames it into place. Returns 0 or an
// errno. No fsync, deliberately: the cache holds re-fetchable data and fsync per chunk would
// cost a device flush per MiB downloaded. A crash can lose recently written chunks or leave a
// renamed file whose blocks never reached the disk (zeros or stale data), but such a file
// fails its header or block checksums, so it is detected on read (kCorrupt, dropped, fetched
// again) and never served.
int ChunkStore::Impl::write_file(const Key& key, const std::string& header, std::string_view data) {
  if (opt.inject_write_errno) {
    if (int e = opt.inject_write_errno(); e != 0) return e;
  }
  const std::string cdir = content_dir(key.id);
  const std::string final_path = cdir + "/" + std::to_string(key.idx);
  UniqueFd fd;
  std::string tmp;
  // A concurrent removal may rmdir the (empty) content directory between our mkdir and open.
  for (int attempt = 0; attempt < 5 && !fd.valid(); ++attempt) {
    if (int e = MakeDirsErrno(cdir); e != 0) return e;
    tmp = cdir + "/" + std::to_string(key.idx) + ".tmp." + std::to_string(::getpid()) + "." +
          std::to_string(tmp_counter.fetch_add(1));
    fd = UniqueFd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid() && errno != ENOENT && errno != EEXIST) return errno;
  }
  if (!fd.valid()) return ENOENT;
  int e = WriteAll(fd.get(), header.data(), header.size());
  if (e == 0) e = WriteAll(fd.get(), data.data(), data.size());
  if (e == 0) e = fd.close();
  if (e == 0 && ::rename(tmp.c_str(), final_path.c_str()) != 0) e = errno;
  if (e != 0) ::unlink(tmp.c_str());
  return e;
}

FileResult ChunkStore::Impl::open_chunk(const Key& key, uint64_t gen, uint32_t size,
                                        std::shared_ptr<const OpenChunk>* out,
                                        std::string* why) const {
  {
    std::lock_guard lock(open_mu);
    auto it = open_chunks.find(key);
    if (it != open_chunks.end() && it->second->gen == gen) {
      *out = it->second;
      return FileResult::kOk;
    }
  }
  const std::string path = chunk_path(key.id, key.idx);
  auto oc = std::make_shared<OpenChunk>();
  oc->fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!oc->fd.valid()) {
    *why = std::system_category().message(errno);
    return errno == ENOENT ? FileResult::kMissing : FileResult::kIo;
  }
  oc->header = std::make_unique_for_overwrite<unsigned char[]>(kHeaderSize);
  const ssize_t hn = PreadAll(oc->fd.get(), oc->header.get(), kHeaderSize, 0);
  if (hn < 0) {
    *why = std::system_category().message(errno);
    return FileResult::kIo;
  }
  if (hn != kHeaderSize) {
    *why = "truncated header";
    return FileResult::kCorrupt;
  }
  Header h;
  if (!DecodeHeader(oc->header.get(), kHeaderSize, chunk_size, &h, why))
    return FileResult::kCorrupt;
  if (h.id != key.id || h.index != key.idx || h.data_len != size) {
    *why = "header does not match the index";
    return FileResult::kCorrupt;
  }
  oc->gen = gen;
  oc->data_len = size;
  {
    std::lock_guard lock(open_mu);
    if (open_chunks.size() >= kOpenChunks && !open_chunks.contains(key)) {
      open_chunks.erase(open_chunks.begin());  // any victim will do; misses only cost an open
    }
    open_chunks[key] = oc;
  }
  *out = std::move(oc);
  return FileResult::kOk;
}

void ChunkStore::Impl::forget_open(const Key& key) const {
  std::lock_guard lock(open_mu);
  open_chunks.erase(key);
}

FileResult ChunkStore::Impl::read_file(const Key& key, uint64_t gen, uint32_t size, uint32_t offset,
                                       uint32_t length, char* dst, std::string* why) const {
  std::shared_ptr<const OpenChunk> oc;
  if (FileResult r = open_chunk(key, gen, size, &oc, why); r != FileResult::kOk) return r;
  const OpenChunk& h = *oc;
  const int fd = h.fd.get();
  if (length == 0) return FileResult::kOk;

  const uint32_t first = offset / kBlockSize;
  const uint32_t last = (offset + length - 1) / kBlockSize;
  const uint64_t start = uint64_t{first} * kBlockSize;
  const uint64_t end = std::min<uint64_t>(uint64_t{last + 1} * kBlockSize, size);
  const size_t n = end - start;
  // Block-aligned requests are read straight into dst; others through a bounce buffer.
  const bool direct = offset == start && offset + length == end;
  std::unique_ptr<char[]> bounce;
  char* buf = dst;
  if (!direct) {
    bounce = std::make_unique_for_overwrite<char[]>(n);
    buf = bounce.get();
  }
  const ssize_t got = PreadAll(fd, buf, n, static_cast<off_t>(kHeaderSize + start));
  if (got < 0) {
    *why = std::system_category().message(errno);
    return FileResult::kIo;
  }
  if (static_cast<size_t>(got) != n) {
    *why = "truncated data";
    return FileResult::kCorrupt;
  }
  for (uint32_t b = first; b <= last; ++b) {
    const uint64_t bstart = uint64_t{b} * kBlockSize;
    const size_t blen = std::min<uint64_t>(kBlockSize, size - bstart);
    if (XXH3_64bits(buf + (bstart - start), blen) != h.block_hash(b)) {
      *why = "block " + std::to_string(b) + " checksum mismatch";
      return FileResult::kCorrupt;
    }
  }
  if (!direct) std::memcpy(dst, buf + (offset - start), length);
  return FileResult::kOk;
}

// ---- operations ----

Status ChunkStore::Impl::put(std::string_view id, uint32_t idx, std::string_view data) {
  if (!ValidContentId(id)) return InvalidId(id);
  if (data.empty() || data.size() > chunk_size) {
    return Status(Code::kInvalid, "chunk of " + std::to_string(data.size()) +
                                      " bytes (chunk size " + std::to_string(chunk_size) + ")");
  }
  const Key key{std::string(id), idx};
  const auto size = static_cast<uint32_t>(data.size());
  uint64_t seq = 0;
  uint64_t gen = 0;
  // Eviction rounds that freed nothing. Under contention other writers' reservations hold the
  // space; they become evictable once written, so a full cache is only declared after rounds
  // that could free nothing while no writes were pending.
  int idle_rounds = 0;
  for (;;) {
    uint64_t target = 0;
    {
      std::unique_lock lock(mu);
      if (idle_rounds > 0 && reserved > 0) {
        key_cv.wait_for(lock, std::chrono::milliseconds(20));
      }
      for (;;) {
        auto it = entries.find(key);
        if (it != entries.end() && it->second.state == State::kPresent) return Status::Ok();
        if (it != entries.end()) {  // being written or deleted by another thread
          key_cv.wait(lock);
          continue;
        }
        // Deletions in flight will free their bytes shortly; wait rather than evict more.
        if (used + reserved + size > capacity && deleting > 0 &&
            used - deleting + reserved + size <= capacity) {
          key_cv.wait(lock);
          continue;
        }
        break;
      }
      if (used + reserved + size <= capacity) {
        Entry e;
        e.size = size;
        e.seq = seq = next_seq++;
        e.gen = gen = next_gen++;
        e.state = State::kWriting;
        entries.emplace(key, e);
        reserved += size;
        break;
      }
      if (size > capacity || idle_rounds >= (reserved > 0 ? 50 : 3)) {
        return Status(Code::kNoSpace, "cache full: " + std::to_string(used) + " of " +
                                          std::to_string(capacity) +
                                          " bytes used by pinned or in-use chunks");
      }
      const auto low = static_cast<uint64_t>(static_cast<double>(capacity) * opt.low_water);
      target = low > size ? low - size : 0;
    }
    uint64_t freed = 0;
    Status s = evict_to(target, &freed);
    if (!s.ok()) return s;
    idle_rounds = freed > 0 ? 0 : idle_rounds + 1;
  }

  auto abort = [&](Status s) {
    std::lock_guard lock(mu);
    entries.erase(key);
    reserved -= size;
    key_cv.notify_all();
    return s;
  };

  // New bytes of a verified content are not verified: clear the mark before they are on disk,
  // so no crash can leave it standing over them.
  {
    std::lock_guard db_lock(db.mutex());  // as in mark_verified: memory and row change together
    bool was_verified = false;
    {
      std::lock_guard lock(mu);
      auto cit = contents.find(key.id);
      if (cit != contents.end() && cit->second.verified) {
        cit->second.verified = false;
        was_verified = true;
      }
    }
    if (was_verified) {
      if (Status s = del_verified.bind(1, id).exec(); !s.ok()) return abort(s);
    }
  }

  const std::string header = EncodeHeader(id, idx, data);
  int err = write_file(key, header, data);
  if (err == ENOSPC || err == EDQUOT) {
    // The disk is fuller than our accounting thinks (other users of the file system): make
    // room beyond our own limit and try once more.
    uint64_t current = 0;
    {
      std::lock_guard lock(mu);
      current = used - deleting;
    }
    const auto slack = static_cast<uint64_t>(static_cast<double>(capacity) * (1 - opt.low_water));
    const uint64_t extra = std::max<uint64_t>(size, slack);
    spdlog::warn("chunk store {}: disk full writing a chunk; evicting {} bytes and retrying", dir,
                 extra);
    uint64_t freed = 0;
    Status s = evict_to(current > extra ? current - extra : 0, &freed);
    if (!s.ok()) return abort(s);
    err = write_file(key, header, data);
  }
  if (err != 0)
    return abort(ErrnoStatus("writing chunk " + key.id + "/" + std::to_string(idx), err));

  // The row goes in after the rename: a row always has had a complete file.
  const int64_t now = NowUnix();
  Status s;
  {
    std::lock_guard db_lock(db.mutex());
    Txn txn(db);
    s = txn.status();
    if (s.ok()) s = ins_content.bind(1, id).bind(2, now).exec();
    if (s.ok()) {
      s = ins_chunk.bind(1, id)
              .bind(2, int64_t{idx})
              .bind(3, int64_t{size})
              .bind(4, static_cast<int64_t>(seq))
              .exec();
    }
    if (s.ok()) s = txn.commit();
  }
  if (!s.ok()) {
    ::unlink(chunk_path(id, idx).c_str());
    return abort(s);
  }

  std::lock_guard lock(mu);
  auto it = entries.find(key);
  Entry& e = it->second;
  e.state = State::kPresent;
  reserved -= size;
  add_present_locked(it->first, e);
  contents[key.id].last_access = now;
  key_cv.notify_all();
  return Status::Ok();
}

Status ChunkStore::Impl::read(std::string_view id, uint32_t idx, uint32_t offset, uint32_t length,
                              char* dst) {
  if (!ValidContentId(id)) return InvalidId(id);
  const Key key{std::string(id), idx};
  uint32_t size = 0;
  uint64_t gen = 0;
  bool wake_flusher = false;
  {
    std::lock_guard lock(mu);
    auto it = entries.find(key);
    if (it == entries.end() || it->second.state != State::kPresent) {
      return Status(Code::kNotFound, "chunk " + key.id + "/" + std::to_string(idx));
    }
    Entry& e = it->second;
    size = e.size;
    if (offset > size || length > size - offset) {
      return Status(Code::kInvalid, "range [" + std::to_string(offset) + ", +" +
                                        std::to_string(length) + ") beyond chunk of " +
                                        std::to_string(size) + " bytes");
    }
    ++e.leases;
    gen = e.gen;
    touch_locked(it->first, e, NowUnix());
    wake_flusher = dirty.size() >= kFlushThreshold;
  }
  if (wake_flusher) {
    std::lock_guard lock(flusher_mu);
    flush_wanted = true;
    flusher_cv.notify_one();
  }

  if (opt.on_read_leased) opt.on_read_leased(id, idx);
  std::string why;
  const FileResult r = read_file(key, gen, size, offset, length, dst, &why);
  {
    std::lock_guard lock(mu);
    auto it = entries.find(key);
    if (it != entries.end() && it->second.gen == gen) --it->second.leases;
    if (r == FileResult::kCorrupt) ++corrupt_chunks;
  }
  switch (r) {
    case FileResult::kOk:
      return Status::Ok();
    case FileResult::kMissing:
      spdlog::warn("chunk store {}: chunk {}/{} has no file; dropping it", dir, key.id, idx);
      drop(key, gen);
      return Status(Code::kNotFound, "chunk " + key.id + "/" + std::to_string(idx) + ": " + why);
    case FileResult::kCorrupt:
      spdlog::warn("chunk store {}: chunk {}/{} failed verification ({}); dropping it", dir, key.id,
                   idx, why);
      drop(key, gen);
      return Status(Code::kCorrupt, "chunk " + key.id + "/" + std::to_string(idx) + ": " + why);
    case FileResult::kIo:
      break;
  }
  return Status(Code::kIo, "reading chunk " + key.id + "/" + std::to_string(idx) + ": " + why);
}

// ---------------------------------------------------------------------------------------------

ChunkStore::ChunkStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ChunkStore::~ChunkStore() {
  impl_->shutdown();
}

Status ChunkStore::Open(Db& db, ChunkStoreOptions options, bool recover,
                        std::unique_ptr<ChunkStore>* out) {
  if (options.dir.empty()) return Status(Code::kInvalid, "chunk store directory not set");
  if (options.chunk_size == 0 || options.chunk_size > kMaxChunkSize) {
    return Status(Code::kInvalid, "chunk size must be 1 byte to 16 MiB");
  }
  if (!(options.low_water > 0 && options.low_water <= 1)) {
    return Status(Code::kInvalid, "low_water must be in (0, 1]");
  }
  auto impl = std::make_unique<Impl>(db, std::move(options));
  impl->dir = impl->opt.dir.string();
  while (impl->dir.size() > 1 && impl->dir.back() == '/') impl->dir.pop_back();
  impl->chunk_size = impl->opt.chunk_size;
  impl->capacity = impl->opt.capacity_bytes;
  if (Status s = MakeDirs(impl->dir, 0700); !s.ok()) return s;

  uint64_t max_seq = 0;
  Status s = impl->init_db(&max_seq);
  if (!s.ok()) return s;
  s = impl->load(max_seq);
  if (!s.ok()) return s;
  if (recover) {
    s = impl->reconcile();
    if (!s.ok()) return s;
  }
  if (impl->used > impl->capacity) {
    const auto target =
        static_cast<uint64_t>(static_cast<double>(impl->capacity) * impl->opt.low_water);
    s = impl->evict_to(target, nullptr);
    if (!s.ok()) return s;
  }
  impl->start_flusher();
  out->reset(new ChunkStore(std::move(impl)));
  return Status::Ok();
}

uint32_t ChunkStore::chunk_size() const {
  return impl_->chunk_size;
}

bool ChunkStore::contains(std::string_view content_id, uint32_t index) const {
  if (!ValidContentId(content_id)) return false;
  std::lock_guard lock(impl_->mu);
  auto it = impl_->entries.find(Key{std::string(content_id), index});
  return it != impl_->entries.end() && it->second.state == State::kPresent;
}

Status ChunkStore::put(std::string_view content_id, uint32_t index, std::string_view data) {
  return impl_->put(content_id, index, data);
}

Status ChunkStore::read(std::string_view content_id, uint32_t index, uint32_t offset,
                        uint32_t length, char* dst) {
  return impl_->read(content_id, index, offset, length, dst);
}

Status ChunkStore::content_sha256(std::string_view content_id, uint64_t size, std::string* hex) {
  if (!ValidContentId(content_id)) return InvalidId(content_id);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Status(Code::kIo, "sha256 init failed");
  }
  const uint32_t cs = impl_->chunk_size;
  auto buf = std::make_unique_for_overwrite<char[]>(cs);
  const uint64_t n = (size + cs - 1) / cs;
  for (uint64_t i = 0; i < n; ++i) {
    if (i > UINT32_MAX) return Status(Code::kInvalid, "content too large");
    const auto idx = static_cast<uint32_t>(i);
    const auto expected = static_cast<uint32_t>(std::min<uint64_t>(cs, size - i * cs));
    {
      std::lock_guard lock(impl_->mu);
      auto it = impl_->entries.find(Key{std::string(content_id), idx});
      if (it == impl_->entries.end() || it->second.state != State::kPresent) {
        return Status(Code::kNotFound,
                      "chunk " + std::string(content_id) + "/" + std::to_string(idx));
      }
      if (it->second.size != expected) {
        return Status(Code::kInvalid, "chunk " + std::to_string(idx) + " holds " +
                                          std::to_string(it->second.size) + " bytes, expected " +
                                          std::to_string(expected));
      }
    }
    Status s = impl_->read(content_id, idx, 0, expected, buf.get());
    if (!s.ok()) return s;
    if (EVP_DigestUpdate(ctx.get(), buf.get(), expected) != 1) {
      return Status(Code::kIo, "sha256 update failed");
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) {
    return Status(Code::kIo, "sha256 final failed");
  }
  *hex = HexEncode(digest, len);
  return Status::Ok();
}

bool ChunkStore::is_verified(std::string_view content_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->contents.find(content_id);
  return it != impl_->contents.end() && it->second.verified;
}

Status ChunkStore::mark_verified(std::string_view content_id) {
  if (!ValidContentId(content_id)) return InvalidId(content_id);
  Impl& m = *impl_;
  std::lock_guard db_lock(m.db.mutex());
  {
    std::lock_guard lock(m.mu);
    auto it = m.contents.find(content_id);
    if (it == m.contents.end() || it->second.present.empty()) {
      return Status(Code::kNotFound, "no chunks of " + std::string(content_id));
    }
    if (it->second.verified) return Status::Ok();
  }
  if (Status s = m.ins_verified.bind(1, content_id).exec(); !s.ok()) return s;
  std::lock_guard lock(m.mu);
  auto it = m.contents.find(content_id);
  if (it != m.contents.end()) it->second.verified = true;
  return Status::Ok();
}

void ChunkStore::will_need(std::string_view content_id, uint32_t index) {
  if (!ValidContentId(content_id)) return;
  const Key key{std::string(content_id), index};
  uint64_t gen = 0;
  uint32_t size = 0;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->entries.find(key);
    if (it == impl_->entries.end() || it->second.state != State::kPresent) return;
    gen = it->second.gen;
    size = it->second.size;
  }
  std::shared_ptr<const OpenChunk> oc;
  std::string why;
  if (impl_->open_chunk(key, gen, size, &oc, &why) == FileResult::kOk) {
    ::posix_fadvise(oc->fd.get(), kHeaderSize, size, POSIX_FADV_WILLNEED);
  }
}

// Removes every present chunk of the content, pinned or not (the pin itself stays). A put of
// the same content racing with this call may still land afterwards.
Status ChunkStore::remove_content(std::string_view content_id) {
  if (!ValidContentId(content_id)) return InvalidId(content_id);
  std::vector<std::pair<Key, uint32_t>> victims;
  {
    std::lock_guard lock(impl_->mu);
    auto cit = impl_->contents.find(content_id);
    if (cit == impl_->contents.end()) return Status::Ok();
    for (uint32_t idx : cit->second.present) {
      auto it = impl_->entries.find(Key{std::string(content_id), idx});
      if (it == impl_->entries.end() || it->second.state != State::kPresent) continue;
      impl_->mark_deleting_locked(it->first, it->second);
      victims.emplace_back(it->first, it->second.size);
    }
  }
  for (size_t i = 0; i < victims.size(); i += kEvictBatch) {
    const size_t end = std::min(victims.size(), i + kEvictBatch);
    impl_->remove_batch({victims.begin() + static_cast<ptrdiff_t>(i),
                         victims.begin() + static_cast<ptrdiff_t>(end)},
                        /*evicted=*/false);
  }
  return Status::Ok();
}

Status ChunkStore::set_pinned(std::string_view content_id, bool pinned) {
  if (!ValidContentId(content_id)) return InvalidId(content_id);
  Impl& m = *impl_;
  std::lock_guard db_lock(m.db.mutex());  // held across the memory update: DB and memory agree
  Status s = m.upd_pin.bind(1, content_id).bind(2, int64_t{pinned ? 1 : 0}).exec();
  if (s.ok() && !pinned) s = m.del_empty_content.bind(1, content_id).exec();
  if (!s.ok()) return s;
  std::lock_guard lock(m.mu);
  auto [cit, inserted] = m.contents.try_emplace(std::string(content_id));
  ContentInfo& info = cit->second;
  if (info.pinned != pinned) {
    info.pinned = pinned;
    for (uint32_t idx : info.present) {
      Key key{std::string(content_id), idx};
      auto it = m.entries.find(key);
      if (it == m.entries.end() || it->second.state != State::kPresent) continue;
      if (pinned) {
        m.lru.erase({it->second.seq, key});
      } else {
        m.lru.emplace(it->second.seq, std::move(key));
      }
    }
  }
  m.erase_content_if_empty_locked(cit->first);
  return Status::Ok();
}

bool ChunkStore::is_pinned(std::string_view content_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->contents.find(content_id);
  return it != impl_->contents.end() && it->second.pinned;
}

Status ChunkStore::evict_to(uint64_t target_bytes, uint64_t* freed) {
  return impl_->evict_to(target_bytes, freed);
}

void ChunkStore::set_capacity(uint64_t capacity_bytes) {
  bool over = false;
  {
    std::lock_guard lock(impl_->mu);
    impl_->capacity = capacity_bytes;
    over = impl_->used - impl_->deleting > capacity_bytes;
  }
  if (over) {
    const auto target =
        static_cast<uint64_t>(static_cast<double>(capacity_bytes) * impl_->opt.low_water);
    impl_->evict_to(target, nullptr);
  }
}

uint64_t ChunkStore::capacity() const {
  std::lock_guard lock(impl_->mu);
  return impl_->capacity;
}

uint64_t ChunkStore::cached_bytes(std::string_view content_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->contents.find(content_id);
  return it == impl_->contents.end() ? 0 : it->second.bytes;
}

// last_access is unix seconds recorded on put/read (persisted with the access flush), not a
// mapping of access_seq.
Status ChunkStore::list_contents(std::vector<ContentUsage>* out) const {
  std::vector<ContentUsage> result;
  {
    std::lock_guard lock(impl_->mu);
    result.reserve(impl_->contents.size());
    for (const auto& [id, info] : impl_->contents) {
      if (info.present.empty() && !info.pinned) continue;
      ContentUsage u;
      u.content_id = id;
      u.cached_bytes = info.bytes;
      u.chunks = static_cast<uint32_t>(info.present.size());
      u.pinned = info.pinned;
      u.last_access = info.last_access;
      result.push_back(std::move(u));
    }
  }
  *out = std::move(result);
  return Status::Ok();
}

ChunkStoreStats ChunkStore::stats() const {
  std::lock_guard lock(impl_->mu);
  ChunkStoreStats s;
  s.chunks = impl_->present_chunks;
  s.used_bytes = impl_->used;
  s.capacity_bytes = impl_->capacity;
  for (const auto& [id, info] : impl_->contents) {
    if (info.pinned) s.pinned_bytes += info.bytes;
  }
  s.evicted_chunks = impl_->evicted_chunks;
  s.evicted_bytes = impl_->evicted_bytes;
  s.corrupt_chunks = impl_->corrupt_chunks;
  return s;
}

Status ChunkStore::flush_access() {
  return impl_->flush();
}

}  // namespace modelfs::index
