// The GOCACHEPROG server: answers go's get/put/close requests from the local
// tier (an OCI image layout whose blob files are the DiskPaths go reads) and a
// registry behind it.
//
// Threads
//   - Serve's caller reads requests. It handles puts itself (the body follows the
//     request on the same stream): the body is decoded while streaming into a
//     local blob verified against ObjectID, the entry is stored locally, the answer
//     sent at once, and the upload queued.
//   - A pool of `lookup_threads` answers gets: local lookup, then (on a local
//     miss, unless the ActionID is a known miss) one manifest GET on the registry;
//     a remote hit downloads the object into the local tier and stores the entry
//     there before answering.
//   - A pool of `upload_threads` uploads queued puts to the registry (blob, then
//     entry). The queue is bounded; a put that finds it full is not uploaded
//     (counted as an upload failure), the build never waits for the registry.
//   Responses are written whole, one line each, under a mutex, and flushed.
//
// Outages: any remote error other than a miss is never an error for go. Lookups
// become misses and uploads failures, and after an outage (connection refused,
// timeouts, 5xx, auth refused) the registry is skipped for `remote_retry_after`,
// so a dead registry costs one timeout per period, not one per request. One
// warning line per outage goes to stderr (go shows it).
//
// Entries: key = the ActionID in lowercase hex; config
// {"kind":"go-action","outputID":"sha256:..","size":N}; blobs[0] = the object
// (its digest is the OutputID) unless the object is empty: entries never hold
// zero-size blobs, and go gets the path of an empty file (DIR/gocacheprog/empty).
#ifndef OCICACHE_PKG_GOCACHEPROG_SERVER_H_
#define OCICACHE_PKG_GOCACHEPROG_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/store.h"
#include "pkg/gocacheprog/stream.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::gocacheprog {

struct ServerOptions {
  int lookup_threads = 16;
  int upload_threads = 4;
  // Puts waiting for upload; more are dropped (counted as upload failures).
  size_t upload_queue = 10000;
  // How long close (or the end of input) waits for queued uploads.
  absl::Duration flush_timeout = absl::Minutes(5);
  // After a registry outage, how long to work without it.
  absl::Duration remote_retry_after = absl::Seconds(30);
  // The org.ocicache.tool.go annotation of stored entries (go's GOVERSION); empty: none.
  std::string go_version;
  // Requests longer than this (a body line excepted) are errors.
  size_t max_request_bytes = 1 << 20;
  // Objects larger than this are refused (Err).
  int64_t max_object_bytes = int64_t{16} << 30;
  // The session list: the registry entry (this key) listing the ActionID ->
  // OutputID pairs a build used, written at close when it changed. At start the
  // previous list is read and its objects prefetched with `prefetch_threads`, so a
  // fresh machine answers most gets without a registry round trip of its own.
  // Empty: no list, no prefetch.
  std::string session_key;
  int prefetch_threads = 8;
  // With the list, the session pack: the listed objects' bytes back to back in one
  // blob (see docs/FORMAT.md), so a fresh machine reads them in one GET instead of
  // one per object. Written at close when the list changes and the objects total
  // at most max_pack_bytes; read at start when present.
  bool session_pack = true;
  int64_t max_pack_bytes = int64_t{2} << 30;
  // The pack is read by up to this many ranged GETs at once, each a run of whole
  // objects of at least pack_segment_min_bytes.
  int pack_streams = 4;
  int64_t pack_segment_min_bytes = int64_t{8} << 20;
  // A pack read into the local directory is recorded there as one entry, the
  // local session copy (key session_key + ".local": the list plus every object),
  // instead of one entry per ActionID: a fresh machine then creates about four
  // files per object fewer, and the next build in this directory reads one entry.
  // Sessions of more objects than this (a manifest must stay small) get one entry
  // per ActionID as before.
  int local_session_max_objects = 1200;
  // Write the counters to stderr at the end.
  bool print_stats = false;
  // Append the counters as one JSON line to this file at the end (before the
  // close answer, so it is complete when go exits); empty: none.
  std::string stats_file;
  // Where warnings and errors go (one line each, no newline); default: stderr.
  std::function<void(absl::string_view)> warn;
};

