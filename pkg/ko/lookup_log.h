// The wrapper's lookup log: one JSON line per `go tool buildid` that ocicache-go
// looked into, appended to $KOCACHE/ocicache-go.log (or $OCICACHE_KO_LOG; "off"
// disables it). It is where the wrapper's warnings go when ko reads the build id
// from a pipe that also carries stderr (ko does: anything else on stderr would
// become part of the build id), and `ocicache ko save` reports and clears it, so
// hits and misses per binary are visible after a `ko build`.
//
//   {"time":"2026-01-02T03:04:05Z","dir":"bin/example.com/app/linux/amd64",
//    "buildid":"...","result":"hit","registryRequests":1,"ms":3.2,"message":""}
//
// result: hit (the entry was merged into the KOCACHE files), miss, local (the files
// had it already: nothing asked), recent-miss (missed moments ago: not asked
// again), error (the message says why; the build went on without the cache).
// registryRequests counts every HTTP request of the lookup process, including the
// registry client's one-time GET /v2/ (it learns the auth challenge first).
// Free of Abseil, like process.h.
#ifndef OCICACHE_PKG_KO_LOOKUP_LOG_H_
#define OCICACHE_PKG_KO_LOOKUP_LOG_H_

#include <cstdint>
#include <string>
#include <vector>


namespace ocicache::ko {

struct LookupEvent {
  std::string time;  // RFC 3339
  std::string dir;   // relative to KOCACHE
  std::string build_id;
  std::string result;
  int64_t registry_requests = 0;
  double ms = 0;
  std::string message;
};

// The current time as "2026-01-02T03:04:05Z".
std::string NowRfc3339();

// The log path for a KOCACHE dir: $OCICACHE_KO_LOG, else KOCACHE/ocicache-go.log;
// "" when disabled.
std::string LookupLogPath(const std::string& kocache);

// Appends one line (a single write with O_APPEND, so concurrent writers do not
// interleave). Errors are ignored: the log must never fail a build.
void AppendLookupLog(const std::string& path, const LookupEvent& ev);

// Takes the log away (rename, read, remove) and parses it; lines that do not
// parse are skipped. Empty if there is no log.
std::vector<LookupEvent> ConsumeLookupLog(const std::string& path);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_LOOKUP_LOG_H_
