// Cache maintenance: garbage collection by age and count, and copying entries
// between the local tier and the registry. One interface, two implementations:
// LocalAdmin works on the stores directly (the CLI without --server, and the
// server's Admin service), client::GrpcAdmin asks a server (ocicache --server).
// The CLI renders both the same way.
#ifndef OCICACHE_PKG_ADMIN_ADMIN_H_
#define OCICACHE_PKG_ADMIN_ADMIN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pkg/cache/backlog.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"
#include "pkg/cache/local_tier.h"

namespace ocicache::admin {

// One entry handled (or, in a dry run, that would be).
struct ProgressEvent {
  int64_t done = 0;   // entries handled so far, this one included
  int64_t total = 0;  // entries to handle
  std::string key;
  std::string action;  // "delete", "push" or "pull"
  int64_t bytes = 0;   // the entry's size (as listed)
};
// Returns false to stop (the operation then fails with Cancelled).
using ProgressFn = std::function<bool(const ProgressEvent&)>;

struct GcRequest {
  // Delete entries last used before now - older_than...
  std::optional<absl::Duration> older_than;
  // ...except the keep_last most recently used. At least one must be set.
  std::optional<int64_t> keep_last;
  bool dry_run = false;
};

struct GcResult {
  int64_t entries = 0;  // listed
  int64_t deleted = 0;
  int64_t bytes = 0;    // of the deleted entries
  // Listed as older than the cut, but the entry itself says it was used since
  // (a listing from records that lags): kept.
  int64_t kept_in_use = 0;
  // The registry's listing records could not be merged (gc itself succeeded).
  std::string records_error;
  bool dry_run = false;
  bool local_tier = false;  // a local tier was collected (not in dry runs)
  int64_t local_blobs_removed = 0;
  int64_t local_bytes_freed = 0;
};

enum class SyncDirection { kBoth, kUp, kDown };

struct SyncRequest {
  SyncDirection direction = SyncDirection::kBoth;
  bool dry_run = false;
};

struct SyncResult {
  int64_t pushed = 0;  // entries copied (or to copy) to the registry
  int64_t pulled = 0;  // entries copied (or to copy) to the local tier
  bool dry_run = false;
  std::string local;   // Describe() of the local tier
  std::string remote;  // Describe() of the registry
};

// What `ocicache status` shows: the store, and what still has to reach the registry.
struct StatusReport {
  std::string store;              // Describe() of the store
  int64_t backlog = -1;           // entries put locally, still to push; -1: not tiered
  int64_t local_tier_bytes = -1;  // -1: no local tier
  // A server's counters since it started (through --server); -1 otherwise.
  int64_t lookups = -1;
  int64_t hits = -1;
  int64_t misses = -1;
  int64_t uptime_seconds = -1;
};

class Admin {
 public:
  virtual ~Admin() = default;
  // Deletes entries by age and count (most recently used first), then, unless a
  // dry run, unreferenced blobs of the local tier. InvalidArgument when neither
  // older_than nor keep_last is set, or when they are negative.
  virtual absl::StatusOr<GcResult> CollectGarbage(const GcRequest& req,
                                                  const ProgressFn& progress) = 0;
  // Copies the entries one side lacks to the other, blobs first.
  // FailedPrecondition without both a local tier and a registry.
  virtual absl::StatusOr<SyncResult> Sync(const SyncRequest& req, const ProgressFn& progress) = 0;
  virtual absl::StatusOr<StatusReport> Status() = 0;
};

// Maintenance on stores in this process. `store` is what entries are listed and
// deleted through (the tiered store when there are two tiers); `local` and
// `remote` may be null. None are owned.
class LocalAdmin : public Admin {
 public:
  LocalAdmin(cache::Store& store, cache::LocalTier* local, cache::Store* remote,
             const cache::Backlog* backlog = nullptr)
      : store_(store), local_(local), remote_(remote), backlog_(backlog) {}

  absl::StatusOr<GcResult> CollectGarbage(const GcRequest& req,
                                          const ProgressFn& progress) override;
  absl::StatusOr<SyncResult> Sync(const SyncRequest& req, const ProgressFn& progress) override;
  absl::StatusOr<StatusReport> Status() override;

 private:
  cache::Store& store_;
  cache::LocalTier* local_;
  cache::Store* remote_;
  const cache::Backlog* backlog_;
};

// Copies the entry for `key` from one store to another: its blobs the target
// lacks first (streamed), then the entry.
absl::Status CopyEntry(cache::Store& from, cache::Store& to, const std::string& key);

// Re-sharding: moving a repository's entries from one shard count to another
// (docs/FORMAT.md, "Sharding"). `from` and `to` are the same repository opened
// with the old and the new count. Every entry `from` lists whose repository
// differs under the new count is copied there (blobs are in the base repository
// already: the new shard mounts them), then deleted where it was: one manifest
// read per moved entry, and the delete names the manifest read, so an entry put
// again under the old count meanwhile stays there (the next run moves it). An
// entry is never deleted before its copy is stored, so an interruption loses nothing: run
// it again to go on (entries already moved are skipped: `from` no longer finds
// them). Readers and writers still on the old count miss moved entries until
// they use the new one.
struct ReshardResult {
  int64_t listed = 0;    // entries `from` listed
  int64_t moved = 0;     // copied to their new repository and deleted from the old
  int64_t in_place = 0;  // the same repository under both counts
  int64_t gone = 0;      // listed, but not found where the old count puts them
};
absl::StatusOr<ReshardResult> Reshard(cache::RegistryStore& from, cache::RegistryStore& to,
                                      bool dry_run, const ProgressFn& progress);

// How many shards a repository of `entries` needs under a registry's limit of
// `limit` entries (tags) per repository: the smallest count (1..256) whose fullest
// shard stays at most `fill` of the limit, allowing for hashing's unevenness
// (mean + 4 standard deviations). 0 when 256 are not enough.
int ShardsFor(int64_t entries, int64_t limit, double fill = 0.8);

}  // namespace ocicache::admin

#endif  // OCICACHE_PKG_ADMIN_ADMIN_H_
