#include "fs/formats/model_info.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

namespace modelfs::fs {
namespace {

constexpr uint64_t kFirstRead = 64 << 10;
constexpr uint32_t kGgmlMaxDims = 4;       // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 4;        // GGUF arrays of arrays, deeper is refused
constexpr uint64_t kMaxKeptString = 4096;  // longer architecture/name strings are skipped
constexpr uint64_t kMaxInterestingKey = 256;
constexpr int kMaxJsonDepth = 64;

std::string Num(uint64_t v) {
  return std::to_string(v);
}

// ---------------------------------------------------------------------------------------------
// A forward-only cursor over [0, limit) of a file, buffered over RangeReader calls.

class Cursor {
 public:
  Cursor(const RangeReader& read, uint64_t file_size, uint64_t limit, const char* format,
         ModelInfo* stats, std::string* error)
      : read_(read),
        file_size_(file_size),
        limit_(std::min(limit, file_size)),
        format_(format),
        stats_(stats),
        error_(error) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return limit_ - pos_; }

  // Expected number of bytes still to read from pos(); sizes the next read (bounded by a
  // geometric schedule unless exact). One-shot: consumed by the next read.
  void set_hint(uint64_t bytes, bool exact = false) {
    hint_ = bytes;
    hint_exact_ = exact;
  }

  bool fail(const std::string& msg) {
    *error_ = std::string(format_) + ": " + msg;
    return false;
  }

  // Makes [pos, pos + n) available in memory.
  bool need(uint64_t n, const char* what) {
    const uint64_t end = base_ + buf_.size();
    const uint64_t have = pos_ <= end ? end - pos_ : 0;
    if (have >= n) return true;
    if (n > remaining()) return truncated(n, what);
    if (pos_ <= end) {
      buf_.erase(0, pos_ - base_);
    } else {
      buf_.clear();
    }
    base_ = pos_;
    uint64_t planned = next_;
    if (hint_ > 0) planned = hint_exact_ ? hint_ : std::clamp(hint_, next_ / 16, next_ * 8);
    hint_ = 0;
    next_ = std::min<uint64_t>(next_ * 2, uint64_t{1} << 40);
    const uint64_t want = std::min(std::max(n, planned), remaining());
    const uint64_t offset = pos_ + have;
    const uint64_t length = want - have;
    std::string chunk;
    std::string err;
    ++stats_->reads;
    stats_->bytes_read += length;
    if (!read_(offset, length, &chunk, &err)) {
      return fail("read of " + Num(length) + " bytes at offset " + Num(offset) + " failed: " + err);
    }
    if (chunk.size() > length) chunk.resize(length);
    if (chunk.size() < length) {
      return fail("short read at offset " + Num(offset) + ": " + Num(chunk.size()) + " of " +
                  Num(length) + " bytes");
    }
    buf_ += chunk;
    return true;
  }

  bool skip(uint64_t n, const char* what) {
    if (n > remaining()) return truncated(n, what);
    pos_ += n;
    return true;
  }

  bool bytes(uint64_t n, std::string_view* v, const char* what) {
    if (!need(n, what)) return false;
    *v = std::string_view(buf_.data() + (pos_ - base_), n);
    pos_ += n;
    return true;
  }

  bool u32(uint32_t* v, const char* what) {
    std::string_view b;
    if (!bytes(4, &b, what)) return false;
    *v = 0;
    for (int i = 3; i >= 0; --i) *v = (*v << 8) | static_cast<uint8_t>(b[i]);
    return true;
  }

  bool u64(uint64_t* v, const char* what) {
    std::string_view b;
    if (!bytes(8, &b, what)) return false;
    *v = 0;
    for (int i = 7; i >= 0; --i) *v = (*v << 8) | static_cast<uint8_t>(b[i]);
    return true;
  }

 private:
  bool truncated(uint64_t n, const char* what) {
    if (limit_ < file_size_ && n > limit_ - pos_ && n <= file_size_ - pos_) {
      return fail("header larger than the " + Num(kMaxModelHeaderBytes >> 20) + " MiB limit (" +
                  what + " at offset " + Num(pos_) + ")");
    }
    return fail(std::string("truncated header: ") + what + " at offset " + Num(pos_) + " needs " +
                Num(n) + " bytes, the file has " + Num(file_size_ - std::min(pos_, file_size_)) +
                " left");
  }