struct ServerStats {
  int64_t gets = 0;
  int64_t local_hits = 0;   // found in the local directory
  int64_t remote_hits = 0;  // objects that came from the registry in this session
  int64_t misses = 0;
  int64_t puts = 0;
  int64_t uploaded = 0;
  int64_t upload_failures = 0;  // failed, skipped during an outage, dropped, abandoned
  int64_t errors = 0;           // Err responses
  int64_t remote_errors = 0;    // lookups that failed for another reason than a miss
  int64_t prefetched = 0;       // remote hits answered from the session list
  int64_t session_listed = 0;   // pairs in the session list read at start
  int64_t packs_read = 0;       // session packs read whole at start (0 or 1)
  int64_t pack_bytes_written = 0;  // size of the session pack written at close
  // Where get time goes (microseconds, summed over gets), and the most gets in flight.
  int64_t local_us = 0;
  int64_t remote_lookup_us = 0;
  int64_t fetch_us = 0;
  int64_t fill_us = 0;
  int64_t max_in_flight = 0;
};

class Server {
 public:
  // `local` must have an absolute dir(). `remote_lookup` answers gets and
  // `remote_upload` receives puts (often the same store; separate ones allow
  // shorter timeouts for lookups); either may be null. Nothing is owned.
  static absl::StatusOr<std::unique_ptr<Server>> Create(layout::LayoutStore* local,
                                                        cache::Store* remote_lookup,
                                                        cache::Store* remote_upload,
                                                        ServerOptions opts);
  // Stops the pools and joins their threads (waits for requests in flight).
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Writes the hello, then serves requests from `in` until close or end of input.
  // Returns 0 after close or at a clean end of input (uploads flushed either way),
  // 2 when the request stream was unusable (an error line says why on stderr).
  int Serve(Input& in, std::ostream& out);

  ServerStats stats() const;
  // One line: "gocacheprog: N gets (...), N puts (...)".
  std::string StatsLine() const;
  // The counters as a JSON object.
  std::string StatsJson() const;
  // Whether uploads were still running when the flush timeout expired (their
  // threads are blocked in the network; a process should exit without joining).
  bool abandoned() const { return abandoned_.load(); }
  // DIR/gocacheprog/empty: go's DiskPath for empty objects.
  const std::string& empty_path() const { return empty_path_; }

 private:
  class Pool;
  struct Upload {
    cache::Entry entry;
    oci::Digest digest;
    int64_t size = 0;
  };
  // What an entry says about the Go object it maps to.
  struct GoObject {
    oci::Digest output_id;
    int64_t size = 0;
  };

  Server(layout::LayoutStore* local, cache::Store* remote_lookup, cache::Store* remote_upload,
         ServerOptions opts);

  void Send(const std::string& line);
  void SendError(int64_t id, absl::string_view message);
  void Warn(absl::string_view message);

