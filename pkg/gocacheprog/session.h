// Session: the session list, the session pack and prefetching (private to this
// package; the formats are in docs/FORMAT.md).
//
// At start (Start) the pairs of the previous build are read: the local session
// copy when this directory has one (read before any get is answered, without the
// registry), else the registry's list (in the background, on the prefetch pool).
// Each listed pair becomes a prefetch of its object, which then comes from the
// session pack (one stream, when most of the listed bytes are missing here:
// pack.cc) or one object at a time (prefetch.cc). A get for a listed key claims
// its prefetch (Claim). At close (Write) the pairs this build used (RecordUse)
// become the registry's list and pack, unless they are close to the list read at
// start, and the local session copy follows the list written. The pack names
// large objects the registry holds already (NoteStored) instead of holding them.
//
// Invariants, per listed key:
//   - Its state goes kQueued -> (kFetching ->) kOk or kFailed, and kOk and kFailed
//     are final; only a pack stream that ends before the key's object puts it back
//     from kFetching to kQueued, to be fetched alone.
//   - Only the thread that moved it to kFetching (or the pack streams it started)
//     fetches its object; a get that finds it kFetching waits for that instead of
//     downloading the object again.
//   - kOk: the object is in the local directory (or is empty), so a get may answer
//     with its DiskPath. kFailed: the get takes the normal lookup path.
// Every remote call goes through the server's RegistryGate; a prefetch that finds
// the registry skipped ends kFailed.
#ifndef OCICACHE_PKG_GOCACHEPROG_SESSION_H_
#define OCICACHE_PKG_GOCACHEPROG_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pkg/cache/store.h"
#include "pkg/gocacheprog/internal.h"
#include "pkg/base/thread_pool.h"
#include "pkg/gocacheprog/registry_gate.h"
#include "pkg/gocacheprog/server.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"

namespace ocicache::gocacheprog {

class Session {
 public:
  // What the session uses of the server; nothing is owned, all must outlive it.
  struct Env {
    layout::LayoutStore* local = nullptr;
    cache::Store* remote_lookup = nullptr;  // may be null: the local copy only
    cache::Store* remote_upload = nullptr;  // may be null: nothing written at close
    const ServerOptions* opts = nullptr;    // opts->session_key is not empty
    RegistryGate* registry = nullptr;
    Counters* n = nullptr;
    std::function<void(absl::string_view)> warn;
  };
  enum class State { kQueued, kFetching, kOk, kFailed };
  // How a session pack's bytes are stored (docs/FORMAT.md): raw (no frames), or
  // as independent zstd frames, frame r holding objects starts[r] up to the next
  // frame's first (the last: to the end), compressed to bytes[r]. With
  // `with_refs` ("zstd-refs"), the objects at the pack indices `refs` are not in
  // the frames: each is a layer of its own (the last refs.size() layers, in this
  // order), the blob its go-action entry names; the frames (maybe none) hold the
  // others, their starts counting only those.
  struct PackFrames {
    std::vector<size_t> starts;
    std::vector<int64_t> bytes;
    bool with_refs = false;
    std::vector<size_t> refs;
    bool raw() const { return starts.empty() && !with_refs; }
  };
  // Reads "packEncoding"/"packFrames"/"packRefs" of a session list's config; false
  // when they are present but not understood (then the pack is not used).
  static bool ParsePackFrames(const std::string& config, PackFrames* frames);

  explicit Session(Env env);
  // Joins the prefetch threads.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Reads the local session copy now, or starts reading the registry's list.
  void Start();
  // For a local hit on `key`: whether a prefetch brought its object from the
  // registry in this session.
  bool Downloaded(const std::string& key);
  // For a local miss on `key`: if it is listed, fetches its object (or waits for
  // the prefetch doing it). kOk: *o is in place; *fetched_here says this call
  // downloaded it (its entry is not stored yet) and *from_registry whether it came
  // from the registry in this session (else from this directory). Anything else:
  // the get takes the normal path.
  State Claim(const std::string& key, GoObject* o, bool* fetched_here, bool* from_registry);
  // Whether `key` was not in the registry when this session started, by the key
  // snapshot (server.h: key_snapshot_max_keys) taken when the registry had no
  // session list for this build or its module. False without a snapshot.
  bool KnownAbsent(const std::string& key);
  // Records a pair this build used (a hit or a put), for the list written at close.
  void RecordUse(const std::string& key, const GoObject& o);
  // Records that the registry holds the object `output_id` as the blob `stored`
  // (what its go-action entry names: a zstd frame, or the object itself), as this
  // process uploaded or read it: the pack written at close may name that blob
  // instead of holding the object's bytes again.
  void NoteStored(const oci::Digest& output_id, const oci::Descriptor& stored);
  // Stops a pack still streaming, drops queued prefetches and waits for the
  // running ones (go asks for nothing more).
  void StopPrefetching();
  // At close: writes the list (and pack) to the registry when they changed, and
  // the local session copy after it.
  void Write();

