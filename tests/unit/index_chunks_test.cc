#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "index/chunk_store.h"
#include "index/db.h"

namespace modelfs::index {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kHeader = 4096;
constexpr uint32_t kBlock = 64 * 1024;

// A 64-hex (or 40-hex) content id derived from n.
std::string Id(int n, size_t len = 64) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(len, '0');
  uint64_t x = static_cast<uint64_t>(n) * 0x9e3779b97f4a7c15ull + 12345;
  for (size_t i = 0; i < len; ++i) {
    id[i] = kHex[x & 0xf];
    x = x * 6364136223846793005ull + 1442695040888963407ull;
  }
  return id;
}

// Deterministic bytes of chunk (id, idx).
std::string Bytes(const std::string& id, uint32_t idx, size_t n) {
  std::string s(n, '\0');
  uint64_t x = std::hash<std::string>()(id) ^ (uint64_t{idx} << 32) ^ n;
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s[i] = static_cast<char>(x >> 56);
  }
  return s;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

class ChunksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "index_chunks_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    opts_.dir = root_ / "chunks";
    opts_.chunk_size = 256 * 1024;  // 4 blocks
    opts_.capacity_bytes = 64ull << 20;
    opts_.low_water = 1.0;
    opts_.flush_interval = std::chrono::milliseconds(0);  // tests flush explicitly
  }
  void TearDown() override {
    store_.reset();
    db_.reset();
    fs::remove_all(root_);
  }

  void Open(bool recover = false) {
    store_.reset();
    if (!db_) {
      ASSERT_TRUE(Db::Open((root_ / "index.sqlite").string(), &db_).ok());
    }
    Status s = ChunkStore::Open(*db_, opts_, recover, &store_);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  void Close() {
    store_.reset();
    db_.reset();
  }

  fs::path ChunkPath(const std::string& id, uint32_t idx) const {
    return opts_.dir / id.substr(0, 2) / id / std::to_string(idx);
  }

  std::string Read(const std::string& id, uint32_t idx, uint32_t off, uint32_t len,
                   Status* status = nullptr) {
    std::string out(len, '\0');
    Status s = store_->read(id, idx, off, len, out.data());
    if (status != nullptr) *status = s;
    return s.ok() ? out : std::string();
  }

  // Payload bytes (file size minus header) and number of chunk files on disk.
  std::pair<uint64_t, uint64_t> DiskUsage() const {
    uint64_t bytes = 0, files = 0;
    for (const auto& e : fs::recursive_directory_iterator(opts_.dir)) {
      if (!e.is_regular_file()) continue;
      const std::string name = e.path().filename().string();
      if (name.find(".tmp") != std::string::npos) continue;
      bytes += e.file_size() - kHeader;
      ++files;
    }
    return {bytes, files};
  }

  int CountTempFiles() const {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(opts_.dir)) {
      if (e.path().filename().string().find(".tmp") != std::string::npos) ++n;
    }
    return n;
  }

  static void FlipByte(const fs::path& p, uint64_t offset) {
    std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
    ASSERT_TRUE(f.good());
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }

  fs::path root_;
  ChunkStoreOptions opts_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_F(ChunksTest, RoundTripFullAndShortLastChunk) {
  Open();
  const std::string id = Id(1);
  const std::string c0 = Bytes(id, 0, opts_.chunk_size);
  const std::string c1 = Bytes(id, 1, 100000);  // 1.5 blocks: last short chunk
  EXPECT_FALSE(store_->contains(id, 0));
  ASSERT_TRUE(store_->put(id, 0, c0).ok());
  ASSERT_TRUE(store_->put(id, 1, c1).ok());
  EXPECT_TRUE(store_->contains(id, 0));
  EXPECT_TRUE(store_->contains(id, 1));
  EXPECT_FALSE(store_->contains(id, 2));
  EXPECT_FALSE(store_->contains(Id(2), 0));
  EXPECT_EQ(store_->chunk_size(), opts_.chunk_size);

  EXPECT_EQ(Read(id, 0, 0, opts_.chunk_size), c0);
  EXPECT_EQ(Read(id, 1, 0, 100000), c1);
  // Sub-ranges: inside a block, across one and several block boundaries, aligned blocks, tail.
  struct Range {
    uint32_t idx, off, len;
  };
  for (Range r : std::vector<Range>{{0, 10, 20},
                                    {0, kBlock - 7, 14},
                                    {0, 1, 3 * kBlock},
                                    {0, kBlock, kBlock},
                                    {0, kBlock, 2 * kBlock},
                                    {0, 3 * kBlock, kBlock},
                                    {0, opts_.chunk_size - 1, 1},
                                    {1, kBlock - 1, 2},
                                    {1, kBlock, 100000 - kBlock},
                                    {1, 99999, 1},
                                    {1, 0, kBlock}}) {
    const std::string& src = r.idx == 0 ? c0 : c1;
    EXPECT_EQ(Read(id, r.idx, r.off, r.len), src.substr(r.off, r.len))
        << r.idx << " " << r.off << " " << r.len;
  }
  Status s;
  Read(id, 1, 99999, 2, &s);
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_TRUE(store_->read(id, 1, 100000, 0, nullptr).ok());
  Read(id, 3, 0, 1, &s);
  EXPECT_EQ(s.code(), Code::kNotFound);

  EXPECT_EQ(store_->cached_bytes(id), opts_.chunk_size + 100000u);
  ChunkStoreStats st = store_->stats();
  EXPECT_EQ(st.chunks, 2u);
  EXPECT_EQ(st.used_bytes, opts_.chunk_size + 100000u);
  EXPECT_EQ(st.capacity_bytes, opts_.capacity_bytes);
}

