// Model header parsing (fs/model_info.h) over synthetic files built here, the real fixtures
// when MODELFS_FIXTURES is set, and hostile inputs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fs/formats/model_info.h"

namespace modelfs::fs {
namespace {

namespace stdfs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Readers

// Serves ranges of an in-memory file (optionally shorter than the size the parser is given,
// to simulate a file that shrank, or zero_fill to stand for a huge file), records the calls and
// flags reads past the claimed size.
class MemReader {
 public:
  explicit MemReader(std::string data, uint64_t claimed_size = UINT64_MAX, bool zero_fill = false)
      : data_(std::move(data)),
        size_(claimed_size == UINT64_MAX ? data_.size() : claimed_size),
        zero_fill_(zero_fill) {}

  uint64_t size() const { return size_; }
  const std::vector<std::pair<uint64_t, uint64_t>>& calls() const { return calls_; }

  RangeReader reader() {
    return [this](uint64_t offset, uint64_t length, std::string* out, std::string*) {
      calls_.emplace_back(offset, length);
      EXPECT_LE(offset + length, size_) << "read past the end of the file";
      EXPECT_LE(length, uint64_t{64} << 20) << "unreasonably large read";
      out->clear();
      if (offset < data_.size()) out->assign(data_, offset, length);
      if (zero_fill_ && offset + length <= size_) out->resize(length, '\0');
      return true;
    };
  }

 private:
  std::string data_;
  uint64_t size_;
  bool zero_fill_;
  std::vector<std::pair<uint64_t, uint64_t>> calls_;
};

// Serves ranges of a file on disk with pread.
class FileReader {
 public:
  explicit FileReader(const std::string& path) : f_(std::fopen(path.c_str(), "rb")) {}
  ~FileReader() {
    if (f_ != nullptr) std::fclose(f_);
  }
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  bool ok() const { return f_ != nullptr; }
  uint64_t size() const {
    struct stat st {};
    return fstat(fileno(f_), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }

  RangeReader reader() {
    return [this](uint64_t offset, uint64_t length, std::string* out, std::string* error) {
      out->resize(length);
      uint64_t got = 0;
      while (got < length) {
        ssize_t n =
            pread(fileno(f_), out->data() + got, length - got, static_cast<off_t>(offset + got));
        if (n < 0) {
          *error = "pread failed";
          return false;
        }
        if (n == 0) break;
        got += static_cast<uint64_t>(n);
      }
      out->resize(got);
      return true;
    };
  }

 private:
  FILE* f_;
};

bool Parse(ModelFormat format, MemReader& mem, ModelInfo* info, std::string* error) {
  return ReadModelInfo(format, mem.size(), mem.reader(), info, error);
}

// ---------------------------------------------------------------------------------------------
// GGUF writer

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutStr(std::string* s, const std::string& v) {
  PutU64(s, v.size());
  s->append(v);
}

enum : uint32_t { kU8 = 0, kI32 = 5, kF32v = 6, kBool = 7, kStr = 8, kArr = 9, kU64 = 10 };
enum : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, I32 = 26, BF16 = 30 };

uint64_t TensorBytes(uint32_t type, uint64_t elems) {
  switch (type) {
    case F32:
    case I32:
      return elems * 4;
    case F16:
    case BF16:
      return elems * 2;
    case Q8_0:
      return elems / 32 * 34;
    case Q4_K:
      return elems / 256 * 144;
    default:
      return 0;
  }
}

class GgufBuilder {
 public:
  GgufBuilder& str(const std::string& key, const std::string& v) {
    return kv(key, kStr, [&](std::string* s) { PutStr(s, v); });
  }
  GgufBuilder& u32(const std::string& key, uint32_t v) {
    return kv(key, 4, [&](std::string* s) { PutU32(s, v); });
  }
  GgufBuilder& str_array(const std::string& key, const std::vector<std::string>& v) {
    return kv(key, kArr, [&](std::string* s) {
      PutU32(s, kStr);
      PutU64(s, v.size());
      for (const auto& e : v) PutStr(s, e);
    });
  }
  GgufBuilder& scalar_array(const std::string& key, uint32_t elem_type, uint64_t n,
                            uint64_t elem_size) {
    return kv(key, kArr, [&](std::string* s) {
      PutU32(s, elem_type);
      PutU64(s, n);
      s->append(n * elem_size, '\x01');
    });
  }
  // A KV whose value bytes (after the type) are given verbatim.
  GgufBuilder& raw(const std::string& key, uint32_t type, const std::string& value) {
    return kv(key, type, [&](std::string* s) { s->append(value); });
  }
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type) {
    tensors_.push_back({name, std::move(dims), type});
    return *this;
  }

