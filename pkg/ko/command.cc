#include "pkg/ko/command.h"

#include <ostream>

namespace ocicache::ko {

const char kUsage[] = "Usage: ocicache ko\n\n(not built yet)\n";

int Main(const cli::CommandEnv& env) {
  *env.err << "ocicache: ko is not built yet\n";
  return 2;
}

}  // namespace ocicache::ko
