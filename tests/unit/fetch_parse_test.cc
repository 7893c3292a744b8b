// Unit tests of the pure Hub parsers (fetch/hub_parse.h), including hostile input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fetch/hub_parse.h"

namespace modelfs::fetch {
namespace {

const std::string kOid(40, 'a');
const std::string kSha(64, 'b');

std::vector<TreeEntry> Parse(const std::string& json, size_t* skipped, Status* status = nullptr) {
  std::vector<TreeEntry> out;
  *skipped = 0;
  Status s = ParseTreePage(json, &out, skipped);
  if (status != nullptr) *status = s;
  EXPECT_TRUE(s.ok()) << s.to_string();
  return out;
}

std::string FileEntry(const std::string& path, const std::string& size = "10") {
  return R"({"type":"file","oid":")" + kOid + R"(","size":)" + size + R"(,"path":")" + path +
         R"("})";
}

TEST(ParseTreePage, FilesDirectoriesAndLfs) {
  size_t skipped = 0;
  auto e = Parse(R"([
    {"type":"directory","oid":")" +
                     kOid + R"(","size":0,"path":"sub"},
    {"type":"file","oid":")" +
                     kOid + R"(","size":12,"path":"sub/a.txt"},
    {"type":"file","oid":")" +
                     kOid + R"(","size":134,"path":"model.bin",
     "lfs":{"oid":")" +
                     kSha + R"(","size":5000000000,"pointerSize":134},
     "xetHash":")" + kSha +
                     R"("}
  ])",
                 &skipped);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(skipped, 0u);
  EXPECT_TRUE(e[0].is_dir);
  EXPECT_EQ(e[0].path, "sub");
  EXPECT_FALSE(e[1].is_dir);
  EXPECT_EQ(e[1].size, 12u);
  EXPECT_EQ(e[1].oid, kOid);
  EXPECT_TRUE(e[1].lfs_sha256.empty());
  EXPECT_EQ(e[2].size, 5000000000u);  // lfs.size wins over the pointer size
  EXPECT_EQ(e[2].lfs_sha256, kSha);
}

TEST(ParseTreePage, EmptyPage) {
  size_t skipped = 0;
  EXPECT_TRUE(Parse("[]", &skipped).empty());
  EXPECT_EQ(skipped, 0u);
}

TEST(ParseTreePage, AppendsAndAccumulatesSkipped) {
  std::vector<TreeEntry> out;
  size_t skipped = 0;
  ASSERT_TRUE(
      ParseTreePage("[" + FileEntry("a") + "," + FileEntry("../x") + "]", &out, &skipped).ok());
  ASSERT_TRUE(
      ParseTreePage("[" + FileEntry("b") + "," + FileEntry("/abs") + "]", &out, &skipped).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].path, "b");
  EXPECT_EQ(skipped, 2u);
  ASSERT_TRUE(ParseTreePage("[" + FileEntry("c") + "]", &out, nullptr).ok());  // null counter
  EXPECT_EQ(out.size(), 3u);
}

TEST(ParseTreePage, HostilePathsAreSkipped) {
  const std::vector<std::string> bad = {
      "..",  "../etc/passwd", "a/../../b", "/etc/passwd", "a//b",    "a/",          "",      ".",
      "./a", "a/./b",         "a\\u0000b", "a\\nb",       "\\u007f", "a/\\u0001/b", "a\\tb",
  };
  for (const auto& p : bad) {
    size_t skipped = 0;
    // Appended, not "[" + std::string: GCC 12 at -O3 reports a false -Wrestrict for
    // operator+(const char*, std::string&&).
    auto e = Parse(std::string("[").append(FileEntry(p)).append("]"), &skipped);
    EXPECT_TRUE(e.empty()) << p;
    EXPECT_EQ(skipped, 1u) << p;
  }
  // Overlong paths and parts.
  size_t skipped = 0;
  EXPECT_TRUE(Parse("[" + FileEntry(std::string(256, 'x')) + "]", &skipped).empty());
  std::string long_path;
  for (int i = 0; i < 20; ++i) long_path += std::string(250, 'y') + "/";
  long_path += "z";
  EXPECT_TRUE(Parse("[" + FileEntry(long_path) + "]", &skipped).empty());
}