TEST_F(ChunksTest, FileLayoutAndPermissions) {
  Open();
  const std::string id = Id(3, 40);  // a git oid
  ASSERT_TRUE(store_->put(id, 7, Bytes(id, 7, 1000)).ok());
  const fs::path p = ChunkPath(id, 7);
  ASSERT_TRUE(fs::exists(p));
  EXPECT_EQ(fs::file_size(p), kHeader + 1000u);
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(p.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(opts_.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Payload starts page-aligned after the header.
  std::ifstream f(p, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.substr(kHeader), Bytes(id, 7, 1000));
  EXPECT_EQ(all.substr(0, 7), "MFSCHNK");
  EXPECT_EQ(CountTempFiles(), 0);
}

TEST_F(ChunksTest, PutTwiceChangesNothing) {
  Open();
  const std::string id = Id(4);
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, 5000)).ok());
  const auto mtime = fs::last_write_time(ChunkPath(id, 0));
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, 5000)).ok());
  EXPECT_EQ(fs::last_write_time(ChunkPath(id, 0)), mtime);
  EXPECT_EQ(store_->stats().chunks, 1u);
  EXPECT_EQ(store_->stats().used_bytes, 5000u);
}

TEST_F(ChunksTest, RejectsBadArguments) {
  Open();
  const std::string good = Id(5);
  std::string upper = good;
  upper[0] = 'A';
  const std::vector<std::string> bad = {"../x",
                                        "",
                                        upper,
                                        good.substr(0, 63),
                                        good + "0",
                                        Id(5, 39),
                                        std::string(64, 'g'),
                                        "../" + good.substr(3),
                                        good.substr(0, 20) + "/" + good.substr(21)};
  char buf[4];
  std::string hex;
  for (const std::string& id : bad) {
    EXPECT_EQ(store_->put(id, 0, "abcd").code(), Code::kInvalid) << id;
    EXPECT_EQ(store_->read(id, 0, 0, 4, buf).code(), Code::kInvalid) << id;
    EXPECT_EQ(store_->set_pinned(id, true).code(), Code::kInvalid) << id;
    EXPECT_EQ(store_->remove_content(id).code(), Code::kInvalid) << id;
    EXPECT_EQ(store_->content_sha256(id, 4, &hex).code(), Code::kInvalid) << id;
    EXPECT_FALSE(store_->contains(id, 0));
  }
  EXPECT_EQ(store_->put(good, 0, "").code(), Code::kInvalid);
  EXPECT_EQ(store_->put(good, 0, std::string(opts_.chunk_size + 1, 'x')).code(), Code::kInvalid);
  EXPECT_EQ(DiskUsage().second, 0u);
  // Nothing escaped the chunk directory.
  EXPECT_FALSE(fs::exists(root_ / "x"));
  std::unique_ptr<ChunkStore> other;
  ChunkStoreOptions o = opts_;
  o.chunk_size = 0;
  EXPECT_EQ(ChunkStore::Open(*db_, o, false, &other).code(), Code::kInvalid);
}