  uint64_t header_bytes = 0;  // set by build(): aligned start of the data section

  std::string build(uint64_t alignment = 32, uint32_t version = 3) {
    std::string s = "GGUF";
    PutU32(&s, version);
    PutU64(&s, tensors_.size());
    PutU64(&s, n_kv_);
    s += kvs_;
    uint64_t offset = 0;
    std::vector<uint64_t> sizes;
    for (const auto& t : tensors_) {
      PutStr(&s, t.name);
      PutU32(&s, static_cast<uint32_t>(t.dims.size()));
      uint64_t elems = 1;
      for (uint64_t d : t.dims) {
        PutU64(&s, d);
        elems *= d;
      }
      PutU32(&s, t.type);
      offset = (offset + alignment - 1) / alignment * alignment;
      PutU64(&s, offset);
      sizes.push_back(TensorBytes(t.type, elems));
      offset += sizes.back();
    }
    header_bytes = (s.size() + alignment - 1) / alignment * alignment;
    s.resize(header_bytes + offset, '\0');
    return s;
  }

 private:
  template <typename F>
  GgufBuilder& kv(const std::string& key, uint32_t type, F value) {
    PutStr(&kvs_, key);
    PutU32(&kvs_, type);
    value(&kvs_);
    ++n_kv_;
    return *this;
  }

  struct T {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
  };
  std::string kvs_;
  uint64_t n_kv_ = 0;
  std::vector<T> tensors_;
};

// A small GGUF with a string array, a scalar array and several tensor types.
std::string SyntheticGguf(uint64_t* header_bytes = nullptr) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 100; ++i) tokens.push_back(std::string(static_cast<size_t>(i % 7), 'a'));
  GgufBuilder b;
  b.u32("synth.context_length", 4096)  // before general.architecture on purpose
      .str("general.architecture", "synth")
      .str("general.name", "Synthetic Test Model")
      .str("general.description", std::string(3000, 'd'))
      .u32("general.file_type", 15)
      .u32("general.alignment", 32)
      .u32("other.context_length", 77)
      .str_array("tokenizer.ggml.tokens", tokens)
      .scalar_array("tokenizer.ggml.scores", kF32v, 100, 4)
      .raw("some.flag", kBool, std::string(1, '\1'))
      .raw("some.u64", kU64, std::string(8, '\2'))
      .tensor("token_embd.weight", {256, 100}, Q4_K)
      .tensor("output_norm.weight", {256}, F32)
      .tensor("blk.0.attn_q.weight", {64, 64}, Q8_0)
      .tensor("blk.0.ffn.weight", {64, 3, 2}, F16)
      .tensor("blk.0.bias", {16}, BF16)
      .tensor("exotic", {10}, 99);
  std::string s = b.build();
  if (header_bytes != nullptr) *header_bytes = b.header_bytes;
  return s;
}

// The shape of tests/fixtures/make_gguf.py's tiny llama (n_embd 64, 2 layers, n_ff 172,
// n_ctx 256) around a 32000-token vocabulary, with zero weights.
std::string LlamaLikeGguf() {
  const uint64_t n_vocab = 32000, n_embd = 64, n_ff = 172;
  std::vector<std::string> tokens;
  std::mt19937 rng(7);
  for (uint64_t i = 0; i < n_vocab; ++i) tokens.push_back(std::string(3 + rng() % 12, 'x'));
  GgufBuilder b;
  b.str("general.architecture", "llama")
      .str("general.type", "model")
      .str("general.name", "modelfs tiny llama (random weights, seed 0)")
      .u32("general.file_type", 0)
      .u32("general.alignment", 32)
      .u32("llama.vocab_size", n_vocab)
      .u32("llama.context_length", 256)
      .u32("llama.embedding_length", n_embd)
      .str_array("tokenizer.ggml.tokens", tokens)
      .scalar_array("tokenizer.ggml.scores", kF32v, n_vocab, 4)
      .scalar_array("tokenizer.ggml.token_type", kI32, n_vocab, 4)
      .u32("tokenizer.ggml.bos_token_id", 1);
  b.tensor("token_embd.weight", {n_embd, n_vocab}, F32)
      .tensor("output_norm.weight", {n_embd}, F32)
      .tensor("output.weight", {n_embd, n_vocab}, F32);
  for (int i = 0; i < 2; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    b.tensor(p + "attn_norm.weight", {n_embd}, F32);
    for (const char* w : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      b.tensor(p + w + ".weight", {n_embd, n_embd}, F32);
    }
    b.tensor(p + "ffn_norm.weight", {n_embd}, F32)
        .tensor(p + "ffn_gate.weight", {n_embd, n_ff}, F32)
        .tensor(p + "ffn_up.weight", {n_embd, n_ff}, F32)
        .tensor(p + "ffn_down.weight", {n_ff, n_embd}, F32);
  }
  return b.build();
}

