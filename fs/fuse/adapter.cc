// Each callback decodes its request, makes one Core call and sends exactly one reply.
#define FUSE_USE_VERSION 314
#include "fs/fuse/adapter.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "fs/base/mutex.h"
#include "fs/fuse/mount.h"

namespace modelfs::fs {
namespace {

// What the callbacks reach through fuse_req_userdata: the core, and the directory handles
// still open (a lazy unmount sends no releasedir, so they are freed when serving ends).
struct Session {
  Core& core;
  Mutex mu;
  std::unordered_set<void*> dirs GUARDED_BY(mu);
  std::atomic<bool> init_done{false};
};

Session& SessionOf(fuse_req_t req) {
  return *static_cast<Session*>(fuse_req_userdata(req));
}
Core& CoreOf(fuse_req_t req) {
  return SessionOf(req).core;
}

int ToErrno(const Status& st) {
  switch (st.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
    case Code::kRepoNotFound:
    case Code::kRevisionNotFound:
    case Code::kEntryNotFound:
      return ENOENT;
    case Code::kNoAccess:
    case Code::kGated:
      return EACCES;
    case Code::kNotDir:
      return ENOTDIR;
    case Code::kIsDir:
      return EISDIR;
    case Code::kReadOnly:
      return EROFS;
    case Code::kInvalid:
      return EINVAL;
    case Code::kNoData:
      return ENODATA;
    case Code::kNotSupported:
      return EOPNOTSUPP;
    case Code::kCancelled:
      return EINTR;
    // A reader cannot act on "no space" (the cache's, not its own) or on why the network
    // failed: both are EIO, and the log says which.
    case Code::kIo:
    case Code::kCorrupt:
    case Code::kNoSpace:
    case Code::kBusy:
    case Code::kDb:
    case Code::kNetwork:
    case Code::kTimeout:
    case Code::kProtocol:
    case Code::kRateLimited:
    case Code::kOffline:
      return EIO;
  }
  return EIO;
}

void FillStat(const Attr& a, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = a.ino;
  st->st_mode = a.is_dir ? (S_IFDIR | 0555) : (S_IFREG | 0444);
  st->st_nlink = a.is_dir ? 2 : 1;
  st->st_size = static_cast<off_t>(a.size);
  st->st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st->st_blksize = 1 << 20;  // larger read(2) buffers from tools like cat and cp
  st->st_uid = getuid();
  st->st_gid = getgid();
  st->st_mtim.tv_sec = a.mtime;
  st->st_ctim.tv_sec = a.mtime;
  st->st_atim.tv_sec = a.mtime;
}

void ReplyError(fuse_req_t req, const Status& st) {
  fuse_reply_err(req, ToErrno(st));
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  static_cast<Session*>(userdata)->init_done = true;
  // 1 MiB requests (must match the max_read mount option): fewer round trips per byte.
  conn->max_read = 1 << 20;
  // The kernel sizes requests by max_pages, which libfuse derives from max_write: without this
  // reads arrive in 128 KiB pieces whatever max_read says.
  conn->max_write = 1 << 20;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  // Content never changes under an inode, so the kernel need not re-check the page cache.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // Asynchronous requests (readahead, mmap faults of several threads) in flight at once: the
  // kernel's default of 12 serialises a loader behind a few slow ranges; 64 is where
  // Mountpoint-S3 measured the knee.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Core& core = CoreOf(req);
  Attr a;
  Status st = core.lookup(parent, name, &a);
  fuse_entry_param e{};
  if (st.not_found()) {
    // A zero inode caches the miss in the kernel: shell probes stay local.
    e.ino = 0;
    e.entry_timeout = core.negative_timeout();
    fuse_reply_entry(req, &e);
    return;
  }
  if (!st.ok()) {
    if (!st.no_access()) spdlog::debug("lookup {}: {}", name, st.to_string());
    ReplyError(req, st);
    return;
  }
  e.ino = a.ino;
  e.attr_timeout = a.timeout;
  e.entry_timeout = a.timeout;
  FillStat(a, &e.attr);
  // An interrupted request's entry never reached the kernel, so it holds no reference.
  if (fuse_reply_entry(req, &e) == -ENOENT) core.forget(a.ino, 1);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  CoreOf(req).forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Core& core = CoreOf(req);
  for (size_t i = 0; i < count; ++i) core.forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Attr a;
  Status st = CoreOf(req).getattr(ino, &a);
  if (!st.ok()) return ReplyError(req, st);
  struct stat s;
  FillStat(a, &s);
  fuse_reply_attr(req, &s, a.timeout);
}

// A directory handle holds the listing taken at opendir, so readdir offsets stay stable.
struct DirHandle {
  std::vector<DirEntry> entries;
};

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto h = std::make_unique<DirHandle>();
  Status st = CoreOf(req).readdir(ino, &h->entries);
  if (!st.ok()) return ReplyError(req, st);
  {
    MutexLock lock(SessionOf(req).mu);
    SessionOf(req).dirs.insert(h.get());
  }
  fi->fh = reinterpret_cast<uint64_t>(h.release());
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == -ENOENT) {
    MutexLock lock(SessionOf(req).mu);
    SessionOf(req).dirs.erase(reinterpret_cast<void*>(fi->fh));
    delete reinterpret_cast<DirHandle*>(fi->fh);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto* h = reinterpret_cast<DirHandle*>(fi->fh);
  std::string buf(size, '\0');
  size_t used = 0;
  // Offsets: 0 = ".", 1 = "..", 2 + i = entries[i].
  for (size_t i = static_cast<size_t>(off); i < h->entries.size() + 2; ++i) {
    struct stat s {};
    const char* name;
    if (i < 2) {
      name = i == 0 ? "." : "..";
      s.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
      s.st_mode = S_IFDIR;
    } else {
      const DirEntry& d = h->entries[i - 2];
      name = d.name.c_str();
      s.st_ino = d.attr.ino;
      s.st_mode = d.attr.is_dir ? S_IFDIR : S_IFREG;
    }
    size_t n =
        fuse_add_direntry(req, buf.data() + used, size - used, name, &s, static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  {
    MutexLock lock(SessionOf(req).mu);
    SessionOf(req).dirs.erase(reinterpret_cast<void*>(fi->fh));
  }
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  Core& core = CoreOf(req);
  uint64_t handle = 0;
  Status st = core.open(ino, &handle);
  if (!st.ok()) return ReplyError(req, st);
  fi->fh = handle;
  fi->keep_cache = 1;  // an inode's bytes never change, so the page cache stays valid
  fi->noflush = 1;
  if (fuse_reply_open(req, fi) == -ENOENT) core.release(handle);
}

void OpRead(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  ReadPieces r;
  Status st = CoreOf(req).read(fi->fh, static_cast<uint64_t>(off), size, &r);
  if (!st.ok()) {
    spdlog::warn("read failed: {}", st.to_string());
    return ReplyError(req, st);
  }
  // The reply is gathered from the chunk buffers themselves (writev): no copy on our side.
  std::vector<iovec> iov(r.pieces.size());
  for (size_t i = 0; i < iov.size(); ++i) {
    iov[i] = {const_cast<char*>(r.pieces[i].data), r.pieces[i].size};
  }
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

void OpRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  CoreOf(req).release(fi->fh);
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  auto s = CoreOf(req).stats();
  struct statvfs v {};
  v.f_bsize = 1 << 20;
  v.f_frsize = 1 << 20;
  v.f_blocks = s.cache.capacity_bytes >> 20;
  uint64_t used = s.cache.used_bytes >> 20;
  v.f_bfree = v.f_blocks > used ? v.f_blocks - used : 0;
  v.f_bavail = v.f_bfree;
  v.f_files = s.inodes;
  v.f_namemax = 255;
  fuse_reply_statfs(req, &v);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  std::string value;
  Status st = CoreOf(req).getxattr(ino, name, &value);
  if (!st.ok()) return ReplyError(req, st);
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::vector<std::string> names;
  Status st = CoreOf(req).listxattr(ino, &names);
  if (!st.ok()) return ReplyError(req, st);
  std::string list;
  for (const auto& n : names) list.append(n).push_back('\0');
  if (size == 0) return (void)fuse_reply_xattr(req, list.size());
  if (size < list.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, list.data(), list.size());
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.releasedir = OpReleasedir;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.release = OpRelease;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  return ops;
}

struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};
struct ArgsDeleter {
  void operator()(fuse_args* a) const { fuse_opt_free_args(a); }
};
struct LoopCfgDeleter {
  void operator()(fuse_loop_config* c) const { fuse_loop_cfg_destroy(c); }
};

// Sends page-cache invalidations from its own thread: the kernel handles a notification
// inside the write to /dev/fuse and may wait there on a read this process has yet to answer.
class Notifier {
 public:
  explicit Notifier(fuse_session* se) : se_(se), thread_([this] { run(); }) {}
  ~Notifier() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  void push(uint64_t ino) {
    {
      MutexLock lock(mu_);
      queue_.push_back(ino);
    }
    cv_.notify_one();
  }

 private:
  void run() {
    MutexLock lock(mu_);
    for (;;) {
      while (!stop_ && queue_.empty()) cv_.wait(lock);
      if (stop_) return;
      uint64_t ino = queue_.front();
      queue_.pop_front();
      lock.unlock();
      int rc = fuse_lowlevel_notify_inval_inode(se_, ino, 0, 0);
      if (rc != 0 && rc != -ENOENT) {
        spdlog::warn("could not drop the kernel's cached pages of inode {}: {}", ino,
                     std::strerror(-rc));
      }
      lock.lock();
    }
  }
  fuse_session* se_;
  Mutex mu_;
  CondVar cv_;
  std::deque<uint64_t> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace

Status ServeFuse(Core& core, const MountOptions& options, const std::function<void()>& on_ready) {
  std::vector<std::string> argv_s = {
      "modelfs", "-o", "ro,default_permissions,fsname=modelfs,subtype=modelfs,max_read=1048576"};
  if (options.allow_other) argv_s.insert(argv_s.end(), {"-o", "allow_other"});
  for (const auto& o : options.fuse_options) argv_s.insert(argv_s.end(), {"-o", o});
  if (options.debug) argv_s.emplace_back("-d");
  std::vector<char*> argv;
  argv.reserve(argv_s.size());
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  std::unique_ptr<fuse_args, ArgsDeleter> args_guard(&args);

  fuse_lowlevel_ops ops = MakeOps();
  Session session{core, {}, {}, {}};
  struct DirCleanup {
    Session& s;
    ~DirCleanup() {
      MutexLock lock(s.mu);
      for (void* d : s.dirs) delete static_cast<DirHandle*>(d);
    }
  } dir_cleanup{session};
  std::unique_ptr<fuse_session, SessionDeleter> se(
      fuse_session_new(&args, &ops, sizeof(ops), &session));
  if (!se) return {Code::kInvalid, "bad FUSE options (see the log above)"};
  if (fuse_set_signal_handlers(se.get()) != 0) return {Code::kIo, "cannot set signal handlers"};
  std::string real_mountpoint;
  if (char* rp = ::realpath(options.mountpoint.c_str(), nullptr); rp != nullptr) {
    real_mountpoint = rp;
    std::free(rp);
  }
  if (fuse_session_mount(se.get(), options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se.get());
    return {Code::kIo, "cannot mount on " + options.mountpoint +
                           " (does it exist, is it empty, is /dev/fuse usable?)"};
  }
  spdlog::info("mounted on {}", options.mountpoint);
  // The kernel applies the INIT reply's readahead limit to the bdi, so raise it after that
  // reply: from a helper thread, as the loop below is what answers INIT.
  std::atomic<bool> serving_done{false};
  std::thread readahead([&] {
    for (int i = 0; i < 100 && !serving_done; ++i) {  // at most 5 s
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (session.init_done) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the reply is processed
        // The kernel sends reads of at most read_ahead_kb (128 KiB by default) whatever
        // max_read says; 4 MiB gives 1 MiB requests with several in flight.
        if (!real_mountpoint.empty()) RaiseKernelReadahead(real_mountpoint, 4096);
        return;
      }
    }
  });
  struct JoinReadahead {
    std::atomic<bool>& done;
    std::thread& t;
    ~JoinReadahead() {
      done = true;
      t.join();
    }
  } join_readahead{serving_done, readahead};
  Notifier notifier(se.get());
  core.set_kernel_invalidator([&notifier](uint64_t ino) { notifier.push(ino); });
  struct ClearInvalidator {
    Core& core;
    ~ClearInvalidator() { core.set_kernel_invalidator(nullptr); }
  } clear_invalidator{core};
  on_ready();
  std::unique_ptr<fuse_loop_config, LoopCfgDeleter> cfg(fuse_loop_cfg_create());
  fuse_loop_cfg_set_max_threads(cfg.get(), options.max_threads);
  fuse_loop_cfg_set_clone_fd(cfg.get(), 1);
  int rc = fuse_session_loop_mt(se.get(), cfg.get());
  fuse_session_unmount(se.get());
  fuse_remove_signal_handlers(se.get());
  spdlog::info("unmounted {}", options.mountpoint);
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP) {
    return {Code::kIo, "FUSE loop ended with " + std::to_string(rc)};
  }
  return Status::Ok();
}

}  // namespace modelfs::fs
