// The cache-entry format (docs/FORMAT.md): an Entry <-> an OCI image manifest, and
// a key <-> an OCI tag. Pure functions; the stores do the I/O.
#ifndef OCICACHE_PKG_CACHE_FORMAT_H_
#define OCICACHE_PKG_CACHE_FORMAT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/cache/entry.h"
#include "pkg/cache/store.h"
#include "pkg/oci/types.h"

namespace ocicache::cache {

namespace format {
inline constexpr char kArtifactType[] = "application/vnd.ocicache.entry.v1";
inline constexpr char kConfigMediaType[] = "application/vnd.ocicache.config.v1+json";
// layers[0]: the original descriptor's bytes.
inline constexpr char kDescriptorMediaType[] = "application/vnd.ocicache.descriptor.v1+json";

// Manifest annotations.
inline constexpr char kAnnotationKey[] = "org.ocicache.entry.key";
inline constexpr char kAnnotationCreated[] = "org.opencontainers.image.created";
inline constexpr char kAnnotationLastUsed[] = "org.ocicache.entry.last-used";
// Layer annotation: what the layer is ("descriptor", "blob", "location").
inline constexpr char kAnnotationRole[] = "org.ocicache.entry.role";
// On a location layer: the blob's own media type. The layer itself uses Docker's
// foreign-layer type: registries accept `urls` on it without holding the blob
// (distribution 2.8 refuses `urls` on OCI non-distributable layers by default).
inline constexpr char kAnnotationMediaType[] = "org.ocicache.entry.media-type";
inline constexpr char kLocationMediaType[] =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

inline constexpr size_t kMaxKeyBytes = 4096;
// Manifests are kept far below the 4 MiB registries accept.
inline constexpr size_t kMaxManifestBytes = 256 * 1024;
inline constexpr size_t kMaxConfigBytes = 64 * 1024;
// Last-used is rewritten at most this often.
inline constexpr absl::Duration kTouchInterval = absl::Hours(24);
}  // namespace format

// Validates a key: non-empty, at most kMaxKeyBytes, no NUL or newline.
absl::Status ValidateKey(absl::string_view key);

// Whether an entry under this key describes one local directory only and is
// never copied to a registry by sync: "gocacheprog.session.<...>.local", the
// local session copy of `ocicache gocacheprog` (docs/FORMAT.md).
bool IsLocalOnlyKey(absl::string_view key);

// The tag for a key: "k." + escaped key when that fits in 128 characters (bytes
// outside [A-Za-wyzA-Z0-9] become "x" + two lowercase hex digits), else
// "h." + hex sha256(key). Valid as a registry tag and as an OCI layout ref.name.
// Injective for the first form; the stored key annotation is checked on read, so
// a hash collision is a miss, never a wrong hit.
absl::StatusOr<std::string> TagForKey(absl::string_view key);

// The shard ("00".."ff" style, two hex digits) for a key when a repository is split
// into `shards` repositories (1..256).
std::string ShardForKey(absl::string_view key, int shards);

// A manifest ready to store, with the small blobs it references that must be
// stored beside it (the config and the descriptor blob).
struct EncodedEntry {
  std::string tag;
  std::string manifest;
  oci::Digest manifest_digest;
  std::vector<std::pair<oci::Descriptor, std::string>> small_blobs;
};

// Builds the manifest for an entry. created/last_used default to `now` when unset.
absl::StatusOr<EncodedEntry> EncodeEntry(const Entry& entry, absl::Time now);

// Parses a manifest written by EncodeEntry. If expected_key is non-empty and the
// stored key differs, NotFound (a hash collision is a miss).
absl::StatusOr<Entry> DecodeEntry(absl::string_view manifest, absl::string_view expected_key);

// Listing row for a manifest (without decoding blobs).
absl::StatusOr<EntryInfo> InfoFromManifest(absl::string_view manifest, absl::string_view tag,
                                           const oci::Digest& manifest_digest);

// Whether an entry satisfies a lookup's required annotations.
bool SatisfiesLookup(const Entry& entry, const LookupOptions& opts);

// Whether a hit should rewrite last-used.
bool NeedsTouch(const Entry& entry, absl::Time now);

// The URL recorded for a blob pushed to a repository:
// "<scheme>://<registry>/v2/<repository>/blobs/<digest>".
std::string BlobUrl(absl::string_view base_url, absl::string_view repository,
                    const oci::Digest& digest);
// Splits such a URL into base URL ("http://host:port") and repository.
absl::Status ParseBlobUrl(absl::string_view url, std::string* base_url, std::string* repository,
                          oci::Digest* digest);

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_FORMAT_H_
