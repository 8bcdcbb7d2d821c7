// REAPI names: instance names and ByteStream resource names.
//
// An instance name is empty (the server's own store) or '/'-separated segments,
// each a registry path component ([a-z0-9]+ joined by '.', '_', '__' or '-'s),
// none of them a REAPI keyword (blobs, uploads, actions, actionResults,
// operations, capabilities, compressed-blobs), at most 100 bytes in all.
// Instance "a/b" is stored in repository REPO/a/b and directory
// DIR/instances/a/b/_layout (pkg/server InstanceOpener).
//
// Resource names (the instance part and its '/' absent for the empty instance):
//   read:  {instance/}blobs/{hash}/{size}
//   write: {instance/}uploads/{uuid}/blobs/{hash}/{size}{/anything}
// Parsing finds the first keyword segment, so instance names may contain '/'.
// compressed-blobs/... names are recognised and refused (no compressors).
#ifndef OCICACHE_PKG_REAPI_RESOURCE_H_
#define OCICACHE_PKG_REAPI_RESOURCE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/oci/digest.h"

namespace ocicache::reapi {

inline constexpr size_t kMaxInstanceBytes = 100;
inline constexpr size_t kMaxUuidBytes = 128;

// A CAS blob as REAPI names it: sha256 and size, both part of its identity.
struct BlobId {
  oci::Digest digest;
  int64_t size = 0;

  bool empty() const;  // the empty blob (size 0, sha256 of nothing)
  std::string str() const;  // "<hex>/<size>", as in resource names
  friend bool operator==(const BlobId& a, const BlobId& b) {
    return a.digest == b.digest && a.size == b.size;
  }
  friend bool operator<(const BlobId& a, const BlobId& b) {
    return a.digest < b.digest || (a.digest == b.digest && a.size < b.size);
  }
  template <typename H>
  friend H AbslHashValue(H h, const BlobId& b) {
    return H::combine(std::move(h), b.digest, b.size);
  }
};

// A BlobId from a hash (64 lowercase hex) and size; InvalidArgument naming
// `field` otherwise (a negative size included).
absl::StatusOr<BlobId> MakeBlobId(absl::string_view hash, int64_t size, absl::string_view field);

// InvalidArgument unless `name` is a valid instance name (see above).
absl::Status ValidateInstanceName(absl::string_view name);

struct ReadResource {
  std::string instance;
  BlobId blob;
};

struct WriteResource {
  std::string instance;
  std::string uuid;
  BlobId blob;
};

// InvalidArgument for a malformed name, with what is wrong.
absl::StatusOr<ReadResource> ParseReadResource(absl::string_view name);
absl::StatusOr<WriteResource> ParseWriteResource(absl::string_view name);

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_RESOURCE_H_
