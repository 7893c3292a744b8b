// fs/base: the one Status, its names and families, text helpers, system calls as values.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "fs/base/status.h"
#include "fs/base/sys.h"
#include "fs/base/text.h"
#include "fs/fuse/mount.h"

namespace modelfs {
namespace {

TEST(Status, ToStringAndNames) {
  EXPECT_EQ(Status().to_string(), "ok");
  EXPECT_EQ(Status(Code::kGated, "x is gated", 403).to_string(), "gated: x is gated (HTTP 403)");
  EXPECT_EQ(Status(Code::kTimeout, "stall").to_string(), "timeout: stall");
  std::set<std::string> names;
  for (int c = 0; c <= static_cast<int>(Code::kCancelled); ++c) {
    const Code code = static_cast<Code>(c);
    const std::string name = CodeName(code);
    EXPECT_NE(name, "unknown") << c;
    EXPECT_TRUE(names.insert(name).second) << "two codes are called " << name;
    EXPECT_EQ(CodeFromName(name), code) << name;  // the control protocol sends names
  }
  EXPECT_EQ(CodeFromName("no such code"), Code::kIo);
}

TEST(Status, Families) {
  for (Code c :
       {Code::kNotFound, Code::kRepoNotFound, Code::kRevisionNotFound, Code::kEntryNotFound}) {
    EXPECT_TRUE(Status(c, "").not_found()) << CodeName(c);
    EXPECT_FALSE(IsUpstream(c));
  }
  EXPECT_TRUE(Status(Code::kGated, "").no_access());
  EXPECT_TRUE(Status(Code::kNoAccess, "").no_access());
  EXPECT_FALSE(Status(Code::kIo, "").not_found());
  for (Code c :
       {Code::kNetwork, Code::kTimeout, Code::kProtocol, Code::kRateLimited, Code::kOffline}) {
    EXPECT_TRUE(IsUpstream(c)) << CodeName(c);
  }
  EXPECT_FALSE(IsUpstream(Code::kIo));
}

TEST(Text, CaseTrimHex) {
  EXPECT_EQ(AsciiLower("Content-Range"), "content-range");
  EXPECT_TRUE(EqualsIgnoreCase("ETag", "etag"));
  EXPECT_FALSE(EqualsIgnoreCase("ETag", "etags"));
  EXPECT_EQ(TrimSpace(" \t value \r\n"), "value");
  EXPECT_EQ(TrimSpace(""), "");
  const unsigned char bytes[] = {0x00, 0x9f, 0xff};
  EXPECT_EQ(HexEncode(bytes, 3), "009fff");
  EXPECT_EQ(HexDigit('F'), 15);
  EXPECT_EQ(HexDigit('g'), -1);
  EXPECT_TRUE(IsHex("09afAF"));
  EXPECT_FALSE(IsLowerHex("09afAF"));
  EXPECT_TRUE(IsLowerHex("09af"));
}

TEST(Sys, ErrnoBecomesAStatus) {
  EXPECT_EQ(ErrnoStatus("x", ENOSPC).code(), Code::kNoSpace);
  EXPECT_EQ(ErrnoStatus("x", EDQUOT).code(), Code::kNoSpace);
  EXPECT_EQ(ErrnoStatus("x", ENOENT).code(), Code::kNotFound);
  EXPECT_EQ(ErrnoStatus("x", EACCES).code(), Code::kNoAccess);
  EXPECT_EQ(ErrnoStatus("x", EIO).code(), Code::kIo);
  UniqueFd fd;
  EXPECT_EQ(OpenFile("/nonexistent/modelfs", O_RDONLY, 0, &fd).code(), Code::kNotFound);

  const auto dir =
      std::filesystem::temp_directory_path() / ("modelfs-base-test-" + std::to_string(::getpid()));
  ASSERT_TRUE(MakeDirs((dir / "a" / "b").string(), 0700).ok());
  const std::string path = (dir / "a" / "b" / "f").string();
  ASSERT_TRUE(OpenFile(path, O_RDWR | O_CREAT, 0600, &fd).ok());
  ASSERT_TRUE(PwriteAll(fd.get(), "hello", 5, 10).ok());
  char buf[32];
  size_t got = 0;
  ASSERT_TRUE(PreadAll(fd.get(), buf, sizeof buf, 8, &got).ok());
  EXPECT_EQ(got, 7u);  // short at end of file
  EXPECT_EQ(std::string(buf + 2, 5), "hello");
  std::filesystem::remove_all(dir);
}

TEST(MountInfo, FindsTheTopmostMountAndDecodesEscapes) {
  const std::string info =
      "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
      "40 22 0:52 / /mnt/models rw,nosuid - fuse.modelfs modelfs ro\n"
      "41 40 0:53 / /mnt/models rw,nosuid - fuse.modelfs modelfs ro\n"
      "42 22 0:54 / /mnt/with\\040space\\134x rw - fuse.modelfs modelfs ro\n"
      "garbage line\n";
  EXPECT_EQ(fs::MountDevice(info, "/mnt/models"), "0:53");
  EXPECT_EQ(fs::MountDevice(info, "/mnt/with space\\x"), "0:54");
  EXPECT_EQ(fs::MountDevice(info, "/mnt/other"), "");
  EXPECT_EQ(fs::MountDevice("1 2 0:9 / /mnt/end\\04", "/mnt/end\\04"), "0:9");  // cut escape
}

}  // namespace
}  // namespace modelfs
