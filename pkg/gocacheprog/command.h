// `ocicache gocacheprog`: Go's GOCACHEPROG protocol on stdin/stdout.
#ifndef OCICACHE_PKG_GOCACHEPROG_COMMAND_H_
#define OCICACHE_PKG_GOCACHEPROG_COMMAND_H_

#include "pkg/cmdline/command.h"

namespace ocicache::gocacheprog {

// Usage text for --help.
extern const char kUsage[];
// Runs the command; returns the process exit code.
int Main(const cmdline::CommandEnv& env);

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_COMMAND_H_
