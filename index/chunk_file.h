// The on-disk format of one chunk file, as pure functions over bytes (no I/O), so that the
// format is stated in one place and the decoder can be fuzzed on its own.
//
// A chunk file is a fixed-size header followed by the chunk's data. All integers are
// little-endian:
//   header, kHeaderSize (4096) bytes, so that data starts page-aligned:
//     0   magic "MFSCHNK\0"
//     8   u32 format version (1)
//     12  u32 header size (4096)
//     16  u32 chunk index
//     20  u32 data length
//     24  u32 block size (65536)
//     28  u32 block count = ceil(data length / block size)
//     32  u32 content id length (40 or 64)
//     36  content id, 64 bytes, zero padded
//     104 u64 XXH3-64 of each data block, block count entries
//     4088 u64 XXH3-64 of header bytes [0, 4088)
//   data, data length bytes.
// The header says which chunk the file is, so a store can be rebuilt from the files alone, and
// it hashes each block separately, so a read checks only the blocks it touches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace modelfs::index::chunk_file {

inline constexpr char kMagic[8] = {'M', 'F', 'S', 'C', 'H', 'N', 'K', '\0'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kHeaderSize = 4096;
inline constexpr uint32_t kBlockSize = 64 * 1024;  // the unit a read verifies
inline constexpr size_t kOffVersion = 8;
inline constexpr size_t kOffHeaderSize = 12;
inline constexpr size_t kOffIndex = 16;
inline constexpr size_t kOffDataLen = 20;
inline constexpr size_t kOffBlockSize = 24;
inline constexpr size_t kOffBlockCount = 28;
inline constexpr size_t kOffIdLen = 32;
inline constexpr size_t kOffId = 36;
inline constexpr size_t kOffHashes = 104;
inline constexpr size_t kOffChecksum = kHeaderSize - 8;
// The longest data whose block hashes fit between kOffHashes and the checksum (31 MiB and a
// bit); a store's chunk size must not exceed it.
inline constexpr uint32_t kMaxDataLen = (kOffChecksum - kOffHashes) / 8 * kBlockSize;

// A content id is a lowercase hex sha256 (64) or git oid (40).
bool ValidContentId(std::string_view id);

// ceil(data_len / kBlockSize), without overflow for any data_len.
constexpr uint32_t BlockCount(uint32_t data_len) {
  return data_len / kBlockSize + (data_len % kBlockSize != 0 ? 1 : 0);
}

// The kHeaderSize header of chunk `index` of content `id` holding `data`.
// Requires ValidContentId(id) and 0 < data.size() <= kMaxDataLen (the store checks both).
std::string EncodeHeader(std::string_view id, uint32_t index, std::string_view data);

// The stored hash of block b; header points at kHeaderSize bytes and b < BlockCount(data_len),
// which DecodeHeader guarantees keeps the read inside the header.
uint64_t BlockHash(const unsigned char* header, uint32_t b);

struct Header {
  std::string id;
  uint32_t index = 0;
  uint32_t data_len = 0;
  const unsigned char* raw = nullptr;  // the header bytes, for the block hashes
  uint64_t block_hash(uint32_t b) const { return BlockHash(raw, b); }
};

// Checks everything the header alone can tell: magic, checksum, fields, id. `size` is how many
// bytes h holds (nothing past them is read; fewer than kHeaderSize fails), and data_len must be
// at most max_data_len (the store's chunk size). On failure *why says what failed and *out is
// unchanged; on success out->raw points into h.
bool DecodeHeader(const unsigned char* h, size_t size, uint32_t max_data_len, Header* out,
                  std::string* why);

}  // namespace modelfs::index::chunk_file
