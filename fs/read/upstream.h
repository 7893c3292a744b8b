// Where the data path gets bytes it does not have: an interface, so that readahead and
// single-flight fetching are tested without HTTP (tests/unit/read_*_test.cc use a fake with
// latency, a per-connection rate and faults), and HubUpstream, which is the Hub client.
//
// Thread safety: read_range is called from many threads at once.
#pragma once

#include <cstdint>

#include "fetch/hub_client.h"
#include "fs/base/status.h"

namespace modelfs::fs {

class Upstream {
 public:
  virtual ~Upstream() = default;
  // Streams bytes [offset, offset + length) of the file to sink, in order, each once; bounded
  // in time (retries included). A sink returning false stops it (kCancelled).
  virtual Status read_range(const fetch::FileLocation& file, uint64_t offset, uint64_t length,
                            const fetch::Sink& sink) = 0;
};

class HubUpstream final : public Upstream {
 public:
  explicit HubUpstream(fetch::HubClient& hub) : hub_(hub) {}
  Status read_range(const fetch::FileLocation& file, uint64_t offset, uint64_t length,
                    const fetch::Sink& sink) override {
    return hub_.read_range(file, offset, length, sink);
  }

 private:
  fetch::HubClient& hub_;
};

}  // namespace modelfs::fs
