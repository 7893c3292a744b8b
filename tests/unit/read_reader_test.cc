// Reader (fs/read/) under concurrency, against the hub simulator and a real chunk store:
// many readers of the same and different LFS files, with gc, pin, rm and prefetch running,
// sha256 mismatches found while other handles read, and strict verification. Every byte is
// checked against the fixture files and upstream traffic against the simulator's counters.
// CI runs this binary under ThreadSanitizer; iteration counts shrink there (kTsan).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fetch/hub_client.h"
#include "fs/options.h"
#include "fs/read/reader.h"
#include "index/cache.h"
#include "unit/concurrency.h"
#include "unit/hubsim.h"

namespace modelfs::fs {
namespace {

using modelfs::testing::HubSim;
using modelfs::testing::kEdge;
using modelfs::testing::kMiB;
using modelfs::testing::kTiny;
using modelfs::testing::kTsan;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint32_t kChunk = 1 << 20;
constexpr uint64_t kDirectMax = 256 * 1024;  // reads up to this size may take the direct path

// One LFS fixture file: where it is, its content id and its real bytes.
struct File {
  std::string name;
  fetch::FileLocation loc;
  std::string cid;
  std::string bytes;
  uint64_t size() const { return loc.size; }
  uint32_t chunks() const { return static_cast<uint32_t>((loc.size + kChunk - 1) / kChunk); }
  uint64_t chunk_len(uint32_t c) const {
    return std::min<uint64_t>(kChunk, loc.size - uint64_t{c} * kChunk);
  }
  // True if out holds exactly what a read of [off, off + size) must return.
  bool matches(uint64_t off, size_t n, const std::string& out) const {
    const uint64_t want = off >= size() ? 0 : std::min<uint64_t>(n, size() - off);
    return out.size() == want && std::memcmp(out.data(), bytes.data() + off, want) == 0;
  }
};

// Log-uniform over 1 B .. 3 MiB: small reads (direct range requests) and multi-chunk reads.
size_t RandomSize(std::mt19937_64& rng) {
  const int k = std::uniform_int_distribution<int>(0, 21)(rng);
  const uint64_t lo = uint64_t{1} << k;
  const uint64_t hi = std::min<uint64_t>((uint64_t{2} << k) - 1, 3 * kMiB);
  return static_cast<size_t>(std::uniform_int_distribution<uint64_t>(lo, hi)(rng));
}

// Uniform, but one read in eight lands in the last 2 MiB (the end waits for the sha256 verdict).
uint64_t RandomOffset(std::mt19937_64& rng, uint64_t size) {
  const uint64_t tail = std::min<uint64_t>(size, 2 * kMiB);
  if (std::uniform_int_distribution<int>(0, 7)(rng) == 0) {
    return size - 1 - std::uniform_int_distribution<uint64_t>(0, tail - 1)(rng);
  }
  return std::uniform_int_distribution<uint64_t>(0, size - 1)(rng);
}

bool WaitFor(const std::function<bool()>& pred, milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return pred();
}

using modelfs::testing::Failures;

class CoreReaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = new HubSim();
    if (!sim_->ok()) return;
    large_ = Load(kEdge, "large.bin");
    exact_ = Load(kEdge, "exact-4MiB-plus-1.bin");
    tiny_ = Load(kTiny, "model.safetensors");
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    for (File** f : {&large_, &exact_, &tiny_}) {
      delete *f;
      *f = nullptr;
    }
  }

  static File* Load(const std::string& repo, const std::string& path) {
    auto* f = new File;
    f->name = path;
    f->loc.repo_id = repo;
    f->loc.commit = sim_->branch_commit(repo);
    f->loc.path = path;
    const json* m = sim_->file(repo, f->loc.commit, path);
    if (m == nullptr) return f;
    f->loc.size = (*m)["size"].get<uint64_t>();
    f->loc.etag = (*m)["etag"].get<std::string>();
    f->cid = (*m)["sha256"].get<std::string>();
    f->bytes = HubSim::ReadFile(sim_->local_path(repo, f->loc.commit, path));
    return f;
  }

