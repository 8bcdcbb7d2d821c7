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
//   - With a session key, a pool of `prefetch_threads` reads the session list and
//     fetches its objects ahead of go's gets (session.h).
//   Responses are written whole, one line each, under a mutex, and flushed. Each
//   request gets exactly one response; a get's response is sent only once its
//   DiskPath holds the object.
//
// Outages: a remote error other than a miss is never an error for go. Lookups
// become misses. Uploads wait out the pause (go does not wait for them): the
// registry's next answer lets them through, and at close, with uploads still
// held, the registry is asked once more (one lookup timeout at most) before they
// go to the backlog (DIR/backlog, pushed by the next run). Whether to call the registry at all is a
// cache::Breaker's decision: after an outage (cache::IsOutage) the registry is
// skipped for `remote_retry_after`, and one warning line per outage goes to the
// warning sink (stderr: go shows it). gocacheprog also skips it after a refusal
// (bad credentials, access denied, an operation it does not implement), which is
// not an outage for cache::IsOutage; registry_gate.h says why. While the registry's
// state is in doubt (first contact, or the first call after a pause) one call at a
// time tests it, so a dead registry costs one timeout per period, not one per
// request.
//
// Entries: key = the ActionID in lowercase hex; config
// {"kind":"go-action","outputID":"sha256:..","size":N}; blobs[0] = the object
// (its digest is the OutputID) unless the object is empty: entries never hold
// zero-size blobs, and go gets the path of an empty file (DIR/gocacheprog/empty).
// docs/FORMAT.md describes these entries and the session's.
#ifndef OCICACHE_PKG_GOCACHEPROG_SERVER_H_
#define OCICACHE_PKG_GOCACHEPROG_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/base/thread_pool.h"
#include "pkg/cache/backlog.h"
#include "pkg/cache/store.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/stream.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::gocacheprog {

struct ServerOptions {
  int lookup_threads = 16;
  int upload_threads = 16;
  // Puts waiting for upload; more are dropped (counted as upload failures).
  size_t upload_queue = 10000;
  // How long close (or the end of input) waits for queued uploads.
  absl::Duration flush_timeout = absl::Minutes(5);
  // After a registry outage (or refusal), how long to work without it: the
  // retry_after of the server's cache::Breaker.
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
  // Read when session_key has no list, and written with it (the same list): the
  // nearest earlier session, e.g. the module's latest build in another
  // directory of it or with other flags (session_key.h). Empty: none.
  std::string session_fallback_key;
  // When the registry has neither list (the first build of a module there), its
  // entry tags are read once (one tag list; registries send it whole) if they
  // number at most this many, and gets for keys it does not hold are misses
  // without a round trip each (counted as known_absent). An entry another build
  // puts meanwhile is missed by this build, never wrongly hit. 0: never.
  size_t key_snapshot_max_keys = 20000;
  int prefetch_threads = 8;
  // With the list, the session pack: the listed objects' bytes back to back in one
  // blob (see docs/FORMAT.md), so a fresh machine reads them in one GET instead of
  // one per object. Written at close when the list changes and the objects total
  // at most max_pack_bytes; read at start when present.
  bool session_pack = true;
  int64_t max_pack_bytes = int64_t{2} << 30;
  // The pack is stored as zstd frames (one per run of objects, level
  // pack_zstd_level) when that saves at least a tenth of its bytes; Go's
  // compiled packages typically shrink 3-4x, which a fresh machine on a slow link
  // gains back many times over.
  bool pack_compression = true;
  int pack_zstd_level = 3;
  // An object over kInlineMaxBytes whose first 16 KiB compress by an eighth is
  // uploaded as one zstd frame at pack_zstd_level, its entry saying
  // "encoding":"zstd" (docs/FORMAT.md): compiled packages shrink 3-4x on the
  // link and in the registry. The local directory keeps objects as they are.
  bool object_compression = true;
  // The pack is read by up to this many ranged GETs at once, each a run of whole
  // objects of at least pack_segment_min_bytes.
  int pack_streams = 4;
  int64_t pack_segment_min_bytes = int64_t{8} << 20;
  // Objects over kInlineMaxBytes that the registry holds already as blobs of
  // their own (this process uploaded them, or read them so) are not sent again
  // in the pack written at close: the list's entry names those blobs
  // ("packEncoding":"zstd-refs", docs/FORMAT.md), and the frames hold the rest.
  // A fresh machine reads those blobs with up to pack_ref_streams GETs at once
  // besides the frames' streams. Only blobs of at least pack_ref_min_bytes are
  // named: a GET of its own costs a round trip and the registry's work per
  // request. Measured on the bench module (docs/NETWORK.md): naming all 142
  // objects over 16 KiB made the fresh-VM build on loopback 1.03 s against
  // 0.68 s; naming the 36 of 128 KiB and up (three quarters of the bytes) left
  // it within noise.
  bool pack_refs = true;
  int pack_ref_streams = 16;
  int64_t pack_ref_min_bytes = int64_t{128} << 10;
  // A pack read into the local directory is recorded there as one entry, the
  // local session copy (key session_key + ".local": the list plus every object),
  // instead of one entry per ActionID, so the next build in this directory reads
  // one entry. Sessions of more objects than this (a manifest must stay small) get
  // one entry per ActionID instead.
  int local_session_max_objects = 1200;
  // Write the counters to stderr at the end.
  bool print_stats = false;
  // Append the counters as one JSON line to this file at the end (before the
  // close answer, so it is complete when go exits); empty: none.
  std::string stats_file;
  // Where warnings and errors go (one line each, no newline); default: stderr.
  std::function<void(absl::string_view)> warn;
};

