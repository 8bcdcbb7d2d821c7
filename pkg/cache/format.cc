#include "pkg/cache/format.h"

#include <cstdio>
#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace ocicache::cache {
namespace {

using json = nlohmann::json;

constexpr char kRoleDescriptor[] = "descriptor";
constexpr char kRoleBlob[] = "blob";
constexpr char kRoleLocation[] = "location";

// Kept as is in a tag: alphanumerics except 'x', the escape marker. Everything
// else becomes "x" + two lowercase hex digits, so the part after "k." is purely
// alphanumeric: valid as a registry tag and as an OCI layout ref.name, whose
// grammar forbids two separators in a row (skopeo enforces it).
bool KeepsInTag(char c) {
  return (c >= 'a' && c <= 'z' && c != 'x') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::Time ParseTimeOr(const oci::Annotations& a, const char* key, absl::Time fallback) {
  auto it = a.find(key);
  if (it == a.end()) return fallback;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, it->second, &t, &err)) return fallback;
  return t;
}

oci::Descriptor InlineBlob(const char* media_type, const std::string& bytes) {
  oci::Descriptor d;
  d.media_type = media_type;
  d.digest = oci::Digest::Of(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  d.data = bytes;
  return d;
}

absl::Status Corrupt(absl::string_view why) {
  return absl::DataLossError(absl::StrCat("not an ocicache entry: ", why));
}

}  // namespace

bool IsLocalOnlyKey(absl::string_view key) {
  return absl::StartsWith(key, "gocacheprog.session.") && absl::EndsWith(key, ".local");
}

absl::Status ValidateKey(absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("invalid key: empty");
  if (key.size() > format::kMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid key: ", key.size(), " bytes, the limit is ", format::kMaxKeyBytes));
  }
  for (char c : key) {
    if (c == '\0' || c == '\n' || c == '\r') {
      return absl::InvalidArgumentError("invalid key: contains NUL or a line break");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TagForKey(absl::string_view key) {
  if (absl::Status s = ValidateKey(key); !s.ok()) return s;
  std::string tag = "k.";
  for (unsigned char c : key) {
    if (KeepsInTag(static_cast<char>(c))) {
      tag.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&tag, "x%02x", c);
    }
    if (tag.size() > 128) break;
  }
  if (tag.size() <= 128) return tag;
  return absl::StrCat("h.", oci::Digest::Of(key).hex());
}

std::string ShardForKey(absl::string_view key, int shards) {
  if (shards <= 1) return "";
  std::string raw = oci::Digest::Of(key).raw();
  uint32_t h = (static_cast<uint8_t>(raw[0]) << 24) | (static_cast<uint8_t>(raw[1]) << 16) |
               (static_cast<uint8_t>(raw[2]) << 8) | static_cast<uint8_t>(raw[3]);
  return absl::StrFormat("%02x", h % static_cast<uint32_t>(shards));
}

absl::StatusOr<EncodedEntry> EncodeEntry(const Entry& entry, absl::Time now) {
  if (absl::Status s = ValidateKey(entry.key); !s.ok()) return s;
  std::string config = entry.config.empty() ? std::string(oci::kEmptyJsonContent) : entry.config;
  if (config.size() > format::kMaxConfigBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("entry config is ", config.size(),
                                                     " bytes, the limit is ",
                                                     format::kMaxConfigBytes));
  }
  json parsed = json::parse(config, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError("entry config must be a JSON object");
  }
  // No original descriptor: `{}`, one blob every such entry shares, so a writer
  // uploads it once per repository rather than a blob of its own per entry (a Go
  // build's fill made two requests more per entry with the first blob's
  // descriptor here; its blobs' descriptors are in the layers anyway).
  std::string descriptor =
      entry.descriptor.empty() ? std::string(oci::kEmptyJsonContent) : entry.descriptor;
  json pd = json::parse(descriptor, nullptr, /*allow_exceptions=*/false);
  if (pd.is_discarded() || !pd.is_object()) {
    return absl::InvalidArgumentError("entry descriptor must be a JSON object");
  }
  for (const auto& [k, v] : entry.annotations) {
    if (absl::StartsWith(k, "org.ocicache.entry.")) {
      return absl::InvalidArgumentError(absl::StrCat("annotation ", k, " is reserved"));
    }
  }

  EncodedEntry out;
  auto tag = TagForKey(entry.key);
  if (!tag.ok()) return tag.status();
  out.tag = *tag;

  oci::Manifest m;
  m.artifact_type = format::kArtifactType;
  m.config = InlineBlob(format::kConfigMediaType, config);
  oci::Descriptor dl = InlineBlob(format::kDescriptorMediaType, descriptor);
  dl.annotations[format::kAnnotationRole] = kRoleDescriptor;
  m.layers.push_back(dl);
  for (const auto& b : entry.blobs) {
    if (!b.digest.valid() || b.size <= 0) {
      return absl::InvalidArgumentError("entry blob needs a digest and a size above zero");
    }
    oci::Descriptor l = b;
    l.data.reset();
    l.urls.clear();
    l.annotations[format::kAnnotationRole] = kRoleBlob;
    m.layers.push_back(std::move(l));
  }
  for (const auto& loc : entry.locations) {
    if (!loc.digest.valid() || loc.size <= 0 ||
        !(absl::StartsWith(loc.url, "https://") || absl::StartsWith(loc.url, "http://"))) {
      return absl::InvalidArgumentError("entry location needs a digest, a size and an http(s) URL");
    }
    oci::Descriptor l;
    // Registries accept URLs only on foreign layers, and do not require those
    // blobs to be present; the real media type is an annotation.
    l.media_type = format::kLocationMediaType;
    l.digest = loc.digest;
    l.size = loc.size;
    l.urls.push_back(loc.url);
    l.annotations[format::kAnnotationRole] = kRoleLocation;
    l.annotations[format::kAnnotationMediaType] = loc.media_type;
    m.layers.push_back(std::move(l));
  }
  m.annotations = entry.annotations;
  m.annotations[format::kAnnotationKey] = entry.key;
  absl::Time created = entry.created == absl::InfinitePast() ? now : entry.created;
  absl::Time last_used = entry.last_used == absl::InfinitePast() ? now : entry.last_used;
  m.annotations[format::kAnnotationCreated] = Rfc3339(created);
  m.annotations[format::kAnnotationLastUsed] = Rfc3339(last_used);

  out.manifest = m.Serialize();
  if (out.manifest.size() > format::kMaxManifestBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("entry manifest would be ", out.manifest.size(), " bytes, the limit is ",
                     format::kMaxManifestBytes, ": too many blobs, locations or annotations"));
  }
  out.manifest_digest = oci::Digest::Of(out.manifest);
  oci::Descriptor cfg = m.config;
  cfg.data.reset();
  out.small_blobs.emplace_back(cfg, config);
  oci::Descriptor dsc = dl;
  dsc.data.reset();
  dsc.annotations.clear();
  out.small_blobs.emplace_back(dsc, descriptor);
  return out;
}