TEST_F(ChunksTest, PersistsAcrossReopenWithPinsAndLruOrder) {
  opts_.capacity_bytes = 4 * opts_.chunk_size;
  Open();
  const std::string a = Id(10), b = Id(11), p = Id(12);
  const uint32_t cs = opts_.chunk_size;
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, cs)).ok());
  ASSERT_TRUE(store_->put(b, 0, Bytes(b, 0, cs)).ok());
  ASSERT_TRUE(store_->put(p, 0, Bytes(p, 0, 1234)).ok());
  ASSERT_TRUE(store_->set_pinned(p, true).ok());
  Read(a, 0, 0, 10);  // a is now more recent than b
  Close();

  opts_.chunk_size = 1 << 20;  // ignored: the store keeps its own
  Open();
  EXPECT_EQ(store_->chunk_size(), cs);
  EXPECT_TRUE(store_->is_pinned(p));
  EXPECT_FALSE(store_->is_pinned(a));
  EXPECT_EQ(Read(a, 0, 0, cs), Bytes(a, 0, cs));
  EXPECT_EQ(Read(p, 0, 0, 1234), Bytes(p, 0, 1234));
  EXPECT_EQ(store_->stats().pinned_bytes, 1234u);
  // The LRU order survived: b (untouched since put) goes first.
  uint64_t freed = 0;
  ASSERT_TRUE(store_->evict_to(store_->stats().used_bytes - 1, &freed).ok());
  EXPECT_EQ(freed, cs);
  EXPECT_FALSE(store_->contains(b, 0));
  EXPECT_TRUE(store_->contains(a, 0));
}

TEST_F(ChunksTest, LruEvictsLeastRecentlyUsedFirst) {
  const uint32_t cs = opts_.chunk_size;
  opts_.capacity_bytes = 4 * cs;
  Open();
  const std::string a = Id(20), b = Id(21), c = Id(22), d = Id(23), e = Id(24);
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, cs)).ok());
  ASSERT_TRUE(store_->put(a, 1, Bytes(a, 1, cs)).ok());
  ASSERT_TRUE(store_->put(b, 0, Bytes(b, 0, cs)).ok());
  ASSERT_TRUE(store_->put(b, 1, Bytes(b, 1, cs)).ok());
  Read(a, 0, 0, 1);  // touch A, then B
  Read(b, 0, 0, 1);
  // Over capacity: A's untouched sibling goes first, then B's, then A (touched before B).
  ASSERT_TRUE(store_->put(c, 0, Bytes(c, 0, cs)).ok());
  EXPECT_FALSE(store_->contains(a, 1));
  EXPECT_TRUE(store_->contains(b, 1));
  ASSERT_TRUE(store_->put(d, 0, Bytes(d, 0, cs)).ok());
  EXPECT_FALSE(store_->contains(b, 1));
  EXPECT_TRUE(store_->contains(a, 0));
  ASSERT_TRUE(store_->put(e, 0, Bytes(e, 0, cs)).ok());
  EXPECT_FALSE(store_->contains(a, 0));
  EXPECT_TRUE(store_->contains(b, 0));
  EXPECT_TRUE(store_->contains(c, 0));
  EXPECT_TRUE(store_->contains(d, 0));
  EXPECT_TRUE(store_->contains(e, 0));
  ChunkStoreStats st = store_->stats();
  EXPECT_EQ(st.evicted_chunks, 3u);
  EXPECT_EQ(st.evicted_bytes, 3ull * cs);
  EXPECT_EQ(st.used_bytes, 4ull * cs);
  EXPECT_EQ(DiskUsage(), std::make_pair(uint64_t{4ull * cs}, uint64_t{4}));
}

TEST_F(ChunksTest, LowWaterMarkFreesBelowCapacity) {
  const uint32_t cs = opts_.chunk_size;
  opts_.capacity_bytes = 10ull * cs;
  opts_.low_water = 0.5;
  Open();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store_->put(Id(30), i, Bytes(Id(30), i, cs)).ok());
  ASSERT_TRUE(store_->put(Id(31), 0, Bytes(Id(31), 0, cs)).ok());
  // Evicted down to 5 - 1 chunks, then the new one: 5 chunks, the newest ones.
  EXPECT_EQ(store_->stats().chunks, 5u);
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(store_->contains(Id(30), i)) << i;
  for (int i = 6; i < 10; ++i) EXPECT_TRUE(store_->contains(Id(30), i)) << i;
}

