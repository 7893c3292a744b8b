// Opening a chunk store: the schema, loading the index into memory, and rebuilding the index
// from the chunk files after an unclean exit (reconcile).
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fs/base/clock.h"
#include "fs/base/unique_fd.h"
#include "index/chunk_store_impl.h"

namespace modelfs::index {

using chunk_file::DecodeHeader;
using chunk_file::Header;
using chunk_file::kHeaderSize;
using chunk_file::ValidContentId;
using chunk_store_internal::Entry;
using chunk_store_internal::Key;
using chunk_store_internal::KeyHash;
using chunk_store_internal::PreadAll;
using chunk_store_internal::State;

namespace {

// Schema. The rows are a hint: the files on disk are the truth, see reconcile().
// contents: one row per content id that has chunks or is pinned; last_access is unix seconds,
// updated in memory on each put/read and persisted with the batched access flush.
// meta: chunk_size (fixed at creation) and access_seq (the highest sequence handed out).

constexpr int kSchemaVersion = 1;
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contents(
  content_id TEXT PRIMARY KEY,
  pinned INTEGER NOT NULL DEFAULT 0,
  last_access INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks(
  content_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  size INTEGER NOT NULL,
  access_seq INTEGER NOT NULL,
  PRIMARY KEY(content_id, idx)) WITHOUT ROWID;
-- Contents whose present chunks hashed to their sha256; any later put of a chunk clears it.
CREATE TABLE IF NOT EXISTS verified(
  content_id TEXT PRIMARY KEY) WITHOUT ROWID;
)sql";

}  // namespace

Status ChunkStore::Impl::init_db(uint64_t* max_seq) {
  std::lock_guard lock(db.mutex());
  Status s = db.apply_schema(kSchema, kSchemaVersion);
  if (!s.ok()) return s;
  struct Item {
    Stmt* stmt;
    const char* sql;
  };
  const Item items[] = {
      {&ins_content,
       "INSERT INTO contents(content_id, pinned, last_access) VALUES(?,0,?) "
       "ON CONFLICT(content_id) DO UPDATE SET last_access=excluded.last_access"},
      {&ins_chunk,
       "INSERT OR REPLACE INTO chunks(content_id, idx, size, access_seq) VALUES(?,?,?,?)"},
      {&del_chunk, "DELETE FROM chunks WHERE content_id=? AND idx=?"},
      {&del_empty_content,
       "DELETE FROM contents WHERE content_id=?1 AND pinned=0 AND "
       "NOT EXISTS(SELECT 1 FROM chunks WHERE content_id=?1)"},
      {&upd_seq, "UPDATE chunks SET access_seq=? WHERE content_id=? AND idx=?"},
      {&upd_access, "UPDATE contents SET last_access=? WHERE content_id=?"},
      {&upd_pin,
       "INSERT INTO contents(content_id, pinned, last_access) VALUES(?,?,0) "
       "ON CONFLICT(content_id) DO UPDATE SET pinned=excluded.pinned"},
      {&set_meta,
       "INSERT INTO meta(key, value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
       "value=excluded.value"},
      {&ins_verified, "INSERT OR IGNORE INTO verified(content_id) VALUES(?)"},
      {&del_verified, "DELETE FROM verified WHERE content_id=?"},
      {&del_empty_verified,
       "DELETE FROM verified WHERE content_id=?1 AND "
       "NOT EXISTS(SELECT 1 FROM chunks WHERE content_id=?1)"},
  };
  for (const Item& item : items) {
    s = db.prepare(item.sql, item.stmt);
    if (!s.ok()) return s;
  }

  // chunk_size: an existing store keeps its own.
  Stmt get_meta;
  s = db.prepare("SELECT value FROM meta WHERE key=?", &get_meta);
  if (!s.ok()) return s;
  get_meta.bind(1, std::string_view("chunk_size"));
  if (get_meta.step()) {
    const std::string text = get_meta.text(0);
    uint32_t stored = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), stored);
    if (ec != std::errc() || ptr != text.data() + text.size() || stored == 0 ||
        stored > kMaxChunkSize) {
      return Status(Code::kCorrupt, "stored chunk_size is invalid: '" + text + "'");
    }
    if (stored != chunk_size) {
      spdlog::info("chunk store {}: keeping its chunk size {} (asked {})", dir, stored, chunk_size);
    }
    chunk_size = stored;
  } else if (get_meta.status().ok()) {
    s = set_meta.bind(1, std::string_view("chunk_size")).bind(2, std::to_string(chunk_size)).exec();
    if (!s.ok()) return s;
  }
  if (!get_meta.status().ok()) return get_meta.status();
  get_meta.reset();

  *max_seq = 0;
  get_meta.bind(1, std::string_view("access_seq"));
  if (get_meta.step()) {
    const std::string text = get_meta.text(0);
    std::from_chars(text.data(), text.data() + text.size(), *max_seq);
  }
  return get_meta.status();
}

