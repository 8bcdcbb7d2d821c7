#include "pkg/wire/convert.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "pkg/cache/format.h"

namespace ocicache::wire {
namespace {

// google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
constexpr int64_t kMinSeconds = -62135596800;
constexpr int64_t kMaxSeconds = 253402300799;

absl::Status Field(absl::string_view field, const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

}  // namespace

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) {
    out->Clear();
    return;
  }
  timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

absl::StatusOr<absl::Time> TimeFromProto(const google::protobuf::Timestamp& ts,
                                         absl::string_view field) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return absl::InfinitePast();
  if (ts.seconds() < kMinSeconds || ts.seconds() > kMaxSeconds || ts.nanos() < 0 ||
      ts.nanos() > 999999999) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": timestamp out of range"));
  }
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

absl::StatusOr<oci::Digest> DigestFromProto(absl::string_view s, absl::string_view field,
                                            bool allow_empty) {
  if (s.empty()) {
    if (allow_empty) return oci::Digest();
    return absl::InvalidArgumentError(absl::StrCat(field, ": missing digest"));
  }
  auto d = oci::Digest::Parse(s);
  if (!d.ok()) return Field(field, d.status());
  return d;
}

void DescriptorToProto(const oci::Descriptor& d, v1::Descriptor* out) {
  out->set_media_type(d.media_type);
  out->set_digest(d.digest.str());
  out->set_size(d.size);
  for (const auto& u : d.urls) out->add_urls(u);
  for (const auto& [k, v] : d.annotations) (*out->mutable_annotations())[k] = v;
}

absl::StatusOr<oci::Descriptor> DescriptorFromProto(const v1::Descriptor& d,
                                                    absl::string_view field) {
  oci::Descriptor out;
  auto digest = DigestFromProto(d.digest(), absl::StrCat(field, ".digest"));
  if (!digest.ok()) return digest.status();
  if (d.size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".size: negative (", d.size(), ")"));
  }
  out.media_type = d.media_type();
  out.digest = *digest;
  out.size = d.size();
  out.urls.assign(d.urls().begin(), d.urls().end());
  out.annotations.insert(d.annotations().begin(), d.annotations().end());
  return out;
}

void LocationToProto(const cache::Location& l, v1::Location* out) {
  out->set_media_type(l.media_type);
  out->set_digest(l.digest.str());
  out->set_size(l.size);
  out->set_url(l.url);
}

absl::StatusOr<cache::Location> LocationFromProto(const v1::Location& l, absl::string_view field,
                                                  bool allow_unknown_size) {
  cache::Location out;
  auto digest = DigestFromProto(l.digest(), absl::StrCat(field, ".digest"));
  if (!digest.ok()) return digest.status();
  if (l.size() < (allow_unknown_size ? -1 : 0)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".size: invalid (", l.size(), ")"));
  }
  if (l.url().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".url: missing"));
  out.media_type = l.media_type();
  out.digest = *digest;
  out.size = l.size();
  out.url = l.url();
  return out;
}

void EntryToProto(const cache::Entry& e, v1::Entry* out) {
  out->set_key(e.key);
  out->set_config(e.config);
  out->set_original_descriptor(e.descriptor);
  for (const auto& b : e.blobs) DescriptorToProto(b, out->add_blobs());
  for (const auto& l : e.locations) LocationToProto(l, out->add_locations());
  for (const auto& [k, v] : e.annotations) (*out->mutable_annotations())[k] = v;
  if (e.created != absl::InfinitePast()) TimeToProto(e.created, out->mutable_created());
  if (e.last_used != absl::InfinitePast()) TimeToProto(e.last_used, out->mutable_last_used());
}

