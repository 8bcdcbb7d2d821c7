// TieredStore: a local store (the directory tier) in front of a remote one (the
// registry). Reads try local first; a remote hit fills the local tier. Writes go
// to both. When the remote is unavailable (connection refused, 5xx after retries)
// the store degrades to local-only: lookups that would have gone remote are
// misses, writes stay local, and a warning is reported once per outage. Whether
// the remote is down is a Breaker's call (breaker.h), which a health prober may
// share. StatBlob answers for both tiers, so Put first fills the local tier with
// blobs only the remote has.
#ifndef OCICACHE_PKG_CACHE_TIERED_STORE_H_
#define OCICACHE_PKG_CACHE_TIERED_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

struct TieredStoreOptions {
  // Whether the remote is reachable, shared with whoever else watches it; null:
  // the store makes its own from retry_after and warn.
  std::shared_ptr<Breaker> breaker;
  // After an outage, how long to answer from the local tier only.
  absl::Duration retry_after = absl::Seconds(30);
  // Where warnings go; default: one line on stderr.
  std::function<void(absl::string_view)> warn;
};

class TieredStore : public Store {
 public:
  TieredStore(std::unique_ptr<Store> local, std::unique_ptr<Store> remote,
              TieredStoreOptions opts = {});

  std::string Describe() const override;

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  absl::Status MountBlob(const Location& from) override;

  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) override;
  absl::Status Put(const Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status List(const std::function<bool(const EntryInfo&)>& fn) override;

  Store& local() { return *local_; }
  Store& remote() { return *remote_; }
  // Whether the remote is currently skipped after an outage.
  bool degraded();

 private:
  // Whether to try the remote now.
  bool RemoteUsable();
  // Records the outcome of a remote call; returns true if it was an outage.
  bool NoteRemote(const absl::Status& s);
  // Copies a blob from the remote into the local tier.
  absl::Status FillBlob(const oci::Digest& digest, int64_t size);
  // Copies a local blob to the remote.
  absl::Status PushBlob(const oci::Digest& digest, int64_t size);

  std::unique_ptr<Store> local_;
  std::unique_ptr<Store> remote_;
  TieredStoreOptions opts_;
  std::shared_ptr<Breaker> breaker_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_TIERED_STORE_H_
