// The data path without HTTP: the readahead policy as a pure function, and the reader over a
// fake upstream that answers after a delay and paces each request (a CDN far away), counting
// requests, bytes and how many were in flight at once. CI runs this binary under TSan.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fs/options.h"
#include "fs/read/buffer_pool.h"
#include "fs/read/model_prefetch.h"
#include "fs/read/rate_meter.h"
#include "fs/read/readahead.h"
#include "fs/read/reader.h"
#include "index/cache.h"
#include "unit/concurrency.h"

namespace modelfs::fs {
namespace {

using modelfs::testing::Failures;
using modelfs::testing::kTsan;
using std::chrono::milliseconds;

constexpr uint64_t kMiB = 1 << 20;

// ---------------------------------------------------------------------------------- policy

ReadaheadConfig Config() {
  ReadaheadConfig c;
  c.initial = 4 * kMiB;
  c.max = 256 * kMiB;
  c.part_max = 8 * kMiB;
  c.chunk = 1 << 20;
  return c;
}

ReadaheadPlan Read(ReadaheadState& st, uint64_t off, uint64_t n, uint64_t size = 1ull << 34,
                   bool model = false, const NetEstimate& net = {}) {
  ReadaheadInput in;
  in.offset = off;
  in.end = std::min(off + n, size);
  in.file_size = size;
  in.model_file = model;
  return PlanReadahead(st, in, Config(), net);
}

TEST(Readahead, RandomReadsGetNoWindow) {
  ReadaheadState st;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    const uint64_t off = (rng() % 10000) * 100 * kMiB / 1000 + 64 * kMiB;
    EXPECT_TRUE(Read(st, off, 4096).empty()) << i;
    EXPECT_TRUE(st.jumped || st.window == 0);
  }
  // Even a model file read at random never gets a window.
  ReadaheadState m;
  for (uint64_t off : {900 * kMiB, 10 * kMiB, 500 * kMiB, 30 * kMiB}) {
    EXPECT_TRUE(Read(m, off, kMiB, 1ull << 34, true).empty());
  }
}

TEST(Readahead, ASequentialRunRampsWindowAndPartsUpToTheCap) {
  ReadaheadState st;
  // The first two chunks are not a pattern yet (the kernel splits one pread into several).
  EXPECT_TRUE(Read(st, 0, kMiB).empty());
  EXPECT_TRUE(Read(st, kMiB, kMiB).empty());
  ReadaheadPlan p = Read(st, 2 * kMiB, kMiB);
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.from, 3 * kMiB);
  EXPECT_EQ(p.to, 3 * kMiB + 4 * kMiB);
  EXPECT_EQ(p.part, kMiB);  // a small window: four small parts in flight
  std::vector<uint64_t> windows{st.window}, parts{p.part};
  uint64_t scheduled = p.to;
  for (uint64_t off = 3 * kMiB; off < 1024 * kMiB; off += kMiB) {
    st.waited = true;  // the reader keeps catching up with bytes in flight
    ReadaheadPlan q = Read(st, off, kMiB);
    if (q.empty()) continue;
    EXPECT_EQ(q.from, scheduled) << "contiguous with what was scheduled before, at " << off;
    scheduled = q.to;
    windows.push_back(st.window);
    parts.push_back(q.part);
  }
  EXPECT_EQ(windows.back(), 256 * kMiB);
  EXPECT_EQ(parts.back(), 8 * kMiB);
  EXPECT_TRUE(std::is_sorted(windows.begin(), windows.end()));
  EXPECT_TRUE(std::is_sorted(parts.begin(), parts.end()));
  EXPECT_GE(windows.size(), 7u) << "ramped in steps, not at once";
  // Ahead by at most the window.
  EXPECT_LE(scheduled, 1024 * kMiB + 256 * kMiB);
}