  const RangeReader& read_;
  const uint64_t file_size_;
  const uint64_t limit_;
  const char* format_;
  ModelInfo* stats_;
  std::string* error_;
  std::string buf_;  // bytes [base_, base_ + buf_.size()) of the file
  uint64_t base_ = 0;
  uint64_t pos_ = 0;
  uint64_t next_ = kFirstRead;
  uint64_t hint_ = 0;
  bool hint_exact_ = false;
};

// ---------------------------------------------------------------------------------------------
// GGUF

enum GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Size of a scalar value type, 0 for string/array/unknown.
uint64_t ScalarSize(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

bool IsInteger(uint32_t t) {
  return t == kU8 || t == kI8 || t == kU16 || t == kI16 || t == kU32 || t == kI32 || t == kU64 ||
         t == kI64;
}

// Block size (elements) and bytes per block of the ggml types whose layout is certain; false
// for the others (their extent is not checked).
bool GgmlTypeLayout(uint32_t type, uint64_t* block, uint64_t* bytes) {
  struct L {
    uint32_t type;
    uint64_t block, bytes;
  };
  static constexpr L kLayouts[] = {
      {0, 1, 4},   {1, 1, 2},     {2, 32, 18},    {3, 32, 20},    {6, 32, 22},    {7, 32, 24},
      {8, 32, 34}, {10, 256, 84}, {11, 256, 110}, {12, 256, 144}, {13, 256, 176}, {14, 256, 210},
      {24, 1, 1},  {25, 1, 2},    {26, 1, 4},     {27, 1, 8},     {28, 1, 8},     {30, 1, 2},
  };
  for (const L& l : kLayouts) {
    if (l.type == type) {
      *block = l.block;
      *bytes = l.bytes;
      return true;
    }
  }
  return false;
}

class GgufParser {
 public:
  GgufParser(uint64_t file_size, const RangeReader& read, ModelInfo* info, std::string* error)
      : file_size_(file_size),
        cur_(read, file_size, kMaxModelHeaderBytes, "gguf", info, error),
        info_(info) {}

  bool parse() {
    std::string_view magic;
    if (!cur_.bytes(4, &magic, "magic")) return false;
    if (magic != "GGUF") return cur_.fail("not a GGUF file (bad magic)");
    uint32_t version = 0;
    if (!cur_.u32(&version, "version")) return false;
    if (version == 1) return cur_.fail("GGUF v1 is not supported");
    if (version != 2 && version != 3) {
      if (version == 0x02000000 || version == 0x03000000) {
        return cur_.fail("big-endian GGUF is not supported");
      }
      return cur_.fail("unsupported GGUF version " + Num(version));
    }
    uint64_t n_tensors = 0, n_kv = 0;
    if (!cur_.u64(&n_tensors, "tensor count") || !cur_.u64(&n_kv, "kv count")) return false;
    // Smallest possible KV: key length + type + a 1-byte value. Smallest tensor info: name
    // length + n_dims + type + offset.
    constexpr uint64_t kMinKv = 8 + 4 + 1, kMinTensor = 8 + 4 + 4 + 8;
    const uint64_t room = cur_.remaining();
    if (n_kv > room / kMinKv || n_tensors > room / kMinTensor ||
        n_kv * kMinKv + n_tensors * kMinTensor > room) {
      return cur_.fail("impossible counts: " + Num(n_kv) + " KVs and " + Num(n_tensors) +
                       " tensors in " + Num(room) + " bytes");
    }
    n_tensors_ = n_tensors;
    for (uint64_t i = 0; i < n_kv; ++i) {
      cur_.set_hint((n_kv - i) * 64 + n_tensors * 128 + 4096);
      if (!parse_kv()) return false;
    }
    if (!parse_tensors()) return false;
    return finish();
  }

 private:
  bool parse_kv() {
    uint64_t key_len = 0;
    if (!cur_.u64(&key_len, "key length")) return false;
    std::string key;
    if (key_len <= kMaxInterestingKey) {
      std::string_view k;
      if (!cur_.bytes(key_len, &k, "key")) return false;
      key.assign(k);
    } else if (!cur_.skip(key_len, "key")) {
      return false;
    }
    uint32_t type = 0;
    if (!cur_.u32(&type, "value type")) return false;
    if (type == kString && (key == "general.architecture" || key == "general.name")) {
      return read_string(key == "general.name" ? &info_->name : &info_->architecture);
    }
    if (key == "general.alignment") {
      if (type != kU32) return cur_.fail("general.alignment is not a u32");
      uint64_t a = 0;
      if (!read_int(type, &a)) return false;
      if (a == 0 || (a & (a - 1)) != 0) {
        return cur_.fail("general.alignment " + Num(a) + " is not a power of two");
      }
      alignment_ = a;
      return true;
    }
    if (IsInteger(type) && key == "general.file_type") {
      uint64_t v = 0;
      if (!read_int(type, &v)) return false;
      file_type_ = v;
      has_file_type_ = true;
      return true;
    }
    static constexpr std::string_view kCtx = ".context_length";
    if (IsInteger(type) && key.size() > kCtx.size() && key.ends_with(kCtx)) {
      uint64_t v = 0;
      if (!read_int(type, &v)) return false;
      context_[key.substr(0, key.size() - kCtx.size())] = v;
      return true;
    }
    return skip_value(type, 0);
  }

  bool read_string(std::string* out) {
    uint64_t len = 0;
    if (!cur_.u64(&len, "string length")) return false;
    if (len > kMaxKeptString) return cur_.skip(len, "string");
    std::string_view s;
    if (!cur_.bytes(len, &s, "string")) return false;
    out->assign(s);
    return true;
  }

  // Reads an integer value; negative values read as 0.
  bool read_int(uint32_t type, uint64_t* v) {
    const uint64_t size = ScalarSize(type);
    std::string_view b;
    if (!cur_.bytes(size, &b, "integer value")) return false;
    uint64_t u = 0;
    for (uint64_t i = size; i-- > 0;) u = (u << 8) | static_cast<uint8_t>(b[i]);
    const bool is_signed = type == kI8 || type == kI16 || type == kI32 || type == kI64;
    if (is_signed && size < 8 && (u >> (size * 8 - 1)) != 0) u = 0;
    if (is_signed && size == 8 && (u >> 63) != 0) u = 0;
    *v = u;
    return true;
  }

  bool skip_value(uint32_t type, int depth) {
    if (const uint64_t size = ScalarSize(type); size > 0) return cur_.skip(size, "value");
    if (type == kString) {
      uint64_t len = 0;
      if (!cur_.u64(&len, "string length")) return false;
      return cur_.skip(len, "string");
    }
    if (type != kArray) return cur_.fail("unknown value type " + Num(type));
    if (depth >= kMaxArrayNesting) {
      return cur_.fail("arrays nested deeper than " + Num(kMaxArrayNesting));
    }
    uint32_t elem = 0;
    uint64_t n = 0;
    if (!cur_.u32(&elem, "array type") || !cur_.u64(&n, "array length")) return false;
    if (const uint64_t size = ScalarSize(elem); size > 0) {
      if (n > cur_.remaining() / size) {
        return cur_.fail("array of " + Num(n) + " elements is past the end of the file");
      }
      return cur_.skip(n * size, "array");
    }
    if (elem == kString) {
      if (n > cur_.remaining() / 8) {
        return cur_.fail("array of " + Num(n) + " strings is past the end of the file");
      }
      const uint64_t start = cur_.pos();
      for (uint64_t i = 0; i < n; ++i) {
        // Size the next read from the average string so far: a vocabulary takes one read.
        const uint64_t avg = i > 0 ? (cur_.pos() - start) / i + 1 : 16;
        cur_.set_hint((n - i) * avg / 8 * 9 + 4096);
        uint64_t len = 0;
        if (!cur_.u64(&len, "string length") || !cur_.skip(len, "string")) return false;
      }
      return true;
    }
    if (elem == kArray) {
      if (n > cur_.remaining() / 12) {
        return cur_.fail("array of " + Num(n) + " arrays is past the end of the file");
      }
      for (uint64_t i = 0; i < n; ++i) {
        if (!skip_value(kArray, depth + 1)) return false;
      }
      return true;
    }
    return cur_.fail("unknown array element type " + Num(elem));
  }

  bool parse_tensors() {
    const uint64_t start = cur_.pos();
    for (uint64_t t = 0; t < n_tensors_; ++t) {
      const uint64_t avg = t > 0 ? (cur_.pos() - start) / t + 1 : 128;
      cur_.set_hint((n_tensors_ - t) * avg / 8 * 9 + 1024);
      uint64_t name_len = 0;
      if (!cur_.u64(&name_len, "tensor name length") || !cur_.skip(name_len, "tensor name")) {
        return false;
      }
      uint32_t n_dims = 0;
      if (!cur_.u32(&n_dims, "tensor n_dims")) return false;
      if (n_dims > kGgmlMaxDims) {
        return cur_.fail("tensor #" + Num(t) + " has " + Num(n_dims) + " dimensions");
      }
      uint64_t elems = 1, dim0 = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t dim = 0;
        if (!cur_.u64(&dim, "tensor dim")) return false;
        if (d == 0) dim0 = dim;
        if (__builtin_mul_overflow(elems, dim, &elems)) {
          return cur_.fail("tensor #" + Num(t) + ": the product of its dims overflows");
        }
      }
      uint32_t type = 0;
      uint64_t offset = 0;
      if (!cur_.u32(&type, "tensor type") || !cur_.u64(&offset, "tensor offset")) return false;
      if (offset > file_size_) {
        return cur_.fail("tensor #" + Num(t) + " offset " + Num(offset) + " is past the end");
      }
      uint64_t block = 0, block_bytes = 0;
      if (GgmlTypeLayout(type, &block, &block_bytes)) {
        if (dim0 % block != 0) {
          return cur_.fail("tensor #" + Num(t) + ": dim 0 (" + Num(dim0) +
                           ") is not a multiple of the block size " + Num(block));
        }
        uint64_t bytes = 0, end = 0;
        if (__builtin_mul_overflow(elems / block, block_bytes, &bytes) ||
            __builtin_add_overflow(offset, bytes, &end) || end > file_size_) {
          return cur_.fail("tensor #" + Num(t) + " data is past the end of the file");
        }
        data_end_ = std::max(data_end_, end);
      }
      Summary& s = by_type_[type];
      ++s.count;
      if (__builtin_add_overflow(s.parameters, elems, &s.parameters) ||
          __builtin_add_overflow(info_->parameters, elems, &info_->parameters)) {
        return cur_.fail("parameter count overflows");
      }
    }
    return true;
  }

  bool finish() {
    const uint64_t header_end = cur_.pos();
    const uint64_t data_offset = (header_end + alignment_ - 1) / alignment_ * alignment_;
    if (data_end_ > 0 && (data_offset > file_size_ || data_end_ > file_size_ - data_offset)) {
      return cur_.fail("tensor data (up to offset " + Num(data_end_) + " after " +
                       Num(data_offset) + ") is past the end of the " + Num(file_size_) +
                       "-byte file");
    }
    info_->format = "gguf";
    info_->tensors = n_tensors_;
    info_->header_bytes = std::min(data_offset, file_size_);
    if (auto it = context_.find(info_->architecture); it != context_.end()) {
      info_->context_length = it->second;
    }
    if (has_file_type_) {
      info_->file_type = file_type_ <= UINT32_MAX
                             ? GgufFileTypeName(static_cast<uint32_t>(file_type_))
                             : "ftype" + Num(file_type_);
    }
    for (const auto& [type, s] : by_type_) {
      info_->dtypes.push_back({GgmlTypeName(type), s.count, s.parameters});
    }
    info_->runtimes = {"llama.cpp", "ollama", "LM Studio", "node-llama-cpp"};
    return true;
  }

  struct Summary {
    uint64_t count = 0, parameters = 0;
  };

  const uint64_t file_size_;
  Cursor cur_;
  ModelInfo* info_;
  uint64_t n_tensors_ = 0;
  uint64_t alignment_ = 32;
  uint64_t file_type_ = 0;
  bool has_file_type_ = false;
  uint64_t data_end_ = 0;  // end of the furthest tensor, relative to the data section
  std::map<std::string, uint64_t> context_;  // <arch>.context_length by arch
  std::map<uint32_t, Summary> by_type_;
};

// ---------------------------------------------------------------------------------------------
// safetensors

// Bytes per element of the dtypes whose size is certain; 0 otherwise (sub-byte types...).
uint64_t SafetensorsDtypeSize(const std::string& d) {
  static const std::map<std::string, uint64_t, std::less<>> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
  };
  auto it = kSizes.find(d);
  return it == kSizes.end() ? 0 : it->second;
}