TEST(ParseTreePage, NonAsciiAndOddButSafeNamesKept) {
  size_t skipped = 0;
  auto e = Parse("[" + FileEntry("dir with spaces/naïve café ✓.txt") + "," + FileEntry("...") +
                     "," + FileEntry("..a") + "," + FileEntry(".hidden") + "]",
                 &skipped);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].path, "dir with spaces/naïve café ✓.txt");
  EXPECT_EQ(skipped, 0u);
}

TEST(ParseTreePage, BadSizesAndFieldsAreSkipped) {
  const std::vector<std::string> bad = {
      FileEntry("a", "-1"),
      FileEntry("a", "1125899906842625"),  // 2^50 + 1
      FileEntry("a", "1e30"),
      FileEntry("a", "18446744073709551616"),  // 2^64: not an integer for the parser
      FileEntry("a", "1.5"),
      FileEntry("a", "\"10\""),
      FileEntry("a", "null"),
      R"({"type":"file","oid":")" + kOid + R"(","path":"nosize"})",
      R"({"type":"file","size":1,"path":"nooid"})",
      R"({"type":"file","oid":"xyz","size":1,"path":"badoid"})",
      R"({"type":"file","oid":")" + kOid + R"(","size":1})",
      R"({"type":"file","oid":")" + kOid + R"(","size":1,"path":7})",
      R"({"type":"symlink","oid":")" + kOid + R"(","size":1,"path":"s"})",
      R"({"oid":")" + kOid + R"(","size":1,"path":"notype"})",
      R"({"type":"file","oid":")" + kOid +
          R"(","size":1,"path":"l","lfs":{"oid":"short","size":1}})",
      R"({"type":"file","oid":")" + kOid + R"(","size":1,"path":"l","lfs":{"oid":")" + kSha +
          R"(","size":-5}})",
      R"({"type":"file","oid":")" + kOid + R"(","size":1,"path":"l","lfs":{"size":5}})",
      R"({"type":"file","oid":")" + kOid + R"(","size":1,"path":"l","lfs":"yes"})",
      "42",
      "null",
      "[]",
      "\"file\"",
  };
  for (const auto& entry : bad) {
    size_t skipped = 0;
    auto e = Parse("[" + entry + "]", &skipped);
    EXPECT_TRUE(e.empty()) << entry;
    EXPECT_EQ(skipped, 1u) << entry;
  }
  size_t skipped = 0;
  auto e = Parse("[" + FileEntry("max", "1125899906842624") + "]", &skipped);  // exactly 2^50
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].size, uint64_t{1} << 50);
}

TEST(ParseTreePage, DuplicatesAreKeptForTheCallerToResolve) {
  size_t skipped = 0;
  auto e = Parse("[" + FileEntry("a") + "," + FileEntry("a") + "]", &skipped);
  EXPECT_EQ(e.size(), 2u);  // list_tree drops duplicates across pages
}

TEST(ParseTreePage, MalformedJsonIsProtocolError) {
  const std::vector<std::string> bad = {"",
                                        "[",
                                        "[{\"type\":\"file\"",
                                        "{}",
                                        "null",
                                        "42",
                                        "[1,]",
                                        "\"abc\"",
                                        std::string("[\0]", 3),
                                        "[\"\xff\xfe\"]",
                                        "[] trailing"};
  for (const auto& j : bad) {
    std::vector<TreeEntry> out;
    size_t skipped = 0;
    Status s = ParseTreePage(j, &out, &skipped);
    EXPECT_EQ(s.code(), Code::kProtocol) << j;
    EXPECT_TRUE(out.empty());
  }
}

TEST(ParseTreePage, DeepNestingDoesNotCrash) {
  std::string deep(100000, '[');
  std::vector<TreeEntry> out;
  size_t skipped = 0;
  EXPECT_FALSE(ParseTreePage(deep, &out, &skipped).ok());
}

