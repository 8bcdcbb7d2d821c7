// Opening the configured stores: the local directory tier, the registry, or both
// (tiered). Shared by the CLI, the GOCACHEPROG helper and the ko wrapper, which
// take the same settings from flags or the environment.
#ifndef OCICACHE_PKG_CLI_STORES_H_
#define OCICACHE_PKG_CLI_STORES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::cli {

struct StoreConfig {
  std::string repo;  // REGISTRY/REPO, empty: local only
  std::string dir;   // local tier, empty: none
  int shards = 0;
  bool insecure = false;
  bool force_tls = false;
  std::string ca_file;
  std::string username;
  std::string password;
  std::string docker_config;
};

// OCICACHE_REPO (or KOCACHE_REPO), OCICACHE_DIR (default DefaultDir()),
// OCICACHE_SHARDS, OCICACHE_USERNAME, OCICACHE_PASSWORD, OCICACHE_INSECURE,
// OCICACHE_TLS, OCICACHE_CA_FILE, DOCKER_CONFIG.
absl::StatusOr<StoreConfig> ConfigFromEnv();

// $XDG_CACHE_HOME/ocicache or ~/.cache/ocicache.
std::string DefaultDir();

struct StoreSet {
  std::unique_ptr<cache::Store> store;    // what to use: tiered, local or registry
  layout::LayoutStore* local = nullptr;    // owned by store
  cache::RegistryStore* remote = nullptr;  // owned by store
  std::shared_ptr<cache::ClientPool> pool; // registry clients by host, if a repo is set
};

// Opens what `config` names. `local_opts` tunes the layout store (its fetcher
// is set here when a registry is configured).
absl::StatusOr<StoreSet> OpenStores(const StoreConfig& config,
                                    layout::LayoutStore::Options local_opts = {});

}  // namespace ocicache::cli

#endif  // OCICACHE_PKG_CLI_STORES_H_
