// Prometheus text exposition of the core's counters, served over HTTP on a local TCP port
// (opt-in: `metrics = 127.0.0.1:9464`). The numbers are the ones `modelfs stats` shows.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "fs/base/status.h"
#include "fs/base/unique_fd.h"
#include "fs/core.h"

namespace modelfs::fs {

std::string PrometheusText(const CoreStats& stats);

class MetricsServer {
 public:
  explicit MetricsServer(Core& core) : core_(core) {}
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // listen: "HOST:PORT" with HOST an IPv4 address (loopback unless you mean otherwise).
  Status start(const std::string& listen);
  int port() const { return port_; }

 private:
  void run();
  Core& core_;
  UniqueFd fd_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace modelfs::fs
