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
};

// The config of a go-action entry.
std::string ConfigFor(const oci::Digest& output_id, int64_t size);
// The go-action entry `key` -> `o`, annotated with `go_version` unless empty.
cache::Entry EntryFor(const std::string& key, const GoObject& o, const std::string& go_version);
// The object a go-action entry maps to; DataLoss if the entry is not a
// well-formed go-action entry whose blob matches its config.
absl::StatusOr<GoObject> CheckEntry(const cache::Entry& e);

// Makes `o` present in `local` (nothing to do when it is already there or empty),
// reading it from `remote`. Adds the time spent to n->fetch_us.
absl::Status FetchObject(layout::LayoutStore* local, cache::Store* remote, const GoObject& o,
                         Counters* n);

// Microseconds since `since`.
int64_t Micros(absl::Time since);

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_INTERNAL_H_
