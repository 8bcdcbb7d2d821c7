// OCI image-spec v1.1 types: descriptors, image manifests and indexes, and their
// JSON encoding. Serialize() returns the exact bytes that are digested and sent;
// Parse*() keep nothing but the fields below (use the raw bytes for byte-exact copies).
#ifndef OCICACHE_PKG_OCI_TYPES_H_
#define OCICACHE_PKG_OCI_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/digest.h"

namespace ocicache::oci {

namespace media {
inline constexpr char kImageManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kImageIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kImageConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kLayerTarGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kLayerNonDistributableGzip[] =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr char kEmptyJson[] = "application/vnd.oci.empty.v1+json";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kOctetStream[] = "application/octet-stream";
// One or more zstd frames (RFC 8878): stored data compressed where it pays.
inline constexpr char kZstd[] = "application/zstd";
}  // namespace media

using Annotations = std::map<std::string, std::string>;

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::vector<std::string> urls;
  Annotations annotations;
  // Inlined content (the descriptor's "data" field, base64 on the wire).
  std::optional<std::string> data;
  std::string artifact_type;
  // "platform" kept as JSON, if present.
  std::optional<nlohmann::ordered_json> platform;

  nlohmann::ordered_json ToJson() const;
  static absl::StatusOr<Descriptor> FromJson(const nlohmann::json& j);
};

// The OCI empty descriptor: media kEmptyJson, content "{}".
Descriptor EmptyDescriptor();
inline constexpr char kEmptyJsonContent[] = "{}";

struct Manifest {
  int schema_version = 2;
  std::string media_type = media::kImageManifest;
  std::string artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  Annotations annotations;

  // Compact JSON; these bytes are the manifest's identity.
  std::string Serialize() const;
  static absl::StatusOr<Manifest> Parse(absl::string_view bytes);
};

struct Index {
  int schema_version = 2;
  std::string media_type = media::kImageIndex;
  std::vector<Descriptor> manifests;
  Annotations annotations;

  std::string Serialize() const;
  static absl::StatusOr<Index> Parse(absl::string_view bytes);
};

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_TYPES_H_
