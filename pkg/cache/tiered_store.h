// TieredStore: a local store (the directory tier) in front of a remote one (the
// registry). Reads try local first; a remote hit fills the local tier. Writes go
// to both. When the remote is unavailable (connection refused, 5xx after retries)
// the store degrades to local-only: lookups that would have gone remote are
// misses, writes stay local, and a warning is reported once per outage. Whether
// the remote is down is a Breaker's call (breaker.h), which a health prober may
// share. StatBlob answers for both tiers, so Put first fills the local tier with
// blobs only the remote has.
//
// Nothing put during an outage is lost for other machines: with a Backlog
// (backlog.h), a Put the remote did not take is recorded there and answered OK
// (the local tier has it), and so is a blob written meanwhile (for an entry
// put through another server, which answers UNAVAILABLE, not
// FAILED_PRECONDITION, while the registry lacks the blob and was out within
// settle_after); DrainBacklog pushes recorded entries once the remote
// is back, and with drain_in_background a thread of the store does so by
// itself, started when the backlog gets its first record and ending when it is
// empty (so a store with nothing to push has no thread).
//
// Which entry wins when two writers put one key (docs/FORMAT.md, "Concurrent
// puts"): the registry keeps the last Put that reached it; each local tier keeps
// its own. A tier's entry converges to the registry's when a lookup reaches the
// registry: a local miss fills the local tier with the registry's entry; the
// first local hit, at least settle_after after this store put it, of an entry
// this store put (up to max_unconfirmed keys are remembered) asks the registry
// once, and adopts the registry's entry if it is another; a backlog drain that
// finds an entry in the registry at least as new (`created`, to the second) as
// the waiting one adopts it instead of overwriting it.
#ifndef OCICACHE_PKG_CACHE_TIERED_STORE_H_
#define OCICACHE_PKG_CACHE_TIERED_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "pkg/base/thread_pool.h"
#include "pkg/cache/backlog.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

struct TieredStoreOptions {
  // Whether the remote is reachable, shared with whoever else watches it; null:
  // the store makes its own from retry_after and warn.
  std::shared_ptr<Breaker> breaker;
  // After an outage, how long to answer from the local tier only.
  absl::Duration retry_after = absl::Seconds(30);
  // Where warnings go; default: one line on stderr.
  std::function<void(absl::string_view)> warn;
  // Entries put while the remote is out; null: they stay local only (with a warning).
  std::shared_ptr<Backlog> backlog;
  // Push the backlog from a thread of the store (servers, long-lived helpers);
  // off: a Put that reaches the remote pushes what waits for up to a second
  // (one-shot commands), and DrainBacklog calls do.
  bool drain_in_background = false;
  // How often that thread checks whether the remote is back.
  absl::Duration drain_interval = absl::Seconds(2);
  // Convergence of concurrently put entries (above).
  absl::Duration settle_after = absl::Seconds(10);
  // A Put naming a blob neither tier has is UNAVAILABLE, not
  // FAILED_PRECONDITION, while the registry may not have it *yet*: it was out
  // or hung within backlog_window (another replica pushes its backlog only
  // after its own breaker closes, entry by entry: tens of seconds after an
  // outage of fifteen under load). Hung means an answer, a probe's or this
  // Put's own check, that took the breaker's slow_answer (cache::Breaker): a
  // hung registry opens no breaker until a call fails.
  absl::Duration backlog_window = absl::Seconds(60);
  size_t max_unconfirmed = 1 << 16;
  // A registry hit is answered at once and its blobs are copied into the local
  // tier by a background pool (servers); off: Lookup copies them first
  // (one-shot commands, which exit after answering). Either way a read of a
  // blob being copied waits for that copy instead of fetching it again, and a
  // hit's blobs count as present (StatBlob) without asking the registry again
  // for fill_known_ttl: a registry keeps the layers of a manifest it holds.
  bool fill_in_background = false;
  int fill_threads = 4;
  size_t fill_queue = 256;  // hits waiting to be copied; beyond, copies happen on read
  absl::Duration fill_known_ttl = absl::Minutes(1);
};

// What a DrainBacklog pass did.
struct DrainStats {
  int64_t pushed = 0;   // entries put in the registry (and blobs pushed)
  int64_t adopted = 0;  // the registry had one as new: the local tier took it
  int64_t dropped = 0;  // no longer in the local tier, or refused by the registry
  int64_t left = 0;     // records still in the backlog
};

class TieredStore : public Store {
 public:
  TieredStore(std::unique_ptr<Store> local, std::unique_ptr<Store> remote,
              TieredStoreOptions opts = {});
  ~TieredStore() override;  // stops and joins the drain thread