TEST(ParseRepoInfo, Valid) {
  RepoInfo info;
  Status s = ParseRepoInfo(R"({"id":"org/name","sha":")" + std::string(40, 'A') +
                               R"(","private":true,"gated":"manual",
      "lastModified":"2024-01-01T00:00:00.000Z","siblings":[{"rfilename":"x"}]})",
                           &info);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(info.id, "org/name");
  EXPECT_EQ(info.sha, std::string(40, 'a'));  // normalised to lowercase
  EXPECT_TRUE(info.is_private);
  EXPECT_EQ(info.gated, "manual");
  EXPECT_EQ(info.last_modified, "2024-01-01T00:00:00.000Z");
}

TEST(ParseRepoInfo, GatedVariants) {
  auto gated = [](const std::string& v) {
    RepoInfo info;
    EXPECT_TRUE(
        ParseRepoInfo(R"({"id":"o/n","sha":")" + kOid + R"(","gated":)" + v + "}", &info).ok());
    return info.gated;
  };
  EXPECT_EQ(gated("false"), "");
  EXPECT_EQ(gated("null"), "");
  EXPECT_EQ(gated("\"auto\""), "auto");
  EXPECT_EQ(gated("\"manual\""), "manual");
  EXPECT_EQ(gated("true"), "manual");
  EXPECT_EQ(gated("\"weird\""), "manual");
  EXPECT_EQ(gated("7"), "");
}

TEST(ParseRepoInfo, Invalid) {
  const std::vector<std::string> bad = {
      "",
      "{",
      "[]",
      R"({"sha":")" + kOid + R"("})",
      R"({"id":"o/n"})",
      R"({"id":"o/n","sha":"abc"})",
      R"({"id":"o/n","sha":")" + std::string(40, 'g') + R"("})",
      R"({"id":7,"sha":")" + kOid + R"("})",
      R"({"id":"../x","sha":")" + kOid + R"("})",
      R"({"id":"o/n","sha":7})",
  };
  for (const auto& j : bad) {
    RepoInfo info;
    info.id = "untouched";
    EXPECT_EQ(ParseRepoInfo(j, &info).code(), Code::kProtocol) << j;
    EXPECT_EQ(info.id, "untouched");
  }
}

TEST(ParseRepoInfo, IgnoresBadOptionalFields) {
  RepoInfo info;
  ASSERT_TRUE(ParseRepoInfo(R"({"id":"o/n","sha":")" + kOid +
                                R"(","private":"yes","lastModified":"a\u0001b"})",
                            &info)
                  .ok());
  EXPECT_FALSE(info.is_private);
  EXPECT_TRUE(info.last_modified.empty());
}

TEST(ParseLinkNext, Variants) {
  EXPECT_EQ(ParseLinkNext(R"(<https://h/api?cursor=a>; rel="next")"), "https://h/api?cursor=a");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/p?c=1>; rel=next)"), "https://h/p?c=1");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/p?c=1>;rel="NEXT")"), "https://h/p?c=1");
  EXPECT_EQ(ParseLinkNext(R"(</api/x?cursor=b>; rel="next")"), "/api/x?cursor=b");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/1>; rel="prev", <https://h/2>; rel="next")"),
            "https://h/2");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/a,b;c>; rel="next")"), "https://h/a,b;c");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; title="a, b"; rel="next")"), "https://h/x");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; rel="prev next")"), "https://h/x");
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; rel="last")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; rel="nextpage")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(""), std::nullopt);
  EXPECT_EQ(ParseLinkNext("garbage"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<>; rel="next")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x; rel="next")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/a b>; rel="next")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(std::string("<https://h/\0>; rel=\"next\"", 26)), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; rel=")"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>)"), std::nullopt);
  EXPECT_EQ(ParseLinkNext(R"(<https://h/x>; rel="next"; rel="prev")"), "https://h/x");
}

