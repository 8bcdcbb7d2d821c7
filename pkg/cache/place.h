// Mount-or-copy: make one of an entry's blobs present in a target repository
// (e.g. where ko is about to push an image), without uploading it again when it
// can be avoided, and remember where it now is.
#ifndef OCICACHE_PKG_CACHE_PLACE_H_
#define OCICACHE_PKG_CACHE_PLACE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

enum class PlacedBy {
  kAlreadyPresent,  // the target had it: nothing moved
  kLocation,        // from a recorded location: cross-repository mount on the same
                    // registry (no bytes moved), else a streamed copy
  kCacheCopy,       // streamed from the cache's own copy
};

struct Placement {
  Location location;  // the blob in the target repository
  PlacedBy by;
};

// Makes blob `digest` of the entry for `key` present in `target`: already there,
// else from each recorded location in turn, else from the cache's stored copy.
// Then records the target location in the entry (cache.Put) if it was not
// recorded yet. NotFound if the entry is absent or no source has the blob.
absl::StatusOr<Placement> PlaceBlob(Store& cache, absl::string_view key,
                                    const oci::Digest& digest, RegistryStore& target);

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_PLACE_H_
