#include "pkg/cache/guarded_store.h"

#include "absl/strings/str_cat.h"

namespace ocicache::cache {

absl::Status GuardedStore::Gate() const {
  if (breaker_->Usable()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(remote_->Describe(), " is unavailable (failing health checks or calls); "
                                        "not waiting on it"));
}

absl::StatusOr<int64_t> GuardedStore::StatBlob(const oci::Digest& digest) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->StatBlob(digest));
}

absl::Status GuardedStore::ReadBlobRange(const oci::Digest& digest, int64_t offset,
                                         int64_t length, oci::ByteSink& sink) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->ReadBlobRange(digest, offset, length, sink));
}

absl::Status GuardedStore::ReadBlob(const oci::Digest& digest, int64_t offset,
                                    oci::ByteSink& sink) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->ReadBlob(digest, offset, sink));
}

absl::StatusOr<oci::Descriptor> GuardedStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                        oci::ByteSource& source) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->WriteBlob(expected, size, source));
}

absl::Status GuardedStore::MountBlob(const Location& from) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->MountBlob(from));
}

absl::StatusOr<Entry> GuardedStore::Lookup(absl::string_view key, const LookupOptions& opts) {
  if (!breaker_->Usable()) {
    return absl::NotFoundError(absl::StrCat("miss: ", key, " (", remote_->Describe(),
                                            " is unavailable)"));
  }
  auto e = remote_->Lookup(key, opts);
  if (!e.ok() && breaker_->Note(e.status())) {
    // An outage is a miss to the caller, as on a tiered server: builds go on.
    return absl::NotFoundError(absl::StrCat("miss: ", key, " (", e.status().message(), ")"));
  }
  return e;
}

absl::Status GuardedStore::Put(const Entry& entry) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->Put(entry));
}

absl::Status GuardedStore::Delete(absl::string_view key) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->Delete(key));
}

absl::Status GuardedStore::List(const std::function<bool(const EntryInfo&)>& fn) {
  if (absl::Status g = Gate(); !g.ok()) return g;
  return Noted(remote_->List(fn));
}

}  // namespace ocicache::cache
