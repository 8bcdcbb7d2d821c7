#include "pkg/base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace ocicache::base {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

absl::Status UniqueFd::Close(absl::string_view what) {
  int fd = release();
  if (fd >= 0 && ::close(fd) != 0) return ErrnoStatus(errno, absl::StrCat("close ", what));
  return absl::OkStatus();
}

bool IsDiskFull(const absl::Status& s) { return s.GetPayload(kDiskFullPayload).has_value(); }

absl::Status Prefixed(const absl::Status& s, absl::string_view prefix) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(prefix, s.message()));
  s.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

absl::Status ErrnoStatus(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT: {
      absl::Status s = absl::ResourceExhaustedError(msg);
      s.SetPayload(kDiskFullPayload, absl::Cord(std::strerror(err)));
      return s;
    }
    default:
      return absl::InternalError(msg);
  }
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("write ", what));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<AtomicFile> AtomicFile::Create(const std::string& path, Options opts) {
  static std::atomic<uint64_t> counter{0};
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = absl::StrCat(dir, ".", name, ".tmp.", ::getpid(), ".", counter++);
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                     opts.mode));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create ", temp));
  struct stat st;
  if (opts.keep_mode && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    ::fchmod(fd.get(), st.st_mode & 07777);
  }
  return AtomicFile(path, std::move(temp), std::move(fd));
}

AtomicFile::~AtomicFile() {
  if (!done_ && !temp_.empty()) ::unlink(temp_.c_str());
}

absl::Status AtomicFile::Commit() {
  if (absl::Status s = fd_.Close(temp_); !s.ok()) return s;
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("rename to ", path_));
  }
  done_ = true;
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data,
                                 AtomicFile::Options opts) {
  auto f = AtomicFile::Create(path, opts);
  if (!f.ok()) return f.status();
  if (absl::Status s = f->Write(data); !s.ok()) return s;
  return f->Commit();
}

}  // namespace ocicache::base
