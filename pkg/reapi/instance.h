// The REAPI cache over a cache::Store: one Instance per instance name, each
// with its own store (docs/FORMAT.md, "REAPI"). The gRPC servicers
// (services.h) only parse, call these and convert.
//
// CAS blobs are the store's blobs (registry blobs). An ActionResult is an
// entry keyed "ac:sha256:<action hash>" whose layers are every blob the result
// names, the files inside its output trees included, so registry GC keeps them.
//
// Large CAS blobs that compress are stored packed (packed.h): Exists, Read
// and Write speak REAPI digests whatever the stored form, and an action
// result's entry names the stored form of each blob it keeps.
//
// Two caches keep repeated questions away from the registry: blobs known to
// exist (positive answers only, bounded, `exists_ttl`), and action results
// whose blobs were all present (`complete_ttl`). A blob deleted from the
// registry behind the server's back can thus still be reported present for up
// to exists_ttl; Read then says NOT_FOUND and forgets it.
#ifndef OCICACHE_PKG_REAPI_INSTANCE_H_
#define OCICACHE_PKG_REAPI_INSTANCE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/recall.h"
#include "pkg/cache/store.h"
#include "pkg/oci/stream.h"
#include "pkg/reapi/convert.h"
#include "pkg/reapi/packed.h"
#include "pkg/reapi/resource.h"
#include "pkg/reapi/ttl_set.h"

namespace ocicache::reapi {

struct InstanceOptions {
  absl::Duration exists_ttl = absl::Minutes(10);
  size_t exists_max = 1 << 18;
  absl::Duration complete_ttl = absl::Minutes(5);
  size_t complete_max = 1 << 16;
  // Existence checks of one request run on at most this many threads.
  int parallelism = 16;
  // Blobs written of kMinPackedBytes or more whose first 64 KiB compress by an
  // eighth are stored packed, as one zstd frame at this level; 0: every blob
  // as it is. Packed blobs are found and read whatever this says.
  int zstd_level = 3;
  // Tree and ActionResult blobs larger than this are refused.
  int64_t max_message_blob_bytes = 64 << 20;
  // Instances (below): at most this many non-empty instance names are open at
  // once (each holds a store: a directory lock, registry connections); opening
  // one more closes the least recently used one that no call is using.
  int max_open_instances = 64;
  // Instances: the non-empty names served; empty: any valid name.
  std::vector<std::string> allowed_instances;
  // Recall of action results (cache/recall.h, group "ac" in each instance's
  // store): the results clients got or stored are saved at stop
  // (Instances::SaveRecall), and the next server prefetches them (with their
  // blobs, into the local tier) on its first GetActionResult. max_keys = 0:
  // off (stores without both a local tier and a registry).
  cache::RecallOptions recall{.max_keys = 0};
};

class Instance {
 public:
  Instance(std::string name, std::shared_ptr<cache::Store> store, InstanceOptions opts);

  const std::string& name() const { return name_; }
  cache::Store& store() { return *store_; }

  // Whether the blob is present (the empty blob always is). A blob of the
  // same hash but another size is absent.
  absl::StatusOr<bool> Exists(const BlobId& blob);
  // The blob's size, found by its digest alone (HTTP /cas/ names no size);
  // NotFound if absent.
  absl::StatusOr<int64_t> Size(const oci::Digest& digest);
  // The absent ones among `blobs`, in request order, without duplicates.
  // With max_checks > 0, at most that many blobs not already known present
  // are looked up in the store; the rest are reported absent (a client then
  // uploads them, and a write of a blob that is there finishes at once): the
  // work of one call stays bounded however many digests it names, and no
  // absent blob is ever reported present. `*unchecked` (if given) gets how
  // many were reported absent unchecked.
  absl::StatusOr<std::vector<BlobId>> FindMissing(const std::vector<BlobId>& blobs,
                                                  size_t max_checks = 0,
                                                  size_t* unchecked = nullptr);
  // Records that a blob is present (after a write that went around Write).
  void NoteExists(const BlobId& blob);

  // Stores a blob; InvalidArgument when the data does not match hash and size.
  absl::Status Write(const BlobId& blob, oci::ByteSource& source);
  absl::Status WriteBytes(const BlobId& blob, absl::string_view data);
  // Streams the blob from `offset`: NotFound if absent, OutOfRange if offset
  // is past its end.
  absl::Status Read(const BlobId& blob, int64_t offset, oci::ByteSink& sink);
  // The whole blob, at most max_bytes (ResourceExhausted beyond).
  absl::StatusOr<std::string> ReadAll(const BlobId& blob, int64_t max_bytes);