  // Request handlers. Returns false when the stream is unusable.
  bool HandlePut(const Request& r, LineReader& reader);
  bool SkipBody(LineReader& reader);
  void HandleGet(int64_t id, const std::string& action_id);
  // A local or remote hit -> the answer line, or an error if the entry is unusable.
  absl::StatusOr<GoObject> CheckEntry(const cache::Entry& e) const;
  std::string HitFor(int64_t id, const GoObject& o, absl::Time created) const;
  // Makes a remote entry's object present in the local tier.
  absl::Status FetchObject(const GoObject& o);
  void RunUpload(const Upload& u);
  // The session list and prefetching.
  enum class PrefetchState { kQueued, kFetching, kOk, kFailed };
  struct Prefetch {
    GoObject object;
    PrefetchState state = PrefetchState::kQueued;
    bool downloaded = false;  // kOk because it came from the registry (not already here)
  };
  // Reads the local session copy (at start, before any request: it is on this
  // disk) and uses it; false when there is none.
  bool LoadLocalSession();
  // Reads the registry's session list and uses it (in the background).
  void LoadSession();
  // Settles the pairs of a session list whose objects are here, and fetches the
  // others: by reading the registry's pack into this directory when most bytes are
  // missing, else one by one. `remote_pack`: the registry's list had a pack.
  void UseSession(const std::string& list, const cache::Entry& e, bool from_local,
                  bool remote_pack);
  // Streams the session pack into the local tier, settling each object's keys as
  // it lands; what the stream does not bring is prefetched one by one. Then
  // records the session in the local directory: the local session copy, or for a
  // very large session one entry per key (also for the empty objects, `empty`).
  void ReadPack(const oci::Digest& digest, const std::string& list,
                const std::vector<GoObject>& pack,
                const std::vector<std::vector<std::string>>& pack_keys,
                const std::vector<std::string>& empty);
  // Stores the local session copy: `list` and those of `objects` present here;
  // `remote_pack`: the registry's list has a pack.
  void StoreLocalSession(const std::string& list, const std::vector<GoObject>& objects,
                         bool remote_pack);
  std::string LocalSessionKey() const { return opts_.session_key + ".local"; }
  void PrefetchOne(const std::string& key);
  // For a key in the session list: fetches its object (or waits for the
  // prefetch doing it). kOk: *o is in place, and *from_registry says whether it
  // came from the registry in this session. Anything else: use the normal path.
  PrefetchState ClaimPrefetch(const std::string& key, GoObject* o, bool* fetched_here,
                              bool* from_registry);
  void SettlePrefetch(const std::string& key, bool ok, bool downloaded = true);
  bool PrefetchSettledLocked(const std::string* key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  cache::Entry EntryFor(const std::string& key, const GoObject& o) const;
  void RecordUse(const std::string& key, const GoObject& o);
  void WriteSession();
  // Finishes: waits for gets and (bounded) uploads, flushes the local index.
  void Drain();

  // The registry's health, shared by lookups and uploads. Before a remote call,
  // EnterRemote says whether to make it: not while paused after an outage; and
  // while nothing is known yet (first contact, or the pause is over) one caller
  // probes (*probe set) and the others wait for its result at first contact or
  // skip the registry after an outage. Every entered call reports its outcome
  // with ExitRemote (an outage pauses the remote and is warned once).
  bool EnterRemote(bool* probe);
  void ExitRemote(bool probe, const absl::Status& s, absl::string_view what);
  bool ProbeDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !probing_; }

  layout::LayoutStore* local_;
  cache::Store* remote_lookup_;
  cache::Store* remote_upload_;
  ServerOptions opts_;
  std::string empty_path_;

  std::unique_ptr<Pool> lookups_;
  std::unique_ptr<Pool> prefetches_;
  std::unique_ptr<Pool> uploads_;

  absl::Mutex out_mu_;
  std::ostream* out_ ABSL_GUARDED_BY(out_mu_) = nullptr;
  bool out_broken_ ABSL_GUARDED_BY(out_mu_) = false;

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> known_misses_ ABSL_GUARDED_BY(mu_);
  bool remote_known_ ABSL_GUARDED_BY(mu_) = false;  // some call got an answer or failed
  bool remote_down_ ABSL_GUARDED_BY(mu_) = false;
  bool probing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time remote_down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int upload_warnings_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, Prefetch> prefetch_ ABSL_GUARDED_BY(mu_);
  oci::Digest loaded_session_ ABSL_GUARDED_BY(mu_);  // the list read at start
  bool loaded_pack_ ABSL_GUARDED_BY(mu_) = false;    // it came with a pack
  // Pairs used by this session, in order of first use.
  std::vector<std::pair<std::string, GoObject>> used_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> used_keys_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> abandoned_{false};
  std::atomic<bool> draining_{false};
  struct Counters {
    std::atomic<int64_t> gets{0}, local_hits{0}, remote_hits{0}, misses{0}, puts{0},
        uploaded{0}, upload_failures{0}, errors{0}, remote_errors{0}, local_us{0},
        remote_lookup_us{0}, fetch_us{0}, fill_us{0}, in_flight{0}, max_in_flight{0},
        prefetched{0}, session_listed{0}, packs_read{0}, pack_bytes_written{0};
  } n_;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_SERVER_H_
