// Recall: the keys a previous process used, fetched again before they are asked for.
//
// A build on a fresh machine asks for the same keys the build before it did,
// one at a time: each answer from the registry is a round trip on the build's
// critical path (ccache asks for two objects per compile, one compile after
// another). A server that remembers what its clients used can fetch all of it
// at once, many requests in flight, the next time.
//
// How: the server notes the keys its clients hit or put (Note), per group (a
// protocol and namespace, e.g. "http:kv:ccache"). When it stops (Save) it
// stores each group's list as an ordinary entry, key "recall:<group>"
// (docs/FORMAT.md, "Recall lists"). A new process that gets its first request
// in a group (Begin) reads that group's list in the background and looks up
// every key on it through `store` with up to `parallel` lookups in flight: a
// tiered store copies each hit into its local tier, so the build's own
// requests find them there. A request for a key whose prefetch is in flight
// waits for it (AwaitPrefetch) rather than asking the registry a second time.
// With a local tier apart (RecallOptions::local), a list also carries a pack:
// the manifests of its entries that need no blob, which the next process puts
// straight into its local tier (one GET for all of them, not one each).
//
// With RecallOptions::index (e.g. "http"), Save also stores the names of the
// groups it saved, key "recall:<index>", and Preload, called when the process
// starts, reads them and begins each of those groups at once: a server started
// before its build (as CI starts it) has the build's objects local before the
// build asks, instead of from its first request on.
//
// A list is trusted no further than a hint: keys outside its group, or too long
// to be keys, are skipped, and it is read up to 4 MiB.
//
// Lists are last writer wins: the list a process saves is what its clients
// used (at most max_keys per group, first used first), so a key no build asks
// for again drops off the next list. A process saves nothing for a group whose
// noted keys are the list it read and where nothing was written (nothing
// changed), nor for groups nobody used.
// Prefetching is best effort: a miss or an error is counted and otherwise
// ignored; the build's own request for that key goes its normal way.
#ifndef OCICACHE_PKG_CACHE_RECALL_H_
#define OCICACHE_PKG_CACHE_RECALL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/base/thread_pool.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

struct RecallOptions {
  // Keys kept per group (the first ones used); 0 turns recall off.
  size_t max_keys = 10000;
  // Groups noted and prefetched at most per process: more are ignored (a
  // client naming many namespaces cannot make the server read many lists).
  // Memory: about 2 x 100 bytes per noted key, so at most about
  // max_groups x max_keys x 200 bytes (32 MB with the defaults).
  size_t max_groups = 16;
  // Prefetch lookups in flight.
  int parallel = 8;
  // Each prefetch lookup (and the read of a list) gives up after this long.
  absl::Duration lookup_timeout = absl::Seconds(10);
  // The local tier, if there is one apart from `store`: a saved list then
  // carries a pack of its small entries (those without blobs), and the next
  // process puts the pack's entries straight into its local tier, one registry
  // GET for all of them. Null: every key is looked up through `store`.
  Store* local = nullptr;
  // The prefix of the groups (before their first ':') whose names Save also
  // stores, as "recall:<index>", for Preload. Empty: no index.
  std::string index;
  // One line when a group's prefetch ends (null: none).
  std::function<void(absl::string_view line)> log;
};

// The entry key of a group's list.
std::string RecallKey(absl::string_view group);

// A list's blob: "ocicache-recall 1\n", then one key per line. Keys holding a
// newline are not listed (ParseRecallList refuses any other first line).
std::string FormatRecallList(const std::vector<std::string>& keys);
absl::StatusOr<std::vector<std::string>> ParseRecallList(absl::string_view blob);

class Recall {
 public:
  // `store` is not owned and must outlive this.
  Recall(Store* store, RecallOptions opts);
  // Stops prefetching (running lookups end within lookup_timeout). Saves nothing.
  ~Recall();
  Recall(const Recall&) = delete;
  Recall& operator=(const Recall&) = delete;

  // A client request in `group`: the first in this process starts prefetching
  // the group's list. Cheap after that.
  void Begin(absl::string_view group);
  // Reads the index (RecallOptions::index) in the background and begins each
  // group it names (those of the index's prefix, at most max_groups). Once.
  void Preload();
  // If `key` is being prefetched now, waits (until `deadline` at most) for that
  // lookup to end, so the caller's own lookup finds its result.
  void AwaitPrefetch(absl::string_view key, absl::Time deadline);
  // `key` of `group` answered a client: a hit, or (`written`) a write.
  void Note(absl::string_view group, absl::string_view key, bool written = false);
  // Stores the list of every group noted since the start, unless it is the
  // list read for it and (with a pack) nothing was written. Errors of single
  // groups are joined into one status.
  absl::Status Save();
  // Stops prefetching: queued lookups are dropped, running ones end early.
  void Stop();

  struct GroupStats {
    std::string group;
    int64_t listed = 0;      // keys on the list read at start (-1: none found yet)
    int64_t prefetched = 0;  // listed keys whose lookup hit
    int64_t failed = 0;      // listed keys whose lookup missed or failed
    int64_t packed = 0;      // listed keys that came from the pack (not counted above)
    int64_t noted = 0;       // keys used in this process
    bool done = false;       // the prefetch has ended
  };
  std::vector<GroupStats> Stats() const;

 private:
  struct Group {
    bool started = false;
    bool done = false;
    int64_t listed = -1;
    int64_t pending = 0;
    int64_t prefetched = 0;
    int64_t failed = 0;
    int64_t packed = 0;
    absl::Time began;
    std::vector<std::string> read;  // the list read at start, sorted
    std::vector<std::string> noted;  // in order of first use
    bool written = false;            // a noted key was written here
    absl::flat_hash_set<std::string> noted_set;
  };
  Group* GroupLocked(absl::string_view group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the group's prefetch unless it started; false then (or when the
  // group is over the bound).
  bool StartLocked(absl::string_view group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoadIndex();
  // Reads the list entry `key` (its entry into *e, its lines into *lines):
  // a list blob, and up to max_blobs - 1 more (a pack).
  absl::Status ReadList(const std::string& key, size_t max_blobs, absl::StatusOr<Entry>* e,
                        std::vector<std::string>* lines);
  absl::Status SaveIndex(const std::vector<std::string>& groups);
  // Stores a list blob (FormatRecallList) in `store`.
  absl::StatusOr<oci::Descriptor> WriteList(const std::vector<std::string>& lines);
  void LoadList(const std::string& group);
  void PrefetchKey(const std::string& group, const std::string& key);
  // Puts the pack's entries of `group` into opts_.local (those it lacks);
  // `packed` gets the keys it now has.
  absl::Status LoadPack(const std::string& group, absl::string_view pack,
                        absl::flat_hash_set<std::string>* packed);
  void Finish(const std::string& group, bool hit);
  absl::Status SaveGroup(const std::string& group, const std::vector<std::string>& keys);
  absl::Status StopCheck();

  Store* store_;
  const RecallOptions opts_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool preload_started_ ABSL_GUARDED_BY(mu_) = false;
  bool preloading_ ABSL_GUARDED_BY(mu_) = false;  // LoadIndex runs on the pool
  std::vector<std::string> index_read_ ABSL_GUARDED_BY(mu_);  // sorted
  std::map<std::string, Group, std::less<>> groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  // Made at the first Begin; its threads only prefetch. A Begin that finds
  // every started prefetch ended drops it (a server keeps one Recall per REAPI
  // instance, up to 64: no idle threads for each), and the next group's
  // Begin makes a new one.
  std::unique_ptr<base::ThreadPool> pool_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_RECALL_H_