// ---------------------------------------------------------------------------------------------
// safetensors writer

std::string Safetensors(const nlohmann::json& header, uint64_t data_size) {
  const std::string h = header.dump();
  std::string s;
  PutU64(&s, h.size());
  s += h;
  s.append(data_size, '\0');
  return s;
}

std::string SyntheticSafetensors() {
  nlohmann::json h;
  h["__metadata__"] = {{"format", "pt"}, {"architecture", "MyArch"}};
  h["a"] = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  h["b"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {24, 32}}};
  h["c"] = {{"dtype", "I64"}, {"shape", {1}}, {"data_offsets", {32, 40}}};
  h["d"] = {{"dtype", "F16"}, {"shape", nlohmann::json::array()}, {"data_offsets", {40, 42}}};
  return Safetensors(h, 42);
}

// ---------------------------------------------------------------------------------------------
// Fixtures

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

stdfs::path SourceDir() {
  if (std::string s = Env("MODELFS_SOURCE_DIR"); !s.empty()) return s;
  return stdfs::path(__FILE__).parent_path().parent_path().parent_path();
}

// The tiny llama fixture: $MODELFS_FIXTURES/tiny-llama.gguf, else generated into a temp dir
// with make_gguf.py when the llama SPM vocab is at hand. Empty if neither.
std::string FixtureGgufPath() {
  if (std::string dir = Env("MODELFS_FIXTURES"); !dir.empty()) {
    stdfs::path p = stdfs::path(dir) / "tiny-llama.gguf";
    if (stdfs::exists(p)) return p;
  }
  std::vector<stdfs::path> vocabs;
  if (std::string v = Env("MODELFS_VOCAB"); !v.empty()) vocabs.emplace_back(v);
  vocabs.push_back(SourceDir() / "build/fixtures/ggml-vocab-llama-spm.gguf");
  for (const auto& vocab : vocabs) {
    if (!stdfs::exists(vocab)) continue;
    const stdfs::path out =
        stdfs::temp_directory_path() / ("modelfs-mi-" + std::to_string(getpid()) + ".gguf");
    const std::string cmd = "python3 '" + (SourceDir() / "tests/fixtures/make_gguf.py").string() +
                            "' --vocab '" + vocab.string() + "' --out '" + out.string() + "'";
    if (std::system(cmd.c_str()) == 0 && stdfs::exists(out)) return out;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Tests

TEST(ModelInfoTest, DetectFormat) {
  EXPECT_EQ(DetectFormat("a/b/model-Q4_K_M.gguf"), ModelFormat::kGguf);
  EXPECT_EQ(DetectFormat("MODEL.GGUF"), ModelFormat::kGguf);
  EXPECT_EQ(DetectFormat("model-00001-of-00002.safetensors"), ModelFormat::kSafetensors);
  EXPECT_EQ(DetectFormat("model.safetensors.index.json"), ModelFormat::kUnknown);
  EXPECT_EQ(DetectFormat(".gguf"), ModelFormat::kUnknown);
  EXPECT_EQ(DetectFormat("pytorch_model.bin"), ModelFormat::kUnknown);
  EXPECT_EQ(DetectFormat(""), ModelFormat::kUnknown);
}

TEST(ModelInfoTest, TypeNames) {
  EXPECT_EQ(GgmlTypeName(0), "F32");
  EXPECT_EQ(GgmlTypeName(8), "Q8_0");
  EXPECT_EQ(GgmlTypeName(12), "Q4_K");
  EXPECT_EQ(GgmlTypeName(23), "IQ4_XS");
  EXPECT_EQ(GgmlTypeName(30), "BF16");
  EXPECT_EQ(GgmlTypeName(35), "TQ2_0");
  EXPECT_EQ(GgmlTypeName(4), "type4");
  EXPECT_EQ(GgmlTypeName(36), "type36");
  EXPECT_EQ(GgufFileTypeName(0), "ALL_F32");
  EXPECT_EQ(GgufFileTypeName(1), "MOSTLY_F16");
  EXPECT_EQ(GgufFileTypeName(7), "MOSTLY_Q8_0");
  EXPECT_EQ(GgufFileTypeName(15), "MOSTLY_Q4_K_M");
  EXPECT_EQ(GgufFileTypeName(32), "MOSTLY_BF16");
  EXPECT_EQ(GgufFileTypeName(1000), "ftype1000");
}

TEST(ModelInfoTest, SyntheticGguf) {
  uint64_t header_bytes = 0;
  MemReader mem(SyntheticGguf(&header_bytes));
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
  EXPECT_EQ(info.format, "gguf");
  EXPECT_EQ(info.architecture, "synth");
  EXPECT_EQ(info.name, "Synthetic Test Model");
  EXPECT_EQ(info.context_length, 4096u);
  EXPECT_EQ(info.file_type, "MOSTLY_Q4_K_M");
  EXPECT_EQ(info.tensors, 6u);
  EXPECT_EQ(info.parameters, 25600u + 256 + 4096 + 384 + 16 + 10);
  EXPECT_EQ(info.header_bytes, header_bytes);
  ASSERT_EQ(info.dtypes.size(), 6u);
  const std::vector<std::pair<std::string, uint64_t>> want = {
      {"Q4_K", 25600}, {"Q8_0", 4096}, {"F16", 384}, {"F32", 256}, {"BF16", 16}, {"type99", 10}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(info.dtypes[i].dtype, want[i].first);
    EXPECT_EQ(info.dtypes[i].parameters, want[i].second);
    EXPECT_EQ(info.dtypes[i].count, 1u);
  }
  EXPECT_EQ(info.reads, 1);
  EXPECT_EQ(info.reads, static_cast<int>(mem.calls().size()));
  EXPECT_EQ(info.bytes_read, mem.size());  // smaller than the first read
  EXPECT_EQ(info.runtimes.front(), "llama.cpp");
}

TEST(ModelInfoTest, GgufVersion2AndNoOptionalKeys) {
  GgufBuilder b;
  b.tensor("w", {32, 2}, Q8_0);
  MemReader mem(b.build(32, 2));
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
  EXPECT_EQ(info.architecture, "");
  EXPECT_EQ(info.file_type, "");
  EXPECT_EQ(info.context_length, 0u);
  EXPECT_EQ(info.parameters, 64u);
}

// Tiny llama: the real fixture if present (or generated), else the same shapes built here.
TEST(ModelInfoTest, FixtureGguf) {
  const std::string path = FixtureGgufPath();
  ModelInfo info;
  std::string error;
  uint64_t size = 0;
  if (!path.empty()) {
    FileReader file(path);
    ASSERT_TRUE(file.ok()) << path;
    size = file.size();
    ASSERT_TRUE(ReadModelInfo(ModelFormat::kGguf, size, file.reader(), &info, &error)) << error;
    if (path.find("modelfs-mi-") != std::string::npos) stdfs::remove(path);
    EXPECT_EQ(info.header_bytes, 725376u) << "data offset printed by make_gguf.py --dump";
  } else {
    std::cout << "no tiny-llama.gguf fixture nor vocab: using a synthetic equivalent\n";
    MemReader mem(LlamaLikeGguf());
    size = mem.size();
    ASSERT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
  }
  // make_gguf.py: token_embd and output [64, n_vocab], output_norm [64]; per layer 2 norms [64],
  // q/k/v/o [64, 64], gate/up [64, 172], down [172, 64]; n_vocab 32000 (pinned vocab).
  const uint64_t n_vocab = 32000;
  const uint64_t per_layer = 2 * 64 + 4 * 64 * 64 + 3 * 64 * 172;
  const uint64_t params = 2 * 64 * n_vocab + 64 + 2 * per_layer;
  EXPECT_EQ(params, 4195136u);
  EXPECT_EQ(info.format, "gguf");
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.name, "modelfs tiny llama (random weights, seed 0)");
  EXPECT_EQ(info.parameters, params);
  EXPECT_EQ(info.tensors, 21u);
  EXPECT_EQ(info.context_length, 256u);
  EXPECT_EQ(info.file_type, "ALL_F32");
  ASSERT_EQ(info.dtypes.size(), 1u);
  EXPECT_EQ(info.dtypes[0].dtype, "F32");
  EXPECT_EQ(info.dtypes[0].count, 21u);
  EXPECT_EQ(info.dtypes[0].parameters, params);
  EXPECT_LE(info.reads, 6);
  EXPECT_LT(info.bytes_read, size / 10);
  EXPECT_LE(info.bytes_read, info.header_bytes + (64u << 10));
  std::cout << "tiny llama: " << size << " bytes, header " << info.header_bytes << ", "
            << info.reads << " reads, " << info.bytes_read << " bytes read\n";
}

// A vocabulary of a few MB (like Qwen's 150k tokens and merges) takes a few reads.
TEST(ModelInfoTest, LargeVocabularyTakesFewReads) {
  std::vector<std::string> tokens, merges;
  std::mt19937 rng(11);
  for (int i = 0; i < 150000; ++i) tokens.push_back(std::string(2 + rng() % 20, 't'));
  for (int i = 0; i < 150000; ++i) merges.push_back(std::string(3 + rng() % 16, 'm'));
  GgufBuilder b;
  b.str("general.architecture", "qwen2")
      .str_array("tokenizer.ggml.tokens", tokens)
      .scalar_array("tokenizer.ggml.token_type", kI32, 150000, 4)
      .str_array("tokenizer.ggml.merges", merges)
      .u32("qwen2.context_length", 32768)
      .tensor("w", {1024, 1024}, F16);
  MemReader mem(b.build());
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
  EXPECT_EQ(info.context_length, 32768u);
  EXPECT_EQ(info.parameters, 1024u * 1024);
  EXPECT_LE(info.reads, 6);
  EXPECT_LE(info.bytes_read, b.header_bytes + (256u << 10));
  std::cout << "large vocab: header " << b.header_bytes << ", " << info.reads << " reads, "
            << info.bytes_read << " bytes read\n";
}

TEST(ModelInfoTest, SyntheticSafetensors) {
  MemReader mem(SyntheticSafetensors());
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(Parse(ModelFormat::kSafetensors, mem, &info, &error)) << error;
  EXPECT_EQ(info.format, "safetensors");
  EXPECT_EQ(info.architecture, "MyArch");
  EXPECT_EQ(info.tensors, 4u);
  EXPECT_EQ(info.parameters, 12u);
  EXPECT_EQ(info.header_bytes, mem.size() - 42);
  ASSERT_EQ(info.dtypes.size(), 4u);
  EXPECT_EQ(info.dtypes[0].dtype, "F32");
  EXPECT_EQ(info.dtypes[0].parameters, 6u);
  EXPECT_EQ(info.dtypes[1].dtype, "BF16");
  EXPECT_EQ(info.dtypes[1].parameters, 4u);
  EXPECT_EQ(info.reads, 1);
  EXPECT_EQ(info.runtimes.front(), "transformers");
}

// A header bigger than the first read is completed with exactly one more read.
TEST(ModelInfoTest, SafetensorsLargeHeaderTwoExactReads) {
  nlohmann::json h;
  uint64_t off = 0;
  for (int i = 0; i < 3000; ++i) {
    h["model.layers." + std::to_string(i) + ".weight"] = {
        {"dtype", "F16"}, {"shape", {4, 2}}, {"data_offsets", {off, off + 16}}};
    off += 16;
  }
  MemReader mem(Safetensors(h, off + (100u << 20)));  // 100 MiB of padding after the data
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(Parse(ModelFormat::kSafetensors, mem, &info, &error)) << error;
  EXPECT_EQ(info.tensors, 3000u);
  EXPECT_EQ(info.parameters, 3000u * 8);
  EXPECT_EQ(info.reads, 2);
  EXPECT_EQ(info.bytes_read, std::max<uint64_t>(info.header_bytes, 64u << 10));
}

TEST(ModelInfoTest, FixtureSafetensors) {
  const std::string dir = Env("MODELFS_FIXTURES");
  if (dir.empty()) {
    GTEST_SKIP() << "MODELFS_FIXTURES is not set (ctest sets it after tests/prepare.sh ran); "
                    "run through ctest to check the fixture safetensors";
  }
  ASSERT_TRUE(stdfs::exists(stdfs::path(dir) / "manifest.json"))
      << "MODELFS_FIXTURES=" << dir << " has no manifest.json";
  std::ifstream in(stdfs::path(dir) / "manifest.json");
  nlohmann::json m = nlohmann::json::parse(in);
  const auto& repo = m["repos"]["modelfs-test/tiny-safetensors"];
  const std::string sha = repo["branches"]["main"];
  const uint64_t want = repo["expect"]["parameters"];
  const std::string path =
      (stdfs::path(dir) / "repos/modelfs-test/tiny-safetensors" / sha / "model.safetensors");
  FileReader file(path);
  ASSERT_TRUE(file.ok()) << path;
  ModelInfo info;
  std::string error;
  ASSERT_TRUE(ReadModelInfo(ModelFormat::kSafetensors, file.size(), file.reader(), &info, &error))
      << error;
  EXPECT_EQ(info.parameters, want);
  EXPECT_EQ(info.tensors, 3u + 4 * 9);  // embed, lm_head, norm; 9 per layer (gen_fixtures.py)
  EXPECT_EQ(info.architecture, "");     // only {"format": "pt"}: the caller uses config.json
  EXPECT_LE(info.reads, 2);
  EXPECT_LT(info.bytes_read, file.size() / 4);
  ASSERT_EQ(info.dtypes.size(), 3u);  // F32, F16, BF16
}

// ---------------------------------------------------------------------------------------------
// Hostile input

void ExpectFails(ModelFormat format, const std::string& data, const std::string& what,
                 uint64_t claimed_size = UINT64_MAX) {
  MemReader mem(data, claimed_size);
  ModelInfo info;
  std::string error;
  EXPECT_FALSE(Parse(format, mem, &info, &error)) << what;
  EXPECT_FALSE(error.empty()) << what;
}

TEST(ModelInfoHostileTest, GgufEveryPrefixFails) {
  const std::string full = SyntheticGguf();
  for (size_t n = 0; n < full.size(); ++n) {
    ExpectFails(ModelFormat::kGguf, full.substr(0, n), "prefix " + std::to_string(n));
  }
  // The reader returns less than the size the file was said to have.
  for (size_t n : {size_t{0}, size_t{10}, size_t{200}, full.size() / 2, full.size() - 1}) {
    ExpectFails(ModelFormat::kGguf, full.substr(0, n), "short " + std::to_string(n), full.size());
  }
}

TEST(ModelInfoHostileTest, SafetensorsEveryPrefixFails) {
  const std::string full = SyntheticSafetensors();
  for (size_t n = 0; n < full.size(); ++n) {
    ExpectFails(ModelFormat::kSafetensors, full.substr(0, n), "prefix " + std::to_string(n));
  }
}

std::string GgufHead(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  std::string s = "GGUF";
  PutU32(&s, version);
  PutU64(&s, n_tensors);
  PutU64(&s, n_kv);
  return s;
}

std::string Padded(std::string s, size_t n = 4096) {
  s.resize(std::max(s.size(), n), '\0');
  return s;
}

TEST(ModelInfoHostileTest, GgufBadHeaders) {
  ExpectFails(ModelFormat::kGguf, Padded("GGUX"), "bad magic");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(0, 0, 1)), "v1");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(0, 0, 4)), "v4");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(0, 0, 0x03000000)), "big-endian");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(uint64_t{1} << 60, 0)), "tensor count 2^60");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(0, uint64_t{1} << 60)), "kv count 2^60");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(UINT64_MAX, UINT64_MAX)), "max counts");
  ExpectFails(ModelFormat::kGguf, Padded(GgufHead(100, 200), 4000), "counts too big for file");
}