TEST_F(ChunksTest, PinnedNeverEvicted) {
  const uint32_t cs = opts_.chunk_size;
  opts_.capacity_bytes = 3ull * cs;
  Open();
  const std::string p = Id(40), q = Id(41);
  ASSERT_TRUE(store_->set_pinned(p, true).ok());  // before any chunk: applies to future chunks
  ASSERT_TRUE(store_->put(p, 0, Bytes(p, 0, cs)).ok());
  ASSERT_TRUE(store_->put(p, 1, Bytes(p, 1, cs)).ok());
  ASSERT_TRUE(store_->put(q, 0, Bytes(q, 0, cs)).ok());
  uint64_t freed = 0;
  ASSERT_TRUE(store_->evict_to(0, &freed).ok());
  EXPECT_EQ(freed, cs);
  EXPECT_TRUE(store_->contains(p, 0));
  EXPECT_TRUE(store_->contains(p, 1));
  EXPECT_FALSE(store_->contains(q, 0));
  EXPECT_EQ(store_->stats().pinned_bytes, 2ull * cs);

  // Fill with pinned data: no room for more, nothing written.
  ASSERT_TRUE(store_->put(p, 2, Bytes(p, 2, cs)).ok());
  Status s = store_->put(q, 5, Bytes(q, 5, cs));
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.to_string();
  EXPECT_FALSE(store_->contains(q, 5));
  EXPECT_FALSE(fs::exists(ChunkPath(q, 5)));
  EXPECT_EQ(DiskUsage(), std::make_pair(uint64_t{3ull * cs}, uint64_t{3}));
  EXPECT_EQ(CountTempFiles(), 0);

  std::vector<ContentUsage> usage;
  ASSERT_TRUE(store_->list_contents(&usage).ok());
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].content_id, p);
  EXPECT_TRUE(usage[0].pinned);
  EXPECT_EQ(usage[0].chunks, 3u);
  EXPECT_EQ(usage[0].cached_bytes, 3ull * cs);

  ASSERT_TRUE(store_->set_pinned(p, false).ok());
  ASSERT_TRUE(store_->evict_to(0, &freed).ok());
  EXPECT_EQ(freed, 3ull * cs);
  EXPECT_EQ(store_->stats().chunks, 0u);
  EXPECT_EQ(DiskUsage().second, 0u);
}

TEST_F(ChunksTest, LeasedChunkNotEvictedWhileRead) {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  const std::string a = Id(50), b = Id(51);
  opts_.on_read_leased = [&](std::string_view id, uint32_t) {
    if (id != a) return;
    std::unique_lock lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  Open();
  const uint32_t cs = opts_.chunk_size;
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, cs)).ok());
  ASSERT_TRUE(store_->put(b, 0, Bytes(b, 0, cs)).ok());
  std::string got(cs, '\0');
  Status read_status;
  std::thread reader([&] { read_status = store_->read(a, 0, 0, cs, got.data()); });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return entered; });
  }
  uint64_t freed = 0;
  ASSERT_TRUE(store_->evict_to(0, &freed).ok());
  EXPECT_EQ(freed, cs);  // only b
  EXPECT_TRUE(store_->contains(a, 0));
  EXPECT_FALSE(store_->contains(b, 0));
  EXPECT_TRUE(fs::exists(ChunkPath(a, 0)));
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  reader.join();
  EXPECT_TRUE(read_status.ok()) << read_status.to_string();
  EXPECT_EQ(got, Bytes(a, 0, cs));
  ASSERT_TRUE(store_->evict_to(0, &freed).ok());  // lease released: now it goes
  EXPECT_EQ(freed, cs);
  EXPECT_FALSE(store_->contains(a, 0));
}

