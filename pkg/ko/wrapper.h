// ocicache-go: a `go` for ko's KO_GO_PATH. Every invocation runs the real go with
// the same arguments, streams and exit code (it execs it). Two additions:
//
// 1. `go tool buildid FILE` with FILE under $KOCACHE/bin (ko's lookup key for a
//    binary it just built): go runs first, with its stdout captured. Unless the
//    KOCACHE files beside FILE already know the build id (or it missed moments
//    ago), `ocicache ko lookup` (consult.h) asks the cache (local directory, then
//    one registry GET) and on a hit merges the entry into buildid-to-diffid and
//    diffid-to-descriptor exactly as ko writes them, so ko finds it and skips
//    building the layer. Then the build id is printed as go printed it, with go's
//    exit code. A miss changes nothing; a cache problem is at most one warning
//    line and the build goes on as if there were no cache. ko reads stdout and
//    stderr of this command through one pipe, so when both are the same file
//    the warning goes only to the lookup log (lookup_log.h), never into what ko
//    takes as the build id.
// 2. With OCICACHE_GOCACHEPROG=1, `go build|install|test|run` get
//    GOCACHEPROG="<ocicache> gocacheprog" and, on Go 1.21-1.23,
//    GOEXPERIMENT+=cacheprog, unless GOCACHEPROG is set already.
//
// The real go: OCICACHE_GO, else the first `go` in PATH that is not this binary
// (compared by real path). ocicache: OCICACHE_BIN, else beside this binary, else
// PATH.
//
// This code links nothing but the C++ library and nlohmann's header, so that
// ocicache-go starts without loading the registry client's shared libraries
// (Abseil, curl, OpenSSL) on every `go` call; only a store lookup pays that, in
// `ocicache ko lookup` (bench/ko_bench.sh measures the difference).
#ifndef OCICACHE_PKG_KO_WRAPPER_H_
#define OCICACHE_PKG_KO_WRAPPER_H_

#include <string>
#include <string_view>

namespace ocicache::ko {

extern const char kWrapperUsage[];

// ocicache-go's main(); returns only when it does not exec the real go.
int WrapperMain(int argc, char** argv);

// The real go for a wrapper whose own real path is `self`; "" and *error if none.
std::string FindRealGo(const std::string& self, std::string* error);

// The ocicache binary: OCICACHE_BIN, else beside `self`, else PATH; "" if none.
std::string FindOcicache(const std::string& self);

// "a,b" + "cacheprog" -> "a,b,cacheprog"; unchanged if already listed.
std::string AddExperiment(std::string_view goexperiment, std::string_view name);

// 23 for "go1.23.4", 24 for "go1.24rc1"; -1 if not "go1.N..." (e.g. "devel ...").
int GoMinorVersion(std::string_view goversion);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_WRAPPER_H_