// A reader that always waits, on a link whose rate does not grow with the window (a CPU-bound
// LAN): the window stops near what the link moves in one part's round trip, instead of going to
// the cap with bytes that leave memory before the reader gets there. On a far link, where the
// rate follows the window, it still ramps to the cap.
TEST(Readahead, TheWindowGrowsOnlyAsFarAsTheMeasuredRateUses) {
  NetEstimate lan;
  lan.samples = 100;
  lan.ttfb_s = 0.001;
  lan.conn_rate = 400e6;
  lan.rate = 400e6;  // whatever the window: the bound is elsewhere
  ReadaheadState st;
  uint64_t scheduled = 0, most_ahead = 0;
  for (uint64_t off = 0; off < 2048 * kMiB; off += kMiB) {
    st.waited = true;
    ReadaheadPlan q = Read(st, off, kMiB, 1ull << 34, false, lan);
    if (!q.empty()) scheduled = q.to;
    most_ahead = std::max(most_ahead, scheduled - std::min(scheduled, off + kMiB));
  }
  // 3 x 400 MB/s x (1 ms + 8 MiB / 400 MB/s) = 26.4 MB
  EXPECT_LE(most_ahead, 32 * kMiB);
  EXPECT_GE(most_ahead, 16 * kMiB);

  NetEstimate far;
  far.samples = 100;
  far.ttfb_s = 0.03;
  far.conn_rate = 50e6;
  const double round_trip = 0.03 + 8.0 * kMiB / 50e6;
  ReadaheadState ft;
  scheduled = 0;
  uint64_t ahead = 0;
  for (uint64_t off = 0; off < 4096 * kMiB; off += kMiB) {
    ft.waited = true;
    // Bytes in flight set the rate: what is ahead, delivered once per round trip.
    far.rate = static_cast<double>(std::max<uint64_t>(ahead, kMiB)) / round_trip;
    ReadaheadPlan q = Read(ft, off, kMiB, 1ull << 34, false, far);
    if (!q.empty()) scheduled = q.to;
    ahead = scheduled - std::min(scheduled, off + kMiB);
  }
  EXPECT_EQ(ft.window, 256 * kMiB);
  EXPECT_GE(ahead, 128 * kMiB) << "the far link gets (nearly) the whole window";
}

TEST(Readahead, AReaderThatNeverWaitsKeepsItsWindow) {
  ReadaheadState st;
  uint64_t scheduled = 0;
  for (uint64_t off = 0; off < 512 * kMiB; off += kMiB) {
    ReadaheadPlan q = Read(st, off, kMiB);
    if (!q.empty()) scheduled = q.to;
    if (off >= 3 * kMiB) {
      EXPECT_LE(scheduled, off + kMiB + 4 * kMiB) << off;
    }
  }
  EXPECT_EQ(st.window, 4 * kMiB) << "the pipe keeps up: no need to look further ahead";
}

TEST(Readahead, AJumpResetsAndTheEndOfFileBounds) {
  ReadaheadState st;
  for (uint64_t off = 0; off < 40 * kMiB; off += kMiB) (void)Read(st, off, kMiB, 48 * kMiB);
  EXPECT_GT(st.window, 0u);
  EXPECT_LE(st.scheduled_until, 48 * kMiB);
  EXPECT_TRUE(Read(st, 5 * kMiB, kMiB, 48 * kMiB).empty());  // backwards: a jump
  EXPECT_EQ(st.window, 0u);
  EXPECT_TRUE(st.jumped);
}

TEST(Readahead, ALoaderOfAModelFileGetsTheFullWindowOnceItReadsOn) {
  ReadaheadState st;
  EXPECT_TRUE(Read(st, 0, 64 * 1024, 4096 * kMiB, true).empty());  // the header
  uint64_t off = 0;
  ReadaheadPlan p;
  for (off = 2 * kMiB; off < 40 * kMiB && st.window < 256 * kMiB; off += kMiB) {
    p = Read(st, off, kMiB, 4096 * kMiB, true);
  }
  EXPECT_EQ(st.window, 256 * kMiB) << "reached at " << off / kMiB << " MiB";
  EXPECT_LE(off, 20 * kMiB);
  EXPECT_EQ(p.part, 8 * kMiB);
}

