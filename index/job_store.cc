#include "index/job_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace modelfs::index {
namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  uid INTEGER NOT NULL,
  pin INTEGER NOT NULL,
  repo TEXT NOT NULL,
  patterns TEXT NOT NULL,
  include TEXT NOT NULL,
  exclude TEXT NOT NULL,
  ranges INTEGER NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  bytes_done INTEGER NOT NULL,
  total_bytes INTEGER NOT NULL,
  files_done INTEGER NOT NULL,
  files_total INTEGER NOT NULL,
  commit_id TEXT NOT NULL,
  error_code TEXT NOT NULL,
  error TEXT NOT NULL);
)sql";

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Globs are one per line: a glob with a newline is refused before it gets here.
std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (!s.empty() && start <= s.size()) {
    const size_t nl = std::min(s.find('\n', start), s.size());
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

Status NotReady() {
  return Status(Code::kDb, "job store not initialized");
}

}  // namespace

JobStore::JobStore(Db& db) : db_(db) {
  Status s = init();
  if (!s.ok()) spdlog::error("job store: {}", s.to_string());
}

Status JobStore::init() {
  std::lock_guard lock(db_.mutex());
  if (ready_) return Status::Ok();
  Status s = db_.apply_schema(kSchema, kSchemaVersion);
  if (!s.ok()) return s;
  const char* cols =
      "uid, pin, repo, patterns, include, exclude, ranges, state, created_at, updated_at, "
      "finished_at, bytes_done, total_bytes, files_done, files_total, commit_id, error_code, "
      "error";
  s = db_.prepare(
      std::string("INSERT INTO jobs(") + cols + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
      &add_);
  if (s.ok()) {
    s = db_.prepare(
        "UPDATE jobs SET state=?, updated_at=?, finished_at=?, bytes_done=?, total_bytes=?, "
        "files_done=?, files_total=?, commit_id=?, error_code=?, error=? WHERE id=?",
        &update_);
  }
  if (s.ok()) s = db_.prepare(std::string("SELECT id, ") + cols + " FROM jobs ORDER BY id", &list_);
  if (s.ok()) {
    s = db_.prepare(
        "DELETE FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND "
        "finished_at < ?",
        &prune_);
  }
  if (!s.ok()) return s;
  ready_ = true;
  return Status::Ok();
}

Status JobStore::add(JobRecord* job) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  job->created_at = job->updated_at = NowUnix();
  ResetOnExit reset(add_);
  add_.bind(1, int64_t{job->uid})
      .bind(2, int64_t{job->pin})
      .bind(3, job->repo)
      .bind(4, Join(job->patterns))
      .bind(5, Join(job->include))
      .bind(6, Join(job->exclude))
      .bind(7, int64_t{job->ranges})
      .bind(8, job->state)
      .bind(9, job->created_at)
      .bind(10, job->updated_at)
      .bind(11, job->finished_at)
      .bind(12, static_cast<int64_t>(job->bytes_done))
      .bind(13, static_cast<int64_t>(job->total_bytes))
      .bind(14, int64_t{job->files_done})
      .bind(15, int64_t{job->files_total})
      .bind(16, job->commit)
      .bind(17, job->error_code)
      .bind(18, job->error);
  if (Status s = add_.exec(); !s.ok()) return s;
  job->id = db_.last_insert_rowid();
  return Status::Ok();
}

Status JobStore::update(const JobRecord& job) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(update_);
  update_.bind(1, job.state)
      .bind(2, NowUnix())
      .bind(3, job.finished_at)
      .bind(4, static_cast<int64_t>(job.bytes_done))
      .bind(5, static_cast<int64_t>(job.total_bytes))
      .bind(6, int64_t{job.files_done})
      .bind(7, int64_t{job.files_total})
      .bind(8, job.commit)
      .bind(9, job.error_code)
      .bind(10, job.error)
      .bind(11, job.id);
  return update_.exec();
}

Status JobStore::list(std::vector<JobRecord>* out) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  out->clear();
  ResetOnExit reset(list_);
  while (list_.step()) {
    JobRecord j;
    j.id = list_.int64(0);
    j.uid = static_cast<uint32_t>(list_.int64(1));
    j.pin = list_.int64(2) != 0;
    j.repo = list_.text(3);
    j.patterns = Split(list_.text(4));
    j.include = Split(list_.text(5));
    j.exclude = Split(list_.text(6));
    j.ranges = static_cast<unsigned>(list_.int64(7));
    j.state = list_.text(8);
    j.created_at = list_.int64(9);
    j.updated_at = list_.int64(10);
    j.finished_at = list_.int64(11);
    j.bytes_done = static_cast<uint64_t>(list_.int64(12));
    j.total_bytes = static_cast<uint64_t>(list_.int64(13));
    j.files_done = static_cast<int>(list_.int64(14));
    j.files_total = static_cast<int>(list_.int64(15));
    j.commit = list_.text(16);
    j.error_code = list_.text(17);
    j.error = list_.text(18);
    out->push_back(std::move(j));
  }
  return list_.status();
}

Status JobStore::prune(int64_t before, int* removed) {
  std::lock_guard lock(db_.mutex());
  if (!ready_) return NotReady();
  ResetOnExit reset(prune_);
  prune_.bind(1, before);
  if (Status s = prune_.exec(); !s.ok()) return s;
  *removed = db_.changes();
  return Status::Ok();
}

}  // namespace modelfs::index
