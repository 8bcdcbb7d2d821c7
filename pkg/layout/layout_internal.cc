#include "pkg/layout/layout_internal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace ocicache::layout::internal {

absl::Status ReadAll(int fd, int64_t max, std::string* out, absl::string_view what) {
  out->clear();
  char buf[64 * 1024];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read ", what));
    }
    if (r == 0) return absl::OkStatus();
    out->append(buf, static_cast<size_t>(r));
    if (static_cast<int64_t>(out->size()) > max) {
      return absl::DataLossError(absl::StrCat(what, " is larger than ", max, " bytes"));
    }
  }
}

bool StatAt(int dir_fd, const char* name, struct stat* st) {
  return ::fstatat(dir_fd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

absl::StatusOr<std::string> ReadSmallFileAt(int dir_fd, const char* name, int64_t max,
                                            absl::string_view where, struct stat* st_out) {
  int fd = ::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(where, " does not exist"));
    if (errno == ELOOP) {
      return absl::DataLossError(absl::StrCat(where, " is a symbolic link; refusing it"));
    }
    return ErrnoError(errno, absl::StrCat("open ", where));
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", where));
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(where, " is not a regular file; refusing it"));
  }
  std::string data;
  if (absl::Status s = ReadAll(fd, max, &data, where); !s.ok()) return s;
  if (st_out != nullptr) *st_out = st;
  return data;
}

absl::Time MtimeOf(const struct stat& st) { return absl::TimeFromTimespec(st.st_mtim); }

}  // namespace ocicache::layout::internal