TEST(Readahead, ALoaderIsNotHeldToTheRateItsHeaderReadsMeasured) {
  // Right after a GGUF header's small reads, the measured rate is a few requests' worth; the
  // loader that follows touches every byte, so it gets the whole window at once.
  NetEstimate far;
  far.samples = 20;
  far.ttfb_s = 0.03;
  far.conn_rate = 50e6;
  far.rate = 30e6;
  ReadaheadState st;
  (void)Read(st, 0, 64 * 1024, 4096 * kMiB, true, far);
  uint64_t scheduled = 0, off = 2 * kMiB;
  for (; off < 20 * kMiB; off += kMiB) {
    ReadaheadPlan q = Read(st, off, kMiB, 4096 * kMiB, true, far);
    if (!q.empty()) scheduled = q.to;
  }
  EXPECT_GE(scheduled, off + 240 * kMiB);
  // A plain file read the same way is held to what that rate uses.
  ReadaheadState plain;
  scheduled = 0;
  for (off = 0; off < 20 * kMiB; off += kMiB) {
    plain.waited = true;
    ReadaheadPlan q = Read(plain, off, kMiB, 4096 * kMiB, false, far);
    if (!q.empty()) scheduled = q.to;
  }
  EXPECT_LE(scheduled, off + 32 * kMiB);
}

TEST(Readahead, TheFirstWindowCoversTheMeasuredBandwidthDelayProduct) {
  NetEstimate far;
  far.samples = 10;
  far.ttfb_s = 0.08;     // 80 ms away
  far.conn_rate = 50e6;  // 50 MB/s per connection: 4 MB in flight per connection
  ReadaheadState st;
  (void)Read(st, 0, kMiB, 1ull << 34, false, far);
  (void)Read(st, kMiB, kMiB, 1ull << 34, false, far);
  (void)Read(st, 2 * kMiB, kMiB, 1ull << 34, false, far);
  EXPECT_GE(st.window, 16 * kMiB);  // 4 x 4 MB
  ReadaheadState near;
  (void)Read(near, 0, kMiB);
  (void)Read(near, kMiB, kMiB);
  (void)Read(near, 2 * kMiB, kMiB);
  EXPECT_EQ(near.window, 4 * kMiB);
}

// ---------------------------------------------------------------------------------- buffers

TEST(RateMeter, IdleTimeIsNotCountedAndARiseIsFollowedAtOnce) {
  using std::chrono::milliseconds;
  const auto t0 = RateMeter::Clock::now();
  RateMeter m;
  // Ten seconds after the meter was made (a mount waiting for its first reader), two requests
  // of 25 MB overlap for 250 ms: 200 MB/s, whatever came before.
  const auto t = t0 + std::chrono::seconds(10);
  m.started(t);
  m.started(t);
  m.ended(t + milliseconds(200), 25'000'000);
  EXPECT_EQ(m.rate(), 0) << "less than a period of busy time";
  m.ended(t + milliseconds(250), 25'000'000);
  EXPECT_NEAR(m.rate(), 200e6, 1e6);

  // Idle for a second (an engine parsing a header), then 100 MB in 250 ms: 400 MB/s at once.
  const auto u = t + milliseconds(1250);
  m.started(u);
  m.ended(u + milliseconds(250), 100'000'000);
  EXPECT_NEAR(m.rate(), 400e6, 1e6);

  // One slow period (100 MB/s) is mixed in, not taken.
  const auto v = u + milliseconds(400);
  m.started(v);
  m.ended(v + milliseconds(250), 25'000'000);
  EXPECT_NEAR(m.rate(), 0.8 * 400e6 + 0.2 * 100e6, 1e6);
}

TEST(BufferPool, BlocksAreReusedAndIdleOnesBeyondKeepAreUnmapped) {
  BufferPool pool(kMiB, 2);
  std::vector<std::shared_ptr<char[]>> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(pool.get());
    std::memset(held.back().get(), i, kMiB);  // the whole block is writable
  }
  EXPECT_EQ(pool.stats().mapped, 5u);
  const std::set<const char*> first_two{held[0].get(), held[1].get()};
  held.clear();  // front to back: the first two are kept
  EXPECT_EQ(pool.stats().mapped, 2u) << "three unmapped, two kept";
  EXPECT_EQ(pool.stats().idle, 2u);
  EXPECT_EQ(pool.stats().peak_mapped, 5u);
  std::set<const char*> again;
  for (int i = 0; i < 2; ++i) held.push_back(pool.get());
  for (auto& b : held) again.insert(b.get());
  EXPECT_EQ(pool.stats().mapped, 2u) << "served from the idle ones, nothing new mapped";
  EXPECT_EQ(pool.stats().idle, 0u);
  EXPECT_EQ(again, first_two);
}