TEST(ModelInfoHostileTest, GgufBadKvs) {
  auto kv = [](uint64_t key_len, const std::string& key, uint32_t type, const std::string& v) {
    std::string s = GgufHead(0, 1);
    PutU64(&s, key_len);
    s += key;
    PutU32(&s, type);
    return Padded(s + v, 1024);
  };
  auto u64 = [](uint64_t v) {
    std::string s;
    PutU64(&s, v);
    return s;
  };
  auto arr = [&](uint32_t elem, uint64_t n) {
    std::string s;
    PutU32(&s, elem);
    return s + u64(n);
  };
  ExpectFails(ModelFormat::kGguf, kv(uint64_t{1} << 63, "k", kU8, "x"), "key length 2^63");
  ExpectFails(ModelFormat::kGguf, kv(5000, "k", kU8, "x"), "key past EOF");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kStr, u64(2000)), "string past EOF");
  ExpectFails(ModelFormat::kGguf, kv(20, "general.architecture", kStr, u64(UINT64_MAX)),
              "arch string length max");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", 13, ""), "unknown value type");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(13, 1)), "unknown array type");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(kU64, uint64_t{1} << 62)),
              "u64 array size overflows");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(kU8, 2000)), "u8 array past EOF");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(kStr, uint64_t{1} << 61)),
              "string array count");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(kStr, 2) + u64(1) + "a" + u64(5000)),
              "array string past EOF");
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, arr(kArr, uint64_t{1} << 60)),
              "array of arrays count");
  ExpectFails(ModelFormat::kGguf, kv(17, "general.alignment", 4, std::string("\0\0\0\0", 4)),
              "alignment 0");
  ExpectFails(ModelFormat::kGguf, kv(17, "general.alignment", 4, std::string("\3\0\0\0", 4)),
              "alignment 3");
  ExpectFails(ModelFormat::kGguf, kv(17, "general.alignment", kU64, u64(32)), "alignment u64");

  // Arrays of arrays: shallow nesting is valid GGUF, deep nesting is refused (no recursion
  // blow-up), whatever the length.
  std::string nested2 = arr(kArr, 2) + arr(kU8, 1) + "a" + arr(kU8, 0);
  {
    MemReader mem(kv(1, "k", kArr, nested2));
    ModelInfo info;
    std::string error;
    EXPECT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
  }
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += arr(kArr, 1);
  deep += arr(kU8, 0);
  ExpectFails(ModelFormat::kGguf, kv(1, "k", kArr, deep), "deeply nested arrays");
}

