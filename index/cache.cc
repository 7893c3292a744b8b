#include "index/cache.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <utility>

#include "fs/base/clock.h"
#include "fs/base/sys.h"
#include "fs/base/unique_fd.h"

namespace modelfs::index {
namespace {

namespace fs = std::filesystem;

// Holds flock(LOCK_EX) on an open file; the lock goes with the descriptor.
class FileLock {
 public:
  FileLock() = default;
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  ~FileLock() { unlock(); }
  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&& o) noexcept {
    if (this != &o) {
      unlock();
      fd_ = std::move(o.fd_);
    }
    return *this;
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  void unlock() {
    if (fd_.valid()) ::flock(fd_.get(), LOCK_UN);
    fd_.reset();
  }
  UniqueFd fd_;
};

// Creates the sentinel durably: if we crash, the next owner must see it.
Status CreateSentinel(const fs::path& dir) {
  const std::string path = (dir / "dirty").string();
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus("creating " + path, errno);
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::write(fd.get(), pid.data(), pid.size()) < 0 || ::fsync(fd.get()) != 0) {
    return ErrnoStatus("writing " + path, errno);
  }
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return Status::Ok();
}

// Moves index.sqlite and its -wal/-shm aside; returns the new name of the main file.
std::string MoveAside(const fs::path& db_path) {
  const std::string base = db_path.string();
  std::string aside = base + ".corrupt-" + std::to_string(NowUnix());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    const std::string from = base + suffix;
    if (!fs::exists(from, ec)) continue;
    fs::rename(from, aside + suffix, ec);
    if (ec) {
      spdlog::error("cannot move {} aside: {}; removing it", from, ec.message());
      fs::remove(from, ec);
    }
  }
  return aside;
}

Status OpenCheckedDb(const std::string& path, std::unique_ptr<Db>* out) {
  std::unique_ptr<Db> db;
  Status s = Db::Open(path, &db);
  if (!s.ok()) return s;
  s = db->check();
  if (!s.ok()) return s;
  *out = std::move(db);
  return Status::Ok();
}

}  // namespace

struct Cache::Impl {
  fs::path dir;
  std::string recovered_from;
  FileLock lock;
  bool remove_sentinel = false;  // set once fully open; an aborted open leaves it
  // Destroyed in reverse order: chunks and meta (statements) before the connection.
  std::unique_ptr<Db> db;
  std::unique_ptr<MetaStore> meta;
  std::unique_ptr<JobStore> jobs;
  std::unique_ptr<ChunkStore> chunks;

  ~Impl() {
    chunks.reset();  // joins the flusher and flushes access times
    jobs.reset();
    meta.reset();
    db.reset();
    if (remove_sentinel) {
      std::error_code ec;
      fs::remove(dir / "dirty", ec);
      if (ec) spdlog::warn("cannot remove {}: {}", (dir / "dirty").string(), ec.message());
    }
    // `lock` is released last (member order).
  }
};

Cache::Cache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cache::~Cache() = default;

Status Cache::Open(const CacheOptions& options, std::unique_ptr<Cache>* out) {
  if (options.dir.empty()) return Status(Code::kInvalid, "cache directory not set");
  auto impl = std::make_unique<Impl>();
  impl->dir = options.dir;
  const std::string dir_str = impl->dir.string();

  std::error_code ec;
  if (!fs::is_directory(impl->dir, ec)) {
    fs::create_directories(impl->dir, ec);
    if (ec) return Status(Code::kIo, "creating " + dir_str + ": " + ec.message());
    fs::permissions(impl->dir, fs::perms::owner_all, ec);
  }

  const std::string lock_path = (impl->dir / "lock").string();
  UniqueFd lock_fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd.valid()) return ErrnoStatus("opening " + lock_path, errno);
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status(Code::kBusy,
                    "cache directory " + dir_str + " is in use by another modelfs process");
    }
    return ErrnoStatus("locking " + lock_path, errno);
  }
  impl->lock = FileLock(std::move(lock_fd));

  const fs::path sentinel = impl->dir / "dirty";
  bool recover = fs::exists(sentinel, ec);
  if (recover) {
    impl->recovered_from = "unclean shutdown: " + sentinel.string() +
                           " was present; chunk files reconciled with the index";
  }
  Status s = CreateSentinel(impl->dir);
  if (!s.ok()) return s;

  const fs::path db_path = impl->dir / "index.sqlite";
  // An index that is gone (or empty: SQLite takes a 0-byte file for a new database) while chunk
  // files remain would leave those files unaccounted for, on disk for ever and over the limit:
  // rebuild it from the files, as after an unclean exit.
  {
    std::error_code fec;
    const bool db_exists = fs::exists(db_path, fec);
    const bool db_empty = db_exists && fs::file_size(db_path, fec) == 0 && !fec;
    const fs::path chunk_dir = impl->dir / "chunks";
    const bool have_chunks =
        fs::is_directory(chunk_dir, fec) && !fs::is_empty(chunk_dir, fec) && !fec;
    if (!db_exists) {
      // -wal/-shm of a deleted database must not be replayed into the new one.
      for (const char* suffix : {"-wal", "-shm"}) fs::remove(db_path.string() + suffix, fec);
    }
    if ((!db_exists || db_empty) && have_chunks) {
      const std::string why = std::string(db_exists ? "empty" : "missing") + " index " +
                              db_path.string() + "; chunk files adopted into a new index";
      spdlog::warn("cache {}: {}", dir_str, why);
      if (!impl->recovered_from.empty()) impl->recovered_from += "; ";
      impl->recovered_from += why;
      recover = true;
    }
  }
  s = OpenCheckedDb(db_path.string(), &impl->db);
  if (s.code() == Code::kCorrupt) {
    impl->db.reset();
    const std::string aside = MoveAside(db_path);
    spdlog::error("cache {}: index is corrupt ({}); moved to {}, starting a new one", dir_str,
                  s.to_string(), aside);
    if (!impl->recovered_from.empty()) impl->recovered_from += "; ";
    impl->recovered_from += "corrupt index (" + s.message() + ") moved to " + aside +
                            "; chunk files adopted into a new index";
    recover = true;
    s = OpenCheckedDb(db_path.string(), &impl->db);
  }
  if (!s.ok()) return s;

  impl->meta = std::make_unique<MetaStore>(*impl->db);
  s = impl->meta->init();
  if (!s.ok()) return s;
  impl->jobs = std::make_unique<JobStore>(*impl->db);
  s = impl->jobs->init();
  if (!s.ok()) return s;

  ChunkStoreOptions copts;
  copts.dir = impl->dir / "chunks";
  copts.capacity_bytes = options.capacity_bytes;
  copts.chunk_size = options.chunk_size;
  s = ChunkStore::Open(*impl->db, std::move(copts), recover, &impl->chunks);
  if (!s.ok()) return s;

  if (!impl->recovered_from.empty()) {
    spdlog::warn("cache {}: {}", dir_str, impl->recovered_from);
  }
  impl->remove_sentinel = true;
  out->reset(new Cache(std::move(impl)));
  return Status::Ok();
}

void Cache::release_memory() {
  std::lock_guard lock(impl_->db->mutex());
  sqlite3_db_release_memory(impl_->db->handle());
}

MetaStore& Cache::meta() {
  return *impl_->meta;
}
JobStore& Cache::jobs() {
  return *impl_->jobs;
}
ChunkStore& Cache::chunks() {
  return *impl_->chunks;
}
const std::filesystem::path& Cache::dir() const {
  return impl_->dir;
}
const std::string& Cache::recovered_from() const {
  return impl_->recovered_from;
}

}  // namespace modelfs::index
