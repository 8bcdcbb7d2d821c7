#include "pkg/cache/place.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/pipe.h"

namespace ocicache::cache {
namespace {

// The blob's descriptor as the entry knows it: a stored blob, a location, or the
// original descriptor (layers[0]).
absl::StatusOr<oci::Descriptor> FindDescriptor(const Entry& e, const oci::Digest& digest) {
  for (const auto& b : e.blobs) {
    if (b.digest == digest) return b;
  }
  for (const auto& l : e.locations) {
    if (l.digest == digest) {
      oci::Descriptor d;
      d.media_type = l.media_type;
      d.digest = l.digest;
      d.size = l.size;
      return d;
    }
  }
  nlohmann::json j = nlohmann::json::parse(e.descriptor, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded()) {
    auto d = oci::Descriptor::FromJson(j);
    if (d.ok() && d->digest == digest) return d;
  }
  return absl::NotFoundError(absl::StrCat("entry ", e.key, " does not name blob ", digest.str()));
}

}  // namespace

absl::StatusOr<Placement> PlaceBlob(Store& cache, absl::string_view key,
                                    const oci::Digest& digest, RegistryStore& target) {
  LookupOptions opts;
  opts.touch = false;
  auto entry = cache.Lookup(key, opts);
  if (!entry.ok()) return entry.status();
  auto desc = FindDescriptor(*entry, digest);
  if (!desc.ok()) return desc.status();

  Placement p;
  p.location = target.LocationOf(*desc);
  absl::Status last = absl::NotFoundError(
      absl::StrCat("no recorded location or cached copy of ", digest.str()));
  if (auto have = target.StatBlob(digest); have.ok()) {
    p.by = PlacedBy::kAlreadyPresent;
    last = absl::OkStatus();
  } else if (!absl::IsNotFound(have.status())) {
    return have.status();
  }
  if (!last.ok()) {
    for (const auto& loc : entry->locations) {
      if (loc.digest != digest || loc.url == p.location.url) continue;
      last = target.MountBlob(loc);
      if (last.ok()) {
        p.by = PlacedBy::kLocation;
        break;
      }
    }
  }
  if (!last.ok() && cache.StatBlob(digest).ok()) {
    last = oci::Transfer(
        [&](oci::ByteSink& sink) {
          oci::CheckedDownstreamSink checked(sink);  // the target checks the digest
          return cache.ReadBlob(digest, 0, checked);
        },
        [&](oci::ByteSource& src) { return target.WriteBlob(digest, desc->size, src).status(); });
    if (last.ok()) p.by = PlacedBy::kCacheCopy;
  }
  if (!last.ok()) return last;

  for (const auto& loc : entry->locations) {
    if (loc.url == p.location.url) return p;
  }
  entry->locations.push_back(p.location);
  if (absl::Status s = cache.Put(*entry); !s.ok()) return s;
  return p;
}

}  // namespace ocicache::cache
