// Opening the configured stores: the local directory tier, the registry, or both
// (tiered). Shared by the CLI, the GOCACHEPROG helper and the ko wrapper, which
// take the same settings from flags or the environment.
#ifndef OCICACHE_PKG_STORES_STORES_H_
#define OCICACHE_PKG_STORES_STORES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/admin/admin.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"
#include "pkg/cache/tiers.h"
#include "pkg/client/grpc_store.h"
#include "pkg/registry/client.h"

namespace ocicache::stores {

struct StoreConfig {
  // HOST:PORT of an ocicached: every store call goes there (the settings below
  // are then the server's business and ignored here).
  std::string server;
  std::string server_token;  // bearer token for the server
  // TLS to the server (grpcs://, or implied by any of these): its CA, and a
  // client certificate and key for mTLS (client::ResolveServer).
  std::string server_ca_file;
  std::string server_cert_file;
  std::string server_key_file;
  std::string repo;  // REGISTRY/REPO, empty: local only
  std::string dir;   // local tier, empty: none
  bool no_dir = false;  // --no-dir: no local tier whatever `dir` says
  int shards = 0;
  bool insecure = false;
  bool force_tls = false;
  std::string ca_file;
  std::string username;   // explicit credentials: sent to the registry of `repo` only
  std::string password;
  std::string docker_config;
  // Where a short-lived process keeps the registry's challenge and its Bearer
  // tokens for the next one (registry::ClientOptions::auth_cache_dir); empty:
  // nothing kept. Servers never use it (they live long and fetch once).
  std::string auth_cache_dir;
  // Servers: contact no registry but repo's and these hosts ("*": any) on a
  // caller's behalf (cache::ClientPoolOptions). The CLI leaves it off.
  bool restrict_registries = false;
  std::vector<std::string> allowed_registries;
  // The local tier's bound in bytes (0: none): past it the least recently used
  // entries are evicted; entries used and blobs written within local_evict_grace
  // are kept (they may belong to a write in progress).
  int64_t max_local_bytes = 0;
  absl::Duration local_evict_grace = absl::Minutes(2);
  // Servers with both tiers: answer a registry hit at once and copy its blobs
  // into the local tier from a pool (cache::TieredStoreOptions::fill_in_background).
  bool fill_in_background = false;
  // At most this many registry requests per second, evenly spaced (0: no limit),
  // and at most registry_budget in all (0: none; the CLI's --registry-budget).
  // FinishStoreConfig makes `pacer` from them: one for every client opened from
  // this configuration (and its copies).
  double registry_rate = 0;
  int64_t registry_budget = 0;
  std::shared_ptr<registry::RequestPacer> pacer;
};

// OCICACHE_SERVER, OCICACHE_SERVER_TOKEN, OCICACHE_SERVER_CA, OCICACHE_SERVER_CERT,
// OCICACHE_SERVER_KEY, OCICACHE_REPO (or KOCACHE_REPO), OCICACHE_DIR (default DefaultDir()),
// OCICACHE_SHARDS, OCICACHE_USERNAME, OCICACHE_PASSWORD, OCICACHE_INSECURE,
// OCICACHE_TLS, OCICACHE_CA_FILE, DOCKER_CONFIG, OCICACHE_AUTH_CACHE (default
// DefaultAuthCacheDir(); "off": none).
absl::StatusOr<StoreConfig> ConfigFromEnv();

// $XDG_CACHE_HOME/ocicache or ~/.cache/ocicache.
std::string DefaultDir();
// $XDG_CACHE_HOME/ocicache-auth or ~/.cache/ocicache-auth (beside the local
// tier, not in it: that directory is an OCI image layout).
std::string DefaultAuthCacheDir();

// How a front end uses the registry, which sets its client's patience. One
// table for every front end (stores.cc), so that their retry policies cannot drift.
enum class Profile {
  // The CLI, gc and sync: the registry client's defaults (5 attempts, 60 s stalls).
  kInteractive,
  // On a build's critical path (ko's lookups, gocacheprog's gets): 2 attempts,
  // Retry-After honoured up to 1 s, a 3 s connect timeout, 15 s stalls: an
  // outage costs the build little.
  kLookup,
  // Uploads behind a running build (gocacheprog's puts): default retries, 30 s stalls.
  kBackground,
  // ocicached: the defaults; every call is bounded by its base::CallScope.
  kServer,
};

struct StoreSet {
  std::unique_ptr<cache::Store> store;    // what to use: tiered, local, registry or server
  cache::Tiers tiers;  // owned by store; both null with a server
  std::shared_ptr<cache::ClientPool> pool; // registry clients by host, if a repo is set
  // Whether the registry can be reached now, if a repo is set: the tiered (or
  // guarded) store consults it; a health prober may feed it.
  std::shared_ptr<cache::Breaker> breaker;
  // gc and sync: on these stores, or run by the server. Declared after `store`,
  // which it refers to, so it is destroyed first.
  std::unique_ptr<admin::Admin> admin;
};

// The registry client settings `config` gives (TLS, CA, credentials), with the
// patience of `profile`.
registry::ClientOptions RegistryClientOptions(const StoreConfig& config,
                                              Profile profile = Profile::kInteractive);

// The registry store of config.repo (with config.shards) alone, with a client
// made from `opts` (RegistryClientOptions of a profile, perhaps tuned: a front
// end's own timeout flag, its user agent). For front ends that keep more than
// one client on the same repository.
absl::StatusOr<std::unique_ptr<cache::RegistryStore>> OpenRegistry(const StoreConfig& config,
                                                                   registry::ClientOptions opts);

// A connection to the ocicached config.server names (TLS and client
// certificates as configured) and the GrpcStore options for it (token,
// security); callers tune timeouts and attempts from there.
struct ServerConnection {
  std::shared_ptr<grpc::Channel> channel;
  std::string name;  // as given, with grpcs:// when TLS is implied (for messages)
  client::GrpcStoreOptions options;
};
absl::StatusOr<ServerConnection> ConnectServer(const StoreConfig& config);

// How OpenStores builds the set, beyond what StoreConfig says.
struct OpenOptions {
  // The registry client's patience.
  Profile profile = Profile::kInteractive;
  // The registry's breaker, shared with other sets over the same registry (a
  // server's REAPI instances); null: a new one.
  std::shared_ptr<cache::Breaker> breaker;
  // A registry without a local tier is put behind the breaker (cache::GuardedStore):
  // while it is open, lookups miss and other calls fail at once. For servers,
  // whose prober feeds the breaker; a CLI call should see the registry's own error.
  bool guard_registry_only = false;
};

// Opens what `config` names: with config.server, a client of that ocicached
// (client::GrpcStore, client::GrpcAdmin); else the directory and/or registry.
absl::StatusOr<StoreSet> OpenStores(const StoreConfig& config, OpenOptions open = {});

}  // namespace ocicache::stores

#endif  // OCICACHE_PKG_STORES_STORES_H_
