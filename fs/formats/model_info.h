// What a model file holds (format, architecture, parameter count, tensor types...), learnt from
// its header alone through a byte-range callback, so a caller can describe a file on the Hub
// with a few small HTTP Range requests and never touch the tensor data.
//
// - GGUF v2/v3 (little-endian): the KV section and the tensor infos are parsed through a
//   buffered cursor. The first read is 64 KiB; later reads are sized from what the parser
//   knows (e.g. the remaining entries of a vocabulary array) within geometric bounds, so a
//   header of a few MB takes a handful of reads. Contents that are not needed (scalar arrays,
//   long strings, tensor names) are skipped without being fetched.
// - safetensors: the u64 header length, then the JSON header, in one or two reads.
//
// Everything read from the file is bounds-checked (counts, lengths, dims, products, offsets);
// malformed or hostile input gives false with an error, never a crash or an exception.
//
// Thread safety: the functions are reentrant; the RangeReader is called from the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace modelfs::fs {

// Reads [offset, offset + length) of the file into *out (replacing its contents). It may return
// fewer bytes only at EOF. On failure returns false with *error set.
using RangeReader =
    std::function<bool(uint64_t offset, uint64_t length, std::string* out, std::string* error)>;

// Tensors of one element type.
struct TensorSummary {
  std::string dtype;        // GGUF: ggml type name (F32, Q4_K, "type<N>"); safetensors: dtype
  uint64_t count = 0;       // number of tensors
  uint64_t parameters = 0;  // sum of their element counts
};

struct ModelInfo {
  std::string format;        // "gguf" or "safetensors"
  std::string architecture;  // gguf: general.architecture; safetensors: __metadata__ if any
  std::string name;          // gguf: general.name; safetensors: __metadata__ if any
  uint64_t parameters = 0;   // sum over tensors of the product of their dims
  uint64_t tensors = 0;
  uint64_t context_length = 0;  // gguf: <architecture>.context_length
  std::string file_type;        // gguf: general.file_type as a name (ALL_F32, MOSTLY_Q4_K_M...)
  std::vector<TensorSummary> dtypes;  // by parameters, largest first
  uint64_t header_bytes = 0;  // where the tensor data starts (gguf: after alignment padding)
  uint64_t bytes_read = 0;    // total bytes requested through the reader
  int reads = 0;              // number of reader calls
  std::vector<std::string> runtimes;  // runtimes that load this format
};

enum class ModelFormat { kUnknown, kGguf, kSafetensors };

// By file name extension (case-insensitive): .gguf, .safetensors.
ModelFormat DetectFormat(std::string_view path);

// Headers larger than this are refused.
inline constexpr uint64_t kMaxModelHeaderBytes = 256ull << 20;

// Parses the header of a file of file_size bytes. Returns false with *error on a read failure or
// malformed input. *out is filled only on success.
bool ReadModelInfo(ModelFormat format, uint64_t file_size, const RangeReader& read, ModelInfo* out,
                   std::string* error);

// Names, exposed for tests and display.
std::string GgmlTypeName(uint32_t type);       // 12 -> "Q4_K", unknown -> "type<N>"
std::string GgufFileTypeName(uint32_t ftype);  // 15 -> "MOSTLY_Q4_K_M", unknown -> "ftype<N>"

}  // namespace modelfs::fs
