// REAPI messages <-> ocicache domain types, and an ActionResult <-> a cache
// entry (docs/FORMAT.md, "REAPI"). Pure functions.
#ifndef OCICACHE_PKG_REAPI_CONVERT_H_
#define OCICACHE_PKG_REAPI_CONVERT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "pkg/cache/entry.h"
#include "pkg/reapi/packed.h"
#include "pkg/reapi/resource.h"

namespace ocicache::reapi {

namespace v2 = ::build::bazel::remote::execution::v2;

// Entry annotations and config of an action result.
inline constexpr char kAnnotationAction[] = "org.ocicache.reapi.action";
// Results whose encoding is larger than this are stored as a blob, not inlined
// in the entry config (which is limited to 64 KiB).
inline constexpr size_t kMaxInlineResultBytes = 40 * 1024;

absl::StatusOr<BlobId> FromProto(const v2::Digest& d, absl::string_view field);
v2::Digest ToProto(const BlobId& b);

// The cache key of an action's result: "ac:sha256:<hex>".
std::string ActionKey(const BlobId& action);

// Every digest in the result, checked (InvalidArgument naming the field), and
// the blobs it names directly: output files, stdout, stderr, the Tree of each
// output directory and its root Directory when given. Duplicates removed,
// empty blob included if named.
absl::StatusOr<std::vector<BlobId>> DirectBlobs(const v2::ActionResult& result);

// The file blobs inside a Tree (root and children).
absl::StatusOr<std::vector<BlobId>> TreeFileBlobs(const v2::Tree& tree);

// What an action-result entry holds: the encoded ActionResult inline, or the
// blob holding it.
struct StoredResult {
  std::string inline_bytes;
  std::optional<BlobId> blob;
};

// The entry for an action's result. `encoded` is the serialized ActionResult;
// when it is larger than kMaxInlineResultBytes, `result_blob` must name the
// blob it was stored in. `kept` are the stored forms of the blobs the entry
// keeps (the result blob, every blob the result names, the files inside its
// trees), its layers; the empty blob and duplicates are dropped (the format
// never references a zero-size blob). The config says "reapi": "v2", or "v3"
// when a layer is packed (packed.h), which readers before packing take for a
// miss: they would look for the blob under its REAPI digest.
cache::Entry ActionEntry(const BlobId& action, const std::string& encoded,
                         const std::optional<BlobId>& result_blob,
                         const std::vector<StoredBlob>& kept);

// Reads an entry ActionEntry made; DataLoss if it is not one.
absl::StatusOr<StoredResult> ReadActionEntry(const cache::Entry& entry);

// The blobs an entry references (its layers, as stored: a packed blob's frame).
std::vector<BlobId> EntryBlobs(const cache::Entry& entry);

// Access-log fields from a RequestMetadata (tool, invocation, mnemonic,
// target; empty ones left out): ` tool=bazel/4.2.3 inv=... mnemonic=CppCompile target=//a:b`.
std::string RequestMetadataFields(const v2::RequestMetadata& md);

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_CONVERT_H_