// Nesting depth of JSON text, so a hostile header cannot exhaust the stack of the parser.
bool JsonDepthOk(std::string_view s) {
  int depth = 0;
  bool in_string = false, escape = false;
  for (char c : s) {
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

bool ParseSafetensors(uint64_t file_size, const RangeReader& read, ModelInfo* info,
                      std::string* error) {
  Cursor cur(read, file_size, 8 + kMaxModelHeaderBytes, "safetensors", info, error);
  uint64_t n = 0;
  if (!cur.u64(&n, "header length")) return false;
  if (n > file_size - 8) {
    return cur.fail("header length " + Num(n) + " exceeds the file size " + Num(file_size));
  }
  if (n > kMaxModelHeaderBytes) {
    return cur.fail("header length " + Num(n) + " exceeds the " + Num(kMaxModelHeaderBytes >> 20) +
                    " MiB limit");
  }
  cur.set_hint(n, /*exact=*/true);
  std::string_view text;
  if (!cur.bytes(n, &text, "header")) return false;
  if (!JsonDepthOk(text)) return cur.fail("header JSON is nested too deeply");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  } catch (...) {
    return cur.fail("header is not valid JSON");
  }
  if (j.is_discarded()) return cur.fail("header is not valid JSON");
  if (!j.is_object()) return cur.fail("header is not a JSON object");

  const uint64_t data_size = file_size - 8 - n;
  std::map<std::string, TensorSummary> by_dtype;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t tensors = 0, parameters = 0;
  for (const auto& [name, t] : j.items()) {
    if (name == "__metadata__") {
      if (!t.is_object()) return cur.fail("__metadata__ is not an object");
      for (const char* k : {"architecture", "modelspec.architecture"}) {
        if (auto it = t.find(k); it != t.end() && it->is_string() && info->architecture.empty()) {
          info->architecture = it->get<std::string>();
        }
      }
      for (const char* k : {"name", "modelspec.title"}) {
        if (auto it = t.find(k); it != t.end() && it->is_string() && info->name.empty()) {
          info->name = it->get<std::string>();
        }
      }
      continue;
    }
    const std::string where = "tensor \"" + name.substr(0, 200) + "\"";
    if (!t.is_object()) return cur.fail(where + " is not an object");
    auto dtype = t.find("dtype");
    auto shape = t.find("shape");
    auto offsets = t.find("data_offsets");
    if (dtype == t.end() || !dtype->is_string()) return cur.fail(where + ": bad dtype");
    if (shape == t.end() || !shape->is_array()) return cur.fail(where + ": bad shape");
    if (offsets == t.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return cur.fail(where + ": bad data_offsets");
    }
    uint64_t elems = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) return cur.fail(where + ": bad shape");
      if (__builtin_mul_overflow(elems, d.get<uint64_t>(), &elems)) {
        return cur.fail(where + ": the product of its shape overflows");
      }
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return cur.fail(where + ": data_offsets [" + Num(begin) + ", " + Num(end) + "] outside the " +
                      Num(data_size) + "-byte data section");
    }
    const std::string dt = dtype->get<std::string>();
    if (const uint64_t size = SafetensorsDtypeSize(dt); size > 0) {
      uint64_t bytes = 0;
      if (__builtin_mul_overflow(elems, size, &bytes) || bytes != end - begin) {
        return cur.fail(where + ": shape and dtype do not match data_offsets");
      }
    }
    if (begin < end) ranges.emplace_back(begin, end);
    TensorSummary& s = by_dtype[dt];
    s.dtype = dt;
    ++s.count;
    ++tensors;
    if (__builtin_add_overflow(s.parameters, elems, &s.parameters) ||
        __builtin_add_overflow(parameters, elems, &parameters)) {
      return cur.fail("parameter count overflows");
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return cur.fail("tensor data ranges overlap");
  }
  info->format = "safetensors";
  info->tensors = tensors;
  info->parameters = parameters;
  info->header_bytes = 8 + n;
  for (auto& [dt, s] : by_dtype) info->dtypes.push_back(std::move(s));
  info->runtimes = {"transformers", "vLLM", "TGI", "candle", "mlx"};
  return true;
}

}  // namespace

