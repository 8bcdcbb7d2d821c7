// A cache entry: what one BuildId (or ActionID, or action digest) maps to.
// docs/FORMAT.md describes how an Entry is stored as an OCI image manifest.
#ifndef OCICACHE_PKG_CACHE_ENTRY_H_
#define OCICACHE_PKG_CACHE_ENTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"

namespace ocicache::cache {

// Where a blob has been pushed before: an https:// or http:// URL of the form
// <scheme>://<registry>/v2/<repository>/blobs/<digest>.
struct Location {
  std::string media_type;  // the blob's own media type
  oci::Digest digest;
  int64_t size = 0;
  std::string url;
};

struct Entry {
  // Any non-empty string up to 4096 bytes (Go build ids contain '/' and may start with '-').
  std::string key;
  // The entry's small metadata: a JSON document (an object), inlined in the manifest.
  // Empty means "{}".
  std::string config;
  // The original descriptor's bytes, kept byte for byte (layers[0]). Empty means
  // none: stored as `{}` (older writers stored the descriptor of blobs[0]; no
  // reader depends on either).
  std::string descriptor;
  // Content stored with the entry, present in the same store.
  std::vector<oci::Descriptor> blobs;
  // Where content has been pushed before (foreign layers), for mount-or-copy.
  std::vector<Location> locations;
  // User annotations: tool versions ("org.ocicache.tool.go": "go1.23.1"), options
  // checksum ("org.ocicache.options"), anything else. Keys starting with
  // "org.ocicache.entry." are reserved for the format itself.
  oci::Annotations annotations;
  // Set by stores: when the entry was first written and last answered a lookup.
  absl::Time created = absl::InfinitePast();
  absl::Time last_used = absl::InfinitePast();
};

// A listing row.
struct EntryInfo {
  std::string key;
  std::string tag;
  oci::Digest manifest_digest;
  absl::Time created = absl::InfinitePast();
  absl::Time last_used = absl::InfinitePast();
  int64_t size = 0;  // config + stored blobs
  oci::Annotations annotations;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_ENTRY_H_
