#include "pkg/cache/tiered_store.h"

#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "pkg/oci/pipe.h"
#include "pkg/registry/client.h"

namespace ocicache::cache {

TieredStore::TieredStore(std::unique_ptr<Store> local, std::unique_ptr<Store> remote,
                         TieredStoreOptions opts)
    : local_(std::move(local)), remote_(std::move(remote)), opts_(std::move(opts)) {
  if (!opts_.warn) {
    opts_.warn = [](absl::string_view msg) { std::cerr << "ocicache: warning: " << msg << "\n"; };
  }
  breaker_ = opts_.breaker;
  if (breaker_ == nullptr) {
    breaker_ = std::make_shared<Breaker>(remote_->Describe(),
                                         BreakerOptions{opts_.retry_after, opts_.warn});
  }
}

std::string TieredStore::Describe() const {
  return absl::StrCat(local_->Describe(), " then ", remote_->Describe());
}

bool TieredStore::degraded() { return !RemoteUsable(); }

bool TieredStore::RemoteUsable() { return breaker_->Usable(); }

bool TieredStore::NoteRemote(const absl::Status& s) { return breaker_->Note(s); }

absl::Status TieredStore::FillBlob(const oci::Digest& digest, int64_t size) {
  return oci::Transfer(
      [&](oci::ByteSink& sink) { return remote_->ReadBlob(digest, 0, sink); },
      [&](oci::ByteSource& src) { return local_->WriteBlob(digest, size, src).status(); });
}

absl::Status TieredStore::PushBlob(const oci::Digest& digest, int64_t size) {
  return oci::Transfer(
      [&](oci::ByteSink& sink) { return local_->ReadBlob(digest, 0, sink); },
      [&](oci::ByteSource& src) { return remote_->WriteBlob(digest, size, src).status(); });
}

absl::StatusOr<int64_t> TieredStore::StatBlob(const oci::Digest& digest) {
  auto s = local_->StatBlob(digest);
  if (s.ok() || !absl::IsNotFound(s.status()) || !RemoteUsable()) return s;
  auto r = remote_->StatBlob(digest);
  if (!r.ok() && NoteRemote(r.status())) return s;
  return r;
}

absl::Status TieredStore::ReadBlob(const oci::Digest& digest, int64_t offset,
                                   oci::ByteSink& sink) {
  auto have = local_->StatBlob(digest);
  if (!have.ok() && absl::IsNotFound(have.status()) && RemoteUsable()) {
    auto size = remote_->StatBlob(digest);
    if (!size.ok()) {
      if (NoteRemote(size.status())) return absl::NotFoundError(absl::StrCat("miss: ", digest.str()));
      return size.status();
    }
    absl::Status f = FillBlob(digest, *size);
    if (!f.ok()) {
      NoteRemote(f);
      return f;
    }
  }
  return local_->ReadBlob(digest, offset, sink);
}

absl::StatusOr<oci::Descriptor> TieredStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                       oci::ByteSource& source) {
  auto d = local_->WriteBlob(expected, size, source);
  if (!d.ok() || !RemoteUsable()) return d;
  absl::Status s = PushBlob(d->digest, d->size);
  if (!s.ok() && !NoteRemote(s)) return s;
  return d;
}

absl::Status TieredStore::MountBlob(const Location& from) {
  absl::Status l = local_->MountBlob(from);
  if (!RemoteUsable()) return l;
  absl::Status r = remote_->MountBlob(from);
  if (!r.ok() && NoteRemote(r)) return l;
  if (!r.ok()) return r;
  if (l.ok()) return l;
  // The local tier could not fetch by itself: fill it from the remote.
  return FillBlob(from.digest, from.size);
}

absl::StatusOr<Entry> TieredStore::Lookup(absl::string_view key, const LookupOptions& opts) {
  auto e = local_->Lookup(key, opts);
  if (e.ok() || !absl::IsNotFound(e.status()) || !RemoteUsable()) return e;
  auto r = remote_->Lookup(key, opts);
  if (!r.ok()) {
    if (NoteRemote(r.status())) return e;  // the local miss
    return r;
  }
  // Fill the local tier: blobs first, then the entry. An outage meanwhile makes
  // this a miss; a corrupt or unreadable blob is an error, never a half hit.
  absl::Status fill;
  for (const auto& b : r->blobs) {
    if (local_->StatBlob(b.digest).ok()) continue;
    fill = FillBlob(b.digest, b.size);
    if (!fill.ok()) break;
  }
  if (fill.ok()) fill = local_->Put(*r);
  if (!fill.ok()) {
    if (NoteRemote(fill)) return e;
    return fill;
  }
  return r;
}

absl::Status TieredStore::Put(const Entry& entry) {
  absl::Status put = local_->Put(entry);
  if (absl::IsFailedPrecondition(put) && RemoteUsable()) {
    // StatBlob answers for both tiers, so a caller may rightly skip writing a
    // blob only the registry has (ocicached finishes such uploads early): fill
    // the local tier with it and try again.
    bool filled = false;
    for (const auto& b : entry.blobs) {
      if (local_->StatBlob(b.digest).ok()) continue;
      auto size = remote_->StatBlob(b.digest);
      if (!size.ok()) {
        NoteRemote(size.status());
        break;
      }
      if (absl::Status f = FillBlob(b.digest, *size); !f.ok()) {
        NoteRemote(f);
        break;
      }
      filled = true;
    }
    if (filled) put = local_->Put(entry);
  }
  if (!put.ok()) return put;
  if (!RemoteUsable()) return absl::OkStatus();
  for (const auto& b : entry.blobs) {
    auto have = remote_->StatBlob(b.digest);
    if (have.ok()) continue;
    absl::Status s = absl::IsNotFound(have.status()) ? PushBlob(b.digest, b.size) : have.status();
    if (!s.ok()) return NoteRemote(s) ? absl::OkStatus() : s;
  }
  absl::Status s = remote_->Put(entry);
  if (!s.ok() && NoteRemote(s)) return absl::OkStatus();
  return s;
}

absl::Status TieredStore::Delete(absl::string_view key) {
  absl::Status l = local_->Delete(key);
  if (!l.ok() && !absl::IsNotFound(l)) return l;
  if (!RemoteUsable()) {
    if (l.ok()) {
      opts_.warn(absl::StrCat("deleted ", key, " locally only: the registry is unavailable"));
    }
    return l;
  }
  absl::Status r = remote_->Delete(key);
  if (!r.ok() && !absl::IsNotFound(r)) {
    NoteRemote(r);
    return r;
  }
  return (l.ok() || r.ok()) ? absl::OkStatus() : absl::NotFoundError(absl::StrCat("miss: ", key));
}

absl::Status TieredStore::List(const std::function<bool(const EntryInfo&)>& fn) {
  std::set<std::string> seen;
  bool stopped = false;
  if (RemoteUsable()) {
    absl::Status r = remote_->List([&](const EntryInfo& info) {
      seen.insert(info.key);
      if (!fn(info)) {
        stopped = true;
        return false;
      }
      return true;
    });
    if (!r.ok() && !NoteRemote(r)) return r;
  }
  if (stopped) return absl::OkStatus();
  return local_->List([&](const EntryInfo& info) {
    if (seen.count(info.key)) return true;
    return fn(info);
  });
}

}  // namespace ocicache::cache
