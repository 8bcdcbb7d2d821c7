// `ocicache ko save|restore`: bridge between an unmodified ko's KOCACHE and the cache.
#ifndef OCICACHE_PKG_KO_COMMAND_H_
#define OCICACHE_PKG_KO_COMMAND_H_

#include "pkg/cmdline/command.h"

namespace ocicache::ko {

// Usage text for --help.
extern const char kUsage[];
// Runs the command; returns the process exit code.
int Main(const cmdline::CommandEnv& env);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_COMMAND_H_
