// The tiers of an opened cache as the layers above the stores see them: a local
// tier (local_tier.h) and a registry. pkg/stores opens them.
#ifndef OCICACHE_PKG_CACHE_TIERS_H_
#define OCICACHE_PKG_CACHE_TIERS_H_

#include "pkg/cache/backlog.h"
#include "pkg/cache/local_tier.h"
#include "pkg/cache/registry_store.h"

namespace ocicache::cache {

// The tiers of one opened cache; either may be null (not configured, or the
// cache is reached through a server). Neither is owned.
struct Tiers {
  LocalTier* local = nullptr;
  RegistryStore* remote = nullptr;
  // With both tiers: the entries put locally that the registry still lacks.
  const Backlog* backlog = nullptr;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_TIERS_H_