TEST(ModelInfoHostileTest, GgufBadTensors) {
  auto one = [](uint64_t name_len, std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                size_t pad = 4096, uint32_t n_dims = UINT32_MAX) {
    std::string s = GgufHead(1, 0);
    PutU64(&s, name_len);
    s += "t";
    PutU32(&s, n_dims == UINT32_MAX ? static_cast<uint32_t>(dims.size()) : n_dims);
    for (uint64_t d : dims) PutU64(&s, d);
    PutU32(&s, type);
    PutU64(&s, offset);
    return Padded(s, pad);
  };
  ExpectFails(ModelFormat::kGguf, one(1, {uint64_t{1} << 32, uint64_t{1} << 32, 2}, 99, 0),
              "dims product overflows");
  ExpectFails(ModelFormat::kGguf, one(1, {UINT64_MAX, 2}, 99, 0), "dims product overflows 2");
  ExpectFails(ModelFormat::kGguf, one(1, {2}, F32, 0, 4096, 1000), "n_dims 1000");
  ExpectFails(ModelFormat::kGguf, one(1, {2}, F32, 0, 4096, 5), "n_dims 5");
  ExpectFails(ModelFormat::kGguf, one(uint64_t{1} << 62, {2}, F32, 0), "name length");
  ExpectFails(ModelFormat::kGguf, one(1, {2000}, F32, 0), "data past EOF");
  ExpectFails(ModelFormat::kGguf, one(1, {2}, F32, UINT64_MAX - 2), "offset overflow");
  ExpectFails(ModelFormat::kGguf, one(1, {2}, 99, uint64_t{1} << 40), "offset past EOF");
  ExpectFails(ModelFormat::kGguf, one(1, {100, 256}, Q4_K, 0), "Q4_K dim0 not multiple of 256");
  ExpectFails(ModelFormat::kGguf, one(1, {uint64_t{1} << 40, uint64_t{1} << 20}, F32, 0),
              "huge F32 tensor");
  {  // a valid one for contrast
    MemReader mem(one(1, {2, 3}, F32, 0));
    ModelInfo info;
    std::string error;
    EXPECT_TRUE(Parse(ModelFormat::kGguf, mem, &info, &error)) << error;
    EXPECT_EQ(info.parameters, 6u);
  }
}