  // The result, if every blob it references is present; NotFound otherwise.
  absl::StatusOr<v2::ActionResult> GetActionResult(const BlobId& action);
  // Stores a result. InvalidArgument for malformed digests; FailedPrecondition
  // when a blob it names (or a file inside one of its trees) is absent.
  // Inlined stdout/stderr are stored as blobs, inlined file contents dropped.
  absl::StatusOr<v2::ActionResult> UpdateActionResult(const BlobId& action,
                                                      v2::ActionResult result);

  // Every Directory below `root` (breadth first, each distinct one once,
  // absent subdirectories left out) to visit, until it returns false.
  // NotFound when the root is absent; InvalidArgument if it is not a Directory.
  absl::Status WalkTree(const BlobId& root,
                        const std::function<bool(const v2::Directory&)>& visit);

  int64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  int64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  // Null with recall off.
  cache::Recall* recall() { return recall_.get(); }

 private:
  // FailedPrecondition unless every blob is present; appends how each is
  // stored to *kept. The blobs are looked up in parallel.
  absl::Status RequirePresent(const std::vector<BlobId>& blobs, absl::string_view what,
                              std::vector<StoredBlob>* kept);
  // How the blob is stored; nullopt if absent.
  absl::StatusOr<std::optional<StoredBlob>> Locate(const BlobId& blob);
  // From the caches alone: a packed blob noted, or a blob known present.
  std::optional<StoredBlob> Known(const BlobId& blob);
  // The packed blob its mapping entry names (any size when blob.size is -1).
  absl::StatusOr<std::optional<StoredBlob>> FindPacked(const BlobId& blob);
  void NotePacked(const StoredBlob& b);
  void ForgetPacked(const BlobId& raw);
  absl::Status WritePacked(const BlobId& blob, oci::ByteSource& source);
  absl::Status ReadPacked(const StoredBlob& b, int64_t offset, oci::ByteSink& sink);
  void Count(bool hit) { (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed); }

  const std::string name_;
  std::shared_ptr<cache::Store> store_;
  const InstanceOptions opts_;
  TtlSet exists_;
  TtlSet complete_;
  // Packed blobs seen (written, or named by a mapping or an action result),
  // by REAPI digest, with when they were noted: trusted for exists_ttl, like
  // exists_ (which holds blobs stored as they are only).
  absl::Mutex packed_mu_;
  absl::flat_hash_map<oci::Digest, std::pair<StoredBlob, absl::Time>> packed_
      ABSL_GUARDED_BY(packed_mu_);
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
  std::unique_ptr<cache::Recall> recall_;  // declared last: stopped first
};

// Opens the store of a non-empty instance name (already validated).
using StoreOpener =
    std::function<absl::StatusOr<std::shared_ptr<cache::Store>>(absl::string_view instance)>;

// The instances of one server: "" is the server's own store, the others are
// opened on first use with `opener`. At most opts.max_open_instances of those
// stay open: a name used again after its instance was closed is opened again
// (its existence caches start empty). An instance a call holds stays usable
// until the call lets go, even if closed meanwhile.
class Instances {
 public:
  // `default_store` is not owned. A null opener serves only the empty instance.
  Instances(cache::Store* default_store, StoreOpener opener, InstanceOptions opts);

  // InvalidArgument for an invalid name, or a non-empty one without an opener;
  // PermissionDenied for a name outside opts.allowed_instances.
  absl::StatusOr<std::shared_ptr<Instance>> Get(absl::string_view name);

  // Hit and miss counts per name, closed instances' included (names beyond
  // kMaxCountedNames share the row "_other").
  struct Stats {
    std::string instance;
    int64_t hits = 0;
    int64_t misses = 0;
  };
  std::vector<Stats> AllStats();
  static constexpr size_t kMaxCountedNames = 1024;

  // Stops the prefetches of every open instance and saves their recall lists
  // (an instance closed before saves nothing). Errors are joined.
  absl::Status SaveRecall(absl::Duration timeout);

  // Non-empty instances open now, and closed so far.
  size_t open_count();
  int64_t closed_count();

 private:
  struct Open {
    std::shared_ptr<Instance> instance;
    uint64_t last_used = 0;
  };
  void CloseOneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FoldCountsLocked(const Instance& inst) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StoreOpener opener_;
  const InstanceOptions opts_;
  std::shared_ptr<Instance> default_;
  absl::Mutex mu_;
  std::map<std::string, Open, std::less<>> open_ ABSL_GUARDED_BY(mu_);
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t closed_ ABSL_GUARDED_BY(mu_) = 0;
  // Counts of closed instances, by name.
  std::map<std::string, std::pair<int64_t, int64_t>> closed_counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_INSTANCE_H_
