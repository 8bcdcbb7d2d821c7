#include "pkg/cache/tiered_store.h"

#include <algorithm>
#include <iostream>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "pkg/base/call_scope.h"
#include "pkg/base/files.h"
#include "pkg/base/parallel.h"
#include "pkg/oci/pipe.h"
#include "pkg/registry/client.h"

namespace ocicache::cache {

TieredStore::TieredStore(std::unique_ptr<Store> local, std::unique_ptr<Store> remote,
                         TieredStoreOptions opts)
    : local_(std::move(local)), remote_(std::move(remote)), opts_(std::move(opts)) {
  if (!opts_.warn) {
    opts_.warn = [](absl::string_view msg) { std::cerr << "ocicache: warning: " << msg << "\n"; };
  }
  breaker_ = opts_.breaker;
  if (breaker_ == nullptr) {
    breaker_ = std::make_shared<Breaker>(remote_->Describe(),
                                         BreakerOptions{opts_.retry_after, opts_.warn});
  }
  if (opts_.fill_in_background) {
    fill_pool_ = std::make_unique<base::ThreadPool>(std::max(1, opts_.fill_threads),
                                                    std::max<size_t>(1, opts_.fill_queue));
  }
  // Left by an earlier process (perhaps killed before it could push them).
  if (opts_.backlog != nullptr && opts_.backlog->size() + opts_.backlog->blob_count() > 0) {
    StartDrainer();
  }
}

TieredStore::~TieredStore() {
  fills_stopping_ = true;  // background copies in flight end (fill_pool_ joins them)
  {
    absl::MutexLock l(&drain_mu_);
    stopping_ = true;
  }
  if (drainer_.joinable()) drainer_.join();
}

std::string TieredStore::Describe() const {
  return absl::StrCat(local_->Describe(), " then ", remote_->Describe());
}

bool TieredStore::degraded() { return !RemoteUsable(); }

bool TieredStore::RemoteUsable() {
  // A call that must not wait (base::CallLimits::local_only) treats the
  // remote as out of reach, before the breaker's recheck could reach it.
  if (base::LocalOnly()) return false;
  return breaker_->Usable();
}

bool TieredStore::NoteRemote(const absl::Status& s) {
  // A full local disk (met filling the local tier from the remote) says
  // nothing about the remote.
  if (base::IsDiskFull(s)) return false;
  return breaker_->Note(s);
}

absl::Status TieredStore::AcquireCopySlot(bool background, const InFlight& copy) {
  // With background fills, more copies at once than kMaxCopies only add
  // connections and load on the registry, not speed: a Bazel download of a
  // 300-file tree asks for 64 blobs at once while a background fill copies 16.
  // Callers go first: a background copy takes a slot while no caller waits for
  // one, or when a caller waits for this very copy. Without background fills
  // each caller's copies are its own (FillEntry's 16 at a time), unbounded
  // across callers as before.
  if (fill_pool_ == nullptr) return absl::OkStatus();  // no background fills: callers' own copies
  const base::CallScope* scope = base::CallScope::Current();
  absl::MutexLock l(&copies_mu_);
  if (!background) ++callers_waiting_;
  auto free = [this, background, &copy]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(copies_mu_) {
    return copies_ < kMaxCopies && (!background || callers_waiting_ == 0 || copy.callers > 0);
  };
  absl::Status s;
  // The timeout re-checks the caller's scope, and a background copy's waiters
  // (counted outside this mutex).
  while (!copies_mu_.AwaitWithTimeout(absl::Condition(&free), absl::Milliseconds(50))) {
    if (scope != nullptr && !(s = scope->Check()).ok()) break;
  }
  if (!background) --callers_waiting_;
  if (s.ok()) ++copies_;
  return s;
}

absl::Status TieredStore::FillBlob(const oci::Digest& digest, int64_t size, bool background) {
  std::shared_ptr<InFlight> copy;
  bool mine = false;
  {
    absl::MutexLock l(&fill_mu_);
    std::shared_ptr<InFlight>& slot = in_flight_[digest.hex()];
    if (slot == nullptr) {
      slot = std::make_shared<InFlight>();
      mine = true;
    }
    copy = slot;
  }
  if (!mine) {
    // Another call copies it: wait for that, while this call may go on.
    const base::CallScope* scope = base::CallScope::Current();
    if (!background) ++copy->callers;
    absl::Status gone;
    while (!copy->done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      if (scope != nullptr && !(gone = scope->Check()).ok()) break;
    }
    if (!background) --copy->callers;
    if (!gone.ok()) return gone;
    if (copy->status.ok() || local_->StatBlob(digest).ok()) return absl::OkStatus();
    // The copying call ended for its own reasons (its caller went, its time
    // was up): not this call's; copy it here.
    if (absl::IsCancelled(copy->status) || absl::IsDeadlineExceeded(copy->status)) {
      return FillBlob(digest, size, background);
    }
    return copy->status;
  }
  // A copy that ended between the caller's look at the local tier and this
  // slot (a read's own copy while a background fill went through its list,
  // or the other way round) has committed the blob: copying it again would
  // fetch it twice.
  if (local_->StatBlob(digest).ok()) {
    {
      absl::MutexLock l(&fill_mu_);
      in_flight_.erase(digest.hex());
    }
    copy->done.Notify();
    return absl::OkStatus();
  }
  absl::Status s = AcquireCopySlot(background, *copy);
  if (s.ok()) {
    // The local tier hashes what it stores and commits nothing that misses
    // `digest`, so the remote's reader need not hash the same bytes as well.
    s = oci::Transfer(
        [&](oci::ByteSink& sink) {
          oci::CheckedDownstreamSink checked(sink);
          return remote_->ReadBlob(digest, 0, checked);
        },
        [&](oci::ByteSource& src) { return local_->WriteBlob(digest, size, src).status(); });
    if (fill_pool_ != nullptr) {
      absl::MutexLock l(&copies_mu_);
      --copies_;
    }
  }
  // The request was well formed, so a refusal is the remote's bytes not
  // matching their digest.
  if (absl::IsInvalidArgument(s)) {
    s = absl::DataLossError(absl::StrCat("the remote's copy of ", digest.str(),
                                         " is damaged: ", s.message()));
  }
  copy->status = s;
  {
    absl::MutexLock l(&fill_mu_);
    in_flight_.erase(digest.hex());
  }
  copy->done.Notify();
  return s;
}

void TieredStore::NoteKnownRemote(const Entry& remote_entry) {
  constexpr size_t kMaxKnown = 1 << 16;
  const absl::Time until = absl::Now() + opts_.fill_known_ttl;
  absl::MutexLock l(&fill_mu_);
  for (const auto& b : remote_entry.blobs) {
    auto [it, fresh] = known_remote_.insert_or_assign(b.digest.hex(), Known{b.size, until});
    if (fresh) known_order_.push_back(b.digest.hex());
  }
  while (known_order_.size() > kMaxKnown) {
    known_remote_.erase(known_order_.front());
    known_order_.pop_front();
  }
}

std::optional<int64_t> TieredStore::KnownRemoteSize(const oci::Digest& digest) {
  absl::MutexLock l(&fill_mu_);
  auto it = known_remote_.find(digest.hex());
  if (it == known_remote_.end() || it->second.until < absl::Now()) return std::nullopt;
  return it->second.size;
}

absl::Status TieredStore::FillEntry(const Entry& remote_entry, bool background) {
  // The blobs are copied in parallel: one after another, a hit of many blobs
  // (a Bazel tree output) cost a registry round trip per blob.
  std::vector<const oci::Descriptor*> missing;
  for (const auto& b : remote_entry.blobs) {
    if (!local_->StatBlob(b.digest).ok()) missing.push_back(&b);
  }
  absl::Mutex fill_mu;
  absl::Status fill;
  base::ParallelFor(missing.size(), kFillParallelism, [&](size_t i) {
    {
      absl::MutexLock l(&fill_mu);
      if (!fill.ok()) return;  // one failure decides; skip the rest
    }
    absl::Status s = FillBlob(missing[i]->digest, missing[i]->size, background);
    absl::MutexLock l(&fill_mu);
    if (!s.ok() && fill.ok()) fill = s;
  });
  if (!fill.ok()) return fill;
  if (background) {
    // A put through this store while the copy ran is newer than the
    // registry's entry the copy started from: keep it. (An older local entry,
    // one the lookup's annotations did not match, is replaced as always;
    // times are whole seconds, so the same second counts as newer.)
    LookupOptions peek;
    peek.touch = false;
    auto local = local_->Lookup(remote_entry.key, peek);
    if (local.ok() && local->created >= remote_entry.created) return absl::OkStatus();
  }
  return local_->Put(remote_entry);
}

absl::Status TieredStore::PushBlob(const oci::Digest& digest, int64_t size) {
  return oci::Transfer(
      [&](oci::ByteSink& sink) { return local_->ReadBlob(digest, 0, sink); },
      [&](oci::ByteSource& src) { return remote_->WriteBlob(digest, size, src).status(); });
}

absl::StatusOr<int64_t> TieredStore::StatBlob(const oci::Digest& digest) {
  auto s = local_->StatBlob(digest);
  if (s.ok() || !absl::IsNotFound(s.status()) || !RemoteUsable()) return s;
  if (std::optional<int64_t> known = KnownRemoteSize(digest)) return *known;
  auto r = remote_->StatBlob(digest);
  if (!r.ok() && NoteRemote(r.status())) return s;
  return r;
}

absl::Status TieredStore::ReadBlob(const oci::Digest& digest, int64_t offset,
                                   oci::ByteSink& sink) {
  auto have = local_->StatBlob(digest);
  if (!have.ok() && absl::IsNotFound(have.status()) && RemoteUsable()) {
    std::optional<int64_t> known = KnownRemoteSize(digest);
    auto size = known ? absl::StatusOr<int64_t>(*known) : remote_->StatBlob(digest);
    if (!size.ok()) {
      if (NoteRemote(size.status())) return absl::NotFoundError(absl::StrCat("miss: ", digest.str()));
      return size.status();
    }
    absl::Status f = FillBlob(digest, *size);
    // The local tier's disk is full: serve it from the remote without a copy.
    if (base::IsDiskFull(f)) return remote_->ReadBlob(digest, offset, sink);
    if (!f.ok()) {
      NoteRemote(f);
      return f;
    }
  }
  return local_->ReadBlob(digest, offset, sink);
}

absl::StatusOr<int> TieredStore::OpenVerifiedBlob(const oci::Digest& digest, int64_t* size) {
  return local_->OpenVerifiedBlob(digest, size);
}

absl::StatusOr<oci::Descriptor> TieredStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                       oci::ByteSource& source) {
  auto d = local_->WriteBlob(expected, size, source);
  if (!d.ok()) return d;
  if (!RemoteUsable()) {
    DeferBlob(d->digest);
    return d;
  }
  absl::Status s = PushBlob(d->digest, d->size);
  if (!s.ok()) {
    if (!NoteRemote(s)) return s;
    DeferBlob(d->digest);
  }
  return d;
}

