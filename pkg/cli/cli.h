// The `ocicache` command line, as a library so tests can run it in-process.
// cmd/ocicache/main.cc only calls Main().
#ifndef OCICACHE_PKG_CLI_CLI_H_
#define OCICACHE_PKG_CLI_CLI_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace ocicache::cli {

// Documented exit codes (README.md, `ocicache --help`).
enum ExitCode {
  kExitOk = 0,          // success, or a hit
  kExitMiss = 1,        // a miss (get, stat, rm of an absent key, blob pull/stat)
  kExitUsage = 2,       // bad command line or bad input (malformed key, digest, file, too large)
  kExitStoreError = 3,  // registry, auth or storage error (unreachable, denied, corrupt data)
};

int Main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace ocicache::cli

#endif  // OCICACHE_PKG_CLI_CLI_H_
