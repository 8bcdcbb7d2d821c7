// The Store interface: everything a cache front end (CLI, gRPC service, REAPI,
// GOCACHEPROG) needs, implemented by LayoutStore (a local OCI image layout),
// RegistryStore (an OCI repository) and TieredStore (local first, then registry).
// store_testsuite.h holds the one conformance suite every implementation passes.
//
// Error codes (absl::StatusCode):
//   NotFound         a miss: no such entry or blob (never an error to the user)
//   InvalidArgument  malformed key, digest, config or entry
//   DataLoss         stored bytes do not match their digest or size
//   FailedPrecondition an entry names a blob the store does not have
//   ResourceExhausted entry too large to store
//   Unavailable      the backend cannot be reached
//   Unauthenticated / PermissionDenied  credentials
#ifndef OCICACHE_PKG_CACHE_STORE_H_
#define OCICACHE_PKG_CACHE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "pkg/cache/entry.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::cache {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // The blob's size; NotFound if absent.
  virtual absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) = 0;
  // Streams the blob from `offset` into sink. Reads from offset 0 verify size and
  // digest (DataLoss on mismatch; the sink must discard what it got).
  virtual absl::Status ReadBlob(const oci::Digest& digest, int64_t offset,
                                oci::ByteSink& sink) = 0;
  // Streams exactly `length` bytes from `offset` (not checked against the
  // digest, which covers the whole blob: the caller verifies what it reads).
  // OutOfRange when the blob ends before. Stores that can ask for an exact range
  // (a registry's Range: bytes=X-Y, a server's read_limit) override it; the
  // default reads from `offset` and stops after `length` bytes.
  virtual absl::Status ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                                     oci::ByteSink& sink);
  // Stores a blob. `expected` may be invalid (the digest is computed); `size` may
  // be -1 (unknown). A mismatch with expected digest or size is InvalidArgument and
  // stores nothing. Writing a blob that exists already succeeds.
  virtual absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                                    oci::ByteSource& source) = 0;
  // A read-only descriptor of a file holding exactly the blob's bytes, already
  // checked against the digest, so a server can send it without copying it
  // through user space (sendfile); `*size` gets its size and the caller closes
  // the descriptor. NotFound if absent here; Unimplemented for stores whose
  // blobs are not such files (the default). Callers fall back to ReadBlob on
  // any error.
  virtual absl::StatusOr<int> OpenVerifiedBlob(const oci::Digest& digest, int64_t* size) {
    (void)digest;
    (void)size;
    return absl::UnimplementedError("this store keeps no blob files");
  }
  // Makes the blob present here from a recorded location: a cross-repository mount
  // when the location is on the same registry, else a streamed copy. OK if present.
  virtual absl::Status MountBlob(const Location& from) = 0;
};

struct LookupOptions {
  // Annotations the entry must carry with exactly these values (tool versions,
  // options checksum); any difference is a miss (NotFound).
  std::map<std::string, std::string> require;
  // Refresh last-used (at most once a day) on a hit.
  bool touch = true;
};

// Which keys a store held at one moment, as far as one cheap read can tell (for a
// registry: its tag lists). MayHold is false only for a key that was not stored
// then; a key put since may be missing from it, so "false" is a miss to trust
// for a while, never a reason to delete anything.
class KeySnapshot {
 public:
  virtual ~KeySnapshot() = default;
  virtual bool MayHold(absl::string_view key) const = 0;
  // How many entries it saw.
  virtual size_t size() const = 0;
};

class EntryStore {
 public:
  virtual ~EntryStore() = default;
  // A KeySnapshot, when the store can take one in a few requests and holds at
  // most `max_keys` entries (ResourceExhausted when it holds more); Unimplemented
  // where it cannot (the default: a local directory answers a lookup as fast).
  virtual absl::StatusOr<std::unique_ptr<const KeySnapshot>> SnapshotKeys(size_t max_keys) {
    (void)max_keys;
    return absl::UnimplementedError("this store takes no key snapshots");
  }
  // The entry for `key`; NotFound on a miss.
  virtual absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) = 0;
  // Stores (or replaces) the entry. Every blob in entry.blobs must be present
  // (FailedPrecondition otherwise). Sets created/last-used if unset.
  virtual absl::Status Put(const Entry& entry) = 0;
  // Removes the entry; NotFound if there was none. Blobs are left for GC.
  virtual absl::Status Delete(absl::string_view key) = 0;
  // Delete, only if the stored entry was last used before `cutoff` (read from
  // the entry itself, not from a listing): FailedPrecondition when it was used
  // since. What gc deletes by age goes through this, so a listing that lags
  // (records, another writer's touch) never deletes an entry in use.
  virtual absl::Status DeleteIfUnusedSince(absl::string_view key, absl::Time cutoff) {
    LookupOptions quiet;
    quiet.touch = false;
    auto e = Lookup(key, quiet);
    if (!e.ok()) return e.status();
    if (e->last_used >= cutoff) {
      return absl::FailedPreconditionError(absl::StrCat(key, " was used since the cut"));
    }
    return Delete(key);
  }
  // Calls fn for every entry until it returns false. Order is unspecified.
  virtual absl::Status List(const std::function<bool(const EntryInfo&)>& fn) = 0;
};

class Store : public BlobStore, public EntryStore {
 public:
  // For messages: "dir:/path", "registry 127.0.0.1:5000/cache", "tiered(...)".
  virtual std::string Describe() const = 0;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_STORE_H_