namespace {

absl::StatusOr<Entry> ParseEntry(absl::string_view manifest) {
  auto m = oci::Manifest::Parse(manifest);
  if (!m.ok()) return Corrupt(m.status().message());
  if (m->artifact_type != format::kArtifactType) {
    return Corrupt(absl::StrCat("artifactType is \"", m->artifact_type, "\""));
  }
  auto key_it = m->annotations.find(format::kAnnotationKey);
  if (key_it == m->annotations.end()) return Corrupt("no key annotation");
  if (m->config.media_type != format::kConfigMediaType || !m->config.data.has_value()) {
    return Corrupt("config is not an inlined ocicache config");
  }
  if (m->layers.empty() || m->layers[0].media_type != format::kDescriptorMediaType ||
      !m->layers[0].data.has_value()) {
    return Corrupt("layers[0] is not an inlined descriptor");
  }
  Entry e;
  e.key = key_it->second;
  e.config = *m->config.data;
  e.descriptor = *m->layers[0].data;
  for (size_t i = 1; i < m->layers.size(); ++i) {
    oci::Descriptor l = m->layers[i];
    auto role = l.annotations.find(format::kAnnotationRole);
    if (role == l.annotations.end()) return Corrupt("layer without a role");
    if (role->second == kRoleBlob) {
      l.annotations.erase(format::kAnnotationRole);
      e.blobs.push_back(std::move(l));
    } else if (role->second == kRoleLocation) {
      if (l.urls.size() != 1) return Corrupt("location layer without exactly one URL");
      Location loc;
      loc.media_type = l.annotations[format::kAnnotationMediaType];
      loc.digest = l.digest;
      loc.size = l.size;
      loc.url = l.urls[0];
      e.locations.push_back(std::move(loc));
    } else {
      return Corrupt(absl::StrCat("unknown layer role ", role->second));
    }
  }
  for (const auto& [k, v] : m->annotations) {
    if (k == format::kAnnotationKey || k == format::kAnnotationCreated ||
        k == format::kAnnotationLastUsed) {
      continue;
    }
    e.annotations[k] = v;
  }
  e.created = ParseTimeOr(m->annotations, format::kAnnotationCreated, absl::InfinitePast());
  e.last_used = ParseTimeOr(m->annotations, format::kAnnotationLastUsed, e.created);
  return e;
}

// Entries decoded lately, by their exact manifest bytes. A server answers the
// same entries again and again (every build looks up the keys of the last
// one), and parsing the manifest JSON is half the cost of a local-tier lookup.
// Decoding is a pure function of the bytes, so a hit is always right. Bounded:
// manifests up to 64 KiB, about 8 MiB with their decoded entries (counted as
// twice the manifest), the oldest dropped first.
class DecodedEntries {
 public:
  std::shared_ptr<const Entry> Find(absl::string_view manifest) {
    absl::MutexLock l(&mu_);
    auto it = map_.find(manifest);
    return it == map_.end() ? nullptr : it->second;
  }

