// Persisted download jobs (prefetch or pin handed to the mount), so that they survive a
// restart of the mount. Only rows: running them is fs/control/jobs.h's business.
// Thread safety: all methods may be called concurrently (they lock the Db).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/base/status.h"
#include "index/db.h"

namespace modelfs::index {

struct JobRecord {
  int64_t id = 0;  // assigned by add(), increasing
  uint32_t uid = 0;
  bool pin = false;
  std::string repo;  // as asked: org/name[@revision]
  std::vector<std::string> patterns, include, exclude;
  unsigned ranges = 8;  // parallel range downloads per file
  std::string state;    // pending, running, paused, completed, failed, cancelled
  int64_t created_at = 0, updated_at = 0, finished_at = 0;  // unix seconds; 0: not yet
  uint64_t bytes_done = 0, total_bytes = 0;
  int files_done = 0, files_total = 0;
  std::string commit;      // once resolved
  std::string error_code;  // failed: the Code name
  std::string error;       // failed: the message
};

class JobStore {
 public:
  explicit JobStore(Db& db);
  Status init();

  Status add(JobRecord* job);  // sets id, created_at, updated_at
  Status update(const JobRecord& job);
  Status list(std::vector<JobRecord>* out);  // by id
  // Deletes finished jobs (completed, failed, cancelled) that finished before `before`.
  Status prune(int64_t before, int* removed);

 private:
  Db& db_;
  bool ready_ = false;
  Stmt add_, update_, list_, prune_;
};

}  // namespace modelfs::index