TEST(ParseContentRange, Variants) {
  auto cr = ParseContentRange("bytes 0-9/100");
  ASSERT_TRUE(cr);
  EXPECT_EQ(cr->first, 0u);
  EXPECT_EQ(cr->last, 9u);
  EXPECT_EQ(cr->total, 100u);
  cr = ParseContentRange("  Bytes 99-99/100 ");
  ASSERT_TRUE(cr);
  EXPECT_EQ(cr->first, 99u);
  cr = ParseContentRange("bytes 0-1125899906842623/1125899906842624");
  ASSERT_TRUE(cr);
  EXPECT_EQ(cr->total, uint64_t{1} << 50);

  for (const char* bad :
       {"", "bytes", "bytes */100", "bytes 0-9/*", "bytes 9-0/100", "bytes 0-100/100",
        "bytes -1-9/100", "bytes 0-9", "bytes 0-9/", "items 0-9/100", "bytes 0--9/100",
        "bytes a-9/100", "bytes 0-9/100x", "bytes 0 - 9/100", "bytes 0-99999999999999999999/1",
        "bytes 0-9/99999999999999999999", "bytes +0-9/100", "bytes0-9/100"}) {
    EXPECT_FALSE(ParseContentRange(bad)) << bad;
  }
}

TEST(NormalizeEtag, Variants) {
  EXPECT_EQ(NormalizeEtag(R"("abc")"), "abc");
  EXPECT_EQ(NormalizeEtag(R"(W/"abc")"), "abc");
  EXPECT_EQ(NormalizeEtag("abc"), "abc");
  EXPECT_EQ(NormalizeEtag(" \"abc\" "), "abc");
  EXPECT_EQ(NormalizeEtag("W/abc"), "abc");
  EXPECT_EQ(NormalizeEtag(""), "");
  EXPECT_EQ(NormalizeEtag("\""), "\"");
  EXPECT_EQ(NormalizeEtag("\"\""), "");
  EXPECT_EQ(NormalizeEtag("W/"), "");
}

