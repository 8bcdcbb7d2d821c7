// Small file-system mechanisms every package uses instead of its own copy: an
// owned file descriptor, errno as an absl::Status, and a file replaced
// atomically (written beside its path, then renamed over it).
#ifndef OCICACHE_PKG_BASE_FILES_H_
#define OCICACHE_PKG_BASE_FILES_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ocicache::base {

// Owns a file descriptor: closed when destroyed or reset. Movable, not copyable.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the current descriptor (if any) and owns `fd`.
  void reset(int fd = -1);
  // Closes now and reports close(2)'s error (what "write" errors it may carry).
  absl::Status Close(absl::string_view what);

 private:
  int fd_ = -1;
};

// "<what>: <strerror(err)>" with a code for the errno: EACCES, EPERM and EROFS
// are PERMISSION_DENIED; ENOSPC and EDQUOT RESOURCE_EXHAUSTED (a full disk);
// anything else INTERNAL. ENOENT is not NOT_FOUND here: a caller that means "a
// miss" checks for it itself, so a vanished directory is never taken for one.
absl::Status ErrnoStatus(int err, absl::string_view what);

// ENOSPC and EDQUOT are ResourceExhausted with this payload, so a server can
// tell its own full disk (retry elsewhere: UNAVAILABLE) from a caller's
// request that is too large.
inline constexpr char kDiskFullPayload[] = "ocicache.dev/disk-full";
bool IsDiskFull(const absl::Status& s);

// `s` with `prefix` before its message, its code and payloads kept.
absl::Status Prefixed(const absl::Status& s, absl::string_view prefix);

// Writes all of `data` to fd, retrying short writes and EINTR.
absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what);

// A file written next to `path` (same directory, a name unique to this process
// and call) and renamed over `path` by Commit(): readers see the old file or the
// whole new one, never a part. Destroyed without a successful Commit(), the
// temporary file is removed.
class AtomicFile {
 public:
  struct Options {
    mode_t mode = 0644;
    // Give the new file the permission bits of the file it replaces, if any.
    bool keep_mode = false;
  };
  static absl::StatusOr<AtomicFile> Create(const std::string& path, Options opts);
  static absl::StatusOr<AtomicFile> Create(const std::string& path) {
    return Create(path, Options());
  }
  AtomicFile(AtomicFile&& o) noexcept = default;
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile();

  int fd() const { return fd_.get(); }
  const std::string& temp_path() const { return temp_; }
  absl::Status Write(absl::string_view data) { return WriteAll(fd_.get(), data, temp_); }
  // Closes the file and renames it over the path.
  absl::Status Commit();

 private:
  AtomicFile(std::string path, std::string temp, UniqueFd fd)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(std::move(fd)) {}
  std::string path_;
  std::string temp_;
  UniqueFd fd_;
  bool done_ = false;
};

// AtomicFile in one call: `path` holds exactly `data` afterwards, or is unchanged.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data,
                                 AtomicFile::Options opts);
inline absl::Status WriteFileAtomically(const std::string& path, absl::string_view data) {
  return WriteFileAtomically(path, data, AtomicFile::Options());
}

}  // namespace ocicache::base

#endif  // OCICACHE_PKG_BASE_FILES_H_
