// The store side of ocicache-go's `go tool buildid` (run as the internal command
// `ocicache ko lookup`, so that ocicache-go itself stays small; see wrapper.h):
// look a build id up in the cache and merge a hit into the KOCACHE files beside
// the binary, exactly as ko writes them.
#ifndef OCICACHE_PKG_KO_CONSULT_H_
#define OCICACHE_PKG_KO_CONSULT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pkg/cache/store.h"
#include "pkg/cmdline/command.h"
#include "pkg/stores/stores.h"
#include "pkg/ko/kocache.h"
#include "pkg/ko/lookup_log.h"

namespace ocicache::ko {

// The stores a lookup uses, with a count of registry requests (0 without one).
struct WrapperStores {
  std::unique_ptr<cache::Store> store;
  std::function<int64_t()> registry_requests;
  // Whether the registry tier was skipped after an outage (a tiered store then
  // answers a miss from the local tier); may be empty.
  std::function<bool()> degraded;
  // Whatever else `store` needs; declared last, so destroyed before `store`.
  std::shared_ptr<void> keep_alive;
};

// Opens what config names, as stores::OpenStores does, but with a registry client
// of the lookup profile (stores::Profile::kLookup), so an outage costs the
// build little; warnings (e.g. an outage) go to warn. With config.server the
// server's client is used as is.
absl::StatusOr<WrapperStores> OpenWrapperStores(const stores::StoreConfig& config, const Warn& warn);

struct ConsultOptions {
  std::string dir;  // the bin directory holding the binary
  std::string build_id;
  std::string ko_version;  // "" or "unknown": any entry is used
  // Called for ko_version only when a store lookup is needed (it may run `ko version`).
  std::function<std::string()> detect_ko_version;
  int recent_miss_seconds = kRecentMissSeconds;
};

// Looks the build id up and merges a hit into the directory's files. Never fails:
// the outcome is the event's result ("hit", "miss", "local", "recent-miss",
// "error"); problems go to warn. `open` is called only when the store is needed.
// A miss, and a lookup the registry could not answer, are remembered beside the
// files (kRecentMissFile) for ko's second call.
LookupEvent Consult(const ConsultOptions& opts,
                    const std::function<absl::StatusOr<WrapperStores>()>& open, const Warn& warn);

// `ocicache ko lookup [--kocache DIR] [--warn-stderr] BINARY BUILDID`: Consult for
// the bin directory of BINARY, appending the event to the lookup log. Prints
// nothing on stdout; with --warn-stderr, at most one warning line on stderr
// (else warnings only go to the log). Always exits 0 unless misused (2).
int LookupMain(const cmdline::CommandEnv& env, const std::vector<std::string>& args);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_CONSULT_H_