  std::string Describe() const override;

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  // The local tier's file; NotFound when only the registry has the blob.
  absl::StatusOr<int> OpenVerifiedBlob(const oci::Digest& digest, int64_t* size) override;
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  absl::Status MountBlob(const Location& from) override;

  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) override;
  absl::Status Put(const Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  // Kept (FailedPrecondition) if either tier's entry was used since the cut.
  absl::Status DeleteIfUnusedSince(absl::string_view key, absl::Time cutoff) override;
  absl::Status List(const std::function<bool(const EntryInfo&)>& fn) override;

  Store& local() { return *local_; }
  Store& remote() { return *remote_; }
  // Whether the remote is currently skipped after an outage.
  bool degraded();

  // Pushes recorded entries, oldest first, until the backlog is empty, `budget`
  // has passed, or the remote fails again. Nothing happens while the remote is
  // out. Without a backlog, all zero.
  DrainStats DrainBacklog(absl::Duration budget);
  // Records (entries and blobs) still to push (0 without a backlog).
  int64_t backlog_size() const {
    return opts_.backlog ? opts_.backlog->size() + opts_.backlog->blob_count() : 0;
  }

 private:
  // Blobs of one hit copied into the local tier at once (Lookup).
  static constexpr size_t kFillParallelism = 16;
  static constexpr int kMaxCopies = 16;
  // A blob the remote did not take (outage): record it, best effort.
  void DeferBlob(const oci::Digest& digest);
  // The remote did not take `entry`'s Put (outage): record it. OK when recorded.
  absl::Status Defer(const Entry& entry, const absl::Status& why);
  // Pushes one local entry: its blobs the remote lacks, then the entry.
  absl::Status PushEntry(const Entry& entry);
  // Replaces the local entry with the remote's (filling its blobs).
  absl::Status Adopt(const Entry& remote_entry);
  // Starts the drain thread unless it runs (drain_in_background only).
  void StartDrainer();
  void DrainLoop();
  // Convergence: remember a key this store put; check one on a local hit.
  void NoteUnconfirmed(const std::string& key, absl::Time created);
  absl::StatusOr<Entry> MaybeConfirm(absl::string_view key, Entry local_entry,
                                     const LookupOptions& opts);

  // Whether to try the remote now.
  bool RemoteUsable();
  // Records the outcome of a remote call; returns true if it was an outage.
  bool NoteRemote(const absl::Status& s);
  // Copies a blob from the remote into the local tier; one copy per blob at a
  // time (a second caller waits for the first copy, or its own call's end).
  // `background`: a background fill's copy, which yields copy slots to callers
  // waiting for one (a read wants its blob now; the fill can wait).
  absl::Status FillBlob(const oci::Digest& digest, int64_t size, bool background = false);
  // Copies a remote hit's missing blobs (16 at a time), then the entry.
  // background: a background fill's, whose copies yield to callers', and which
  // keeps a local entry of that key created no earlier than the registry's
  // (a put through this store while the copy ran).
  absl::Status FillEntry(const Entry& remote_entry, bool background = false);
  // Blobs a registry hit named, present there: size by digest hex, until when.
  void NoteKnownRemote(const Entry& remote_entry);
  std::optional<int64_t> KnownRemoteSize(const oci::Digest& digest);
  // Copies a local blob to the remote.
  absl::Status PushBlob(const oci::Digest& digest, int64_t size);

  std::unique_ptr<Store> local_;
  std::unique_ptr<Store> remote_;
  TieredStoreOptions opts_;
  std::shared_ptr<Breaker> breaker_;

  absl::Mutex drain_mu_;
  bool draining_ ABSL_GUARDED_BY(drain_mu_) = false;  // the thread runs
  bool stopping_ ABSL_GUARDED_BY(drain_mu_) = false;
  std::thread drainer_;  // started and joined under drain_mu_, or in the destructor

  // Keys this store put and has not checked against the registry since, with
  // when it put them; oldest first in unconfirmed_order_.
  absl::Mutex confirm_mu_;
  std::unordered_map<std::string, absl::Time> unconfirmed_ ABSL_GUARDED_BY(confirm_mu_);
  std::list<std::string> unconfirmed_order_ ABSL_GUARDED_BY(confirm_mu_);

  struct InFlight {
    absl::Notification done;
    absl::Status status;  // written before done is notified
    std::atomic<int> callers{0};  // non-background calls waiting for this copy
  };
  // With background fills: waits for one of kMaxCopies copy slots (see the
  // .cc); an error when the caller's scope ends first.
  absl::Status AcquireCopySlot(bool background, const InFlight& copy);
  absl::Mutex fill_mu_;
  std::unordered_map<std::string, std::shared_ptr<InFlight>> in_flight_ ABSL_GUARDED_BY(fill_mu_);
  struct Known {
    int64_t size;
    absl::Time until;
  };
  std::unordered_map<std::string, Known> known_remote_ ABSL_GUARDED_BY(fill_mu_);
  std::list<std::string> known_order_ ABSL_GUARDED_BY(fill_mu_);
  std::atomic<bool> fills_stopping_{false};
  // Copies from the remote running now, at most kMaxCopies (reads that fill
  // and background fills share them).
  absl::Mutex copies_mu_;
  int copies_ ABSL_GUARDED_BY(copies_mu_) = 0;
  int callers_waiting_ ABSL_GUARDED_BY(copies_mu_) = 0;  // for a slot, not background
  // Last member: destroyed first, so its running copies end before the tiers go.
  std::unique_ptr<base::ThreadPool> fill_pool_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_TIERED_STORE_H_