TEST_F(ChunksTest, CapacityNeverExceededOnDisk) {
  opts_.capacity_bytes = 5ull * opts_.chunk_size + 12345;
  opts_.low_water = 0.8;
  Open();
  std::mt19937 rng(7);
  for (int i = 0; i < 60; ++i) {
    const std::string id = Id(60 + i % 7);
    const uint32_t size = 1 + rng() % opts_.chunk_size;
    const auto idx = static_cast<uint32_t>(i);
    Status s = store_->put(id, idx, Bytes(id, idx, size));
    ASSERT_TRUE(s.ok()) << s.to_string();
    if (i % 3 == 0) Read(id, idx, 0, 1);
    auto [bytes, files] = DiskUsage();
    ASSERT_LE(bytes, opts_.capacity_bytes) << i;
    ASSERT_EQ(bytes, store_->stats().used_bytes);
    ASSERT_EQ(files, store_->stats().chunks);
  }
  EXPECT_GT(store_->stats().evicted_chunks, 0u);
  // Lowering the capacity evicts at once.
  store_->set_capacity(opts_.chunk_size);
  EXPECT_LE(DiskUsage().first, opts_.chunk_size);
  EXPECT_EQ(store_->stats().capacity_bytes, opts_.chunk_size);
  // A chunk larger than the whole capacity can never fit.
  store_->set_capacity(100);
  EXPECT_EQ(store_->put(Id(99), 0, Bytes(Id(99), 0, 101)).code(), Code::kNoSpace);
}

TEST_F(ChunksTest, FlippedByteIsCorruptAndDropped) {
  Open();
  const std::string id = Id(70);
  const uint32_t cs = opts_.chunk_size;
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, cs)).ok());
  FlipByte(ChunkPath(id, 0), kHeader + 3 * kBlock + 5);  // in block 3
  // Only the blocks spanned are verified: block 0 still reads.
  EXPECT_EQ(Read(id, 0, 0, kBlock), Bytes(id, 0, cs).substr(0, kBlock));
  Status s;
  Read(id, 0, 3 * kBlock, 10, &s);
  EXPECT_EQ(s.code(), Code::kCorrupt) << s.to_string();
  EXPECT_FALSE(store_->contains(id, 0));
  EXPECT_FALSE(fs::exists(ChunkPath(id, 0)));
  EXPECT_EQ(store_->stats().corrupt_chunks, 1u);
  EXPECT_EQ(store_->stats().used_bytes, 0u);
  Read(id, 0, 0, 10, &s);
  EXPECT_EQ(s.code(), Code::kNotFound);
  // The row is gone too.
  Close();
  Open();
  EXPECT_FALSE(store_->contains(id, 0));
}

TEST_F(ChunksTest, CorruptHeaderIsCorrupt) {
  Open();
  const std::string id = Id(71);
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, 1000)).ok());
  FlipByte(ChunkPath(id, 0), 20);  // the data length field
  Status s;
  Read(id, 0, 0, 10, &s);
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_FALSE(store_->contains(id, 0));
  EXPECT_FALSE(fs::exists(ChunkPath(id, 0)));
}

TEST_F(ChunksTest, TruncatedFileIsCorrupt) {
  Open();
  const std::string id = Id(72);
  const uint32_t cs = opts_.chunk_size;
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, cs)).ok());
  ASSERT_TRUE(store_->put(id, 1, Bytes(id, 1, cs)).ok());
  fs::resize_file(ChunkPath(id, 0), kHeader + 100);
  fs::resize_file(ChunkPath(id, 1), 10);
  Status s;
  Read(id, 0, 0, cs, &s);
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_FALSE(store_->contains(id, 0));
  Read(id, 1, 0, 1, &s);
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_FALSE(store_->contains(id, 1));
  EXPECT_EQ(store_->stats().corrupt_chunks, 2u);
  EXPECT_EQ(DiskUsage().second, 0u);
}

TEST_F(ChunksTest, DeletedFileIsNotFoundAndRowDropped) {
  Open();
  const std::string id = Id(73);
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, 1000)).ok());
  fs::remove(ChunkPath(id, 0));
  Status s;
  Read(id, 0, 0, 10, &s);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_FALSE(store_->contains(id, 0));
  EXPECT_EQ(store_->stats().used_bytes, 0u);
  EXPECT_EQ(store_->stats().corrupt_chunks, 0u);
  Close();
  Open();
  EXPECT_FALSE(store_->contains(id, 0));
  // It can be stored again.
  ASSERT_TRUE(store_->put(id, 0, Bytes(id, 0, 1000)).ok());
  EXPECT_EQ(Read(id, 0, 0, 1000), Bytes(id, 0, 1000));
}