  void SetUp() override {
    ASSERT_TRUE(sim_->ok()) << sim_->error();
    for (const File* f : {large_, exact_, tiny_}) {
      ASSERT_EQ(f->bytes.size(), f->size()) << f->name;
      ASSERT_EQ(f->cid.size(), 64u) << f->name;
    }
    ASSERT_EQ(large_->size(), 160 * kMiB);
    ASSERT_EQ(exact_->size(), 4 * kMiB + 1);
    sim_->reset();
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "core_reader_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    reader_.reset();  // joins its pool before the store and the client go
    upstream_.reset();
    hub_.reset();
    cache_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    sim_->clear_faults();
  }

  void start(uint64_t capacity, const CoreOptions& options) {
    index::CacheOptions co;
    co.dir = dir_ / "cache";
    co.capacity_bytes = capacity;
    co.chunk_size = kChunk;
    Status s = index::Cache::Open(co, &cache_);
    ASSERT_TRUE(s.ok()) << s.to_string();
    fetch::HubOptions ho;
    ho.endpoint = sim_->hub_url();
    ho.connect_timeout = milliseconds(5000);
    ho.stall_timeout = milliseconds(30000);  // TSan on 2 cores is slow, not stalled
    ho.deadline = milliseconds(60000);
    ho.backoff_initial = milliseconds(20);
    ho.backoff_max = milliseconds(200);
    hub_ = std::make_unique<fetch::HubClient>(ho);
    options_ = options;
    upstream_ = std::make_unique<HubUpstream>(*hub_);
    reader_ = std::make_unique<Reader>(options_, cache_->chunks(), *upstream_);
  }

  static CoreOptions Options() {
    CoreOptions o;
    o.read_timeout = milliseconds(60000);
    return o;
  }

  index::ChunkStore& store() { return cache_->chunks(); }

  // Background fetches (readahead, the whole-chunk fetch behind a direct read) have finished.
  void wait_idle() {
    ASSERT_TRUE(WaitFor([&] { return reader_->stats().inflight_chunks == 0; }, milliseconds(60000)))
        << reader_->stats().inflight_chunks << " chunks still in flight";
  }

  // Upstream body bytes the simulator's CDN served for a content.
  static uint64_t CdnBytes(const json& counters, const std::string& sha) {
    if (!counters.contains("files") || !counters["files"].contains(sha)) return 0;
    return counters["files"][sha]["bytes"].get<uint64_t>();
  }

  // Reads the whole file sequentially through a fresh handle; "" on success.
  std::string read_whole(const File& f, std::mt19937_64& rng) {
    auto h = reader_->open(f.loc, f.cid);
    std::string out;
    for (uint64_t off = 0; off < f.size();) {
      const size_t n = RandomSize(rng);
      Status st = reader_->read(*h, off, n, &out);
      if (!st.ok()) return f.name + " at " + std::to_string(off) + ": " + st.to_string();
      if (!f.matches(off, n, out)) return f.name + ": wrong bytes at " + std::to_string(off);
      off += out.size();
    }
    return "";
  }

  static HubSim* sim_;
  static File* large_;
  static File* exact_;
  static File* tiny_;
  std::filesystem::path dir_;
  CoreOptions options_;  // the reader keeps a reference
  std::unique_ptr<index::Cache> cache_;
  std::unique_ptr<fetch::HubClient> hub_;
  std::unique_ptr<HubUpstream> upstream_;
  std::unique_ptr<Reader> reader_;
};

HubSim* CoreReaderTest::sim_ = nullptr;
File* CoreReaderTest::large_ = nullptr;
File* CoreReaderTest::exact_ = nullptr;
File* CoreReaderTest::tiny_ = nullptr;

