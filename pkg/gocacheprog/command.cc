#include "pkg/gocacheprog/command.h"

#include <ostream>

namespace ocicache::gocacheprog {

const char kUsage[] = "Usage: ocicache gocacheprog\n\n(not built yet)\n";

int Main(const cli::CommandEnv& env) {
  *env.err << "ocicache: gocacheprog is not built yet\n";
  return 2;
}

}  // namespace ocicache::gocacheprog
