// ocicache: the client CLI. All behaviour lives in pkg/cli.
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "pkg/cli/cli.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv, argv + argc);
  return ocicache::cli::Main(args, std::cout, std::cerr);
}
