// CAS blobs stored compressed ("packed"): the stored form of a large blob
// that compresses, and how a reader finds it by the blob's REAPI digest
// (docs/FORMAT.md, "REAPI", "Packed CAS blobs"). Pure functions and one sink.
//
// A packed blob is one zstd frame (with its checksum) stored under the digest
// of those bytes. Registries address blobs by what they store, so the REAPI
// digest needs a way there:
//   - a mapping entry, key "cas:sha256:<hash>", whose one layer is the stored
//     blob, for lookups by digest alone (FindMissingBlobs, a ByteStream read);
//   - in an action result's entry, the layer of a packed output names the
//     stored blob (a registry checks that a manifest's layers exist, and its
//     GC keeps what layers name) with the REAPI digest and size as annotations.
// Only blobs of at least kMinPackedBytes are packed: the REAPI digest carries
// the size, so a reader asks for a mapping only where one can exist.
#ifndef OCICACHE_PKG_REAPI_PACKED_H_
#define OCICACHE_PKG_REAPI_PACKED_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/cache/entry.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"
#include "pkg/reapi/resource.h"

namespace ocicache::reapi {

// Smaller blobs are always stored as they are: below this, the bytes saved
// on a 200 Mbit/s link are worth less than the round trip a mapping costs.
inline constexpr int64_t kMinPackedBytes = 1 << 20;

// Layer annotations of a packed blob: the REAPI digest ("sha256:<hex>") and
// size (decimal) of the bytes it decompresses to.
inline constexpr char kAnnotationRawDigest[] = "org.ocicache.reapi.raw.digest";
inline constexpr char kAnnotationRawSize[] = "org.ocicache.reapi.raw.size";

// A blob as it is stored: `stored` is the store's blob (the blob itself, or
// its zstd frame when `packed`).
struct StoredBlob {
  BlobId raw;
  oci::Descriptor stored;
  bool packed = false;
};

// The stored form of a blob kept as it is.
StoredBlob Unpacked(const BlobId& raw);
// The stored form of a packed blob: `frame` is the zstd frame's descriptor
// (digest and size); the layer gets media type application/zstd and the
// annotations above.
StoredBlob Packed(const BlobId& raw, const oci::Descriptor& frame);

// The mapping entry's key: "cas:sha256:<hash>".
std::string MappingKey(const oci::Digest& raw);
cache::Entry MappingEntry(const StoredBlob& b);
// The packed blob a mapping entry names; DataLoss if the entry is not a
// mapping for `raw` (of any size when raw.size is -1).
absl::StatusOr<StoredBlob> ReadMappingEntry(const cache::Entry& entry, const BlobId& raw);

// The packed blob an entry layer names, if it has the annotations above.
std::optional<StoredBlob> PackedLayer(const oci::Descriptor& layer);

// Receives a packed blob's decompressed bytes: forwards those from `offset`
// on to `inner` and hashes them all, so Finish can check the whole blob
// against its REAPI digest and size even for a read from an offset.
class UnpackedSink : public oci::ByteSink {
 public:
  UnpackedSink(const BlobId& raw, int64_t offset, oci::ByteSink& inner)
      : raw_(raw), offset_(offset), inner_(inner) {}
  absl::Status Write(absl::string_view chunk) override;
  // DataLoss unless exactly the blob's bytes came.
  absl::Status Finish();

 private:
  const BlobId raw_;
  const int64_t offset_;
  oci::ByteSink& inner_;
  oci::Sha256 hash_;
  int64_t seen_ = 0;
};

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_PACKED_H_
