// ForwardingStore: a Store that passes every call to another, for tests that
// change one or two behaviours of a real store (a slow lookup, a failing put, a
// hidden blob) and keep the rest. Override what differs.
//
// Only the methods every Store must implement are forwarded. The optional ones
// (ReadBlobRange, OpenVerifiedBlob, SnapshotKeys, DeleteIfUnusedSince) keep
// Store's defaults, which go through the overridable methods: an override of
// ReadBlob also governs ranges, and no blob file bypasses it.
#ifndef OCICACHE_PKG_CACHE_FORWARDING_STORE_H_
#define OCICACHE_PKG_CACHE_FORWARDING_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "pkg/cache/store.h"

namespace ocicache::cache {

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& d) override { return inner_->StatBlob(d); }
  absl::Status ReadBlob(const oci::Digest& d, int64_t offset, oci::ByteSink& sink) override {
    return inner_->ReadBlob(d, offset, sink);
  }
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override {
    return inner_->WriteBlob(expected, size, source);
  }
  absl::Status MountBlob(const Location& from) override { return inner_->MountBlob(from); }
  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) override {
    return inner_->Lookup(key, opts);
  }
  absl::Status Put(const Entry& entry) override { return inner_->Put(entry); }
  absl::Status Delete(absl::string_view key) override { return inner_->Delete(key); }
  absl::Status List(const std::function<bool(const EntryInfo&)>& fn) override {
    return inner_->List(fn);
  }
  std::string Describe() const override { return inner_->Describe(); }

 protected:
  Store& inner() { return *inner_; }

 private:
  std::unique_ptr<Store> inner_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_FORWARDING_STORE_H_
