// Request counters of the HTTP endpoint, per protocol: for the Prometheus
// exposition (ocicached_http_*) and the /status page.
#ifndef OCICACHE_PKG_HTTPCACHE_STATS_H_
#define OCICACHE_PKG_HTTPCACHE_STATS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/httpcache/router.h"

namespace ocicache::httpcache {

enum class Outcome { kNone, kHit, kMiss };

class Stats {
 public:
  struct Protocol {
    std::map<std::pair<std::string, int>, int64_t> requests;  // (method, status) -> count
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t bytes_in = 0;
    int64_t bytes_out = 0;
    int64_t bytes_stored = 0;  // of accepted PUT bodies, as stored (compressed or not)
    std::vector<int64_t> buckets;  // per bound of LatencyBuckets(), not cumulative
    int64_t count = 0;
    double seconds = 0;
  };

  // Upper bounds (seconds) of the latency buckets; +Inf is implied.
  static const std::vector<double>& LatencyBuckets();

  void Count(httpcache::Protocol p, absl::string_view method, int status, Outcome outcome,
             int64_t bytes_in, int64_t bytes_out, int64_t bytes_stored, absl::Duration took);
  Protocol Get(httpcache::Protocol p) const;

  // Prometheus text (0.0.4) of every ocicached_http_* family.
  std::string RenderPrometheus() const;

 private:
  mutable absl::Mutex mu_;
  std::array<Protocol, kProtocolCount> by_protocol_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::httpcache

#endif  // OCICACHE_PKG_HTTPCACHE_STATS_H_