TEST(BufferPool, ABlockOutlivesItsPool) {
  std::shared_ptr<char[]> b;
  {
    BufferPool pool(64 * 1024, 4);
    b = pool.get();
  }
  std::memset(b.get(), 7, 64 * 1024);
  EXPECT_EQ(b[65535], 7);
  b.reset();  // unmapped through the state the block kept alive (ASan/LSan would see a leak)
}

TEST(ModelPrefetch, ShardSetsAndModelFiles) {
  const std::vector<std::string> paths = {
      "README.md",
      "config.json",
      "model-00002-of-00003.safetensors",
      "model-00001-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
      "model.safetensors.index.json",
      "other-00001-of-00002.safetensors",
      "gguf/q4-00001-of-00002.gguf",
      "gguf/q4-00002-of-00002.gguf",
  };
  const std::vector<std::string> three = {"model-00001-of-00003.safetensors",
                                          "model-00002-of-00003.safetensors",
                                          "model-00003-of-00003.safetensors"};
  EXPECT_EQ(ShardSet("model.safetensors.index.json", paths), three);
  EXPECT_EQ(ShardSet("model-00002-of-00003.safetensors", paths), three);
  EXPECT_EQ(ShardSet("gguf/q4-00002-of-00002.gguf", paths).size(), 2u);
  EXPECT_TRUE(ShardSet("config.json", paths).empty());
  EXPECT_TRUE(ShardSet("-of-", paths).empty());
  EXPECT_TRUE(ShardSet("x-of-00003.safetensors", paths).empty());
  EXPECT_TRUE(IsModelFile("a/b/Model.GGUF"));
  EXPECT_TRUE(IsModelFile("model.safetensors"));
  EXPECT_FALSE(IsModelFile("config.json"));
}

// ------------------------------------------------------------------------- fake upstream

// Answers each range after `latency`, then sends it at `rate` bytes/s (per request), in
// pieces; counts requests, bytes and the most requests in flight at once.
class FakeUpstream : public Upstream {
 public:
  FakeUpstream(milliseconds latency, double rate) : latency_(latency), rate_(rate) {}

  void add_file(const std::string& path, std::string bytes) {
    std::lock_guard lock(mu_);
    files_[path] = std::move(bytes);
  }
  void fail_next(int n) { fail_ = n; }

  Status read_range(const fetch::FileLocation& file, uint64_t offset, uint64_t length,
                    const fetch::Sink& sink) override {
    const int now = ++in_flight_;
    int peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    requests_++;
    struct Leave {
      std::atomic<int>& n;
      ~Leave() { --n; }
    } leave{in_flight_};
    std::this_thread::sleep_for(latency_);
    if (fail_ > 0 && fail_-- > 0) return {Code::kNetwork, "injected failure"};
    const std::string* bytes;
    {
      std::lock_guard lock(mu_);
      auto it = files_.find(file.path);
      if (it == files_.end()) return {Code::kEntryNotFound, file.path};
      bytes = &it->second;
    }
    if (offset + length > bytes->size()) return {Code::kProtocol, "past the end"};
    constexpr size_t kPiece = 256 * 1024;
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t done = 0; done < length;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, length - done));
      if (rate_ > 0) {
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(static_cast<double>(done + n) / rate_)));
      }
      if (!sink(bytes->data() + offset + done, n)) return {Code::kCancelled, "sink stopped"};
      bytes_ += n;
      done += n;
    }
    return Status::Ok();
  }

  int peak() const { return peak_; }
  uint64_t bytes() const { return bytes_; }
  uint64_t requests() const { return requests_; }
  void reset_counts() {
    peak_ = 0;
    bytes_ = 0;
    requests_ = 0;
  }

 private:
  const milliseconds latency_;
  const double rate_;
  std::mutex mu_;
  std::map<std::string, std::string> files_;
  std::atomic<int> in_flight_{0}, peak_{0}, fail_{0};
  std::atomic<uint64_t> bytes_{0}, requests_{0};
};

std::string Bytes(uint64_t n, uint64_t seed) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

// Git-oid-like content ids (40 hex): no sha256 to check, so the fake needs no real hashes.
std::string Cid(int i) {
  char buf[41];
  std::snprintf(buf, sizeof buf, "%040x", 0xabc000 + i);
  return buf;
}

class FakeReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "read_readahead_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    reader_.reset();
    cache_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void start(milliseconds latency, double rate, uint64_t capacity = 1ull << 30,
             unsigned threads = 32) {
    index::CacheOptions co;
    co.dir = dir_ / "cache";
    co.capacity_bytes = capacity;
    co.chunk_size = 256 * 1024;  // small chunks keep the files small and the test fast
    ASSERT_TRUE(index::Cache::Open(co, &cache_).ok());
    up_ = std::make_unique<FakeUpstream>(latency, rate);
    options_.read_timeout = milliseconds(60000);
    options_.fetch_threads = threads;
    options_.readahead_initial = 1 * kMiB;
    options_.readahead_max = 32 * kMiB;
    options_.fetch_unit = 2 * kMiB;
    reader_ = std::make_unique<Reader>(options_, cache_->chunks(), *up_);
  }
  fetch::FileLocation add(const std::string& path, uint64_t size, int seed) {
    up_->add_file(path, Bytes(size, seed));
    files_[path] = Bytes(size, seed);
    return {"org/name", std::string(40, 'c'), path, size, Cid(seed)};
  }
  std::string read_whole(const fetch::FileLocation& loc, size_t piece) {
    auto h = reader_->open(loc, loc.etag);
    std::string all, out;
    for (uint64_t off = 0; off < loc.size;) {
      Status st = reader_->read(*h, off, piece, &out);
      if (!st.ok()) return "error: " + st.to_string();
      all += out;
      off += out.size();
      if (out.empty()) break;
    }
    return all;
  }
  void wait_idle() {
    for (int i = 0; i < 6000 && reader_->stats().inflight_chunks > 0; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    ASSERT_EQ(reader_->stats().inflight_chunks, 0u);
  }

  std::filesystem::path dir_;
  CoreOptions options_;
  std::unique_ptr<index::Cache> cache_;
  std::unique_ptr<FakeUpstream> up_;
  std::unique_ptr<Reader> reader_;
  std::map<std::string, std::string> files_;
};

// A far, paced upstream: one sequential reader gets many ranges in flight (the window ramps),
// never more than the cap, and every byte crosses once.
TEST_F(FakeReaderTest, ASequentialReaderFillsThePipeUpToTheCap) {
  start(milliseconds(20), 20e6, 1ull << 30, /*threads=*/12);
  const uint64_t size = (kTsan ? 24 : 64) * kMiB;
  auto loc = add("weights.bin.part", size, 1);  // not a model name: plain readahead
  const std::string got = read_whole(loc, 128 * 1024);
  ASSERT_EQ(got.size(), size);
  EXPECT_TRUE(got == files_["weights.bin.part"]);
  wait_idle();
  // Under TSan the reader is CPU-bound, waits less and so ramps the window less far.
  const int min_peak = kTsan ? 4 : 8;
  EXPECT_GE(up_->peak(), min_peak) << "ranges in flight at once";
  EXPECT_LE(up_->peak(), 12 + 1) << "the cap, plus the reader's own miss";
  EXPECT_EQ(up_->bytes(), size) << "each byte fetched once";
  const ReaderStats rs = reader_->stats();
  EXPECT_GE(rs.fetch.peak_in_flight, static_cast<uint64_t>(min_peak));
  EXPECT_GT(rs.fetch.net.samples, 0u);
  EXPECT_GT(rs.fetch.net.ttfb_s, 0.015);
}

// A random reader: no readahead storm, only what it touches (plus direct small ranges).
TEST_F(FakeReaderTest, ARandomReaderFetchesOnlyWhatItTouches) {
  start(milliseconds(5), 0);
  const uint64_t size = 64 * kMiB;
  auto loc = add("model.gguf", size, 2);
  auto h = reader_->open(loc, loc.etag);
  std::mt19937_64 rng(3);
  uint64_t touched = 0;
  std::string out;
  const int reads = kTsan ? 40 : 150;
  for (int i = 0; i < reads; ++i) {
    const uint64_t off = (rng() % (size / 4096 - 1)) * 4096 + 4096;
    ASSERT_TRUE(reader_->read(*h, off, 4096, &out).ok());
    ASSERT_EQ(out, files_["model.gguf"].substr(off, 4096));
    touched += 4096;
  }
  wait_idle();
  // Each read may bring its own 4 KiB and its 256 KiB chunk for the cache: nothing else.
  EXPECT_LE(up_->bytes(), static_cast<uint64_t>(reads) * (256 * 1024 + 4096));
  // At most two requests per read (its own 4 KiB, its chunk's fill): no readahead request. How
  // many of the fills overlap depends on the machine's load, so that is not what is counted.
  EXPECT_LE(up_->requests(), static_cast<uint64_t>(2 * reads));
  EXPECT_GT(reader_->stats().direct_reads, 0u);
}