TEST_F(ChunksTest, ContentSha256StreamsChunks) {
  Open();
  const std::string id = Id(80);
  const uint32_t cs = opts_.chunk_size;
  const uint64_t size = 2ull * cs + 777;
  std::string whole;
  for (uint32_t i = 0; i < 3; ++i) {
    const std::string c = Bytes(id, i, i < 2 ? cs : 777);
    ASSERT_TRUE(store_->put(id, i, c).ok());
    whole += c;
  }
  std::string hex;
  ASSERT_TRUE(store_->content_sha256(id, size, &hex).ok());
  EXPECT_EQ(hex, Sha256Hex(whole));
  ASSERT_TRUE(store_->content_sha256(Id(81), 0, &hex).ok());
  EXPECT_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string gap = Id(82);  // chunk 1 missing
  ASSERT_TRUE(store_->put(gap, 0, Bytes(gap, 0, cs)).ok());
  ASSERT_TRUE(store_->put(gap, 2, Bytes(gap, 2, 10)).ok());
  EXPECT_EQ(store_->content_sha256(gap, 2ull * cs + 10, &hex).code(), Code::kNotFound);
  EXPECT_EQ(store_->content_sha256(id, size + 1, &hex).code(), Code::kInvalid);
  FlipByte(ChunkPath(id, 1), kHeader + 100);
  EXPECT_EQ(store_->content_sha256(id, size, &hex).code(), Code::kCorrupt);
  EXPECT_EQ(store_->content_sha256(id, size, &hex).code(), Code::kNotFound);
}

TEST_F(ChunksTest, RemoveContentAndListContents) {
  Open();
  const std::string a = Id(90), b = Id(91, 40);
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, 100)).ok());
  ASSERT_TRUE(store_->put(a, 1, Bytes(a, 1, 50)).ok());
  ASSERT_TRUE(store_->put(b, 0, Bytes(b, 0, 70)).ok());
  ASSERT_TRUE(store_->set_pinned(a, true).ok());
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::vector<ContentUsage> usage;
  ASSERT_TRUE(store_->list_contents(&usage).ok());
  ASSERT_EQ(usage.size(), 2u);
  const ContentUsage& ua = usage[0].content_id == a ? usage[0] : usage[1];
  const ContentUsage& ub = usage[0].content_id == a ? usage[1] : usage[0];
  EXPECT_EQ(ua.cached_bytes, 150u);
  EXPECT_EQ(ua.chunks, 2u);
  EXPECT_TRUE(ua.pinned);
  EXPECT_NEAR(ua.last_access, now, 5);
  EXPECT_EQ(ub.cached_bytes, 70u);
  EXPECT_FALSE(ub.pinned);

  ASSERT_TRUE(store_->remove_content(a).ok());  // pinned chunks too
  EXPECT_FALSE(store_->contains(a, 0));
  EXPECT_FALSE(store_->contains(a, 1));
  EXPECT_EQ(store_->cached_bytes(a), 0u);
  EXPECT_EQ(store_->cached_bytes(b), 70u);
  EXPECT_FALSE(fs::exists(ChunkPath(a, 0).parent_path()));
  EXPECT_EQ(DiskUsage(), std::make_pair(uint64_t{70}, uint64_t{1}));
  EXPECT_TRUE(store_->remove_content(Id(92)).ok());
  Close();
  Open();
  EXPECT_FALSE(store_->contains(a, 0));
  EXPECT_TRUE(store_->contains(b, 0));
  EXPECT_EQ(store_->stats().used_bytes, 70u);
}

TEST_F(ChunksTest, ReadsDoNotWriteSqliteUntilFlush) {
  Open();
  const std::string a = Id(100), b = Id(101);
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, 1000)).ok());
  ASSERT_TRUE(store_->put(b, 0, Bytes(b, 0, 1000)).ok());
  const int changes_before = sqlite3_total_changes(db_->handle());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(Read(i % 2 ? a : b, 0, 0, 100), Bytes(i % 2 ? a : b, 0, 1000).substr(0, 100));
  }
  EXPECT_EQ(sqlite3_total_changes(db_->handle()), changes_before);
  Read(a, 0, 0, 1);  // a is the most recent
  ASSERT_TRUE(store_->flush_access().ok());
  EXPECT_GT(sqlite3_total_changes(db_->handle()), changes_before);
  const int after_flush = sqlite3_total_changes(db_->handle());
  ASSERT_TRUE(store_->flush_access().ok());  // nothing dirty: no write
  EXPECT_EQ(sqlite3_total_changes(db_->handle()), after_flush);
  // The flushed order survives a reopen (destructor flush not needed here).
  Close();
  Open();
  ASSERT_TRUE(store_->evict_to(1000, nullptr).ok());
  EXPECT_TRUE(store_->contains(a, 0));
  EXPECT_FALSE(store_->contains(b, 0));
}

