#include "fs/control/metrics.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <sstream>

#include "fs/base/socket.h"

namespace modelfs::fs {
namespace {

void Metric(std::ostringstream& o, const char* name, const char* type, const char* help,
            double value) {
  o << "# HELP modelfs_" << name << ' ' << help << "\n# TYPE modelfs_" << name << ' ' << type
    << "\nmodelfs_" << name << ' ' << value << '\n';
}

// One series per endpoint, labelled with its URL (escaped as the text format asks).
template <class F>
void EndpointMetric(std::ostringstream& o, const char* name, const char* type, const char* help,
                    const std::vector<fetch::EndpointCounters>& eps, F value) {
  o << "# HELP modelfs_" << name << ' ' << help << "\n# TYPE modelfs_" << name << ' ' << type
    << '\n';
  for (const auto& e : eps) {
    std::string label;
    for (char c : e.url) {
      if (c == '\\' || c == '"') label.push_back('\\');
      if (c == '\n') {
        label += "\\n";
        continue;
      }
      label.push_back(c);
    }
    o << "modelfs_" << name << "{endpoint=\"" << label << "\"} " << value(e) << '\n';
  }
}

}  // namespace

std::string PrometheusText(const CoreStats& s) {
  std::ostringstream o;
  o.precision(17);
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  const auto& r = s.reader;
  Metric(o, "cache_used_bytes", "gauge", "Chunk bytes in the cache.", d(s.cache.used_bytes));
  Metric(o, "cache_limit_bytes", "gauge", "Cache size limit.", d(s.cache.capacity_bytes));
  Metric(o, "cache_pinned_bytes", "gauge", "Pinned chunk bytes.", d(s.cache.pinned_bytes));
  Metric(o, "cache_chunks", "gauge", "Chunks in the cache.", d(s.cache.chunks));
  Metric(o, "cache_evicted_chunks_total", "counter", "Chunks evicted.", d(s.cache.evicted_chunks));
  Metric(o, "cache_evicted_bytes_total", "counter", "Bytes evicted.", d(s.cache.evicted_bytes));
  Metric(o, "cache_corrupt_chunks_total", "counter", "Chunks that failed their checksum.",
         d(s.cache.corrupt_chunks));
  Metric(o, "read_requests_total", "counter", "Read requests served.", d(r.reads));
  Metric(o, "served_bytes_total", "counter", "Bytes returned to readers.", d(r.bytes_read));
  Metric(o, "served_from_cache_bytes_total", "counter", "Bytes read back from the cache.",
         d(r.bytes_from_cache));
  Metric(o, "fetched_bytes_total", "counter", "Chunk bytes fetched from upstream.",
         d(r.fetch.bytes_fetched));
  Metric(o, "hit_ratio", "gauge", "Share of served bytes that came from the cache.",
         r.bytes_read ? d(r.bytes_from_cache) / d(r.bytes_read) : 0.0);
  Metric(o, "read_errors_total", "counter", "Reads that failed.", d(r.read_errors));
  Metric(o, "inflight_chunks", "gauge", "Chunks being fetched now.", d(r.inflight_chunks));
  Metric(o, "sha256_mismatches_total", "counter", "Files whose sha256 did not match.",
         d(r.verify.sha256_mismatches));
  Metric(o, "fetch_requests_in_flight", "gauge", "Range requests in flight now.",
         d(r.fetch.requests_in_flight));
  Metric(o, "fetch_rate_bytes_per_second", "gauge", "Measured download rate, all requests.",
         r.fetch.net.rate);
  Metric(o, "fetch_ttfb_seconds", "gauge", "Measured time to first byte of a range request.",
         r.fetch.net.ttfb_s);
  Metric(o, "model_prefetch_files_total", "counter", "Files fetched by model-aware prefetch.",
         d(r.model_prefetch_files));
  Metric(o, "upstream_requests_total", "counter", "HTTP requests sent upstream.",
         d(s.hub.requests));
  Metric(o, "upstream_retries_total", "counter", "Upstream retries.", d(s.hub.retries));
  Metric(o, "upstream_errors_total", "counter", "Upstream calls that failed.", d(s.hub.errors));
  Metric(o, "upstream_failovers_total", "counter", "Calls moved to the next endpoint.",
         d(s.hub.failovers));
  using E = fetch::EndpointCounters;
  EndpointMetric(o, "endpoint_requests_total", "counter", "HTTP requests sent, per endpoint.",
                 s.hub.endpoints, [&](const E& e) { return d(e.requests); });
  EndpointMetric(o, "endpoint_bytes_total", "counter", "Range bytes received, per endpoint.",
                 s.hub.endpoints, [&](const E& e) { return d(e.bytes); });
  EndpointMetric(o, "endpoint_errors_total", "counter", "Network failures, per endpoint.",
                 s.hub.endpoints, [&](const E& e) { return d(e.errors); });
  EndpointMetric(o, "endpoint_up", "gauge", "1 unless the endpoint is held down after failing.",
                 s.hub.endpoints, [](const E& e) { return e.down ? 0.0 : 1.0; });
  Metric(o, "open_files", "gauge", "Files open through the mount.", d(s.open_files));
  Metric(o, "uptime_seconds", "gauge", "Seconds since the mount started.",
         static_cast<double>(s.uptime_seconds));
  return o.str();
}

MetricsServer::~MetricsServer() {
  stopping_ = true;
  if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
}

Status MetricsServer::start(const std::string& listen) {
  if (Status s = ListenTcp(listen, &fd_, &port_); !s.ok()) {
    return {s.code(), "cannot serve metrics: " + s.message()};
  }
  thread_ = std::thread([this] { run(); });
  spdlog::info("metrics on http://{}:{}/metrics", listen.substr(0, listen.rfind(':')), port_);
  return Status::Ok();
}

void MetricsServer::run() {
  while (!stopping_) {
    UniqueFd c;
    if (!Accept(fd_.get(), &c).ok()) return;
    // One short request at a time: scrapes are rare and the reply is small. Bounded reads.
    char buf[2048];
    size_t n = 0;
    (void)RecvSome(c.get(), buf, sizeof buf, 2000, &n);
    const std::string body = PrometheusText(core_.stats());
    const std::string reply =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    (void)SendAll(c.get(), reply);
  }
}

}  // namespace modelfs::fs
