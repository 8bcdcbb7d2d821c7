// GuardedStore: a remote store behind a Breaker, for a server with no local tier
// to fall back on. While the breaker is closed every call goes through and its
// outcome is noted; while it is open nothing waits on the remote: a lookup is a
// miss at once (NotFound, so builds go on), every other call UNAVAILABLE at once.
#ifndef OCICACHE_PKG_CACHE_GUARDED_STORE_H_
#define OCICACHE_PKG_CACHE_GUARDED_STORE_H_

#include <memory>
#include <string>
#include <type_traits>

#include "pkg/cache/breaker.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

class GuardedStore : public Store {
 public:
  GuardedStore(std::unique_ptr<Store> remote, std::shared_ptr<Breaker> breaker)
      : remote_(std::move(remote)), breaker_(std::move(breaker)) {}

  std::string Describe() const override { return remote_->Describe(); }

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  absl::Status ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                             oci::ByteSink& sink) override;
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  absl::Status MountBlob(const Location& from) override;

  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) override;
  absl::Status Put(const Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status List(const std::function<bool(const EntryInfo&)>& fn) override;

  Store& remote() { return *remote_; }

 private:
  // UNAVAILABLE when the breaker is open, else OK.
  absl::Status Gate() const;
  template <typename T>
  T Noted(T result) {
    if constexpr (std::is_same_v<T, absl::Status>) {
      breaker_->Note(result);
    } else {
      breaker_->Note(result.status());
    }
    return result;
  }

  std::unique_ptr<Store> remote_;
  std::shared_ptr<Breaker> breaker_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_GUARDED_STORE_H_
