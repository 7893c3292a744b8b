// The inode table: numbers from keys, nodes alive only while the kernel holds them.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "fs/inodes.h"

namespace modelfs::fs {
namespace {

Node FileNode(const std::string& path) {
  Node n;
  n.kind = NodeKind::kFile;
  n.repo_id = "org/repo";
  n.rel_path = path;
  return n;
}

TEST(InodeTableTest, NodeLivesWhileTheKernelHoldsItAndComesBackWithItsNumber) {
  InodeTable t;
  const size_t fixed = t.size();
  auto a = t.lookup("f:a", FileNode("a"));
  auto again = t.lookup("f:a", FileNode("ignored"));
  EXPECT_EQ(a, again) << "a second lookup of the key is the same node";
  EXPECT_EQ(again->rel_path, "a");
  EXPECT_EQ(t.size(), fixed + 1);
  const uint64_t ino = a->ino;
  EXPECT_GE(ino, 16u);

  t.forget(ino, 1);
  EXPECT_NE(t.get(ino), nullptr) << "one of two references dropped: still alive";
  t.forget(ino, 1);
  EXPECT_EQ(t.get(ino), nullptr) << "no references left: gone";
  EXPECT_EQ(t.size(), fixed);

  auto back = t.lookup("f:a", FileNode("a"));
  EXPECT_EQ(back->ino, ino) << "a forgotten name looked up again keeps its number";
  EXPECT_NE(back, a);

  t.forget(ino, 5);  // more than it has: clamps, never wraps
  EXPECT_EQ(t.get(ino), nullptr);
  t.forget(ino, 1);  // unknown numbers are ignored
  EXPECT_EQ(t.size(), fixed);
}

TEST(InodeTableTest, PeekNumbersAsLookupWouldWithoutKeepingANode) {
  InodeTable t;
  const size_t fixed = t.size();
  std::set<uint64_t> numbers;
  for (int i = 0; i < 1000; ++i) {
    std::string key = "f:" + std::to_string(i);
    auto p = t.peek(key, FileNode(key));
    numbers.insert(p->ino);
    EXPECT_EQ(p->rel_path, key);
  }
  EXPECT_EQ(numbers.size(), 1000u);
  EXPECT_EQ(t.size(), fixed) << "a listing creates no nodes";
  auto p = t.peek("f:7", FileNode("f:7"));
  auto l = t.lookup("f:7", FileNode("f:7"));
  EXPECT_EQ(p->ino, l->ino);
  EXPECT_EQ(t.peek("f:7", FileNode("other")), l) << "peek returns the live node";
}

TEST(InodeTableTest, TheRootIsNeverForgotten) {
  InodeTable t;
  t.forget(kRootIno, 100);
  ASSERT_NE(t.get(kRootIno), nullptr);
  EXPECT_EQ(t.get(kRootIno)->kind, NodeKind::kRoot);
}

uint64_t SameHash(const std::string& /*key*/) {
  return 1000;
}

TEST(InodeTableTest, CollidingKeysGetDistinctNumbersThatStayPut) {
  InodeTable t(SameHash);
  auto a = t.lookup("f:a", FileNode("a"));
  auto b = t.lookup("f:b", FileNode("b"));
  auto c = t.lookup("f:c", FileNode("c"));
  EXPECT_EQ(a->ino, 1000u);
  EXPECT_NE(a->ino, b->ino);
  EXPECT_NE(b->ino, c->ino);
  EXPECT_NE(a->ino, c->ino);
  // The key at the hash's own number goes: the displaced ones must still be found, not given a
  // second node at the freed number.
  t.forget(a->ino, 1);
  EXPECT_EQ(t.lookup("f:b", FileNode("b")), b);
  EXPECT_EQ(t.peek("f:c", FileNode("c")), c);
  EXPECT_EQ(t.get(b->ino)->rel_path, "b");
  auto a2 = t.lookup("f:a", FileNode("a"));
  EXPECT_EQ(a2->ino, 1000u);
  t.forget(b->ino, 2);
  EXPECT_EQ(t.get(b->ino), nullptr);
  EXPECT_EQ(t.lookup("f:c", FileNode("c")), c);
}

TEST(InodeTableTest, FilesWithContentSeesOnlyLiveNodes) {
  InodeTable t;
  Node n = FileNode("w.bin");
  n.file.sha256 = std::string(64, 'a');
  auto live = t.lookup("f:w", n);
  t.peek("f:listed", n);
  auto found = t.files_with_content(n.file.content_id());
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0], live->ino);
}

}  // namespace
}  // namespace modelfs::fs