  void Add(absl::string_view manifest, const Entry& e) {
    if (manifest.size() > kMaxManifest) return;
    auto entry = std::make_shared<const Entry>(e);
    absl::MutexLock l(&mu_);
    auto [it, added] = map_.emplace(std::string(manifest), std::move(entry));
    if (!added) return;
    order_.push_back(&it->first);
    bytes_ += 2 * manifest.size();
    while (bytes_ > kMaxBytes) {
      const std::string* oldest = order_.front();
      order_.pop_front();
      bytes_ -= 2 * oldest->size();
      map_.erase(*oldest);
    }
  }

 private:
  static constexpr size_t kMaxManifest = 64 << 10;
  static constexpr size_t kMaxBytes = 8 << 20;
  absl::Mutex mu_;
  // Node-based, so order_'s key pointers stay valid until erased.
  absl::node_hash_map<std::string, std::shared_ptr<const Entry>> map_ ABSL_GUARDED_BY(mu_);
  std::deque<const std::string*> order_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

DecodedEntries& Decoded() {
  static DecodedEntries* d = new DecodedEntries();
  return *d;
}

}  // namespace

absl::StatusOr<Entry> DecodeEntry(absl::string_view manifest, absl::string_view expected_key) {
  std::shared_ptr<const Entry> known = Decoded().Find(manifest);
  absl::StatusOr<Entry> e = known ? absl::StatusOr<Entry>(*known) : ParseEntry(manifest);
  if (!e.ok()) return e;
  if (!known) Decoded().Add(manifest, *e);
  if (!expected_key.empty() && e->key != expected_key) {
    return absl::NotFoundError("tag holds another key (hash collision)");
  }
  return e;
}

absl::StatusOr<EntryInfo> InfoFromManifest(absl::string_view manifest, absl::string_view tag,
                                           const oci::Digest& manifest_digest) {
  auto e = DecodeEntry(manifest, "");
  if (!e.ok()) return e.status();
  EntryInfo info;
  info.key = e->key;
  info.tag = std::string(tag);
  info.manifest_digest = manifest_digest;
  info.created = e->created;
  info.last_used = e->last_used;
  info.size = static_cast<int64_t>(e->config.size() + e->descriptor.size());
  for (const auto& b : e->blobs) info.size += b.size;
  info.annotations = e->annotations;
  return info;
}

bool SatisfiesLookup(const Entry& entry, const LookupOptions& opts) {
  for (const auto& [k, v] : opts.require) {
    auto it = entry.annotations.find(k);
    if (it == entry.annotations.end() || it->second != v) return false;
  }
  return true;
}

bool NeedsTouch(const Entry& entry, absl::Time now) {
  return now - entry.last_used >= format::kTouchInterval;
}

std::string BlobUrl(absl::string_view base_url, absl::string_view repository,
                    const oci::Digest& digest) {
  return absl::StrCat(base_url, "/v2/", repository, "/blobs/", digest.str());
}

absl::Status ParseBlobUrl(absl::string_view url, std::string* base_url, std::string* repository,
                          oci::Digest* digest) {
  auto bad = [&] { return absl::InvalidArgumentError(absl::StrCat("not a blob URL: ", url)); };
  size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return bad();
  size_t v2 = url.find("/v2/", scheme + 3);
  size_t blobs = url.rfind("/blobs/");
  if (v2 == absl::string_view::npos || blobs == absl::string_view::npos || blobs <= v2 + 4) {
    return bad();
  }
  auto d = oci::Digest::Parse(url.substr(blobs + 7));
  if (!d.ok()) return bad();
  *base_url = std::string(url.substr(0, v2));
  *repository = std::string(url.substr(v2 + 4, blobs - v2 - 4));
  *digest = *d;
  return absl::OkStatus();
}

}  // namespace ocicache::cache
