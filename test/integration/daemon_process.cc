#include "test/integration/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "test/harness/spawn.h"
#include "test/integration/served_store.h"

namespace ocicache::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string OcicachedBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "ocicache", "/cmd/ocicached/ocicached");
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(std::vector<std::string> args,
                                                                    int port) {
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  d->args_ = std::move(args);
  d->dir_ = TempDir("daemon");
  d->port_ = port;
  if (absl::Status s = d->Launch(); !s.ok()) return s;
  return d;
}

DaemonProcess::~DaemonProcess() { Kill(); }

std::string DaemonProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string DaemonProcess::Stderr() const {
  std::string all;
  for (int i = 1; i <= launches_; ++i) all += ReadAll(absl::StrCat(dir_, "/stderr.", i));
  return all;
}

absl::Status DaemonProcess::Launch() {
  ++launches_;
  std::string port_file = absl::StrCat(dir_, "/port.", launches_);
  std::vector<std::string> argv_s = {OcicachedBinary(), absl::StrCat("--listen=127.0.0.1:", port_),
                                     "--port_file=" + port_file, "--shutdown_grace=2s"};
  argv_s.insert(argv_s.end(), args_.begin(), args_.end());
  std::string err_path = absl::StrCat(dir_, "/stderr.", launches_);
  harness::SpawnOptions so;
  so.stderr_path = err_path;
  auto port = harness::SpawnReportingPort(argv_s, port_file, so, &pid_);
  if (!port.ok()) return port.status();
  port_ = *port;
  return absl::OkStatus();
}

void DaemonProcess::Kill() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
}

int DaemonProcess::Terminate(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return -1;
}

absl::Status DaemonProcess::Restart() {
  Kill();
  // The port was ours a moment ago; another process taking it meanwhile is
  // unlikely on a test machine, and bind fails loudly if it happens.
  return Launch();
}

}  // namespace ocicache::testing