// A header that would pass the 256 MiB cap is refused without reading that far.
TEST(ModelInfoHostileTest, GgufHeaderCap) {
  std::string s = GgufHead(0, 2);
  PutU64(&s, 1);
  s += "k";
  PutU32(&s, kStr);
  PutU64(&s, uint64_t{300} << 20);  // a 300 MiB string, skipped without being read
  MemReader mem(s, uint64_t{1} << 30, /*zero_fill=*/true);
  ModelInfo info;
  std::string error;
  EXPECT_FALSE(Parse(ModelFormat::kGguf, mem, &info, &error));
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
  ASSERT_EQ(mem.calls().size(), 1u);
  EXPECT_EQ(mem.calls()[0].second, 64u << 10);
}

TEST(ModelInfoHostileTest, ReaderFailure) {
  RangeReader failing = [](uint64_t, uint64_t, std::string*, std::string* error) {
    *error = "HTTP 503";
    return false;
  };
  ModelInfo info;
  std::string error;
  EXPECT_FALSE(ReadModelInfo(ModelFormat::kGguf, 1000, failing, &info, &error));
  EXPECT_NE(error.find("HTTP 503"), std::string::npos) << error;
  EXPECT_FALSE(ReadModelInfo(ModelFormat::kSafetensors, 1000, failing, &info, &error));
  EXPECT_NE(error.find("HTTP 503"), std::string::npos) << error;
  RangeReader throwing = [](uint64_t, uint64_t, std::string*, std::string*) -> bool {
    throw std::runtime_error("boom");
  };
  EXPECT_FALSE(ReadModelInfo(ModelFormat::kGguf, 1000, throwing, &info, &error));
  EXPECT_NE(error.find("boom"), std::string::npos) << error;
  EXPECT_FALSE(ReadModelInfo(ModelFormat::kUnknown, 1000, failing, &info, &error));
}

