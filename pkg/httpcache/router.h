// Which cache protocol and object an HTTP request is about, from its method,
// path and query alone (docs/HTTP.md lists the URL spaces). Pure and
// allocation-bounded: the fuzz target (router_fuzz.cc) runs it on any bytes.
#ifndef OCICACHE_PKG_HTTPCACHE_ROUTER_H_
#define OCICACHE_PKG_HTTPCACHE_ROUTER_H_

#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace ocicache::httpcache {

// The URL spaces, one per client family.
enum class Protocol {
  kBazel,   // bazel-remote's [/PREFIX]/ac/<sha256>, [/PREFIX]/cas/<sha256>
  kKv,      // /cache/<namespace>/<key path>: ccache, Gradle, anything key/value
  kTurbo,   // /v8/artifacts/...: Turborepo's remote cache API
  kNx,      // /v1/cache/<hash>: Nx's self-hosted remote cache API
  kServer,  // /status
};
inline constexpr int kProtocolCount = 5;
// "bazel", "kv", "turbo", "nx", "server": metric labels and /status keys.
const char* ProtocolName(Protocol p);

enum class Target {
  kActionResult,  // bazel /ac/: an ActionResult of REAPI instance `instance`
  kCasBlob,       // bazel /cas/: the blob sha256:<hash> of instance `instance`
  kObject,        // an opaque object stored under entry key `key`
  kTurboStatus,   // GET /v8/artifacts/status
  kTurboEvents,   // POST /v8/artifacts/events (usage events: accepted, dropped)
  kTurboQuery,    // POST /v8/artifacts (which of these hashes exist)
  kStatus,        // GET /status
};

struct Route {
  Protocol protocol = Protocol::kServer;
  Target target = Target::kStatus;
  std::string instance;  // kBazel: the REAPI instance name ("" = default)
  std::string hash;      // kActionResult, kCasBlob: 64 lowercase hex
  // kObject: the cache entry key (docs/FORMAT.md, "HTTP cache objects").
  std::string key;
  // kObject: the key up to its last ':' (protocol and namespace, e.g.
  // "http:kv:ccache"): what a recall list covers (cache/recall.h).
  std::string group;
  bool writes = false;   // PUT, DELETE: needs a write token
};

struct Routed {
  int error = 0;         // 0: `route` is valid; else the HTTP status to answer
  std::string message;   // why, for the error body and the access log
  std::string allow;     // with 405: the methods the URL takes
  Route route;
};

// The longest path accepted (414 beyond).
inline constexpr size_t kMaxPathBytes = 2048;

// `path` is the decoded path (no query); `query` the decoded query arguments.
Routed RouteRequest(absl::string_view method, absl::string_view path,
                    const std::map<std::string, std::string>& query);

// The entry key of an object (docs/FORMAT.md): exposed for tests and `ocicache`.
std::string KvKey(absl::string_view ns, absl::string_view key_path);
std::string TurboKey(absl::string_view team, absl::string_view hash);
std::string NxKey(absl::string_view hash);
std::string CcacheAcKey(absl::string_view instance, absl::string_view hash);

// ccache's `layout=bazel` names its objects /ac/<40 hex digest + its first 24
// hex digits again>: a 64-hex name whose last 24 digits repeat its first 24.
// Such a name is kept as an opaque object, not an ActionResult.
bool IsCcacheBazelName(absl::string_view hex64);

}  // namespace ocicache::httpcache

#endif  // OCICACHE_PKG_HTTPCACHE_ROUTER_H_