Status ChunkStore::Impl::load(uint64_t max_seq) {
  std::lock_guard db_lock(db.mutex());
  std::vector<std::pair<std::string, int64_t>> bad_rows;
  {
    std::lock_guard lock(mu);
    Stmt st;
    Status s = db.prepare("SELECT content_id, pinned, last_access FROM contents", &st);
    if (!s.ok()) return s;
    while (st.step()) {
      ContentInfo& info = contents[st.text(0)];
      info.pinned = st.int64(1) != 0;
      info.last_access = st.int64(2);
    }
    if (!st.status().ok()) return st.status();

    s = db.prepare("SELECT content_id FROM verified", &st);
    if (!s.ok()) return s;
    while (st.step()) contents[st.text(0)].verified = true;
    if (!st.status().ok()) return st.status();

    s = db.prepare("SELECT content_id, idx, size, access_seq FROM chunks", &st);
    if (!s.ok()) return s;
    while (st.step()) {
      std::string id = st.text(0);
      const int64_t idx = st.int64(1);
      const int64_t size = st.int64(2);
      const int64_t seq = st.int64(3);
      if (!ValidContentId(id) || idx < 0 || idx > UINT32_MAX || size <= 0 || size > chunk_size ||
          seq < 0) {
        bad_rows.emplace_back(std::move(id), idx);
        continue;
      }
      Key key{std::move(id), static_cast<uint32_t>(idx)};
      Entry e;
      e.size = static_cast<uint32_t>(size);
      e.seq = static_cast<uint64_t>(seq);
      e.gen = next_gen++;
      e.state = State::kPresent;
      max_seq = std::max(max_seq, e.seq);
      auto [it, inserted] = entries.emplace(std::move(key), e);
      if (inserted) add_present_locked(it->first, it->second);
    }
    if (!st.status().ok()) return st.status();
    next_seq = max_seq + 1;
  }
  if (!bad_rows.empty()) {
    spdlog::warn("chunk store {}: dropping {} malformed index rows", dir, bad_rows.size());
    Stmt del;
    Status s = db.prepare("DELETE FROM chunks WHERE content_id=? AND idx=?", &del);
    if (!s.ok()) return s;
    Txn txn(db);
    if (!txn.status().ok()) return txn.status();
    for (const auto& [id, idx] : bad_rows) {
      s = del.bind(1, id).bind(2, idx).exec();
      if (!s.ok()) return s;
    }
    return txn.commit();
  }
  return Status::Ok();
}