TEST(ModelInfoHostileTest, SafetensorsBadHeaders) {
  using nlohmann::json;
  auto raw = [](uint64_t n, const std::string& text, size_t data = 0) {
    std::string s;
    PutU64(&s, n);
    return s + text + std::string(data, '\0');
  };
  auto one = [](json t, uint64_t data) { return Safetensors(json{{"t", std::move(t)}}, data); };
  const auto K = ModelFormat::kSafetensors;
  ExpectFails(K, "", "empty file");
  ExpectFails(K, "1234567", "7 bytes");
  ExpectFails(K, raw(100, "{}"), "header length > file size");
  ExpectFails(K, raw(UINT64_MAX, "{}"), "header length max");
  ExpectFails(K, raw(uint64_t{300} << 20, "{}"), "header length > cap", uint64_t{1} << 30);
  ExpectFails(K, raw(8, "not json"), "not JSON");
  ExpectFails(K, raw(2, "[]"), "JSON array");
  ExpectFails(K, raw(4, "{\"a\""), "truncated JSON");
  ExpectFails(K, raw(200000, std::string(100000, '[') + std::string(100000, ']')),
              "deeply nested JSON");
  ExpectFails(K, Safetensors(json{{"__metadata__", 5}}, 0), "metadata not an object");
  ExpectFails(K, one(5, 0), "tensor not an object");
  ExpectFails(K, one({{"shape", {1}}, {"data_offsets", {0, 4}}}, 4), "no dtype");
  ExpectFails(K, one({{"dtype", "F32"}, {"data_offsets", {0, 4}}}, 4), "no shape");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 4}}}, 4),
              "negative dim");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}}, 4),
              "float dim");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}}, 4), "one offset");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 0}}}, 4),
              "reversed offsets");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 4}}}, 4),
              "shape vs offsets");
  ExpectFails(K, one({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}, 3),
              "offsets past EOF");
  ExpectFails(K,
              one({{"dtype", "X9"},
                   {"shape", {uint64_t{1} << 32, uint64_t{1} << 32, 2}},
                   {"data_offsets", {0, 4}}},
                  4),
              "shape product overflows");
  ExpectFails(K,
              Safetensors(json{{"a", {{"dtype", "U8"}, {"shape", {4}}, {"data_offsets", {0, 4}}}},
                               {"b", {{"dtype", "U8"}, {"shape", {4}}, {"data_offsets", {2, 6}}}}},
                          6),
              "overlapping tensors");
  {  // unknown dtypes are not size-checked
    MemReader mem(one({{"dtype", "F4"}, {"shape", {8}}, {"data_offsets", {0, 4}}}, 4));
    ModelInfo info;
    std::string error;
    EXPECT_TRUE(Parse(K, mem, &info, &error)) << error;
    EXPECT_EQ(info.parameters, 8u);
  }
}

// Random byte flips of valid files: any result, but no crash, hang or sanitizer report.
TEST(ModelInfoHostileTest, RandomCorruption) {
  std::mt19937 rng(1234);
  const std::string files[] = {SyntheticGguf(), SyntheticSafetensors()};
  int ok = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const bool gguf = iter % 2 == 0;
    std::string data = files[gguf ? 0 : 1];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // bias towards the header, where the structure is
      const size_t limit = std::min<size_t>(data.size(), gguf ? 3600 : 400);
      data[rng() % limit] = static_cast<char>(rng());
    }
    MemReader mem(data);
    ModelInfo info;
    std::string error;
    if (Parse(gguf ? ModelFormat::kGguf : ModelFormat::kSafetensors, mem, &info, &error)) {
      ++ok;
    } else {
      EXPECT_FALSE(error.empty());
    }
  }
  std::cout << ok << " of 4000 corrupted files still parsed\n";
}

}  // namespace
}  // namespace modelfs::fs