// The counters, each named once, here: X(name). ServerStats has one field per
// counter, the server one atomic per counter, and StatsJson() one key per counter,
// in this order.
#define OCICACHE_GOCACHEPROG_COUNTERS(X)                                                   \
  X(gets)                                                                                  \
  X(local_hits)         /* found in the local directory */                                 \
  X(remote_hits)        /* objects that came from the registry in this session */          \
  X(misses)                                                                                \
  X(puts)                                                                                  \
  X(uploaded)                                                                              \
  X(upload_failures)    /* failed, skipped during an outage, dropped, abandoned */         \
  X(errors)             /* Err responses */                                                \
  X(remote_errors)      /* lookups that failed for another reason than a miss */           \
  X(local_us)           /* where gets spend time (microseconds, summed): local lookups, */ \
  X(remote_lookup_us)   /* registry lookups, */                                            \
  X(fetch_us)           /* object downloads, */                                            \
  X(fill_us)            /* storing fetched entries */                                      \
  X(max_in_flight)      /* the most gets in flight at once */                              \
  X(prefetched)         /* remote hits answered from the session list */                   \
  X(known_absent)       /* misses the key snapshot answered, without a lookup */           \
  X(session_listed)     /* pairs in the session list read at start */                      \
  X(packs_read)         /* session packs read whole at start (0 or 1) */                   \
  X(pack_bytes_written) /* size of the session pack written at close */            \
  X(pack_refs)          /* objects that pack names as blobs stored already */      \
  X(close_us)           /* time from close to the end: uploads, session, index */

struct ServerStats {
#define OCICACHE_GOCACHEPROG_STATS_FIELD(name) int64_t name = 0;
  OCICACHE_GOCACHEPROG_COUNTERS(OCICACHE_GOCACHEPROG_STATS_FIELD)
#undef OCICACHE_GOCACHEPROG_STATS_FIELD
};

// Private to this package: pool.h, registry_gate.h, session.h, internal.h.
class RegistryGate;
class Session;
struct Counters;
struct GoObject;

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
  // One line: "N gets (...), N puts (...), N errors".
  std::string StatsLine() const;
  // The counters as a JSON object.
  std::string StatsJson() const;
  // Whether uploads were still running when the flush timeout expired (their
  // threads are blocked in the network; a process should exit without joining).
  bool abandoned() const { return abandoned_.load(); }
  // DIR/gocacheprog/empty: go's DiskPath for empty objects.
  const std::string& empty_path() const { return empty_path_; }

 private:
  struct Upload;

  Server(layout::LayoutStore* local, cache::Store* remote_lookup, cache::Store* remote_upload,
         ServerOptions opts);

  void Send(const std::string& line);
  void SendError(int64_t id, absl::string_view message);
  void Warn(absl::string_view message);

  // Request handlers. Returns false when the stream is unusable.
  bool HandlePut(const Request& r, LineReader& reader);
  bool SkipBody(LineReader& reader);
  void HandleGet(int64_t id, const std::string& action_id);
  // The answer line for a local or remote hit whose object is in place.
  std::string HitFor(int64_t id, const GoObject& o, absl::Time created) const;
  // One attempt at uploading a put (object, then entry); waits out a pause of
  // the registry (RegistryGate::EnterOrWait).
  absl::Status RunUpload(const Upload& u);
  // Sends an object's bytes (`src`, the local file) to the registry: as they
  // are (nullopt), or as a zstd frame when that pays (its descriptor).
  absl::StatusOr<std::optional<oci::Descriptor>> UploadObject(const Upload& u,
                                                              oci::ByteSource& src);
  // Uploads a put, again after an outage met on the way (a few attempts), counts
  // the outcome, and records it in the backlog when it fails (forgetting it when
  // it succeeds). Whether it went up.
  bool UploadOrDefer(const Upload& u);
  // Uploads what earlier runs recorded in DIR/backlog (an upload task).
  void RetryBacklog();
  // Finishes: waits for gets and (bounded) uploads, writes the session list,
  // flushes the local index, reports the counters.
  void Drain();

  layout::LayoutStore* local_;
  cache::Store* remote_lookup_;
  cache::Store* remote_upload_;
  ServerOptions opts_;
  std::string empty_path_;

  std::unique_ptr<Counters> n_;
  // Shared by lookups, uploads and the session: whether to call the registry now.
  std::unique_ptr<RegistryGate> registry_;
  // Null without a session key.
  std::unique_ptr<Session> session_;
  std::unique_ptr<base::ThreadPool> lookups_;
  std::unique_ptr<base::ThreadPool> uploads_;  // null without remote_upload
  // DIR/backlog (cache/backlog.h): puts not uploaded, for this or a later run
  // (or a server on this directory) to push. Null without remote_upload.
  std::shared_ptr<cache::Backlog> backlog_;
  absl::Mutex pending_mu_;
  // Keys submitted for upload and not finished: recorded if the run ends first.
  std::set<std::string> pending_ ABSL_GUARDED_BY(pending_mu_);

  absl::Mutex out_mu_;
  std::ostream* out_ ABSL_GUARDED_BY(out_mu_) = nullptr;
  bool out_broken_ ABSL_GUARDED_BY(out_mu_) = false;

  absl::Mutex mu_;
  // ActionIDs the registry answered "not found" in this session: not asked again.
  absl::flat_hash_set<std::string> known_misses_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> abandoned_{false};
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_SERVER_H_
