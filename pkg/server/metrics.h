// ocicached's metrics in the Prometheus text format (version 0.0.4), served by
// a minimal HTTP/1.1 server on its own port: GET /metrics answers, anything
// else is 404, one request per connection, one thread. Meant for scrapers on a
// trusted network (no TLS, no authentication).
#ifndef OCICACHE_PKG_SERVER_METRICS_H_
#define OCICACHE_PKG_SERVER_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pkg/rpc/backend.h"
#include "pkg/server/resources.h"

namespace ocicache::server {

// What the exposition shows besides the counters.
struct MetricsSnapshot {
  bool serving = false;
  int64_t registry_requests = -1;  // -1: no registry
  int64_t local_tier_bytes = -1;   // -1: no local tier
  int64_t local_tier_limit_bytes = 0;  // --max_local_size; 0: unbounded
  int64_t local_evicted_entries = 0;
  int64_t local_evicted_bytes = 0;
  int64_t registry_backlog = -1;  // -1: not tiered
  int64_t registry_backlog_blobs = 0;
  absl::Duration uptime;
  // REAPI action cache lookups by instance name.
  struct ReapiInstance {
    std::string instance;
    int64_t hits = 0;
    int64_t misses = 0;
  };
  std::vector<ReapiInstance> reapi;
  int64_t reapi_open_instances = 0;
  int64_t reapi_closed_instances = 0;
  ResourceUsage resources;
};

// The exposition text.
std::string RenderMetrics(const rpc::Counters& counters, const MetricsSnapshot& snap);

class MetricsHttpServer {
 public:
  // Listens on HOST:PORT (port 0: a free one) and answers GET /metrics with render().
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render);
  ~MetricsHttpServer();  // Stop()

  int port() const { return port_; }
  void Stop();

 private:
  MetricsHttpServer() = default;
  void Run();
  void Serve(int fd);

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe that ends Run's poll
  int port_ = 0;
  std::function<std::string()> render_;
  std::thread thread_;
};

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_METRICS_H_
