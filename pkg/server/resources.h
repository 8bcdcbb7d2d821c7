// What the health probe checks besides the backend: the process's file
// descriptors and the free space where the local tier lives. A server near
// either limit fails calls in ways a load balancer cannot see ("Too many open
// files", ENOSPC on every write); reporting NOT_SERVING moves traffic to a
// replica that can still answer, and says why in the log.
#ifndef OCICACHE_PKG_SERVER_RESOURCES_H_
#define OCICACHE_PKG_SERVER_RESOURCES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace ocicache::server {

struct ResourceUsage {
  int64_t open_fds = -1;  // -1: unknown
  int64_t max_fds = -1;   // the soft RLIMIT_NOFILE; -1: unlimited or unknown
  int64_t disk_free_bytes = -1;  // available to this process; -1: no directory
  int64_t disk_size_bytes = -1;
};

struct ResourceLimits {
  // NOT_SERVING past this share of the fd limit.
  double max_fd_fraction = 0.9;
  // NOT_SERVING with less than this free where the local tier lives: the
  // larger of min_free_bytes and min_free_fraction of the filesystem.
  int64_t min_free_bytes = 64 << 20;
  double min_free_fraction = 0.01;
};

// Measures this process's fds and, with a non-empty `dir`, its filesystem.
ResourceUsage MeasureResources(const std::string& dir);

// The free space below which `usage`'s filesystem counts as full (0 without one).
int64_t MinFreeBytes(const ResourceUsage& usage, const ResourceLimits& limits);

// Unavailable (with the figures) when usage is past a limit; OK otherwise.
absl::Status CheckResources(const ResourceUsage& usage, const ResourceLimits& limits);

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_RESOURCES_H_