// Rebuilds the index from the files after an unclean exit. Runs before the store is shared.
Status ChunkStore::Impl::reconcile() {
  namespace fs = std::filesystem;
  std::unordered_set<Key, KeyHash> seen;
  std::vector<std::pair<Key, uint32_t>> adopt;  // files without a row, or with a wrong size
  uint64_t tmp_removed = 0;
  uint64_t bad_removed = 0;
  std::error_code ec;
  std::vector<unsigned char> hbuf(kHeaderSize);

  for (auto l1 = fs::directory_iterator(dir, ec); !ec && l1 != fs::directory_iterator();
       l1.increment(ec)) {
    const std::string prefix = l1->path().filename().string();
    if (prefix.size() != 2 || !l1->is_directory(ec)) continue;
    for (auto l2 = fs::directory_iterator(l1->path(), ec); !ec && l2 != fs::directory_iterator();
         l2.increment(ec)) {
      const std::string id = l2->path().filename().string();
      if (!ValidContentId(id) || id.compare(0, 2, prefix) != 0 || !l2->is_directory(ec)) {
        spdlog::warn("chunk store {}: ignoring unexpected entry {}", dir, l2->path().string());
        continue;
      }
      for (auto l3 = fs::directory_iterator(l2->path(), ec); !ec && l3 != fs::directory_iterator();
           l3.increment(ec)) {
        const std::string name = l3->path().filename().string();
        const std::string path = l3->path().string();
        if (name.find(".tmp") != std::string::npos) {
          ::unlink(path.c_str());
          ++tmp_removed;
          continue;
        }
        uint32_t idx = 0;
        auto [ptr, perr] = std::from_chars(name.data(), name.data() + name.size(), idx);
        if (perr != std::errc() || ptr != name.data() + name.size() || name.empty() ||
            (name.size() > 1 && name[0] == '0')) {
          spdlog::warn("chunk store {}: ignoring unexpected file {}", dir, path);
          continue;
        }
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        bool valid = false;
        Header h;
        std::string why = "cannot open";
        if (fd.valid()) {
          struct stat st {};
          if (PreadAll(fd.get(), hbuf.data(), kHeaderSize, 0) != kHeaderSize) {
            why = "truncated header";
          } else if (DecodeHeader(hbuf.data(), hbuf.size(), chunk_size, &h, &why)) {
            if (h.id != id || h.index != idx) {
              why = "header names another chunk";
            } else if (::fstat(fd.get(), &st) != 0 ||
                       static_cast<uint64_t>(st.st_size) != uint64_t{kHeaderSize} + h.data_len) {
              why = "file size does not match the header";
            } else {
              valid = true;
            }
          }
        }
        Key key{id, idx};
        if (!valid) {
          spdlog::warn("chunk store {}: removing invalid chunk file {} ({})", dir, path, why);
          ::unlink(path.c_str());
          ++bad_removed;
          continue;
        }
        auto it = entries.find(key);
        if (it == entries.end() || it->second.size != h.data_len) {
          adopt.emplace_back(key, h.data_len);
        }
        seen.insert(std::move(key));
      }
      ::rmdir(l2->path().c_str());  // only succeeds when empty
    }
    ::rmdir(l1->path().c_str());
  }
  if (ec) return Status(Code::kIo, "scanning " + dir + ": " + ec.message());

  std::vector<Key> missing;
  for (const auto& [key, e] : entries) {
    if (!seen.contains(key)) missing.push_back(key);
  }

  const int64_t now = NowUnix();
  std::lock_guard db_lock(db.mutex());
  {
    Txn txn(db);
    if (!txn.status().ok()) return txn.status();
    for (const Key& key : missing) {
      Status s = del_chunk.bind(1, key.id).bind(2, int64_t{key.idx}).exec();
      if (!s.ok()) return s;
    }
    for (const auto& [key, size] : adopt) {
      auto it = entries.find(key);
      const int64_t seq = it == entries.end() ? 0 : static_cast<int64_t>(it->second.seq);
      Status s = ins_content.bind(1, key.id).bind(2, now).exec();
      if (!s.ok()) return s;
      s = ins_chunk.bind(1, key.id)
              .bind(2, int64_t{key.idx})
              .bind(3, int64_t{size})
              .bind(4, seq)
              .exec();
      if (!s.ok()) return s;
    }
    std::set<std::string> touched;
    for (const Key& key : missing) touched.insert(key.id);
    for (const std::string& id : touched) {
      Status s = del_empty_content.bind(1, id).exec();
      if (!s.ok()) return s;
    }
    Status s = txn.commit();
    if (!s.ok()) return s;
  }

  std::lock_guard lock(mu);
  for (const Key& key : missing) {
    auto it = entries.find(key);
    ContentInfo& info = contents[key.id];
    info.present.erase(key.idx);
    info.bytes -= it->second.size;
    used -= it->second.size;
    --present_chunks;
    lru.erase({it->second.seq, key});
    entries.erase(it);
    erase_content_if_empty_locked(key.id);
  }
  for (const auto& [key, size] : adopt) {
    auto it = entries.find(key);
    if (it != entries.end()) {  // known chunk with a wrong size: fix the accounting
      ContentInfo& info = contents[key.id];
      info.bytes = info.bytes - it->second.size + size;
      used = used - it->second.size + size;
      it->second.size = size;
      continue;
    }
    Entry e;
    e.size = size;
    e.seq = 0;  // adopted chunks are the oldest
    e.gen = next_gen++;
    e.state = State::kPresent;
    auto [nit, inserted] = entries.emplace(key, e);
    add_present_locked(nit->first, nit->second);
    ContentInfo& info = contents[key.id];
    if (info.last_access == 0) info.last_access = now;
  }
  spdlog::info(
      "chunk store {}: reconciled after unclean exit: {} chunks adopted or fixed, {} rows without "
      "a file dropped, {} invalid files and {} temp files removed",
      dir, adopt.size(), missing.size(), bad_removed, tmp_removed);
  return Status::Ok();
}

}  // namespace modelfs::index