// (a) 8 threads, random ranges of three files. Readahead is off, so what is fetched is exactly
// the chunks the reads touched, each once, plus the bytes of small direct reads.
TEST_F(CoreReaderTest, RandomReadsFromEightThreadsFetchEachTouchedChunkOnce) {
  CoreOptions o = Options();
  o.readahead_initial = 0;  // no readahead: the upstream bytes are predictable
  start(1ull << 30, o);
  const File* files[] = {large_, exact_, tiny_};
  constexpr int kThreads = 8;
  const int reads = kTsan ? 24 : 64;

  Failures failures;
  std::mutex mu;
  std::set<std::pair<int, uint32_t>> touched;  // (file, chunk)
  uint64_t small_bytes[3] = {0, 0, 0};         // bytes of reads that may have gone direct
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      std::unique_ptr<OpenFile> handles[3];
      for (int i = 0; i < 3; ++i) handles[i] = reader_->open(files[i]->loc, files[i]->cid);
      std::set<std::pair<int, uint32_t>> mine;
      uint64_t mine_small[3] = {0, 0, 0};
      start.arrive_and_wait();
      std::string out;
      for (int r = 0; r < reads; ++r) {
        // Half the reads go to large.bin: same file from many threads, and different files.
        const int which = std::uniform_int_distribution<int>(0, 3)(rng) < 2
                              ? 0
                              : std::uniform_int_distribution<int>(1, 2)(rng);
        const File& f = *files[which];
        const uint64_t off = RandomOffset(rng, f.size());
        const size_t n = RandomSize(rng);
        Status st = reader_->read(*handles[which], off, n, &out);
        if (!st.ok()) {
          failures.add(f.name + " [" + std::to_string(off) + ", +" + std::to_string(n) +
                       "): " + st.to_string());
          continue;
        }
        if (!f.matches(off, n, out)) {
          failures.add(f.name + " [" + std::to_string(off) + ", +" + std::to_string(n) +
                       "): wrong bytes");
        }
        const uint64_t end = std::min<uint64_t>(off + n, f.size());
        for (uint64_t c = off / kChunk; c <= (end - 1) / kChunk; ++c) {
          mine.emplace(which, static_cast<uint32_t>(c));
        }
        if (end - off <= kDirectMax) mine_small[which] += end - off;
      }
      std::lock_guard lock(mu);
      touched.insert(mine.begin(), mine.end());
      for (int i = 0; i < 3; ++i) small_bytes[i] += mine_small[i];
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.count(), 0) << failures.text();
  wait_idle();

  const json counters = sim_->counters();
  ASSERT_FALSE(counters.is_discarded());
  uint64_t touched_chunks = 0, touched_bytes_all = 0;
  for (int i = 0; i < 3; ++i) {
    const File& f = *files[i];
    uint64_t touched_bytes = 0;
    for (uint32_t c = 0; c < f.chunks(); ++c) {
      const bool was_touched = touched.count({i, c}) != 0;
      // Exactly the touched chunks are cached: nothing else was fetched, nothing lost.
      EXPECT_EQ(store().contains(f.cid, c), was_touched) << f.name << " chunk " << c;
      if (was_touched) {
        touched_bytes += f.chunk_len(c);
        ++touched_chunks;
      }
    }
    touched_bytes_all += touched_bytes;
    // Each chunk crossed the network once; small reads may add their own short range.
    const uint64_t up = CdnBytes(counters, f.cid);
    EXPECT_GE(up, touched_bytes) << f.name;
    EXPECT_LE(up, touched_bytes + small_bytes[i]) << f.name << ": a chunk was fetched twice";
  }
  const ReaderStats rs = reader_->stats();
  EXPECT_EQ(rs.fetch.chunks_fetched, touched_chunks);
  EXPECT_EQ(rs.fetch.bytes_fetched, touched_bytes_all);
  EXPECT_EQ(rs.read_errors, 0u);
  EXPECT_EQ(rs.verify.sha256_mismatches, 0u);
  EXPECT_EQ(store().stats().chunks, touched_chunks);
  EXPECT_EQ(store().stats().used_bytes, touched_bytes_all);
}

