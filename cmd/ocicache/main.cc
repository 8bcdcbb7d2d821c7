// ocicache: the client CLI. All behaviour lives in pkg/cli.
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "pkg/cli/cli.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  // Debian builds Abseil without NDEBUG, so every Mutex acquisition would feed a
  // global lock-order graph (deadlock detection: a few percent of a warm lookup's
  // CPU, and one more global lock). The tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv, argv + argc);
  return ocicache::cli::Main(args, std::cout, std::cerr);
}
