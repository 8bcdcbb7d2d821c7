// `ocicache ko save` and `ocicache ko restore`: KOCACHE metadata to and from the cache.
#ifndef OCICACHE_PKG_KO_SYNC_H_
#define OCICACHE_PKG_KO_SYNC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pkg/cache/store.h"
#include "pkg/ko/entry.h"
#include "pkg/ko/kocache.h"

namespace ocicache::ko {

struct SaveOptions {
  std::string kocache;
  ToolVersions tools;
  Warn warn;  // one line per problem; may be empty
};

struct SaveStats {
  int dirs = 0;           // bin directories with a buildid-to-diffid file
  int saved = 0;          // entries written to at least one tier
  int present = 0;        // entries every tier had already
  int incomplete = 0;     // build ids whose diffid has no descriptor
  int invalid_files = 0;  // files that could not be read or parsed (left for ko to rewrite)
  int errors = 0;         // entries that could not be written
  bool registry_unavailable = false;  // the registry was unreachable: local tier only
};

// Walks $KOCACHE/bin and stores an entry for every complete build id that a tier
// lacks (each tier is looked up first, so saving twice writes nothing the second
// time). `local` and `remote` are the tiers; either may be null, not both. A
// registry outage is one warning, and the rest goes to the local tier only.
// Errors only when KOCACHE/bin cannot be read; per-entry failures are counted.
absl::StatusOr<SaveStats> Save(cache::Store* local, cache::Store* remote, const SaveOptions& opts);

struct RestoreOptions {
  std::string kocache;
  std::vector<std::string> import_paths;  // only these (empty: all)
  std::vector<std::string> platforms;     // only these (empty: all)
  int max = 0;                            // newest N entries after filtering (0: all)
  std::string ko_version;                 // skip entries of another known ko version
  Warn warn;
};

struct RestoreStats {
  int listed = 0;    // ko entries in the store
  int selected = 0;  // after filters and --max
  int restored = 0;  // build ids added to KOCACHE files
  int present = 0;   // build ids KOCACHE had already
  int skipped = 0;   // another ko version, unusable, or gone meanwhile
  int dirs = 0;      // bin directories written
  int errors = 0;    // lookups or writes that failed
};

// Lists ko entries (annotation org.ocicache.ko.import-path), filters them, and
// merges the newest first into $KOCACHE/bin/<import path>/<platform>/ files,
// creating directories as needed and keeping what is there.
absl::StatusOr<RestoreStats> Restore(cache::Store& store, const RestoreOptions& opts);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_SYNC_H_
