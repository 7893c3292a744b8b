#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "index/cache.h"

namespace modelfs::index {
namespace {

namespace fs = std::filesystem;

std::string Id(char c) {
  return std::string(64, c);
}

std::string Bytes(char seed, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 31 + (i >> 8));
  return s;
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "index_cache_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    opts_.dir = root_ / "cache";
    opts_.capacity_bytes = 16ull << 20;
    opts_.chunk_size = 128 * 1024;
  }
  void TearDown() override {
    cache_.reset();
    fs::remove_all(root_);
  }
  void Open() {
    cache_.reset();
    Status s = Cache::Open(opts_, &cache_);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  fs::path ChunkPath(const std::string& id, uint32_t idx) const {
    return opts_.dir / "chunks" / id.substr(0, 2) / id / std::to_string(idx);
  }
  std::string Read(const std::string& id, uint32_t idx, uint32_t len) {
    std::string out(len, '\0');
    Status s = cache_->chunks().read(id, idx, 0, len, out.data());
    // Appended: GCC 12 at -O3 reports a false -Wrestrict for "<" + std::string.
    return s.ok() ? out : std::string("<").append(s.to_string()).append(">");
  }

  fs::path root_;
  CacheOptions opts_;
  std::unique_ptr<Cache> cache_;
};

TEST_F(CacheTest, CreatesLayoutAndSentinel) {
  Open();
  EXPECT_EQ(cache_->dir(), opts_.dir);
  EXPECT_TRUE(cache_->recovered_from().empty());
  struct stat st {};
  ASSERT_EQ(::stat(opts_.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(fs::exists(opts_.dir / "lock"));
  EXPECT_TRUE(fs::exists(opts_.dir / "dirty"));
  EXPECT_TRUE(fs::exists(opts_.dir / "index.sqlite"));
  EXPECT_TRUE(fs::is_directory(opts_.dir / "chunks"));
  EXPECT_EQ(cache_->chunks().chunk_size(), opts_.chunk_size);
  EXPECT_EQ(cache_->chunks().stats().capacity_bytes, opts_.capacity_bytes);
  cache_.reset();
  EXPECT_FALSE(fs::exists(opts_.dir / "dirty"));  // clean exit
}

TEST_F(CacheTest, SecondOpenIsBusy) {
  Open();
  std::unique_ptr<Cache> second;
  Status s = Cache::Open(opts_, &second);
  EXPECT_EQ(s.code(), Code::kBusy);
  EXPECT_NE(s.message().find(opts_.dir.string()), std::string::npos) << s.message();
  EXPECT_EQ(second, nullptr);
  EXPECT_TRUE(fs::exists(opts_.dir / "dirty"));  // the owner's sentinel is untouched
  cache_.reset();
  ASSERT_TRUE(Cache::Open(opts_, &second).ok());  // released on close
  EXPECT_TRUE(second->recovered_from().empty());
}

TEST_F(CacheTest, PersistsMetaChunksAndPins) {
  Open();
  const std::string a = Id('a'), b = Id('b');
  ASSERT_TRUE(cache_->meta().put_repo({"org/m", false, "", "t", 1}).ok());
  ASSERT_TRUE(cache_->meta().put_ref({"org/m", "", std::string(40, 'c'), 2}).ok());
  ASSERT_TRUE(cache_->chunks().put(a, 0, Bytes('a', opts_.chunk_size)).ok());
  ASSERT_TRUE(cache_->chunks().put(b, 0, Bytes('b', 999)).ok());
  ASSERT_TRUE(cache_->chunks().set_pinned(b, true).ok());
  cache_.reset();

  opts_.chunk_size = 1 << 20;  // an existing cache keeps its own
  Open();
  EXPECT_TRUE(cache_->recovered_from().empty());
  EXPECT_EQ(cache_->chunks().chunk_size(), 128u * 1024);
  RepoRecord r;
  EXPECT_TRUE(cache_->meta().get_repo("org/m", &r).ok());
  RefRecord ref;
  ASSERT_TRUE(cache_->meta().get_ref("org/m", "", &ref).ok());
  EXPECT_EQ(ref.commit, std::string(40, 'c'));
  EXPECT_EQ(Read(a, 0, 128 * 1024), Bytes('a', 128 * 1024));
  EXPECT_EQ(Read(b, 0, 999), Bytes('b', 999));
  EXPECT_TRUE(cache_->chunks().is_pinned(b));
  EXPECT_EQ(cache_->chunks().stats().pinned_bytes, 999u);
}

TEST_F(CacheTest, UncleanShutdownIsReconciled) {
  Open();
  const std::string kept = Id('1'), orphan = Id('2'), lost = Id('3');
  ASSERT_TRUE(cache_->chunks().put(kept, 0, Bytes('k', 5000)).ok());
  ASSERT_TRUE(cache_->chunks().put(orphan, 0, Bytes('o', 6000)).ok());
  ASSERT_TRUE(cache_->chunks().put(lost, 0, Bytes('l', 7000)).ok());
  // Make `orphan` a file without a row: save its file, remove the content, put the file back.
  const fs::path saved = root_ / "saved";
  fs::copy_file(ChunkPath(orphan, 0), saved);
  ASSERT_TRUE(cache_->chunks().remove_content(orphan).ok());
  cache_.reset();
  // Now the state a crash leaves behind.
  fs::create_directories(ChunkPath(orphan, 0).parent_path());
  fs::copy_file(saved, ChunkPath(orphan, 0));
  fs::remove(ChunkPath(lost, 0));
  const fs::path tmp = ChunkPath(kept, 0).parent_path() / "3.tmp.4242.7";
  { std::ofstream(tmp) << "half a chunk"; }
  { std::ofstream(opts_.dir / "dirty") << "4242\n"; }

  Open();
  EXPECT_NE(cache_->recovered_from().find("unclean"), std::string::npos)
      << cache_->recovered_from();
  ChunkStore& chunks = cache_->chunks();
  EXPECT_TRUE(chunks.contains(kept, 0));
  EXPECT_TRUE(chunks.contains(orphan, 0));
  EXPECT_FALSE(chunks.contains(lost, 0));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(Read(orphan, 0, 6000), Bytes('o', 6000));
  EXPECT_EQ(Read(kept, 0, 5000), Bytes('k', 5000));
  EXPECT_EQ(chunks.stats().used_bytes, 11000u);
  EXPECT_EQ(chunks.stats().chunks, 2u);
  cache_.reset();
  EXPECT_FALSE(fs::exists(opts_.dir / "dirty"));
  Open();
  EXPECT_TRUE(cache_->recovered_from().empty());
  EXPECT_TRUE(cache_->chunks().contains(orphan, 0));
}

TEST_F(CacheTest, CorruptIndexIsMovedAsideAndChunksAdopted) {
  Open();
  const std::string a = Id('a'), b = Id('b');
  ASSERT_TRUE(cache_->meta().put_repo({"org/m", false, "", "t", 1}).ok());
  ASSERT_TRUE(cache_->chunks().put(a, 0, Bytes('a', opts_.chunk_size)).ok());
  ASSERT_TRUE(cache_->chunks().put(a, 1, Bytes('A', 10)).ok());
  ASSERT_TRUE(cache_->chunks().put(b, 0, Bytes('b', 4321)).ok());
  cache_.reset();
  for (const char* suffix : {"-wal", "-shm"})
    fs::remove(opts_.dir / ("index.sqlite" + std::string(suffix)));
  {
    std::ofstream f(opts_.dir / "index.sqlite", std::ios::binary | std::ios::trunc);
    f << std::string(10000, '\x17');
  }

  Open();
  EXPECT_NE(cache_->recovered_from().find("corrupt index"), std::string::npos)
      << cache_->recovered_from();
  int aside = 0;
  for (const auto& e : fs::directory_iterator(opts_.dir)) {
    if (e.path().filename().string().starts_with("index.sqlite.corrupt-")) ++aside;
  }
  EXPECT_EQ(aside, 1);
  // Chunks adopted from their headers, metadata gone (it is re-fetchable).
  EXPECT_EQ(Read(a, 0, opts_.chunk_size), Bytes('a', opts_.chunk_size));
  EXPECT_EQ(Read(a, 1, 10), Bytes('A', 10));
  EXPECT_EQ(Read(b, 0, 4321), Bytes('b', 4321));
  EXPECT_EQ(cache_->chunks().stats().used_bytes, opts_.chunk_size + 10u + 4321u);
  RepoRecord r;
  EXPECT_EQ(cache_->meta().get_repo("org/m", &r).code(), Code::kNotFound);
  ASSERT_TRUE(cache_->meta().put_repo({"org/m", false, "", "t", 1}).ok());  // usable again
  cache_.reset();
  Open();
  EXPECT_TRUE(cache_->recovered_from().empty());
  EXPECT_TRUE(cache_->chunks().contains(b, 0));
}

TEST_F(CacheTest, SmallerCapacityOnReopenEvicts) {
  Open();
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(cache_->chunks().put(Id('c'), i, Bytes('c', opts_.chunk_size)).ok());
  }
  cache_.reset();
  opts_.capacity_bytes = 3ull * opts_.chunk_size;
  Open();
  EXPECT_LE(cache_->chunks().stats().used_bytes, opts_.capacity_bytes);
  EXPECT_TRUE(cache_->chunks().contains(Id('c'), 9));
}

// The index deleted (or emptied) while the cache is closed cleanly: no dirty sentinel says to
// reconcile, yet the chunk files must not become invisible (on disk for ever, outside the
// limit). The next open adopts them into a new index; the one after is a plain clean open.
class CacheLostIndexTest : public CacheTest, public ::testing::WithParamInterface<bool> {};

TEST_P(CacheLostIndexTest, ChunksAreAdoptedIntoANewIndex) {
  const bool emptied = GetParam();
  Open();
  const std::string a = Id('a'), b = Id('b');
  ASSERT_TRUE(cache_->chunks().put(a, 0, Bytes('a', opts_.chunk_size)).ok());
  ASSERT_TRUE(cache_->chunks().put(a, 1, Bytes('A', 77)).ok());
  ASSERT_TRUE(cache_->chunks().put(b, 0, Bytes('b', 4321)).ok());
  const uint64_t used = cache_->chunks().stats().used_bytes;
  ASSERT_EQ(used, opts_.chunk_size + 77u + 4321u);
  cache_.reset();
  ASSERT_FALSE(fs::exists(opts_.dir / "dirty"));  // a clean close: only the index tells
  const fs::path db = opts_.dir / "index.sqlite";
  if (emptied) {
    fs::resize_file(db, 0);
  } else {
    ASSERT_TRUE(fs::remove(db));
  }

  Open();
  const std::string& why = cache_->recovered_from();
  EXPECT_NE(why.find(emptied ? "empty index" : "missing index"), std::string::npos) << why;
  ChunkStore& chunks = cache_->chunks();
  EXPECT_TRUE(chunks.contains(a, 0));
  EXPECT_TRUE(chunks.contains(a, 1));
  EXPECT_TRUE(chunks.contains(b, 0));
  EXPECT_EQ(Read(a, 0, opts_.chunk_size), Bytes('a', opts_.chunk_size));
  EXPECT_EQ(Read(a, 1, 77), Bytes('A', 77));
  EXPECT_EQ(Read(b, 0, 4321), Bytes('b', 4321));
  EXPECT_EQ(chunks.stats().used_bytes, used);  // no byte lost, none counted twice
  EXPECT_EQ(chunks.stats().chunks, 3u);
  EXPECT_EQ(chunks.cached_bytes(a), opts_.chunk_size + 77u);
  EXPECT_GT(fs::file_size(db), 0u);
  // Adopted chunks count against the limit: gc can free them.
  uint64_t freed = 0;
  ASSERT_TRUE(chunks.evict_to(4321, &freed).ok());
  EXPECT_EQ(freed, opts_.chunk_size + 77u);
  EXPECT_FALSE(fs::exists(ChunkPath(a, 0)));

  // The rebuilt index was written: the next open is clean and still has what is left.
  cache_.reset();
  Open();
  EXPECT_TRUE(cache_->recovered_from().empty()) << cache_->recovered_from();
  EXPECT_TRUE(cache_->chunks().contains(b, 0));
  EXPECT_EQ(Read(b, 0, 4321), Bytes('b', 4321));
  EXPECT_EQ(cache_->chunks().stats().used_bytes, 4321u);
}

INSTANTIATE_TEST_SUITE_P(DeletedOrEmptied, CacheLostIndexTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Emptied" : "Deleted";
                         });

// A new cache (no index, no chunks) is not reported as recovered.
TEST_F(CacheTest, NoIndexAndNoChunksIsAPlainNewCache) {
  Open();
  cache_.reset();
  fs::remove(opts_.dir / "index.sqlite");
  Open();
  EXPECT_TRUE(cache_->recovered_from().empty()) << cache_->recovered_from();
  EXPECT_EQ(cache_->chunks().stats().chunks, 0u);
}

}  // namespace
}  // namespace modelfs::index