absl::Status TieredStore::MountBlob(const Location& from) {
  absl::Status l = local_->MountBlob(from);
  if (!RemoteUsable()) return l;
  absl::Status r = remote_->MountBlob(from);
  if (!r.ok() && NoteRemote(r)) return l;
  if (!r.ok()) return r;
  if (l.ok()) return l;
  // The local tier could not fetch by itself: fill it from the remote.
  return FillBlob(from.digest, from.size);
}

absl::StatusOr<Entry> TieredStore::Lookup(absl::string_view key, const LookupOptions& opts) {
  auto e = local_->Lookup(key, opts);
  if (e.ok()) return MaybeConfirm(key, *std::move(e), opts);
  if (!absl::IsNotFound(e.status()) || !RemoteUsable()) return e;
  auto r = remote_->Lookup(key, opts);
  if (!r.ok()) {
    if (NoteRemote(r.status())) return e;  // the local miss
    return r;
  }
  NoteKnownRemote(*r);
  if (fill_pool_ != nullptr) {
    // Answered now; the copy runs apart from this call (not cut short when its
    // caller goes). A full queue leaves the blobs to be copied when read.
    auto entry = std::make_shared<Entry>(*r);
    fill_pool_->Submit([this, entry] {
      // Ended at once when the store closes, whatever the registry does.
      base::CallScope scope({.check = [this] {
        return fills_stopping_.load() ? absl::CancelledError("the store is closing")
                                      : absl::OkStatus();
      }});
      absl::Status s = FillEntry(*entry, /*background=*/true);
      if (!s.ok() && !base::IsDiskFull(s)) NoteRemote(s);
    });
    return r;
  }
  // Fill the local tier: blobs first, then the entry. An outage meanwhile makes
  // this a miss; a corrupt or unreadable blob is an error, never a half hit.
  absl::Status fill = FillEntry(*r);
  if (!fill.ok()) {
    // A full local disk: answer from the remote without a copy (reads of its
    // blobs go to the remote too).
    if (base::IsDiskFull(fill)) return r;
    if (NoteRemote(fill)) return e;
    return fill;
  }
  return r;
}

