// What a front-end command implemented outside pkg/cli receives: the store
// configuration from global flags and the environment, its own arguments (after
// the command name), and the standard streams.
#ifndef OCICACHE_PKG_CMDLINE_COMMAND_H_
#define OCICACHE_PKG_CMDLINE_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "pkg/stores/stores.h"

namespace ocicache::cmdline {

struct CommandEnv {
  stores::StoreConfig config;
  std::vector<std::string> args;  // after the command name
  bool json = false;
  bool quiet = false;
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
};

}  // namespace ocicache::cmdline

#endif  // OCICACHE_PKG_CMDLINE_COMMAND_H_
