// Starting a server binary as a child process that reports its port in a file
// (ocicached --port_file), for integration tests and benchmarks.
#ifndef OCICACHE_TEST_HARNESS_SPAWN_H_
#define OCICACHE_TEST_HARNESS_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ocicache::harness {

struct SpawnOptions {
  std::string stdout_path;  // empty: /dev/null
  std::string stderr_path;  // empty: /dev/null
  absl::Duration port_timeout = absl::Seconds(20);
};

// Forks and execs argv (argv[0] is a path); the child is killed when this
// process dies (PR_SET_PDEATHSIG). Waits until `port_file` holds a positive port
// and returns it, with the child's pid in *pid. If the child exits first, *pid is
// 0 and the error quotes its stderr; on timeout the child is killed and reaped.
absl::StatusOr<int> SpawnReportingPort(const std::vector<std::string>& argv,
                                       const std::string& port_file, const SpawnOptions& opts,
                                       pid_t* pid);

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_SPAWN_H_