TEST_F(ChunksTest, BackgroundFlusherPersistsAccess) {
  opts_.flush_interval = std::chrono::milliseconds(20);
  Open();
  const std::string a = Id(102);
  ASSERT_TRUE(store_->put(a, 0, Bytes(a, 0, 10)).ok());
  const int before = sqlite3_total_changes(db_->handle());
  Read(a, 0, 0, 1);
  for (int i = 0; i < 200 && sqlite3_total_changes(db_->handle()) == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(sqlite3_total_changes(db_->handle()), before);
}

TEST_F(ChunksTest, DiskFullEvictsAndRetriesOnce) {
  std::atomic<int> failures{0};
  opts_.inject_write_errno = [&]() -> int {
    if (failures > 0) {
      --failures;
      return ENOSPC;
    }
    return 0;
  };
  Open();
  for (uint32_t i = 0; i < 10; ++i)
    ASSERT_TRUE(store_->put(Id(110), i, Bytes(Id(110), i, 1000)).ok());
  failures = 1;  // the first write fails, the retry after eviction succeeds
  ASSERT_TRUE(store_->put(Id(111), 0, Bytes(Id(111), 0, 1000)).ok());
  EXPECT_GT(store_->stats().evicted_chunks, 0u);
  EXPECT_TRUE(store_->contains(Id(111), 0));
  failures = 2;  // fails again after the retry: kNoSpace, nothing written
  Status s = store_->put(Id(112), 0, Bytes(Id(112), 0, 1000));
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.to_string();
  EXPECT_FALSE(store_->contains(Id(112), 0));
  EXPECT_FALSE(fs::exists(ChunkPath(Id(112), 0)));
  EXPECT_EQ(CountTempFiles(), 0);
  failures = 1;
  opts_.inject_write_errno = nullptr;
  EXPECT_EQ(store_->stats().used_bytes, DiskUsage().first);
}

TEST_F(ChunksTest, RecoverReconcilesRowsAndFiles) {
  Open();
  const std::string kept = Id(120), orphan = Id(121), rowless = Id(122), junk = Id(123);
  ASSERT_TRUE(store_->put(kept, 0, Bytes(kept, 0, 3000)).ok());
  ASSERT_TRUE(store_->put(orphan, 0, Bytes(orphan, 0, 2000)).ok());
  ASSERT_TRUE(store_->put(rowless, 0, Bytes(rowless, 0, 1000)).ok());
  Read(kept, 0, 0, 1);
  Close();
  // Simulate a crash: a row without its file, a file without its row, a temp file left
  // behind, a file with a bad header and a file whose header names another chunk.
  fs::remove(ChunkPath(rowless, 0));
  {
    std::unique_ptr<Db> db;
    ASSERT_TRUE(Db::Open((root_ / "index.sqlite").string(), &db).ok());
    std::lock_guard lock(db->mutex());
    ASSERT_TRUE(db->exec("DELETE FROM chunks WHERE content_id='" + orphan + "'").ok());
  }
  const fs::path tmp = ChunkPath(kept, 0).parent_path() / "1.tmp.999.0";
  { std::ofstream(tmp) << "partial"; }
  fs::create_directories(ChunkPath(junk, 0).parent_path());
  { std::ofstream(ChunkPath(junk, 0)) << std::string(5000, 'j'); }
  fs::copy_file(ChunkPath(kept, 0), ChunkPath(kept, 5));

  Open(/*recover=*/true);
  EXPECT_TRUE(store_->contains(kept, 0));
  EXPECT_TRUE(store_->contains(orphan, 0));  // adopted
  EXPECT_FALSE(store_->contains(rowless, 0));
  EXPECT_FALSE(store_->contains(junk, 0));
  EXPECT_FALSE(store_->contains(kept, 5));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(ChunkPath(junk, 0)));
  EXPECT_FALSE(fs::exists(ChunkPath(kept, 5)));
  EXPECT_EQ(Read(orphan, 0, 0, 2000), Bytes(orphan, 0, 2000));
  EXPECT_EQ(Read(kept, 0, 0, 3000), Bytes(kept, 0, 3000));
  EXPECT_EQ(store_->stats().used_bytes, 5000u);
  EXPECT_EQ(DiskUsage(), std::make_pair(uint64_t{5000}, uint64_t{2}));
  Close();

  // The repair is persistent and the adopted chunk is the oldest.
  Open();
  EXPECT_TRUE(store_->contains(orphan, 0));
  EXPECT_FALSE(store_->contains(rowless, 0));
  ASSERT_TRUE(store_->evict_to(3000, nullptr).ok());
  EXPECT_FALSE(store_->contains(orphan, 0));
  EXPECT_TRUE(store_->contains(kept, 0));
}