// (a) Whole-file sequential readers with readahead on (same file from three threads, other
// files from others) plus a random reader: every chunk still crosses the network exactly once.
TEST_F(CoreReaderTest, SequentialReadersWithReadaheadShareEveryFetch) {
  start(1ull << 30, Options());
  struct Job {
    const File* file;
    bool sequential;
  };
  std::vector<Job> jobs = {{large_, true}, {large_, true}, {large_, !kTsan}, {exact_, true},
                           {exact_, true}, {tiny_, true},  {tiny_, true},    {large_, false}};
  const int random_reads = kTsan ? 24 : 64;

  Failures failures;
  std::atomic<uint64_t> small_large{0};  // bytes of the random reader's small reads of large.bin
  std::latch start(static_cast<std::ptrdiff_t>(jobs.size()));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < jobs.size(); ++t) {
    threads.emplace_back([&, t] {
      const File& f = *jobs[t].file;
      std::mt19937_64 rng(2000 + t);
      auto h = reader_->open(f.loc, f.cid);
      start.arrive_and_wait();
      std::string out;
      if (jobs[t].sequential) {
        // Random sizes, no gaps: the readahead window grows as it would for cat or a loader.
        for (uint64_t off = 0; off < f.size();) {
          const size_t n = std::uniform_int_distribution<size_t>(1, 3 * kMiB)(rng);
          Status st = reader_->read(*h, off, n, &out);
          if (!st.ok() || !f.matches(off, n, out)) {
            failures.add(f.name + " at " + std::to_string(off) + ": " +
                         (st.ok() ? "wrong bytes" : st.to_string()));
            return;
          }
          off += out.size();
        }
        return;
      }
      for (int r = 0; r < random_reads; ++r) {
        const uint64_t off = RandomOffset(rng, f.size());
        const size_t n = RandomSize(rng);
        Status st = reader_->read(*h, off, n, &out);
        if (!st.ok() || !f.matches(off, n, out)) {
          failures.add(f.name + " random at " + std::to_string(off) + ": " +
                       (st.ok() ? "wrong bytes" : st.to_string()));
          continue;
        }
        if (out.size() <= kDirectMax) small_large += out.size();
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.count(), 0) << failures.text();
  wait_idle();

  const json counters = sim_->counters();
  ASSERT_FALSE(counters.is_discarded());
  uint64_t total_chunks = 0;
  for (const File* f : {large_, exact_, tiny_}) {
    for (uint32_t c = 0; c < f->chunks(); ++c) {
      EXPECT_TRUE(store().contains(f->cid, c)) << f->name << " chunk " << c;
    }
    total_chunks += f->chunks();
    // Read whole and hashed as the chunks landed.
    EXPECT_TRUE(store().is_verified(f->cid)) << f->name;
  }
  EXPECT_EQ(CdnBytes(counters, exact_->cid), exact_->size());
  EXPECT_EQ(CdnBytes(counters, tiny_->cid), tiny_->size());
  EXPECT_GE(CdnBytes(counters, large_->cid), large_->size());
  EXPECT_LE(CdnBytes(counters, large_->cid), large_->size() + small_large.load())
      << "a chunk of large.bin was fetched more than once";
  const ReaderStats rs = reader_->stats();
  EXPECT_EQ(rs.fetch.chunks_fetched, total_chunks);
  // At least one verdict per file; more is the redundant re-hash that
  // EndReadersWaitingForOneVerdictHashTheFileOnce pins down.
  EXPECT_GE(rs.verify.files_verified, 3u);
  EXPECT_EQ(rs.verify.sha256_mismatches, 0u);
  EXPECT_EQ(rs.read_errors, 0u);
}

// (b) Readers of three files while other threads loop over gc (evict_to(0)), pin/unpin, rm and
// prefetch of the same contents, in a cache small enough that put() evicts too. With no
// upstream fault every read must succeed with the right bytes, and the store must add up.
TEST_F(CoreReaderTest, ReadersRaceGcPinRmAndPrefetch) {
  const uint64_t capacity = 16 * kMiB;  // large.bin is 160 chunks: put() evicts all the time
  start(capacity, Options());
  const File* files[] = {large_, exact_, tiny_};
  const int reads = kTsan ? 10 : 60;

  Failures failures;
  std::atomic<int> readers_left{4};
  std::atomic<uint64_t> reads_ok{0}, gc_freed{0}, pins{0}, removals{0};
  std::mutex codes_mu;
  std::map<std::string, int> prefetch_codes;
  std::vector<std::thread> threads;
  auto reader_done = [&] { readers_left--; };

  // Two random readers over all three files.
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(3000 + t);
      std::unique_ptr<OpenFile> h[3];
      for (int i = 0; i < 3; ++i) h[i] = reader_->open(files[i]->loc, files[i]->cid);
      std::string out;
      for (int r = 0; r < reads; ++r) {
        const int which = std::uniform_int_distribution<int>(0, 2)(rng);
        const File& f = *files[which];
        const uint64_t off = RandomOffset(rng, f.size());
        const size_t n = RandomSize(rng);
        Status st = reader_->read(*h[which], off, n, &out);
        if (!st.ok()) {
          failures.add(f.name + " at " + std::to_string(off) + ": " + st.to_string());
        } else if (!f.matches(off, n, out)) {
          failures.add(f.name + " at " + std::to_string(off) + ": wrong bytes");
        } else {
          reads_ok++;
        }
      }
      reader_done();
    });
  }
  // A sequential reader of the two small files, whole, again and again (the end of each waits
  // for its sha256 verdict while rm and gc pull chunks away).
  threads.emplace_back([&] {
    std::mt19937_64 rng(3100);
    for (int r = 0; r < (kTsan ? 2 : 8); ++r) {
      for (const File* f : {exact_, tiny_}) {
        if (std::string e = read_whole(*f, rng); !e.empty()) {
          failures.add(e);
        } else {
          reads_ok++;
        }
      }
    }
    reader_done();
  });
  // A sequential reader of stretches of large.bin longer than the cache: readahead into a full
  // cache.
  threads.emplace_back([&] {
    std::mt19937_64 rng(3200);
    const File& f = *large_;
    const uint64_t stretch = (kTsan ? 18 : 24) * kMiB;
    std::string out;
    for (int r = 0; r < (kTsan ? 2 : 4); ++r) {
      auto h = reader_->open(f.loc, f.cid);
      uint64_t off = std::uniform_int_distribution<uint64_t>(0, f.size() - stretch)(rng);
      const uint64_t end = off + stretch;
      while (off < end) {
        const size_t n = std::uniform_int_distribution<size_t>(64 * 1024, 2 * kMiB)(rng);
        Status st = reader_->read(*h, off, n, &out);
        if (!st.ok() || !f.matches(off, n, out)) {
          failures.add("large.bin sequential at " + std::to_string(off) + ": " +
                       (st.ok() ? "wrong bytes" : st.to_string()));
          break;
        }
        reads_ok++;
        off += out.size();
      }
    }
    reader_done();
  });

  // The churn, until the readers are done.
  threads.emplace_back([&] {  // gc
    while (readers_left > 0) {
      uint64_t freed = 0;
      if (Status s = store().evict_to(0, &freed); !s.ok()) failures.add("gc: " + s.to_string());
      gc_freed += freed;
      std::this_thread::sleep_for(milliseconds(3));
    }
  });
  threads.emplace_back([&] {  // pin / unpin
    std::mt19937_64 rng(3300);
    while (readers_left > 0) {
      const File& f = *files[std::uniform_int_distribution<int>(0, 2)(rng)];
      const bool pin = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
      if (Status s = store().set_pinned(f.cid, pin); !s.ok()) {
        failures.add("pin: " + s.to_string());
      }
      pins++;
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  threads.emplace_back([&] {  // rm
    std::mt19937_64 rng(3400);
    while (readers_left > 0) {
      const File& f = *files[std::uniform_int_distribution<int>(0, 2)(rng)];
      if (Status s = store().remove_content(f.cid); !s.ok()) {
        failures.add("rm: " + s.to_string());
      }
      removals++;
      std::this_thread::sleep_for(milliseconds(7));
    }
  });
  threads.emplace_back([&] {  // prefetch
    std::mt19937_64 rng(3500);
    while (readers_left > 0) {
      const File& f = std::uniform_int_distribution<int>(0, 1)(rng) == 0 ? *exact_ : *tiny_;
      const unsigned jobs = std::uniform_int_distribution<unsigned>(1, 4)(rng);
      Status st = reader_->fetch_all(f.loc, f.cid, jobs, nullptr);
      {
        std::lock_guard lock(codes_mu);
        prefetch_codes[CodeName(st.code())]++;
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  for (auto& th : threads) th.join();
  wait_idle();

  EXPECT_EQ(failures.count(), 0) << failures.text();
  EXPECT_GT(reads_ok.load(), 0u);
  // Prefetch may find its file evicted again before hashing (not found) or the room taken by
  // pinned data (no space); anything else, above all an I/O error (a sha256 verdict), is wrong.
  std::string codes;
  for (const auto& [code, n] : prefetch_codes) codes += code + "=" + std::to_string(n) + " ";
  for (const auto& [code, n] : prefetch_codes) {
    EXPECT_TRUE(code == "ok" || code == "not found" || code == "no space") << codes;
  }
  const ReaderStats rs = reader_->stats();
  EXPECT_EQ(rs.verify.sha256_mismatches, 0u) << "a race produced a false sha256 mismatch";
  EXPECT_EQ(rs.corrupt_chunks, 0u) << "a chunk read back failed its checksum";
  EXPECT_EQ(rs.read_errors, 0u);

  // The churn really happened: gc and put() evicted.
  const index::ChunkStoreStats st = store().stats();
  EXPECT_GT(gc_freed.load(), 0u);
  EXPECT_GT(st.evicted_chunks, 0u);
  EXPECT_GT(pins.load(), 0u);
  EXPECT_GT(removals.load(), 0u);
  EXPECT_EQ(st.corrupt_chunks, 0u);

  // The store adds up: its totals match its per-content listing, within the limit.
  EXPECT_LE(st.used_bytes, capacity);
  std::vector<index::ContentUsage> usage;
  ASSERT_TRUE(store().list_contents(&usage).ok());
  uint64_t chunks = 0, bytes = 0, pinned = 0;
  for (const auto& u : usage) {
    chunks += u.chunks;
    bytes += u.cached_bytes;
    if (u.pinned) pinned += u.cached_bytes;
    EXPECT_EQ(u.cached_bytes, store().cached_bytes(u.content_id));
  }
  EXPECT_EQ(chunks, st.chunks);
  EXPECT_EQ(bytes, st.used_bytes);
  EXPECT_EQ(pinned, st.pinned_bytes);
  // Every chunk left holds the right bytes.
  std::string buf(kChunk, '\0');
  for (const File* f : files) {
    uint64_t present = 0;
    for (uint32_t c = 0; c < f->chunks(); ++c) {
      if (!store().contains(f->cid, c)) continue;
      const auto len = static_cast<uint32_t>(f->chunk_len(c));
      Status s = store().read(f->cid, c, 0, len, buf.data());
      ASSERT_TRUE(s.ok()) << f->name << " chunk " << c << ": " << s.to_string();
      EXPECT_EQ(std::memcmp(buf.data(), f->bytes.data() + uint64_t{c} * kChunk, len), 0)
          << f->name << " chunk " << c;
      present += len;
    }
    EXPECT_EQ(present, store().cached_bytes(f->cid)) << f->name;
  }
  // No lease or reservation was leaked: once unpinned, gc can free everything.
  for (const File* f : files) ASSERT_TRUE(store().set_pinned(f->cid, false).ok());
  ASSERT_TRUE(store().evict_to(0, nullptr).ok());
  EXPECT_EQ(store().stats().used_bytes, 0u);
  EXPECT_EQ(store().stats().chunks, 0u);
  // And the files still read correctly afterwards.
  std::mt19937_64 rng(3600);
  EXPECT_EQ(read_whole(*exact_, rng), "");
  EXPECT_EQ(read_whole(*tiny_, rng), "");
}

// Several handles read the end of a file that is cached but not yet hashed (its chunks were
// stored directly, as a previous run or a reader over the cursor limit leaves them): one of
// them hashes it, the others wait for that verdict. The file must be hashed once.
// Regression: a waiter that found the cursor finished used to start a fresh cursor and hash the
// whole file again, one waiter after another.
TEST_F(CoreReaderTest, EndReadersWaitingForOneVerdictHashTheFileOnce) {
  start(1ull << 30, Options());
  const File& f = *large_;
  for (uint32_t c = 0; c < f.chunks(); ++c) {
    ASSERT_TRUE(
        store()
            .put(f.cid, c, std::string_view(f.bytes).substr(uint64_t{c} * kChunk, f.chunk_len(c)))
            .ok());
  }
  ASSERT_FALSE(store().is_verified(f.cid));
  constexpr int kThreads = 4;
  Failures failures;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto h = reader_->open(f.loc, f.cid);
      std::string out;
      start.arrive_and_wait();
      const uint64_t off = f.size() - 4096;
      Status st = reader_->read(*h, off, 4096, &out);
      if (!st.ok() || !f.matches(off, 4096, out)) {
        failures.add(st.ok() ? "wrong bytes" : st.to_string());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.count(), 0) << failures.text();
  EXPECT_TRUE(store().is_verified(f.cid));
  EXPECT_EQ(CdnBytes(sim_->counters(), f.cid), 0u);  // served from the cache alone
  EXPECT_EQ(reader_->stats().verify.files_verified, 1u)
      << "the file was hashed again by readers that waited for the first verdict";
}

// (c) One corrupted CDN response while four handles read the same file: each handle opened
// before the mismatch fails at the file's end; none completes with wrong bytes. Afterwards a
// prefetch fetches clean bytes and the content is marked verified.
TEST_F(CoreReaderTest, Sha256MismatchFailsTheEndForEveryHandleOpenBeforeIt) {
  start(1ull << 30, Options());
  const File& f = *exact_;
  const json armed =
      sim_->fault({{"kind", "corrupt"}, {"at", 1000}, {"count", 1}, {"match", "/cdn/"}});
  ASSERT_TRUE(armed.is_object() && armed.contains("armed")) << armed.dump();

  constexpr int kThreads = 4;
  struct Outcome {
    bool completed = false;   // every read of the whole file returned Ok
    bool bytes_right = true;  // every byte returned matched the fixture
    uint64_t failed_end = 0;  // end of the read that failed
    Code code = Code::kOk;
    uint64_t mismatches_at_open = 0;
  };
  std::vector<Outcome> outcomes(kThreads);
  std::latch opened(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Outcome& o = outcomes[static_cast<size_t>(t)];
      std::mt19937_64 rng(4000 + t);
      auto h = reader_->open(f.loc, f.cid);
      // Read after open(): the counter moves before the epoch a handle records, so 0 here
      // means this handle predates the mismatch.
      o.mismatches_at_open = reader_->stats().verify.sha256_mismatches;
      opened.arrive_and_wait();  // all handles exist before the first byte is fetched
      std::string out;
      for (uint64_t off = 0; off < f.size();) {
        const size_t n = RandomSize(rng);
        Status st = reader_->read(*h, off, n, &out);
        if (!st.ok()) {
          o.code = st.code();
          o.failed_end = std::min<uint64_t>(off + n, f.size());
          return;
        }
        if (!f.matches(off, n, out)) o.bytes_right = false;
        off += out.size();
      }
      o.completed = true;
    });
  }
  for (auto& th : threads) th.join();
  wait_idle();

  ASSERT_EQ(sim_->counters().value("faults_fired", -1), 1) << "the corruption never happened";
  // The flipped byte reached the store and the hash caught it, once.
  EXPECT_EQ(reader_->stats().verify.sha256_mismatches, 1u);
  for (int t = 0; t < kThreads; ++t) {
    const Outcome& o = outcomes[static_cast<size_t>(t)];
    SCOPED_TRACE("thread " + std::to_string(t));
    // Never a whole-file read that succeeded with wrong bytes.
    if (o.completed) {
      EXPECT_TRUE(o.bytes_right);
    }
    if (o.mismatches_at_open == 0) {
      EXPECT_FALSE(o.completed) << "a handle open before the mismatch read the whole file";
      EXPECT_EQ(o.code, Code::kIo);
      EXPECT_EQ(o.failed_end, f.size()) << "it must be the read of the file's end that fails";
    }
  }
  // The bad data is gone: a prefetch gets clean bytes and a verdict, and a new handle reads them.
  Status st = reader_->fetch_all(f.loc, f.cid, 4, nullptr);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(store().is_verified(f.cid));
  std::mt19937_64 rng(4100);
  EXPECT_EQ(read_whole(f, rng), "");
  EXPECT_EQ(reader_->stats().verify.sha256_mismatches, 1u);
}

// (d) Strict mode with every CDN response corrupted: no read of either file returns Ok, from
// any of four threads. Once the fault is gone the same reads succeed (the test can tell).
TEST_F(CoreReaderTest, StrictModeServesNothingWhileUpstreamIsCorrupt) {
  CoreOptions o = Options();
  o.strict_verify = true;
  start(1ull << 30, o);
  const json armed =
      sim_->fault({{"kind", "corrupt"}, {"at", 1000}, {"count", -1}, {"match", "/cdn/"}});
  ASSERT_TRUE(armed.is_object() && armed.contains("armed")) << armed.dump();
  const File* files[] = {exact_, tiny_};
  constexpr int kThreads = 4;
  const int reads = kTsan ? 4 : 8;
  std::atomic<int> oks{0}, errors{0}, not_io{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(5000 + t);
      std::string out;
      for (int r = 0; r < reads; ++r) {
        const File& f = *files[(t + r) % 2];
        auto h = reader_->open(f.loc, f.cid);
        const uint64_t off = r == 0 ? 0 : RandomOffset(rng, f.size());
        Status st = reader_->read(*h, off, RandomSize(rng), &out);
        if (st.ok()) {
          oks++;
        } else {
          errors++;
          if (st.code() != Code::kIo) not_io++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  wait_idle();
  EXPECT_EQ(oks.load(), 0) << "strict mode served bytes of a file whose sha256 never matched";
  EXPECT_EQ(errors.load(), kThreads * reads);
  EXPECT_EQ(not_io.load(), 0);
  EXPECT_GT(reader_->stats().verify.sha256_mismatches, 0u);
  for (const File* f : files) EXPECT_FALSE(store().is_verified(f->cid)) << f->name;

  sim_->clear_faults();
  std::mt19937_64 rng(5100);
  for (const File* f : files) {
    EXPECT_EQ(read_whole(*f, rng), "");
    EXPECT_TRUE(store().is_verified(f->cid)) << f->name;
  }
}

// (d) Strict mode promises that no byte of an unverified file is served. A verified file that
// lost one chunk to eviction keeps its verified mark (remove_batch clears it only with the last
// chunk), so a read of the missing chunk refetches it; if that download is corrupt, the read
// must fail or be refetched clean, never return the corrupt bytes.
TEST_F(CoreReaderTest, StrictModeChecksAChunkRefetchedAfterPartialEviction) {
  CoreOptions o = Options();
  o.strict_verify = true;
  o.readahead_initial = 0;  // only the chunk asked for is fetched
  start(1ull << 30, o);
  const File& f = *tiny_;
  ASSERT_TRUE(reader_->fetch_all(f.loc, f.cid, 1, nullptr).ok());
  ASSERT_TRUE(store().is_verified(f.cid));
  // Evict exactly one chunk: the least recently used.
  const uint64_t used = store().stats().used_bytes;
  ASSERT_TRUE(store().evict_to(used - 1, nullptr).ok());
  uint32_t gone = f.chunks();
  for (uint32_t c = 0; c < f.chunks(); ++c) {
    if (!store().contains(f.cid, c)) {
      ASSERT_EQ(gone, f.chunks()) << "more than one chunk evicted";
      gone = c;
    }
  }
  ASSERT_LT(gone, f.chunks());
  ASSERT_GT(f.chunk_len(gone), 1000u);  // the fault flips body byte 1000
  ASSERT_TRUE(store().is_verified(f.cid)) << "precondition: the mark survives partial eviction";

  ASSERT_TRUE(sim_->fault({{"kind", "corrupt"}, {"at", 1000}, {"count", 1}, {"match", "/cdn/"}})
                  .contains("armed"));
  auto h = reader_->open(f.loc, f.cid);
  std::string out;
  const uint64_t off = uint64_t{gone} * kChunk;
  Status st = reader_->read(*h, off, f.chunk_len(gone), &out);
  ASSERT_EQ(sim_->counters().value("faults_fired", -1), 1) << "the refetch was not corrupted";
  if (st.ok()) {
    EXPECT_TRUE(f.matches(off, f.chunk_len(gone), out))
        << "strict mode served a refetched, unverified chunk with corrupt bytes";
  }
}

}  // namespace
}  // namespace modelfs::fs
