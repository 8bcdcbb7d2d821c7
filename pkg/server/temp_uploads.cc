#include "pkg/server/temp_uploads.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ocicache::server {
namespace {

constexpr char kPrefix[] = "ocicached-uploads-";
constexpr char kLock[] = "owner.lock";

std::string BaseOr(std::string base) {
  if (!base.empty()) return base;
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp ? tmp : "/tmp";
}

// Removes a directory of plain files; what is not a plain file stays, and so
// does the directory then.
void RemoveFlatDir(int parent_fd, const std::string& name) {
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  if (DIR* d = ::fdopendir(fd)) {
    while (struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        ::unlinkat(fd, e->d_name, 0);
      }
    }
    ::closedir(d);  // closes fd
  } else {
    ::close(fd);
  }
  ::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TempUploadDir>> TempUploadDir::Create(std::string base) {
  std::string tmpl = absl::StrCat(BaseOr(std::move(base)), "/", kPrefix, getpid(), "-XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", tmpl, ": ", std::strerror(errno)));
  }
  // Locked under another name, then renamed: whoever finds owner.lock finds it locked.
  std::string lock = absl::StrCat(tmpl, "/", kLock);
  std::string fresh = lock + ".new";
  int fd = ::open(fresh.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::rename(fresh.c_str(), lock.c_str()) != 0) {
    std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(fresh.c_str());
    ::rmdir(tmpl.c_str());
    return absl::InternalError(absl::StrCat("cannot lock ", lock, ": ", why));
  }
  return std::unique_ptr<TempUploadDir>(new TempUploadDir(std::move(tmpl), fd));
}

TempUploadDir::~TempUploadDir() {
  // Files first, the lock last: a server starting meanwhile cannot take the lock
  // and so leaves the directory to us.
  if (DIR* d = ::opendir(path_.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0 ||
          std::strcmp(e->d_name, kLock) == 0) {
        continue;
      }
      ::unlink(absl::StrCat(path_, "/", e->d_name).c_str());
    }
    ::closedir(d);
  }
  ::unlink(absl::StrCat(path_, "/", kLock).c_str());
  ::close(lock_fd_);
  ::rmdir(path_.c_str());
}

int RemoveAbandonedUploadDirs(std::string base) {
  base = BaseOr(std::move(base));
  int base_fd = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0) return 0;
  std::vector<std::string> names;
  if (DIR* d = ::opendir(base.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (absl::StartsWith(e->d_name, kPrefix)) names.push_back(e->d_name);
    }
    ::closedir(d);
  }
  int removed = 0;
  for (const std::string& name : names) {
    struct stat st;
    if (::fstatat(base_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != ::geteuid()) {
      continue;  // not a directory, or another user's
    }
    const std::string lock = absl::StrCat(name, "/", kLock);
    int fd = ::openat(base_fd, lock.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;  // no proof of who made it
    struct stat lst;
    // The lock is held by a running server (any pid namespace sharing this file
    // system), or the file is not ours: leave the directory alone.
    if (::fstat(fd, &lst) != 0 || lst.st_uid != ::geteuid() ||
        ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      continue;
    }
    RemoveFlatDir(base_fd, name);  // removes owner.lock too; our lock goes with the fd
    ::close(fd);
    ++removed;
  }
  ::close(base_fd);
  return removed;
}

}  // namespace ocicache::server
