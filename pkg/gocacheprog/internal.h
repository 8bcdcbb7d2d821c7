// Pieces the server's files share (private to this package): the counters and the
// go-action entry format.
#ifndef OCICACHE_PKG_GOCACHEPROG_INTERNAL_H_
#define OCICACHE_PKG_GOCACHEPROG_INTERNAL_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/cache/store.h"
#include "pkg/gocacheprog/server.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"

namespace ocicache::gocacheprog {

// The "kind" of go-action entries' config.
inline constexpr char kKind[] = "go-action";
// Objects up to this size live inside their registry entry (the config's
// "data", docs/FORMAT.md): a lookup is one GET and an upload is the entry
// alone. Local entries always name the object's blob: go reads it by path.
inline constexpr int64_t kInlineMaxBytes = 16 << 10;
// Objects up to this size are compressed in memory before their upload (so
// the frame's digest is asked about first), larger ones streamed.
inline constexpr int64_t kInMemoryUpload = 8 << 20;
// The annotation holding ServerOptions::go_version.
inline constexpr char kToolAnnotation[] = "org.ocicache.tool.go";

// The server's counters (ServerStats, as atomics), plus the gets in flight now.
struct Counters {
#define OCICACHE_GOCACHEPROG_ATOMIC(name) std::atomic<int64_t> name{0};
  OCICACHE_GOCACHEPROG_COUNTERS(OCICACHE_GOCACHEPROG_ATOMIC)
#undef OCICACHE_GOCACHEPROG_ATOMIC
  std::atomic<int64_t> in_flight{0};

  ServerStats Snapshot() const;
};

// What an entry says about the Go object it maps to. An object of size 0 is the
// empty one (output_id = sha256 of ""), held by no blob.
struct GoObject {
  oci::Digest output_id;
  int64_t size = 0;
  // Set when the registry holds the object as a zstd frame (its entry's blob,
  // config "encoding":"zstd"): the frame's digest.
  oci::Digest frame;
};

// The config of a go-action entry; with `data`, the object's bytes inside it.
std::string ConfigFor(const oci::Digest& output_id, int64_t size, absl::string_view data = {});
// The go-action entry `key` -> `o`, annotated with `go_version` unless empty.
cache::Entry EntryFor(const std::string& key, const GoObject& o, const std::string& go_version);
// `e` (a go-action entry for `o`) in its registry form for an object of at most
// kInlineMaxBytes: `bytes` inside the config, no blob.
cache::Entry InlineEntry(const cache::Entry& e, const GoObject& o, absl::string_view bytes);
// `e` in its registry form for an object stored as the zstd frame `frame`:
// config "encoding":"zstd", the frame its blob (application/zstd).
cache::Entry EncodedEntry(const cache::Entry& e, const GoObject& o, const oci::Descriptor& frame);
// `e` in its local form: the object's blob named, no bytes in the config.
cache::Entry LocalEntry(const cache::Entry& e, const GoObject& o);
// The object a go-action entry maps to; DataLoss if the entry is not a
// well-formed go-action entry whose blob, or whose bytes inside it, match its
// config. The bytes inside it, if any, go to *data (when not null).
absl::StatusOr<GoObject> CheckEntry(const cache::Entry& e, std::string* data = nullptr);

// Makes `o` present in `local` (nothing to do when it is already there or empty):
// from `inline_bytes` when given (the bytes its entry held), else reading its
// blob, or decoding its frame (o.frame), from `remote` (null: from `local`,
// for an entry copied there in registry form). Adds the time spent to
// n->fetch_us.
absl::Status FetchObject(layout::LayoutStore* local, cache::Store* remote, const GoObject& o,
                         Counters* n, const std::string* inline_bytes = nullptr);
// FetchObject for a pair a session list names (the entry `key` -> `o`, not read
// yet): the entry is read first, then the object comes from inside it (one
// GET), from the zstd frame it names, or from its blob (older writers, objects
// that do not compress): two GETs. When the object came from a blob of its
// own, *stored (if not null) gets that blob's descriptor.
absl::Status FetchPair(layout::LayoutStore* local, cache::Store* remote, const std::string& key,
                       const GoObject& o, Counters* n, oci::Descriptor* stored = nullptr);

// Microseconds since `since`.
int64_t Micros(absl::Time since);

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_INTERNAL_H_