TEST(Encode, Revision) {
  EXPECT_EQ(EncodeRevision("main"), "main");
  EXPECT_EQ(EncodeRevision("refs/pr/1"), "refs%2Fpr%2F1");
  EXPECT_EQ(EncodeRevision("feature/x"), "feature%2Fx");
  EXPECT_EQ(EncodeRevision("v1.0-rc_2~x"), "v1.0-rc_2~x");
  EXPECT_EQ(EncodeRevision("a b+c%?#&="), "a%20b%2Bc%25%3F%23%26%3D");
  EXPECT_EQ(EncodeRevision("é"), "%C3%A9");
  EXPECT_EQ(EncodeRevision(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(EncodeRevision(""), "");
}

TEST(Encode, Path) {
  EXPECT_EQ(EncodePath("a/b/c.txt"), "a/b/c.txt");
  EXPECT_EQ(EncodePath("dir with spaces/naïve café ✓.txt"),
            "dir%20with%20spaces/na%C3%AFve%20caf%C3%A9%20%E2%9C%93.txt");
  EXPECT_EQ(EncodePath("a?b#c%d"), "a%3Fb%23c%25d");
  EXPECT_EQ(EncodePath("x+y=z;w,v"), "x%2By%3Dz%3Bw%2Cv");
}

// Found by tests/fuzz/fuzz_paths: libcurl removes "." and ".." segments from a URL, so a
// revision ".." (which `modelfs info org/name@..` passes on) asked for /api/models/org/name/,
// the default branch. Such segments are encoded; dots elsewhere stay as they are.
TEST(Encode, DotSegments) {
  EXPECT_EQ(EncodeRevision(".."), "%2E%2E");
  EXPECT_EQ(EncodeRevision("."), "%2E");
  EXPECT_EQ(EncodeRevision("..."), "...");
  EXPECT_EQ(EncodeRevision("../x"), "..%2Fx");  // one segment once '/' is encoded
  EXPECT_EQ(EncodePath("a/./b/../../etc/passwd"), "a/%2E/b/%2E%2E/%2E%2E/etc/passwd");
  EXPECT_EQ(EncodePath(".."), "%2E%2E");
  EXPECT_EQ(EncodePath("a/.."), "a/%2E%2E");
  EXPECT_EQ(EncodePath("./a"), "%2E/a");
  EXPECT_EQ(EncodePath(".a/..b/c../.hidden"), ".a/..b/c../.hidden");
}

TEST(IsSafeRelativePath, Cases) {
  for (const char* good :
       {"a", "a/b", "a.b", "...", "..a", "a..", ".a/b", "naïve café ✓.txt", "a b/c d", "x\\y"}) {
    EXPECT_TRUE(IsSafeRelativePath(good)) << good;
  }
  for (const char* bad :
       {"", "/", "/a", "a/", "a//b", ".", "..", "a/..", "../a", "a/./b", "a\nb", "a\x7f", "\t"}) {
    EXPECT_FALSE(IsSafeRelativePath(bad)) << bad;
  }
  EXPECT_FALSE(IsSafeRelativePath(std::string("a\0b", 3)));
  EXPECT_TRUE(IsSafeRelativePath(std::string(255, 'x')));
  EXPECT_FALSE(IsSafeRelativePath(std::string(256, 'x')));
  std::string p;
  while (p.size() + 200 <= 4096) p += std::string(199, 'x') + "/";
  p += std::string(4096 - p.size(), 'y');
  EXPECT_EQ(p.size(), 4096u);
  EXPECT_TRUE(IsSafeRelativePath(p));
  EXPECT_FALSE(IsSafeRelativePath(p + "y"));
}

TEST(IsValidRepoId, Cases) {
  for (const char* good :
       {"org/name", "modelfs-test/tiny-safetensors", "a/b", "A_1/b.c-d", "o/n.", "o/n_"}) {
    EXPECT_TRUE(IsValidRepoId(good)) << good;
  }
  for (const char* bad : {"", "gpt2", "/", "org/", "/name", "org/name/x", ".org/name", "org/.name",
                          "-org/name", "org/-name", "org/na..me", "org/na me", "org/na%20me",
                          "org/naïve", "org\\name", "org/name\n"}) {
    EXPECT_FALSE(IsValidRepoId(bad)) << bad;
  }
  EXPECT_TRUE(IsValidRepoId(std::string(96, 'a') + "/" + std::string(96, 'b')));
  EXPECT_FALSE(IsValidRepoId(std::string(97, 'a') + "/b"));
  EXPECT_FALSE(IsValidRepoId("a/" + std::string(97, 'b')));
}

TEST(ParseRetryAfterSeconds, Cases) {
  EXPECT_EQ(ParseRetryAfterSeconds("5", ""), 5);
  EXPECT_EQ(ParseRetryAfterSeconds(" 7 ", ""), 7);
  EXPECT_EQ(ParseRetryAfterSeconds("", R"("api";r=0;t=55)"), 55);
  EXPECT_EQ(ParseRetryAfterSeconds("", R"("resolvers";r=0; t=3)"), 3);
  EXPECT_EQ(ParseRetryAfterSeconds("2", R"("api";r=0;t=9)"), 9);  // the longer wait wins
  EXPECT_EQ(ParseRetryAfterSeconds("0", ""), 0);
  EXPECT_EQ(ParseRetryAfterSeconds("", ""), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("Wed, 21 Oct 2015 07:28:00 GMT", ""), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("-5", ""), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("1.5", ""), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("", R"("api";r=0;t=x)"), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("", R"("api";r=0;t=)"), std::nullopt);
  EXPECT_EQ(ParseRetryAfterSeconds("", R"("api";r=5)"), std::nullopt);
  // Absurd waits are capped at one day.
  EXPECT_EQ(ParseRetryAfterSeconds("99999999999999999", ""), 86400);
  EXPECT_EQ(ParseRetryAfterSeconds("999999999999999999999999", ""), std::nullopt);
}

}  // namespace
}  // namespace modelfs::fetch