absl::Status TieredStore::Put(const Entry& entry) {
  absl::Status put = local_->Put(entry);
  if (absl::IsFailedPrecondition(put)) {
    // StatBlob answers for both tiers, so a caller may rightly skip writing a
    // blob only the registry has (ocicached finishes such uploads early), and
    // a blob written through another replica is in the registry, not here:
    // fill the local tier with it and try again. Without the registry there
    // is no telling whether the blob exists: that is UNAVAILABLE (try again,
    // or another replica), not the caller's mistake.
    const std::string missing_why = std::string(put.message());
    auto unknown = [&](const absl::Status& why) {
      return absl::UnavailableError(absl::StrCat(missing_why, "; the registry, which may have it, "
                                                 "cannot be asked now (", why.message(), ")"));
    };
    if (!RemoteUsable()) return unknown(absl::UnavailableError("it is unavailable"));
    bool filled = false;
    for (const auto& b : entry.blobs) {
      if (local_->StatBlob(b.digest).ok()) continue;
      const absl::Time asked = absl::Now();
      auto size = remote_->StatBlob(b.digest);
      if (!size.ok()) {
        // Only the registry's NotFound says the blob is missing; any other
        // end of the question (an outage, or this call's own deadline or
        // cancellation, which the breaker does not count) leaves it unknown.
        if (NoteRemote(size.status()) || !absl::IsNotFound(size.status())) {
          return unknown(size.status());
        }
        // A slow "not found" is a hang seen from its end: the breaker keeps
        // it as recent trouble, which OpenWithin below answers for.
        breaker_->NoteSlowAnswer(absl::Now() - asked);
        break;
      }
      if (absl::Status f = FillBlob(b.digest, *size); !f.ok()) {
        if (base::IsDiskFull(f)) {
          put = f;  // the local tier's disk, not the registry
          break;
        }
        // The registry has the blob; it could not be copied here now.
        NoteRemote(f);
        return unknown(f);
      }
      filled = true;
    }
    if (filled && !base::IsDiskFull(put)) put = local_->Put(entry);
    if (absl::IsFailedPrecondition(put) && breaker_->OpenWithin(opts_.backlog_window)) {
      // The registry was out, or hung, moments ago (this Put's own check may
      // have been the slow answer): a blob written through another server
      // meanwhile may still be on its way there (its backlog).
      return unknown(absl::UnavailableError("it was unavailable or slow to answer moments ago"));
    }
  }
  if (base::IsDiskFull(put) && RemoteUsable()) {
    // The local tier's disk is full: the registry alone takes the entry if
    // it has every blob (written through another replica, say).
    bool all_remote = true;
    for (const auto& b : entry.blobs) {
      if (!remote_->StatBlob(b.digest).ok()) {
        all_remote = false;
        break;
      }
    }
    if (all_remote) {
      absl::Status r = remote_->Put(entry);
      if (r.ok()) return r;
      NoteRemote(r);
    }
  }
  if (!put.ok()) return put;
  if (!RemoteUsable()) return Defer(entry, absl::UnavailableError("the registry is unavailable"));
  absl::Status s = PushEntry(entry);
  if (!s.ok()) return NoteRemote(s) ? Defer(entry, s) : s;
  NoteUnconfirmed(entry.key, absl::Now());
  // The remote takes puts again: push what waits, from the thread, or here
  // for a second (one-shot commands, which have no thread).
  if (backlog_size() > 0) {
    if (opts_.drain_in_background) {
      StartDrainer();
    } else {
      DrainBacklog(absl::Seconds(1));
    }
  }
  return absl::OkStatus();
}