ModelFormat DetectFormat(std::string_view path) {
  auto has_ext = [&](std::string_view ext) {
    if (path.size() <= ext.size()) return false;
    std::string_view tail = path.substr(path.size() - ext.size());
    return std::equal(tail.begin(), tail.end(), ext.begin(), [](char a, char b) {
      return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
    });
  };
  if (has_ext(".gguf")) return ModelFormat::kGguf;
  if (has_ext(".safetensors")) return ModelFormat::kSafetensors;
  return ModelFormat::kUnknown;
}

std::string GgmlTypeName(uint32_t type) {
  static constexpr const char* kNames[] = {
      "F32",     "F16",   "Q4_0",   "Q4_1",  "type4",  "type5",  "Q5_0",   "Q5_1",    "Q8_0",
      "Q8_1",    "Q2_K",  "Q3_K",   "Q4_K",  "Q5_K",   "Q6_K",   "Q8_K",   "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",  "IQ4_XS", "I8",     "I16",     "I32",
      "I64",     "F64",   "IQ1_M",  "BF16",  "type31", "type32", "type33", "TQ1_0",   "TQ2_0",
  };
  if (type < std::size(kNames)) return kNames[type];
  return "type" + Num(type);
}

std::string GgufFileTypeName(uint32_t ftype) {
  static constexpr const char* kNames[] = {
      "ALL_F32",         "MOSTLY_F16",           "MOSTLY_Q4_0",
      "MOSTLY_Q4_1",     "MOSTLY_Q4_1_SOME_F16", "MOSTLY_Q4_2",
      "MOSTLY_Q4_3",     "MOSTLY_Q8_0",          "MOSTLY_Q5_0",
      "MOSTLY_Q5_1",     "MOSTLY_Q2_K",          "MOSTLY_Q3_K_S",
      "MOSTLY_Q3_K_M",   "MOSTLY_Q3_K_L",        "MOSTLY_Q4_K_S",
      "MOSTLY_Q4_K_M",   "MOSTLY_Q5_K_S",        "MOSTLY_Q5_K_M",
      "MOSTLY_Q6_K",     "MOSTLY_IQ2_XXS",       "MOSTLY_IQ2_XS",
      "MOSTLY_Q2_K_S",   "MOSTLY_IQ3_XS",        "MOSTLY_IQ3_XXS",
      "MOSTLY_IQ1_S",    "MOSTLY_IQ4_NL",        "MOSTLY_IQ3_S",
      "MOSTLY_IQ3_M",    "MOSTLY_IQ2_S",         "MOSTLY_IQ2_M",
      "MOSTLY_IQ4_XS",   "MOSTLY_IQ1_M",         "MOSTLY_BF16",
      "MOSTLY_Q4_0_4_4", "MOSTLY_Q4_0_4_8",      "MOSTLY_Q4_0_8_8",
      "MOSTLY_TQ1_0",    "MOSTLY_TQ2_0",
  };
  if (ftype < std::size(kNames)) return kNames[ftype];
  return "ftype" + Num(ftype);
}

bool ReadModelInfo(ModelFormat format, uint64_t file_size, const RangeReader& read, ModelInfo* out,
                   std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  ModelInfo info;
  bool ok = false;
  try {
    switch (format) {
      case ModelFormat::kGguf:
        ok = GgufParser(file_size, read, &info, error).parse();
        break;
      case ModelFormat::kSafetensors:
        ok = ParseSafetensors(file_size, read, &info, error);
        break;
      case ModelFormat::kUnknown:
        *error = "unknown model format";
        return false;
    }
  } catch (const std::exception& e) {  // std::bad_alloc, or a throwing RangeReader
    *error = std::string("model header: ") + e.what();
    return false;
  } catch (...) {
    *error = "model header: unknown exception";
    return false;
  }
  if (!ok) return false;
  std::stable_sort(
      info.dtypes.begin(), info.dtypes.end(),
      [](const TensorSummary& a, const TensorSummary& b) { return a.parameters > b.parameters; });
  *out = std::move(info);
  return true;
}

}  // namespace modelfs::fs