TEST_F(ChunksTest, ReopenOverCapacityEvicts) {
  Open();
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_TRUE(store_->put(Id(130), i, Bytes(Id(130), i, 1000)).ok());
  Close();
  opts_.capacity_bytes = 3000;
  Open(/*recover=*/true);
  EXPECT_LE(store_->stats().used_bytes, 3000u);
  EXPECT_LE(DiskUsage().first, 3000u);
  EXPECT_TRUE(store_->contains(Id(130), 7));  // the newest stay
  EXPECT_FALSE(store_->contains(Id(130), 0));
}

TEST_F(ChunksTest, ConcurrentPutReadEvict) {
  const uint32_t cs = 64 * 1024 + 1000;  // two blocks
  opts_.chunk_size = cs;
  opts_.capacity_bytes = 10ull * cs;
  opts_.low_water = 0.8;
  opts_.flush_interval = std::chrono::milliseconds(5);
  Open();
  std::atomic<int> oks{0}, misses{0}, nospace{0}, bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::string buf(cs, '\0');
      for (int i = 0; i < 400; ++i) {
        const std::string id = Id(140 + static_cast<int>(rng() % 4));
        const auto idx = static_cast<uint32_t>(rng() % 6);
        const uint32_t size = idx == 5 ? 777 : cs;
        const std::string want = Bytes(id, idx, size);
        const int op = static_cast<int>(rng() % 10);
        if (op < 4) {
          Status s = store_->put(id, idx, want);
          if (s.code() == Code::kNoSpace) {
            ++nospace;
          } else if (!s.ok()) {
            ++bad;
            ADD_FAILURE() << s.to_string();
          }
        } else if (op < 9) {
          const uint32_t off = static_cast<uint32_t>(rng() % size);
          const uint32_t len = static_cast<uint32_t>(rng() % (size - off)) + 1;
          Status s = store_->read(id, idx, off, len, buf.data());
          if (s.ok()) {
            ++oks;
            if (std::string_view(buf.data(), len) != std::string_view(want).substr(off, len)) {
              ++bad;
              ADD_FAILURE() << "wrong bytes";
            }
          } else if (s.code() == Code::kNotFound) {
            ++misses;
          } else {
            ++bad;
            ADD_FAILURE() << s.to_string();
          }
        } else if (i % 3 == 0) {
          EXPECT_TRUE(store_->evict_to(rng() % (8ull * cs), nullptr).ok());
        } else {
          store_->contains(id, idx);
          store_->stats();
          std::vector<ContentUsage> u;
          store_->list_contents(&u);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, 0);
  EXPECT_GT(oks, 0);
  auto [bytes, files] = DiskUsage();
  EXPECT_LE(bytes, opts_.capacity_bytes);
  EXPECT_EQ(bytes, store_->stats().used_bytes);
  EXPECT_EQ(files, store_->stats().chunks);
  EXPECT_EQ(CountTempFiles(), 0);
  EXPECT_EQ(store_->stats().corrupt_chunks, 0u);
  // Every present chunk reads back intact.
  for (int c = 0; c < 4; ++c) {
    for (uint32_t idx = 0; idx < 6; ++idx) {
      if (!store_->contains(Id(140 + c), idx)) continue;
      const uint32_t size = idx == 5 ? 777 : cs;
      EXPECT_EQ(Read(Id(140 + c), idx, 0, size), Bytes(Id(140 + c), idx, size));
    }
  }
}

}  // namespace
}  // namespace modelfs::index