absl::Status TieredStore::PushEntry(const Entry& entry) {
  for (const auto& b : entry.blobs) {
    auto have = remote_->StatBlob(b.digest);
    if (have.ok()) continue;
    absl::Status s = absl::IsNotFound(have.status()) ? PushBlob(b.digest, b.size) : have.status();
    if (!s.ok()) return s;
  }
  return remote_->Put(entry);
}

absl::Status TieredStore::Defer(const Entry& entry, const absl::Status& why) {
  if (opts_.backlog == nullptr) return absl::OkStatus();  // local only, as warned
  if (absl::Status s = opts_.backlog->Add(entry.key); !s.ok()) {
    // The entry is in the local tier, but nothing would ever push it: let the
    // caller retry rather than believe it shared.
    return absl::UnavailableError(absl::StrCat("stored ", entry.key,
                                               " locally, but cannot record it for the registry (",
                                               why.message(), "): ", s.message()));
  }
  StartDrainer();
  return absl::OkStatus();
}

void TieredStore::DeferBlob(const oci::Digest& digest) {
  // Best effort: an entry put here pushes its blobs anyway; the record is for
  // an entry put through another server.
  if (opts_.backlog == nullptr) return;
  if (opts_.backlog->AddBlob(digest).ok()) StartDrainer();
}

