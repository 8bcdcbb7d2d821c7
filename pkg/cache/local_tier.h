// LocalTier: the local directory tier as the layers above the stores see it
// (layout::LayoutStore implements it), so that servers, admin and front ends
// never name the concrete local store.
#ifndef OCICACHE_PKG_CACHE_LOCAL_TIER_H_
#define OCICACHE_PKG_CACHE_LOCAL_TIER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

// What gc of a local tier's unreferenced blobs removed.
struct LocalGcResult {
  int64_t blobs_removed = 0;
  int64_t bytes_removed = 0;
};

// The local directory tier: a Store, plus its size, bound and eviction figures,
// and gc of the blobs no entry references (layout::LayoutStore implements it).
class LocalTier : public Store {
 public:
  // Where it lives (for health checks and messages).
  virtual const std::string& dir() const = 0;
  // Bytes of blobs it holds now.
  virtual absl::StatusOr<int64_t> TotalSize() = 0;
  // Its bound in bytes; 0: unbounded.
  virtual int64_t max_bytes() const = 0;
  // Entries and bytes evicted to keep within max_bytes since it was opened.
  virtual int64_t entries_evicted() const = 0;
  virtual int64_t bytes_evicted() const = 0;
  // Removes blobs no entry references (those written recently are kept: they
  // may belong to a write in progress).
  virtual absl::StatusOr<LocalGcResult> CollectUnreferenced() = 0;
  // Frees about `bytes` (its disk is full): unreferenced blobs, then least
  // recently used entries, as the bound's eviction does. Bytes removed.
  virtual absl::StatusOr<int64_t> ReleaseSpace(int64_t bytes) = 0;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_LOCAL_TIER_H_
