// Private to pkg/layout (listed in srcs, not hdrs): what the files defining
// LayoutStore share: the layout's file names, descriptor ownership, errno
// mapping, small-file reads, and the flock holder. Not part of the API.
#ifndef OCICACHE_PKG_LAYOUT_LAYOUT_INTERNAL_H_
#define OCICACHE_PKG_LAYOUT_LAYOUT_INTERNAL_H_

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/base/files.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::layout {
namespace internal {

// Names in the layout directory (see "On disk" in layout_store.h).
inline constexpr char kIndexFile[] = "index.json";
inline constexpr char kRefsDir[] = "refs";
inline constexpr char kTmpDir[] = "tmp";

inline constexpr int64_t kMaxIndexBytes = int64_t{1} << 30;

using base::UniqueFd;

// I/O errors (base::ErrnoStatus). ENOENT is not mapped to NotFound: callers
// that mean "a miss" check for it themselves.
inline absl::Status ErrnoError(int err, absl::string_view what) {
  return base::ErrnoStatus(err, what);
}

absl::Status ReadAll(int fd, int64_t max, std::string* out, absl::string_view what);

// fstatat without following a symlink; false (errno set) if it fails.
bool StatAt(int dir_fd, const char* name, struct stat* st);

// Reads a small regular file under dir_fd, refusing symlinks and special files.
// NotFound if absent, DataLoss if a symlink or not a regular file or larger than max.
absl::StatusOr<std::string> ReadSmallFileAt(int dir_fd, const char* name, int64_t max,
                                            absl::string_view where,
                                            struct stat* st_out = nullptr);

absl::Time MtimeOf(const struct stat& st);

}  // namespace internal

// Holds an exclusive flock on ocicache.lock; closing the descriptor releases it.
// Each lock opens its own descriptor, so threads of one process exclude each other too.
class LayoutStore::FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {}
  FileLock(FileLock&& o) noexcept : fd_(std::move(o.fd_)) {}

 private:
  internal::UniqueFd fd_;
};

}  // namespace ocicache::layout

#endif  // OCICACHE_PKG_LAYOUT_LAYOUT_INTERNAL_H_
