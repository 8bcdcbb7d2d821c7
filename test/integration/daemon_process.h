// Test helper: one ocicached process (the real binary), started on 127.0.0.1
// with a port file, killed with the test (PR_SET_PDEATHSIG). Fault tests kill
// it with SIGKILL and start it again on the same port and directory.
#ifndef OCICACHE_TEST_INTEGRATION_DAEMON_PROCESS_H_
#define OCICACHE_TEST_INTEGRATION_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ocicache::testing {

// Where Bazel puts //cmd/ocicached in a test's runfiles.
std::string OcicachedBinary();

class DaemonProcess {
 public:
  // Starts `ocicached --listen=127.0.0.1:PORT --port_file=... args...` (port 0:
  // any free port) and waits until it reports its port. Call from a thread that
  // outlives the process (the death signal follows the forking thread).
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(std::vector<std::string> args,
                                                              int port = 0);
  ~DaemonProcess();  // SIGKILL if still running.

  int port() const { return port_; }
  std::string address() const;
  pid_t pid() const { return pid_; }
  std::string Stderr() const;

  // SIGKILL and reap.
  void Kill();
  // SIGTERM; the exit code, or -1 if it did not exit within `timeout`.
  int Terminate(absl::Duration timeout = absl::Seconds(20));
  // Kill() (if running), then start again with the same arguments and port.
  absl::Status Restart();

 private:
  DaemonProcess() = default;
  absl::Status Launch();

  std::vector<std::string> args_;
  std::string dir_;
  pid_t pid_ = 0;
  int port_ = 0;
  int launches_ = 0;
};

}  // namespace ocicache::testing

#endif  // OCICACHE_TEST_INTEGRATION_DAEMON_PROCESS_H_
