// What a front-end command implemented outside pkg/cli receives: the store
// configuration from global flags and the environment, its own arguments (after
// the command name), and the standard streams.
#ifndef OCICACHE_PKG_CLI_COMMAND_H_
#define OCICACHE_PKG_CLI_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "pkg/cli/stores.h"

namespace ocicache::cli {

struct CommandEnv {
  StoreConfig config;
  std::vector<std::string> args;  // after the command name
  bool json = false;
  bool quiet = false;
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
};

}  // namespace ocicache::cli

#endif  // OCICACHE_PKG_CLI_COMMAND_H_