absl::Status TieredStore::Adopt(const Entry& remote_entry) {
  for (const auto& b : remote_entry.blobs) {
    if (local_->StatBlob(b.digest).ok()) continue;
    if (absl::Status f = FillBlob(b.digest, b.size); !f.ok()) return f;
  }
  return local_->Put(remote_entry);
}

namespace {

// Whether two entries say the same (times aside).
bool SameContent(const Entry& a, const Entry& b) {
  if (a.config != b.config || a.descriptor != b.descriptor || a.annotations != b.annotations ||
      a.blobs.size() != b.blobs.size()) {
    return false;
  }
  for (size_t i = 0; i < a.blobs.size(); ++i) {
    if (a.blobs[i].digest != b.blobs[i].digest) return false;
  }
  return true;
}

}  // namespace

void TieredStore::NoteUnconfirmed(const std::string& key, absl::Time created) {
  absl::MutexLock l(&confirm_mu_);
  auto [it, fresh] = unconfirmed_.insert_or_assign(key, created);
  if (fresh) unconfirmed_order_.push_back(key);
  // Rows of keys already confirmed stay in the list until they reach its
  // front, so bounding the list bounds both.
  while (unconfirmed_order_.size() > opts_.max_unconfirmed) {
    unconfirmed_.erase(unconfirmed_order_.front());
    unconfirmed_order_.pop_front();
  }
}