 private:
  struct Prefetch {
    GoObject object;
    State state = State::kQueued;
    bool downloaded = false;  // kOk because it came from the registry (not already here)
  };

  // Reads the local session copy and uses it; false when there is none.
  bool LoadLocal();
  // Reads the registry's session list and uses it (on the prefetch pool), as the
  // call that `probe` (from RegistryGate::Enter in Start) says it is.
  void LoadRemote(bool probe);
  // Settles the pairs of a session list whose objects are here, and fetches the
  // others: by reading the registry's pack into this directory when most bytes are
  // missing, else one by one. `remote_pack`: the registry's list had a pack.
  // `frames`: how the registry's pack (e.blobs[1]) is stored.
  void Use(const std::string& list, const cache::Entry& e, bool from_local, bool remote_pack,
           const PackFrames& frames);
  // Stores the local session copy: `list` and those of `objects` present here;
  // `remote_pack`: the registry's list has a pack.
  void StoreLocal(const std::string& list, const std::vector<GoObject>& objects,
                  bool remote_pack);
  std::string LocalKey() const { return env_.opts->session_key + ".local"; }

  // pack.cc. Streams the session pack into the local tier, settling each object's
  // keys as it lands; what the stream does not bring is prefetched one by one.
  // Then records the session in the local directory: the local session copy, or
  // for a very large session one entry per key (also for the empty objects,
  // `empty`). Returns once all of that is stored.
  void ReadPack(const std::vector<oci::Descriptor>& layers, const PackFrames& frames,
                const std::string& list,
                const std::vector<GoObject>& pack,
                const std::vector<std::vector<std::string>>& pack_keys,
                const std::vector<std::string>& empty);
  // Uploads the objects of `pack` (all of size > 0, each once) back to back as the
  // session pack, when all are here and they total at most max_pack_bytes.
  // Compressed as zstd frames when that saves at least a tenth, or always with
  // `frames_only` (*frames says how; nullopt then when it cannot be compressed).
  std::optional<oci::Descriptor> UploadPack(const std::vector<GoObject>& pack,
                                            PackFrames* frames, bool frames_only = false);
  // The compressed form: nullopt when it fails, or (unless `always`) when it
  // saves less than a tenth.
  std::optional<oci::Descriptor> UploadCompressedPack(const std::vector<std::string>& paths,
                                                      const std::vector<int64_t>& sizes,
                                                      int64_t total, bool always,
                                                      PackFrames* frames);

  // prefetch.cc.
  void PrefetchOne(const std::string& key);
  void Settle(const std::string& key, bool ok, bool downloaded = true);
  bool SettledLocked(const std::string* key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Env env_;
  std::atomic<bool> draining_{false};  // a pack still streaming stops
  // Start's read of the registry's list: submitted (with the gate's probe it
  // holds), and claimed by the task that runs it or by StopPrefetching.
  bool load_submitted_ = false;  // set in Start, before any other thread runs
  bool load_probe_ = false;
  std::atomic<bool> load_claimed_{false};

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Prefetch> prefetch_ ABSL_GUARDED_BY(mu_);
  oci::Digest loaded_session_ ABSL_GUARDED_BY(mu_);  // the list read at start
  bool loaded_pack_ ABSL_GUARDED_BY(mu_) = false;    // it came with a pack
  bool loaded_fallback_ ABSL_GUARDED_BY(mu_) = false;  // under session_fallback_key
  // The registry's keys at start, when it had no list for this build (else null).
  std::unique_ptr<const cache::KeySnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // Pairs used by this session, in order of first use.
  std::vector<std::pair<std::string, GoObject>> used_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> used_keys_ ABSL_GUARDED_BY(mu_);
  // NoteStored: OutputID hex -> the registry blob holding the object.
  absl::flat_hash_map<std::string, oci::Descriptor> stored_ ABSL_GUARDED_BY(mu_);

  // Last: its threads run tasks that use the members above.
  std::unique_ptr<base::ThreadPool> prefetches_;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_SESSION_H_
