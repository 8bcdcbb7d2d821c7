// A KOCACHE record <-> a cache entry (docs/FORMAT.md).
//
//   key          the Go build id of the binary
//   config       {"kind":"ko","diffid":"sha256:...","importPath":"...","platform":"linux/amd64"}
//   descriptor   (layers[0]) ko's layer descriptor, compact, exactly as Go's json.Marshal
//                writes it from the diffid-to-descriptor file
//   locations    the descriptor's urls that name a registry blob
//                (<scheme>://<registry>/v2/<repo>/blobs/<digest>)
//   annotations  org.ocicache.tool.ko, org.ocicache.tool.go (versions, for staleness),
//                org.ocicache.ko.import-path, org.ocicache.ko.platform (so `ko restore`
//                selects entries from a listing without fetching each one)
#ifndef OCICACHE_PKG_KO_ENTRY_H_
#define OCICACHE_PKG_KO_ENTRY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/cache/entry.h"
#include "pkg/ko/kocache.h"

namespace ocicache::ko {

inline constexpr char kAnnotationKoVersion[] = "org.ocicache.tool.ko";
inline constexpr char kAnnotationGoVersion[] = "org.ocicache.tool.go";
inline constexpr char kAnnotationImportPath[] = "org.ocicache.ko.import-path";
inline constexpr char kAnnotationPlatform[] = "org.ocicache.ko.platform";
inline constexpr char kUnknownVersion[] = "unknown";

struct ToolVersions {
  std::string ko = kUnknownVersion;
  std::string go = kUnknownVersion;
};

// KO_VERSION, else the first line of `ko version` when a ko is in PATH, else "unknown".
std::string DetectKoVersion();
// The first line of `<go> env GOVERSION`, or "unknown".
std::string DetectGoVersion(const std::string& go_binary);

// InvalidArgument if the record cannot make a valid entry (bad diffid or descriptor).
absl::StatusOr<cache::Entry> EntryFromRecord(const Record& r, const ToolVersions& tools);
// InvalidArgument if the entry is not a ko entry (config kind) or is malformed.
absl::StatusOr<Record> RecordFromEntry(const cache::Entry& e);

// Whether an entry written by ko version `stored` may be used by ko version
// `current`: yes unless both are known and differ. A layer's digest is what that
// ko's tar+gzip produced; another ko may produce other bytes when it has to
// rebuild the layer for a registry that lacks the blob, and the push would fail.
bool KoVersionCompatible(absl::string_view stored, absl::string_view current);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_ENTRY_H_
