// Temporary upload staging directories for a server without a directory tier.
//
// Each lives as long as its server, under $TMPDIR (or /tmp), named
// "ocicached-uploads-<pid>-XXXXXX", and holds "owner.lock", which the server keeps
// locked (flock) while it runs. A later server removes the directories left by
// servers that died without cleaning up (SIGKILL, a crash), and only those it can
// prove are abandoned and its own: owned by its user, with a lock file it can
// lock. The pid in the name is a hint for people; it proves nothing (pid
// namespaces, containers sharing /tmp, pid reuse), so it is never trusted.
#ifndef OCICACHE_PKG_SERVER_TEMP_UPLOADS_H_
#define OCICACHE_PKG_SERVER_TEMP_UPLOADS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ocicache::server {

class TempUploadDir {
 public:
  // Creates the directory under `base` ("" = $TMPDIR or /tmp) and locks it.
  static absl::StatusOr<std::unique_ptr<TempUploadDir>> Create(std::string base = "");
  // Removes the directory and its files (plain files only: what staging writes).
  ~TempUploadDir();
  TempUploadDir(const TempUploadDir&) = delete;
  TempUploadDir& operator=(const TempUploadDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  TempUploadDir(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}
  std::string path_;
  int lock_fd_;
};

// Removes the abandoned staging directories under `base` ("" = $TMPDIR or /tmp):
// those owned by this process's user whose owner.lock can be locked. Directories
// of other users, of running servers and without a lock file are left alone.
// Returns how many it removed.
int RemoveAbandonedUploadDirs(std::string base = "");

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_TEMP_UPLOADS_H_