absl::StatusOr<Entry> TieredStore::MaybeConfirm(absl::string_view key, Entry local_entry,
                                                const LookupOptions& opts) {
  {
    absl::MutexLock l(&confirm_mu_);
    if (unconfirmed_.empty()) return local_entry;
    auto it = unconfirmed_.find(std::string(key));
    if (it == unconfirmed_.end() || absl::Now() - it->second < opts_.settle_after) {
      return local_entry;
    }
    // Confirmed by the call that may reach the registry, not this one.
    if (base::LocalOnly()) return local_entry;
    unconfirmed_.erase(it);  // its row in unconfirmed_order_ goes when it reaches the front
  }
  if (!RemoteUsable()) return local_entry;
  LookupOptions ro = opts;
  ro.touch = false;
  auto r = remote_->Lookup(key, ro);
  if (!r.ok()) {
    NoteRemote(r.status());
    return local_entry;
  }
  if (SameContent(*r, local_entry)) return local_entry;
  // Another writer's Put reached the registry after ours: it is the entry.
  if (absl::Status s = Adopt(*r); !s.ok()) {
    NoteRemote(s);
    return local_entry;
  }
  return r;
}

void TieredStore::StartDrainer() {
  if (!opts_.drain_in_background || opts_.backlog == nullptr) return;
  absl::MutexLock l(&drain_mu_);
  if (stopping_ || draining_) return;
  if (drainer_.joinable()) drainer_.join();  // a finished one
  draining_ = true;
  drainer_ = std::thread([this] { DrainLoop(); });
}

