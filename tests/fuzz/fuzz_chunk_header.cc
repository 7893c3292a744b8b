// Fuzzes the chunk file header codec of index/chunk_file.h. A header is read back from disk,
// where a crash, a failing disk or another program can leave any bytes, so DecodeHeader must
// take anything without reading past the bytes it is given. Each input is
//   - decoded as it is, at its own length (libFuzzer's buffer is exactly the input, so ASan
//     flags any read beyond it);
//   - laid over a full header whose magic and checksum are made right, so the field checks are
//     reached, and the verdict compared with the documented layout read independently;
//   - turned into a chunk (id, index, data of up to 4 blocks) that must come back unchanged
//     through EncodeHeader and DecodeHeader, with each block hashed as the format says and any
//     single changed header byte rejected.
// The seeds in corpus/chunk_header/ are the first 104 bytes (everything before the block
// hashes) of real headers: a one-byte chunk of a sha256 id, a four-block chunk of a git oid.
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "index/chunk_file.h"

namespace {

namespace cf = modelfs::index::chunk_file;

constexpr uint32_t kMaxRoundTripLen = 4 * cf::kBlockSize + 1;  // a partial fifth block

void Check(bool property) {
  if (!property) __builtin_trap();
}

// Little-endian, as the format says; written here rather than taken from the codec.
uint32_t Le32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t Le64(const unsigned char* p) {
  return uint64_t{Le32(p)} | uint64_t{Le32(p + 4)} << 32;
}
void PutLe64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint32_t Read32(const uint8_t* data, size_t size, size_t at) {
  uint32_t v = 0;
  if (at < size) std::memcpy(&v, data + at, std::min<size_t>(4, size - at));
  return v;
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// What every accepted header must satisfy, whatever the bytes were.
void CheckAccepted(const unsigned char* h, size_t size, uint32_t max_len, const cf::Header& out) {
  Check(size >= cf::kHeaderSize && out.raw == h);
  Check(out.data_len > 0 && out.data_len <= max_len && out.data_len <= cf::kMaxDataLen);
  Check((out.id.size() == 40 || out.id.size() == 64) && IsLowerHex(out.id));
  Check(cf::ValidContentId(out.id));
  // Every block hash the reader may ask for lies inside the header.
  const uint32_t blocks = cf::BlockCount(out.data_len);
  Check(blocks > 0 && cf::kOffHashes + 8 * size_t{blocks} <= cf::kOffChecksum);
  Check(out.block_hash(blocks - 1) == Le64(h + cf::kOffHashes + 8 * size_t{blocks - 1}));
}

void DecodeAsIs(const uint8_t* data, size_t size) {
  for (const uint32_t max_len : {uint32_t{1} << 20, uint32_t{UINT32_MAX}}) {
    cf::Header out;
    std::string why;
    if (cf::DecodeHeader(data, size, max_len, &out, &why)) {
      CheckAccepted(data, size, max_len, out);
    } else {
      Check(!why.empty() && out.raw == nullptr);
    }
  }
}

// The input over a zeroed header, magic and checksum set: accepted exactly when the fields
// are what the layout in chunk_file.h allows.
void DecodeFixedUp(const uint8_t* data, size_t size) {
  std::vector<unsigned char> h(cf::kHeaderSize);  // exactly the header: ASan bounds it
  std::memcpy(h.data(), data, std::min<size_t>(size, h.size()));
  std::memcpy(h.data(), cf::kMagic, sizeof(cf::kMagic));
  PutLe64(h.data() + cf::kOffChecksum, XXH3_64bits(h.data(), cf::kOffChecksum));

  // The store's chunk size: the input's last four bytes, no limit when they are zero.
  const uint32_t tail = Read32(data, size, size >= 4 ? size - 4 : 0);
  const uint32_t max_len = tail == 0 ? UINT32_MAX : tail;
  const uint32_t len = Le32(h.data() + 20);
  const uint32_t id_len = Le32(h.data() + 32);
  const bool expected =
      Le32(h.data() + 8) == 1 && Le32(h.data() + 12) == 4096 && Le32(h.data() + 24) == 65536 &&
      len > 0 && len <= max_len && len <= cf::kMaxDataLen &&
      Le32(h.data() + 28) == (len + uint64_t{65535}) / 65536 && (id_len == 40 || id_len == 64) &&
      IsLowerHex(std::string_view(reinterpret_cast<const char*>(h.data() + 36), id_len));

  cf::Header out;
  std::string why;
  const bool ok = cf::DecodeHeader(h.data(), h.size(), max_len, &out, &why);
  Check(ok == expected);
  if (ok) {
    CheckAccepted(h.data(), h.size(), max_len, out);
    Check(out.index == Le32(h.data() + 16) && out.data_len == len);
    Check(out.id == std::string_view(reinterpret_cast<const char*>(h.data() + 36), id_len));
  }
  // One byte short is refused before anything is read.
  cf::Header shorter;
  Check(!cf::DecodeHeader(h.data(), h.size() - 1, max_len, &shorter, &why));
}

void RoundTrip(const uint8_t* data, size_t size) {
  if (size < 10) return;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id((data[0] & 1) != 0 ? 64 : 40, '0');
  for (size_t i = 0; i < id.size(); ++i) id[i] = kHex[(data[i % size] + i) & 15];
  const uint32_t index = Read32(data, size, 1);
  const uint32_t len = 1 + Read32(data, size, 5) % kMaxRoundTripLen;
  std::string payload(len, '\0');
  for (size_t at = 0; at < len; at += size) {
    std::memcpy(payload.data() + at, data, std::min<size_t>(size, len - at));
  }

  const std::string encoded = cf::EncodeHeader(id, index, payload);
  Check(encoded.size() == cf::kHeaderSize);
  std::vector<unsigned char> h(encoded.begin(), encoded.end());
  Check(std::memcmp(h.data(), cf::kMagic, sizeof(cf::kMagic)) == 0);
  const uint32_t blocks = cf::BlockCount(len);
  Check(blocks == (len + uint64_t{cf::kBlockSize} - 1) / cf::kBlockSize);
  // Zero padded after the id and after the last block hash.
  Check(std::all_of(h.begin() + cf::kOffId + id.size(), h.begin() + cf::kOffHashes,
                    [](unsigned char c) { return c == 0; }));
  Check(std::all_of(h.begin() + cf::kOffHashes + 8 * blocks, h.begin() + cf::kOffChecksum,
                    [](unsigned char c) { return c == 0; }));

  cf::Header out;
  std::string why;
  Check(cf::DecodeHeader(h.data(), h.size(), len, &out, &why));
  Check(out.id == id && out.index == index && out.data_len == len && out.raw == h.data());
  for (uint32_t b = 0; b < blocks; ++b) {
    const size_t start = size_t{b} * cf::kBlockSize;
    const size_t n = std::min<size_t>(cf::kBlockSize, len - start);
    Check(out.block_hash(b) == XXH3_64bits(payload.data() + start, n));
  }
  // Longer than the store's chunk size: refused.
  cf::Header refused;
  Check(!cf::DecodeHeader(h.data(), h.size(), len - 1, &refused, &why));
  // Any one changed byte: caught by the header checksum (or is the checksum).
  const size_t at = Read32(data, size, 9) % cf::kHeaderSize;
  h[at] ^= static_cast<unsigned char>(data[size - 1] | 1);
  Check(!cf::DecodeHeader(h.data(), h.size(), UINT32_MAX, &refused, &why));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DecodeAsIs(data, size);
  DecodeFixedUp(data, size);
  RoundTrip(data, size);
  return 0;
}
