#include "pkg/server/resources.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ocicache::server {
namespace {

int64_t CountOpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int64_t n = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the directory stream's own
}

std::string Mib(int64_t bytes) { return absl::StrCat(bytes >> 20, " MiB"); }

}  // namespace

ResourceUsage MeasureResources(const std::string& dir) {
  ResourceUsage u;
  u.open_fds = CountOpenFds();
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    u.max_fds = static_cast<int64_t>(rl.rlim_cur);
  }
  struct statvfs vfs;
  if (!dir.empty() && ::statvfs(dir.c_str(), &vfs) == 0) {
    u.disk_free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    u.disk_size_bytes = static_cast<int64_t>(vfs.f_blocks) * static_cast<int64_t>(vfs.f_frsize);
  }
  return u;
}

int64_t MinFreeBytes(const ResourceUsage& usage, const ResourceLimits& limits) {
  if (usage.disk_size_bytes <= 0) return 0;
  int64_t floor = std::max<int64_t>(
      limits.min_free_bytes,
      static_cast<int64_t>(limits.min_free_fraction * static_cast<double>(usage.disk_size_bytes)));
  // A filesystem smaller than a few floors (a test's tmpfs) keeps an eighth free.
  return std::min(floor, usage.disk_size_bytes / 8);
}

absl::Status CheckResources(const ResourceUsage& usage, const ResourceLimits& limits) {
  if (usage.open_fds >= 0 && usage.max_fds > 0 &&
      static_cast<double>(usage.open_fds) >
          limits.max_fd_fraction * static_cast<double>(usage.max_fds)) {
    return absl::UnavailableError(absl::StrCat(usage.open_fds, " of ", usage.max_fds,
                                               " file descriptors in use (ulimit -n)"));
  }
  if (usage.disk_free_bytes >= 0 && usage.disk_free_bytes < MinFreeBytes(usage, limits)) {
    return absl::UnavailableError(absl::StrCat("the local tier's disk is full: ",
                                               Mib(usage.disk_free_bytes), " free of ",
                                               Mib(usage.disk_size_bytes)));
  }
  return absl::OkStatus();
}

}  // namespace ocicache::server