void TieredStore::DrainLoop() {
  for (;;) {
    {
      absl::MutexLock l(&drain_mu_);
      // Checked under the lock: a Defer that adds a record and then finds the
      // thread running relies on it seeing that record here.
      if (stopping_ || opts_.backlog->size() + opts_.backlog->blob_count() == 0) {
        draining_ = false;
        return;
      }
    }
    DrainStats st = DrainBacklog(absl::Seconds(5));
    bool progress = st.pushed + st.adopted + st.dropped > 0;
    if (progress && st.left > 0) continue;
    absl::MutexLock l(&drain_mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(drain_mu_) { return stopping_; };
    drain_mu_.AwaitWithTimeout(absl::Condition(&stop), opts_.drain_interval);
  }
}

DrainStats TieredStore::DrainBacklog(absl::Duration budget) {
  DrainStats st;
  if (opts_.backlog == nullptr) return st;
  const absl::Time deadline = absl::Now() + budget;
  if (opts_.backlog->size() + opts_.backlog->blob_count() == 0 || !RemoteUsable()) {
    st.left = opts_.backlog->size();
    return st;
  }
  // Blobs first: an entry put through another server may wait for them.
  auto blobs = opts_.backlog->Blobs(256);
  if (blobs.ok()) {
    for (const oci::Digest& d : *blobs) {
      if (absl::Now() > deadline) break;
      auto local_size = local_->StatBlob(d);
      absl::Status s;
      if (absl::IsNotFound(local_size.status())) {
        ++st.dropped;  // evicted meanwhile: nothing to push
      } else if (!local_size.ok()) {
        continue;
      } else if (!remote_->StatBlob(d).ok()) {
        s = PushBlob(d, *local_size);
        if (s.ok()) ++st.pushed;
      }
      if (!s.ok()) {
        if (NoteRemote(s)) {
          st.left = opts_.backlog->size();
          return st;
        }
        opts_.warn(absl::StrCat("dropped blob ", d.str(), " from the backlog: ", s.message()));
        ++st.dropped;
      }
      opts_.backlog->RemoveBlob(d).IgnoreError();
    }
  }
  auto keys = opts_.backlog->Keys(256);
  if (!keys.ok()) {
    opts_.warn(absl::StrCat("cannot read the backlog: ", keys.status().message()));
    st.left = opts_.backlog->size();
    return st;
  }
  LookupOptions quiet;
  quiet.touch = false;
  for (const std::string& key : *keys) {
    if (absl::Now() > deadline) break;
    {
      absl::MutexLock l(&drain_mu_);
      if (stopping_) break;
    }
    auto local = local_->Lookup(key, quiet);
    if (absl::IsNotFound(local.status())) {
      // Evicted or deleted meanwhile: nothing left to push.
      opts_.backlog->Remove(key).IgnoreError();
      ++st.dropped;
      continue;
    }
    if (!local.ok()) continue;  // unreadable now; kept for the next pass
    auto remote = remote_->Lookup(key, quiet);
    absl::Status s;
    bool adopted = false;
    if (remote.ok() && remote->created >= local->created) {
      // Someone put a newer entry while we could not reach the registry (a
      // tie, within the times' precision, goes to the registry too).
      s = Adopt(*remote);
      adopted = true;
    } else if (remote.ok() || absl::IsNotFound(remote.status())) {
      s = PushEntry(*local);
    } else {
      s = remote.status();
    }
    if (s.ok()) {
      opts_.backlog->Remove(key).IgnoreError();
      ++(adopted ? st.adopted : st.pushed);
      continue;
    }
    if (NoteRemote(s)) break;  // out again: the rest waits
    opts_.warn(absl::StrCat("dropped ", key, " from the backlog: ", s.message()));
    opts_.backlog->Remove(key).IgnoreError();
    ++st.dropped;
  }
  st.left = opts_.backlog->size();
  return st;
}


absl::Status TieredStore::Delete(absl::string_view key) {
  absl::Status l = local_->Delete(key);
  if (!l.ok() && !absl::IsNotFound(l)) return l;
  if (!RemoteUsable()) {
    if (l.ok()) {
      opts_.warn(absl::StrCat("deleted ", key, " locally only: the registry is unavailable"));
    }
    return l;
  }
  absl::Status r = remote_->Delete(key);
  if (!r.ok() && !absl::IsNotFound(r)) {
    NoteRemote(r);
    return r;
  }
  return (l.ok() || r.ok()) ? absl::OkStatus() : absl::NotFoundError(absl::StrCat("miss: ", key));
}

absl::Status TieredStore::DeleteIfUnusedSince(absl::string_view key, absl::Time cutoff) {
  LookupOptions quiet;
  quiet.touch = false;
  auto local = local_->Lookup(key, quiet);
  if (local.ok() && local->last_used >= cutoff) {
    return absl::FailedPreconditionError(absl::StrCat(key, " was used since the cut"));
  }
  if (RemoteUsable()) {
    absl::Status r = remote_->DeleteIfUnusedSince(key, cutoff);
    if (absl::IsFailedPrecondition(r)) return r;
    if (!r.ok() && !absl::IsNotFound(r)) {
      NoteRemote(r);
      return r;
    }
    absl::Status l = local_->Delete(key);
    if (absl::IsNotFound(l) && r.ok()) return absl::OkStatus();
    return l;
  }
  return Delete(key);  // local only, with Delete's warning
}

absl::Status TieredStore::List(const std::function<bool(const EntryInfo&)>& fn) {
  std::set<std::string> seen;
  bool stopped = false;
  if (RemoteUsable()) {
    absl::Status r = remote_->List([&](const EntryInfo& info) {
      seen.insert(info.key);
      if (!fn(info)) {
        stopped = true;
        return false;
      }
      return true;
    });
    if (!r.ok() && !NoteRemote(r)) return r;
  }
  if (stopped) return absl::OkStatus();
  return local_->List([&](const EntryInfo& info) {
    if (seen.count(info.key)) return true;
    return fn(info);
  });
}

}  // namespace ocicache::cache