// Readers of one file from several threads share every fetch.
TEST_F(FakeReaderTest, ConcurrentReadersShareFetches) {
  start(milliseconds(5), 100e6);
  const uint64_t size = (kTsan ? 8 : 32) * kMiB;
  auto loc = add("data.bin.x", size, 4);
  Failures failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string got = read_whole(loc, 64 * 1024 * static_cast<size_t>(t + 1));
      if (got != files_["data.bin.x"])
        failures.add("thread " + std::to_string(t) + ": wrong bytes");
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.count(), 0) << failures.text();
  wait_idle();
  EXPECT_EQ(up_->bytes(), size);
}

// Model-aware prefetch brings whole files in the background, once, and refuses what would not
// fit the cache.
TEST_F(FakeReaderTest, ModelPrefetchFetchesWholeFilesOnceAndOnlyIfTheyFit) {
  start(milliseconds(5), 0, 40 * kMiB);
  std::vector<std::pair<fetch::FileLocation, std::string>> set;
  for (int i = 0; i < 3; ++i) {
    auto loc =
        add("model-0000" + std::to_string(i + 1) + "-of-00003.safetensors", 8 * kMiB, 10 + i);
    set.push_back({loc, loc.etag});
  }
  reader_->prefetch_files(set);
  reader_->prefetch_files(set);  // a second open of a shard queues nothing more
  wait_idle();
  for (const auto& [loc, cid] : set) EXPECT_EQ(cache_->chunks().cached_bytes(cid), loc.size);
  EXPECT_EQ(up_->bytes(), 24 * kMiB);
  EXPECT_EQ(reader_->stats().model_prefetch_files, 3u);

  // 3 x 16 MiB is more than 90% of 40 MiB: not prefetched at all.
  std::vector<std::pair<fetch::FileLocation, std::string>> big;
  for (int i = 0; i < 3; ++i) {
    auto loc = add("big-0000" + std::to_string(i + 1) + "-of-00003.safetensors", 16 * kMiB, 20 + i);
    big.push_back({loc, loc.etag});
  }
  up_->reset_counts();
  reader_->prefetch_files(big);
  wait_idle();
  EXPECT_EQ(up_->bytes(), 0u);
  EXPECT_EQ(reader_->stats().model_prefetch_skipped, 1u);
}

// An upstream failure is an I/O error to the reader, never "no such file", and the next read
// fetches again.
TEST_F(FakeReaderTest, UpstreamFailuresAreIoErrorsAndDoNotStick) {
  start(milliseconds(1), 0);
  auto loc = add("a.bin.x", 2 * kMiB, 5);
  fetch::FileLocation gone = loc;
  gone.path = "gone.bin";
  auto h = reader_->open(gone, Cid(99));
  std::string out;
  Status st = reader_->read(*h, 0, 4096, &out);
  EXPECT_EQ(st.code(), Code::kIo) << st.to_string();
  up_->fail_next(100);  // more than any retry: the fake does not retry
  auto h2 = reader_->open(loc, loc.etag);
  EXPECT_FALSE(reader_->read(*h2, 0, 4096, &out).ok());
  up_->fail_next(0);
  ASSERT_TRUE(reader_->read(*h2, 0, 4096, &out).ok());
  EXPECT_EQ(out, files_["a.bin.x"].substr(0, 4096));
}

// Destroying the reader while slow requests are in flight ends promptly.
TEST_F(FakeReaderTest, StoppingWithRequestsInFlightIsBounded) {
  start(milliseconds(200), 1e6);
  auto loc = add("slow.bin.x", 16 * kMiB, 6);
  auto h = reader_->open(loc, loc.etag);
  std::string out;
  for (uint64_t off = 0; off < 4 * kMiB; off += 256 * 1024) {
    ASSERT_TRUE(reader_->read(*h, off, 256 * 1024, &out).ok());
  }
  h.reset();
  const auto t0 = std::chrono::steady_clock::now();
  reader_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

}  // namespace
}  // namespace modelfs::fs
