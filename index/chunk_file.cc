#include "index/chunk_file.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "fs/base/text.h"

namespace modelfs::index::chunk_file {
namespace {

// Byte by byte, so the format is little-endian whatever the host is.
void Put32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void Put64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t Get32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t Get64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

bool ValidContentId(std::string_view id) {
  return (id.size() == 40 || id.size() == 64) && IsLowerHex(id);
}

std::string EncodeHeader(std::string_view id, uint32_t index, std::string_view data) {
  std::string header(kHeaderSize, '\0');
  auto* h = reinterpret_cast<unsigned char*>(header.data());
  std::memcpy(h, kMagic, sizeof(kMagic));
  const auto len = static_cast<uint32_t>(data.size());
  const uint32_t blocks = BlockCount(len);
  Put32(h + kOffVersion, kFormatVersion);
  Put32(h + kOffHeaderSize, kHeaderSize);
  Put32(h + kOffIndex, index);
  Put32(h + kOffDataLen, len);
  Put32(h + kOffBlockSize, kBlockSize);
  Put32(h + kOffBlockCount, blocks);
  Put32(h + kOffIdLen, static_cast<uint32_t>(id.size()));
  std::memcpy(h + kOffId, id.data(), id.size());
  for (uint32_t b = 0; b < blocks; ++b) {
    const size_t start = size_t{b} * kBlockSize;
    const size_t n = std::min<size_t>(kBlockSize, len - start);
    Put64(h + kOffHashes + 8 * b, XXH3_64bits(data.data() + start, n));
  }
  Put64(h + kOffChecksum, XXH3_64bits(h, kOffChecksum));
  return header;
}

uint64_t BlockHash(const unsigned char* header, uint32_t b) {
  return Get64(header + kOffHashes + 8 * size_t{b});
}

bool DecodeHeader(const unsigned char* h, size_t size, uint32_t max_data_len, Header* out,
                  std::string* why) {
  // Every offset below is inside the header, so this one check bounds every read.
  if (size < kHeaderSize) {
    *why = "truncated header";
    return false;
  }
  if (std::memcmp(h, kMagic, sizeof(kMagic)) != 0) {
    *why = "bad magic";
    return false;
  }
  if (Get64(h + kOffChecksum) != XXH3_64bits(h, kOffChecksum)) {
    *why = "header checksum mismatch";
    return false;
  }
  const uint32_t len = Get32(h + kOffDataLen);
  const uint32_t id_len = Get32(h + kOffIdLen);
  // kMaxDataLen: a checksummed header may still claim more blocks than it has hashes for.
  if (Get32(h + kOffVersion) != kFormatVersion || Get32(h + kOffHeaderSize) != kHeaderSize ||
      Get32(h + kOffBlockSize) != kBlockSize || len == 0 || len > max_data_len ||
      len > kMaxDataLen || Get32(h + kOffBlockCount) != BlockCount(len) ||
      (id_len != 40 && id_len != 64)) {
    *why = "unsupported header fields";
    return false;
  }
  std::string id(reinterpret_cast<const char*>(h + kOffId), id_len);
  if (!ValidContentId(id)) {
    *why = "bad content id in header";
    return false;
  }
  out->id = std::move(id);
  out->index = Get32(h + kOffIndex);
  out->data_len = len;
  out->raw = h;
  return true;
}

}  // namespace modelfs::index::chunk_file
