// The keys of a build's session list (session.h): which earlier builds a build
// shares its list with.
#ifndef OCICACHE_PKG_GOCACHEPROG_SESSION_KEY_H_
#define OCICACHE_PKG_GOCACHEPROG_SESSION_KEY_H_

#include <functional>
#include <optional>
#include <string>

namespace ocicache::gocacheprog {

// The main module of a directory: the nearest go.mod in it or above it.
struct GoModule {
  std::string path;  // the go.mod's module path, e.g. example.com/app
  std::string root;  // the directory holding it
  std::string rel;   // the directory asked about, relative to root ("." for root)
};

// Reads the module path of the go.mod nearest to `dir` (absolute). nullopt when
// there is none or its module line cannot be read.
std::optional<GoModule> FindGoModule(const std::string& dir);

// The module line of go.mod text: `module PATH` (PATH bare or quoted); "" if none.
std::string ParseModulePath(const std::string& go_mod);

struct SessionKeys {
  std::string exact;     // read first, written at close
  std::string fallback;  // read when `exact` has no list; written with it; may be ""
};

// The session keys of a build in `cwd` whose environment `env` reads.
// - `name` given (--session): that one key, no fallback.
// - In a module: exact = module path, directory within the module, Go version,
//   GOOS/GOARCH, GOFLAGS and GOEXPERIMENT; fallback = module path, Go version and
//   platform. Neither names the checkout directory, branch or machine, so another
//   runner's checkout of the same module finds the list (and the nearest list of
//   the module when its directory or flags were never built).
// - Outside a module (GOPATH mode): the absolute directory instead of the module,
//   no fallback.
SessionKeys SessionKeysFor(const std::string& name, const std::string& cwd,
                           const std::function<std::string(const char*)>& env);

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_SESSION_KEY_H_
