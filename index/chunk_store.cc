#include "index/chunk_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "fs/base/clock.h"
#include "fs/base/sys.h"
#include "fs/base/text.h"
#include "fs/base/unique_fd.h"

namespace modelfs::index {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema. The rows are a hint: the files on disk are the truth, see Reconcile.
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

// ---------------------------------------------------------------------------------------------
// Chunk file format (all integers little-endian):
//   header, kHeaderSize (4096) bytes, so that data starts page-aligned:
//     0   magic "MFSCHNK\0"
//     8   u32 format version (1)
//     12  u32 header size (4096)
//     16  u32 chunk index
//     20  u32 data length
//     24  u32 block size (65536)
//     28  u32 block count = ceil(data length / block size)
//     32  u32 content id length (40 or 64)
//     36  content id, 64 bytes, zero padded
//     104 u64 XXH3-64 of each data block, block count entries
//     4088 u64 XXH3-64 of header bytes [0, 4088)
//   data, data length bytes.
// The header says which chunk the file is, so a store can be rebuilt from the files alone.

constexpr char kMagic[8] = {'M', 'F', 'S', 'C', 'H', 'N', 'K', '\0'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kHeaderSize = 4096;
constexpr uint32_t kBlockSize = 64 * 1024;
constexpr size_t kOffVersion = 8;
constexpr size_t kOffHeaderSize = 12;
constexpr size_t kOffIndex = 16;
constexpr size_t kOffDataLen = 20;
constexpr size_t kOffBlockSize = 24;
constexpr size_t kOffBlockCount = 28;
constexpr size_t kOffIdLen = 32;
constexpr size_t kOffId = 36;
constexpr size_t kOffHashes = 104;
constexpr size_t kOffChecksum = kHeaderSize - 8;
static_assert(kOffHashes + (kMaxChunkSize / kBlockSize) * 8 <= kOffChecksum);

constexpr size_t kFlushThreshold = 1024;  // dirty access entries that wake the flusher
constexpr size_t kEvictBatch = 256;       // victims deleted per transaction

void Put32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void Put64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t Get32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t Get64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

bool ValidContentId(std::string_view id) {
  return (id.size() == 40 || id.size() == 64) && IsLowerHex(id);
}

Status InvalidId(std::string_view id) {
  return Status(Code::kInvalid,
                "content id must be 40 or 64 lowercase hex characters: '" + std::string(id) + "'");
}

uint32_t BlockCount(uint32_t data_len) {
  return (data_len + kBlockSize - 1) / kBlockSize;
}

std::string EncodeHeader(std::string_view id, uint32_t index, std::string_view data) {
  std::string header(kHeaderSize, '\0');
  auto* h = reinterpret_cast<unsigned char*>(header.data());
  std::memcpy(h, kMagic, sizeof(kMagic));
  const auto len = static_cast<uint32_t>(data.size());
  const uint32_t blocks = BlockCount(len);
  Put32(h + kOffVersion, kFormatVersion);
  Put32(h + kOffHeaderSize, kHeaderSize);
  Put32(h + kOffIndex, index);
  Put32(h + kOffDataLen, len);
  Put32(h + kOffBlockSize, kBlockSize);
  Put32(h + kOffBlockCount, blocks);
  Put32(h + kOffIdLen, static_cast<uint32_t>(id.size()));
  std::memcpy(h + kOffId, id.data(), id.size());
  for (uint32_t b = 0; b < blocks; ++b) {
    const size_t start = size_t{b} * kBlockSize;
    const size_t n = std::min<size_t>(kBlockSize, len - start);
    Put64(h + kOffHashes + 8 * b, XXH3_64bits(data.data() + start, n));
  }
  Put64(h + kOffChecksum, XXH3_64bits(h, kOffChecksum));
  return header;
}

struct Header {
  std::string id;
  uint32_t index = 0;
  uint32_t data_len = 0;
  const unsigned char* raw = nullptr;  // the header bytes, for the block hashes
  uint64_t block_hash(uint32_t b) const { return Get64(raw + kOffHashes + 8 * b); }
};

// Checks everything the header alone can tell; *why says what failed.
bool DecodeHeader(const unsigned char* h, uint32_t max_len, Header* out, std::string* why) {
  if (std::memcmp(h, kMagic, sizeof(kMagic)) != 0) {
    *why = "bad magic";
    return false;
  }
  if (Get64(h + kOffChecksum) != XXH3_64bits(h, kOffChecksum)) {
    *why = "header checksum mismatch";
    return false;
  }
  const uint32_t len = Get32(h + kOffDataLen);
  const uint32_t id_len = Get32(h + kOffIdLen);
  if (Get32(h + kOffVersion) != kFormatVersion || Get32(h + kOffHeaderSize) != kHeaderSize ||
      Get32(h + kOffBlockSize) != kBlockSize || len == 0 || len > max_len ||
      Get32(h + kOffBlockCount) != BlockCount(len) || (id_len != 40 && id_len != 64)) {
    *why = "unsupported header fields";
    return false;
  }
  std::string id(reinterpret_cast<const char*>(h + kOffId), id_len);
  if (!ValidContentId(id)) {
    *why = "bad content id in header";
    return false;
  }
  out->id = std::move(id);
  out->index = Get32(h + kOffIndex);
  out->data_len = len;
  out->raw = h;
  return true;
}

// Reads up to n bytes at off; returns the bytes read (short at end of file) or -1 (errno set).
ssize_t PreadAll(int fd, void* buf, size_t n, off_t off) {
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

struct Key {
  std::string id;
  uint32_t idx = 0;
  bool operator==(const Key&) const = default;
  auto operator<=>(const Key&) const =
      default;  // NOLINT(modernize-use-nullptr): a clang-tidy 14 false positive
};

struct KeyHash {
  size_t operator()(const Key& k) const noexcept {
    return std::hash<std::string>()(k.id) ^ (size_t{k.idx} * 0x9e3779b97f4a7c15ull);
  }
};

enum class State : uint8_t {
  kWriting,   // a put is writing the file; not visible, its bytes are reserved
  kPresent,   // file and row exist
  kDeleting,  // being removed; its file may still be on disk
};

struct Entry {
  uint32_t size = 0;
  uint64_t seq = 0;     // access sequence: higher = more recently used
  uint64_t gen = 0;     // unique per entry instance, so a stale lease release is ignored
  uint32_t leases = 0;  // readers currently reading the file
  State state = State::kWriting;
};

struct ContentInfo {
  bool pinned = false;
  bool verified = false;       // see the verified table
  uint64_t bytes = 0;          // present chunks only
  std::set<uint32_t> present;  // indexes of present chunks
  int64_t last_access = 0;     // unix seconds
};

enum class FileResult { kOk, kMissing, kCorrupt, kIo };

// A chunk file kept open with its decoded header, so a sequential reader does not pay an
// open, a header read and a header check for every kernel read of the same chunk.
struct OpenChunk {
  UniqueFd fd;
  uint64_t gen = 0;  // the entry instance it belongs to
  uint32_t data_len = 0;
  std::unique_ptr<unsigned char[]> header;  // kHeaderSize bytes, already checked
  uint64_t block_hash(uint32_t b) const { return Get64(header.get() + kOffHashes + 8 * b); }
};
constexpr size_t kOpenChunks = 64;

}  // namespace

// ---------------------------------------------------------------------------------------------

struct ChunkStore::Impl {
  Impl(Db& d, ChunkStoreOptions o) : db(d), opt(std::move(o)) {}

  // Lock order: flush_mu -> db.mutex() -> mu. flusher_mu is a leaf. mu is never held across
  // file I/O or SQLite calls.
  Db& db;
  ChunkStoreOptions opt;
  std::string dir;
  uint32_t chunk_size = 0;

  // Prepared once; guarded by db.mutex().
  Stmt ins_content, ins_chunk, del_chunk, del_empty_content, upd_seq, upd_access, upd_pin, set_meta,
      ins_verified, del_verified, del_empty_verified;

  std::mutex flush_mu;  // serializes flush_access so an older batch never overwrites a newer

  mutable std::mutex mu;
  std::condition_variable key_cv;  // an entry left kWriting or kDeleting
  std::unordered_map<Key, Entry, KeyHash> entries;
  std::map<std::string, ContentInfo, std::less<>> contents;
  std::set<std::pair<uint64_t, Key>> lru;  // present, unpinned entries by access sequence
  std::unordered_set<Key, KeyHash> dirty;  // access sequence not yet in SQLite
  std::set<std::string, std::less<>> dirty_contents;
  uint64_t next_seq = 1;
  uint64_t next_gen = 1;
  uint64_t used = 0;      // bytes of present + deleting entries (files that may be on disk)
  uint64_t reserved = 0;  // bytes of entries being written
  uint64_t deleting = 0;  // bytes of entries being deleted
  uint64_t present_chunks = 0;
  uint64_t capacity = 0;
  uint64_t evicted_chunks = 0;
  uint64_t evicted_bytes = 0;
  uint64_t corrupt_chunks = 0;

  std::mutex flusher_mu;
  std::condition_variable flusher_cv;
  bool stop = false;
  bool flush_wanted = false;
  std::thread flusher;

  std::atomic<uint64_t> tmp_counter{0};

  // Leaf lock. Entries are checked against the chunk's gen, so a stale one is never used.
  mutable std::mutex open_mu;
  mutable std::unordered_map<Key, std::shared_ptr<const OpenChunk>, KeyHash> open_chunks;

  std::string content_dir(std::string_view id) const {
    std::string p = dir;
    p += '/';
    p.append(id.substr(0, 2));
    p += '/';
    p.append(id);
    return p;
  }
  std::string chunk_path(std::string_view id, uint32_t idx) const {
    return content_dir(id) + "/" + std::to_string(idx);
  }

  Status init_db(uint64_t* max_seq);
  Status load(uint64_t max_seq);
  Status reconcile();
  void start_flusher();
  void shutdown();
  void run_flusher();
  Status flush();

  // mu held.
  void touch_locked(const Key& key, Entry& e, int64_t now);
  void add_present_locked(const Key& key, Entry& e);
  void mark_deleting_locked(const Key& key, Entry& e);
  void erase_content_if_empty_locked(const std::string& id);

  int write_file(const Key& key, const std::string& header, std::string_view data);
  FileResult open_chunk(const Key& key, uint64_t gen, uint32_t size,
                        std::shared_ptr<const OpenChunk>* out, std::string* why) const;
  void forget_open(const Key& key) const;
  FileResult read_file(const Key& key, uint64_t gen, uint32_t size, uint32_t offset,
                       uint32_t length, char* dst, std::string* why) const;
  Status put(std::string_view id, uint32_t idx, std::string_view data);
  Status read(std::string_view id, uint32_t idx, uint32_t offset, uint32_t length, char* dst);
  void drop(const Key& key, uint64_t gen);
  void remove_batch(const std::vector<std::pair<Key, uint32_t>>& victims, bool evicted);
  Status evict_to(uint64_t target, uint64_t* freed);
};

// ---- open, load ----

Status ChunkStore::Impl::init_db(uint64_t* max_seq) {
  std::lock_guard lock(db.mutex());
  Stmt version;
  Status s = db.prepare("PRAGMA user_version", &version);
  if (!s.ok()) return s;
  const int64_t v = version.step() ? version.int64(0) : 0;
  if (!version.status().ok()) return version.status();
  if (v > kSchemaVersion) {
    return Status(Code::kInvalid, "index schema version " + std::to_string(v) +
                                      " is newer than this modelfs supports");
  }
  s = db.exec(kSchema);
  if (!s.ok()) return s;
  if (v == 0) {
    s = db.exec("PRAGMA user_version=" + std::to_string(kSchemaVersion));
    if (!s.ok()) return s;
  }
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
          } else if (DecodeHeader(hbuf.data(), chunk_size, &h, &why)) {
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

// ---- in-memory state helpers (mu held) ----

void ChunkStore::Impl::add_present_locked(const Key& key, Entry& e) {
  ContentInfo& info = contents[key.id];
  info.present.insert(key.idx);
  info.bytes += e.size;
  used += e.size;
  ++present_chunks;
  if (!info.pinned) lru.emplace(e.seq, key);
}

void ChunkStore::Impl::touch_locked(const Key& key, Entry& e, int64_t now) {
  const uint64_t seq = next_seq++;
  auto node = lru.extract({e.seq, key});
  e.seq = seq;
  if (!node.empty()) {
    node.value().first = seq;
    lru.insert(std::move(node));
  }
  dirty.insert(key);
  ContentInfo& info = contents[key.id];
  info.last_access = now;
  if (!dirty_contents.contains(key.id)) dirty_contents.insert(key.id);
}

void ChunkStore::Impl::mark_deleting_locked(const Key& key, Entry& e) {
  e.state = State::kDeleting;
  lru.erase({e.seq, key});
  deleting += e.size;
}

void ChunkStore::Impl::erase_content_if_empty_locked(const std::string& id) {
  auto it = contents.find(id);
  if (it != contents.end() && !it->second.pinned && it->second.present.empty()) {
    contents.erase(it);
  }
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
  if (!DecodeHeader(oc->header.get(), chunk_size, &h, why)) return FileResult::kCorrupt;
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

void ChunkStore::Impl::drop(const Key& key, uint64_t gen) {
  uint32_t size = 0;
  {
    std::lock_guard lock(mu);
    auto it = entries.find(key);
    if (it == entries.end() || it->second.gen != gen || it->second.state != State::kPresent) {
      return;  // already dropped or replaced by someone else
    }
    size = it->second.size;
    mark_deleting_locked(it->first, it->second);
  }
  remove_batch({{key, size}}, /*evicted=*/false);
}

// Removes files and rows of entries already marked kDeleting, then forgets them.
void ChunkStore::Impl::remove_batch(const std::vector<std::pair<Key, uint32_t>>& victims,
                                    bool evicted) {
  std::set<std::string> ids;
  for (const auto& [key, size] : victims) {
    forget_open(key);
    const std::string path = chunk_path(key.id, key.idx);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("chunk store {}: cannot remove {}: {}", dir, path,
                   std::system_category().message(errno));
    }
    ids.insert(key.id);
  }
  for (const std::string& id : ids) ::rmdir(content_dir(id).c_str());  // fails unless empty

  {
    std::lock_guard db_lock(db.mutex());
    Txn txn(db);
    Status s = txn.status();
    for (const auto& [key, size] : victims) {
      if (s.ok()) s = del_chunk.bind(1, key.id).bind(2, int64_t{key.idx}).exec();
    }
    for (const std::string& id : ids) {
      if (s.ok()) s = del_empty_content.bind(1, id).exec();
      if (s.ok()) s = del_empty_verified.bind(1, id).exec();
    }
    if (s.ok()) s = txn.commit();
    if (!s.ok()) {
      // The files are gone; a stale row is dropped when it is next read or reconciled.
      spdlog::error("chunk store {}: deleting {} chunk rows: {}", dir, victims.size(),
                    s.to_string());
    }
  }

  std::lock_guard lock(mu);
  for (const auto& [key, size] : victims) {
    auto it = entries.find(key);
    if (it == entries.end() || it->second.state != State::kDeleting) continue;
    ContentInfo& info = contents[key.id];
    info.present.erase(key.idx);
    if (info.present.empty()) info.verified = false;  // its row went with the last chunk
    info.bytes -= size;
    used -= size;
    deleting -= size;
    --present_chunks;
    dirty.erase(key);
    entries.erase(it);
    if (evicted) {
      ++evicted_chunks;
      evicted_bytes += size;
    }
    erase_content_if_empty_locked(key.id);
  }
  key_cv.notify_all();
}

Status ChunkStore::Impl::evict_to(uint64_t target, uint64_t* freed) {
  uint64_t total = 0;
  for (;;) {
    std::vector<std::pair<Key, uint32_t>> victims;
    uint64_t batch_bytes = 0;
    {
      std::lock_guard lock(mu);
      const uint64_t effective = used - deleting;
      if (effective <= target) break;
      const uint64_t need = effective - target;
      for (auto it = lru.begin();
           it != lru.end() && batch_bytes < need && victims.size() < kEvictBatch;) {
        auto eit = entries.find(it->second);
        Entry& e = eit->second;
        if (e.leases > 0) {  // being read: not a victim
          ++it;
          continue;
        }
        e.state = State::kDeleting;
        deleting += e.size;
        batch_bytes += e.size;
        victims.emplace_back(eit->first, e.size);
        it = lru.erase(it);
      }
    }
    if (victims.empty()) break;  // everything left is pinned or in use
    remove_batch(victims, /*evicted=*/true);
    total += batch_bytes;
  }
  if (freed != nullptr) *freed = total;
  return Status::Ok();
}

// ---- access flushing ----

Status ChunkStore::Impl::flush() {
  std::lock_guard flush_lock(flush_mu);
  std::vector<std::pair<Key, uint64_t>> seqs;
  std::vector<std::pair<std::string, int64_t>> times;
  uint64_t max_seq = 0;
  {
    std::lock_guard lock(mu);
    if (dirty.empty() && dirty_contents.empty()) return Status::Ok();
    seqs.reserve(dirty.size());
    for (const Key& key : dirty) {
      auto it = entries.find(key);
      if (it != entries.end() && it->second.state == State::kPresent) {
        seqs.emplace_back(key, it->second.seq);
      }
    }
    for (const std::string& id : dirty_contents) {
      auto it = contents.find(id);
      if (it != contents.end()) times.emplace_back(id, it->second.last_access);
    }
    dirty.clear();
    dirty_contents.clear();
    max_seq = next_seq - 1;
  }
  Status s;
  {
    std::lock_guard db_lock(db.mutex());
    Txn txn(db);
    s = txn.status();
    for (const auto& [key, seq] : seqs) {
      if (!s.ok()) break;
      s = upd_seq.bind(1, static_cast<int64_t>(seq))
              .bind(2, key.id)
              .bind(3, int64_t{key.idx})
              .exec();
    }
    for (const auto& [id, t] : times) {
      if (!s.ok()) break;
      s = upd_access.bind(1, t).bind(2, id).exec();
    }
    if (s.ok()) {
      s = set_meta.bind(1, std::string_view("access_seq")).bind(2, std::to_string(max_seq)).exec();
    }
    if (s.ok()) s = txn.commit();
  }
  if (!s.ok()) {  // keep them dirty for the next attempt
    std::lock_guard lock(mu);
    for (auto& [key, seq] : seqs) dirty.insert(std::move(key));
    for (auto& [id, t] : times) dirty_contents.insert(std::move(id));
  }
  return s;
}

void ChunkStore::Impl::start_flusher() {
  if (opt.flush_interval.count() <= 0) return;
  flusher = std::thread([this] { run_flusher(); });
}

void ChunkStore::Impl::run_flusher() {
  std::unique_lock lock(flusher_mu);
  while (!stop) {
    flusher_cv.wait_for(lock, opt.flush_interval, [this] { return stop || flush_wanted; });
    if (stop) break;
    flush_wanted = false;
    lock.unlock();
    Status s = flush();
    if (!s.ok()) spdlog::warn("chunk store {}: flushing access times: {}", dir, s.to_string());
    lock.lock();
  }
}

void ChunkStore::Impl::shutdown() {
  {
    std::lock_guard lock(flusher_mu);
    stop = true;
  }
  flusher_cv.notify_all();
  if (flusher.joinable()) flusher.join();
  Status s = flush();
  if (!s.ok()) spdlog::warn("chunk store {}: final access flush: {}", dir, s.to_string());
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
