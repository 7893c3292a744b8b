// What a chunk store holds and what it gives up: the in-memory LRU and byte accounting, eviction
// down to a target (the quota), removal of chunks, and the batched access-time flush to SQLite
// with its background thread.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "index/chunk_store_impl.h"

namespace modelfs::index {

using chunk_store_internal::ContentInfo;
using chunk_store_internal::Entry;
using chunk_store_internal::kEvictBatch;
using chunk_store_internal::Key;
using chunk_store_internal::State;

// ---- in-memory state (mu held) ----

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

// ---- removal and eviction ----

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

}  // namespace modelfs::index
