// Strict verification: no byte of an LFS file is served before the whole file is in the cache
// and its sha256 matched; bytes come only from the store, and only while the file is marked
// verified (a chunk stored since the check clears the mark, so the file is checked again).
#include "fs/read/reader.h"

namespace modelfs::fs {

Status Reader::read_strict(OpenFile& f, uint64_t offset, uint64_t end, ReadPieces* out) {
  const auto c0 = static_cast<uint32_t>(offset / chunk_size_);
  const auto c1 = static_cast<uint32_t>((end - 1) / chunk_size_);
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool present = store_.is_verified(f.content_id);
    for (uint32_t c = c0; c <= c1 && present; ++c) present = store_.contains(f.content_id, c);
    if (!present) {  // fetching what is missing clears the mark, so the file is checked again
      if (Status st = strict_check(f); !st.ok()) return st;
    }
    auto buf = std::make_shared_for_overwrite<char[]>(end - offset);
    bool all = true;
    for (uint32_t c = c0; c <= c1 && all; ++c) {
      const uint64_t cstart = uint64_t{c} * chunk_size_;
      const uint64_t a = std::max(offset, cstart);
      const uint64_t b = std::min(end, cstart + chunk_len(f.loc.size, c));
      all = store_
                .read(f.content_id, c, static_cast<uint32_t>(a - cstart),
                      static_cast<uint32_t>(b - a), buf.get() + (a - offset))
                .ok();
    }
    if (all && store_.is_verified(f.content_id)) {
      out->add(buf, buf.get(), end - offset);
      n_.bytes_from_cache += end - offset;
      return Status::Ok();
    }
  }
  return {Code::kIo, f.loc.path + " could not be kept verified in the cache (is it too small?)"};
}

// The whole file, downloaded and checked, before its first byte is served. One retry, as a
// mismatch can be a transient upstream fault.
Status Reader::strict_check(OpenFile& f) {
  Status st;
  for (int attempt = 0; attempt < 2; ++attempt) {
    st = fetch_all(f.loc, f.content_id, std::max(1u, options_.fetch_threads), nullptr);
    if (st.ok()) return st;
    if (st.not_found()) st = Status(Code::kIo, st.message());
  }
  return st;
}

}  // namespace modelfs::fs