absl::StatusOr<cache::Entry> EntryFromProto(const v1::Entry& e) {
  cache::Entry out;
  if (absl::Status s = cache::ValidateKey(e.key()); !s.ok()) return Field("entry.key", s);
  out.key = e.key();
  out.config = e.config();
  out.descriptor = e.original_descriptor();
  for (int i = 0; i < e.blobs_size(); ++i) {
    auto d = DescriptorFromProto(e.blobs(i), absl::StrCat("entry.blobs[", i, "]"));
    if (!d.ok()) return d.status();
    out.blobs.push_back(*std::move(d));
  }
  for (int i = 0; i < e.locations_size(); ++i) {
    auto l = LocationFromProto(e.locations(i), absl::StrCat("entry.locations[", i, "]"));
    if (!l.ok()) return l.status();
    out.locations.push_back(*std::move(l));
  }
  out.annotations.insert(e.annotations().begin(), e.annotations().end());
  auto created = TimeFromProto(e.created(), "entry.created");
  if (!created.ok()) return created.status();
  auto last_used = TimeFromProto(e.last_used(), "entry.last_used");
  if (!last_used.ok()) return last_used.status();
  out.created = *created;
  out.last_used = *last_used;
  return out;
}

void EntryInfoToProto(const cache::EntryInfo& i, v1::EntryInfo* out) {
  out->set_key(i.key);
  out->set_tag(i.tag);
  out->set_manifest_digest(i.manifest_digest.str());
  out->set_size(i.size);
  if (i.created != absl::InfinitePast()) TimeToProto(i.created, out->mutable_created());
  if (i.last_used != absl::InfinitePast()) TimeToProto(i.last_used, out->mutable_last_used());
  for (const auto& [k, v] : i.annotations) (*out->mutable_annotations())[k] = v;
}

absl::StatusOr<cache::EntryInfo> EntryInfoFromProto(const v1::EntryInfo& i) {
  cache::EntryInfo out;
  out.key = i.key();
  out.tag = i.tag();
  auto d = DigestFromProto(i.manifest_digest(), "manifest_digest", /*allow_empty=*/true);
  if (!d.ok()) return d.status();
  out.manifest_digest = *d;
  out.size = i.size();
  auto created = TimeFromProto(i.created(), "created");
  if (!created.ok()) return created.status();
  auto last_used = TimeFromProto(i.last_used(), "last_used");
  if (!last_used.ok()) return last_used.status();
  out.created = *created;
  out.last_used = *last_used;
  out.annotations.insert(i.annotations().begin(), i.annotations().end());
  return out;
}

absl::Status CheckUtf8(absl::string_view s, absl::string_view what) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    unsigned char c = p[i];
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      n = -1;
    }
    bool ok = n > 0 && i + n < s.size();
    if (ok) {
      for (int k = 1; k <= n; ++k) {
        if ((p[i + k] & 0xC0) != 0x80) {
          ok = false;
          break;
        }
        cp = (cp << 6) | (p[i + k] & 0x3F);
      }
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if (ok) {
      static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " is not valid UTF-8 (byte ", i, "); the gRPC API carries UTF-8 strings"));
    }
    i += n + 1;
  }
  return absl::OkStatus();
}

absl::Status CheckEntryUtf8(const cache::Entry& e) {
  if (absl::Status s = CheckUtf8(e.key, "key"); !s.ok()) return s;
  for (const auto& [k, v] : e.annotations) {
    if (absl::Status s = CheckUtf8(k, "an annotation name"); !s.ok()) return s;
    if (absl::Status s = CheckUtf8(v, "an annotation value"); !s.ok()) return s;
  }
  for (const auto& b : e.blobs) {
    if (absl::Status s = CheckUtf8(b.media_type, "a blob media type"); !s.ok()) return s;
    for (const auto& [k, v] : b.annotations) {
      if (absl::Status s = CheckUtf8(k, "a blob annotation name"); !s.ok()) return s;
      if (absl::Status s = CheckUtf8(v, "a blob annotation value"); !s.ok()) return s;
    }
  }
  for (const auto& l : e.locations) {
    if (absl::Status s = CheckUtf8(l.url, "a location URL"); !s.ok()) return s;
    if (absl::Status s = CheckUtf8(l.media_type, "a location media type"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace ocicache::wire
