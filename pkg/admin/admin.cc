#include "pkg/admin/admin.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/cache/format.h"
#include "pkg/cache/registry_store.h"
#include "pkg/oci/pipe.h"

namespace ocicache::admin {
namespace {

absl::StatusOr<std::vector<cache::EntryInfo>> ListAll(cache::Store& s) {
  std::vector<cache::EntryInfo> all;
  absl::Status st = s.List([&](const cache::EntryInfo& i) {
    all.push_back(i);
    return true;
  });
  if (!st.ok()) return st;
  return all;
}

absl::Status Stopped() { return absl::CancelledError("maintenance stopped by the caller"); }

// The blobs of `e` that `to` lacks (streamed from `from`), then `e` itself.
absl::Status CopyLookedUp(cache::Store& from, cache::Store& to, const cache::Entry& e) {
  for (const auto& b : e.blobs) {
    if (to.StatBlob(b.digest).ok()) continue;
    absl::Status s = oci::Transfer(
        [&](oci::ByteSink& sink) {
          oci::CheckedDownstreamSink checked(sink);  // `to` checks the digest
          return from.ReadBlob(b.digest, 0, checked);
        },
        [&](oci::ByteSource& src) { return to.WriteBlob(b.digest, b.size, src).status(); });
    if (!s.ok()) return s;
  }
  return to.Put(e);
}

}  // namespace

absl::Status CopyEntry(cache::Store& from, cache::Store& to, const std::string& key) {
  cache::LookupOptions opts;
  opts.touch = false;
  auto e = from.Lookup(key, opts);
  if (!e.ok()) return e.status();
  return CopyLookedUp(from, to, *e);
}

absl::StatusOr<ReshardResult> Reshard(cache::RegistryStore& from, cache::RegistryStore& to,
                                      bool dry_run, const ProgressFn& progress) {
  auto all = ListAll(from);
  if (!all.ok()) return all.status();
  ReshardResult r;
  r.listed = static_cast<int64_t>(all->size());
  std::vector<const cache::EntryInfo*> moves;
  for (const auto& info : *all) {
    if (from.RepositoryForKey(info.key) == to.RepositoryForKey(info.key)) {
      ++r.in_place;
    } else {
      moves.push_back(&info);
    }
  }
  int64_t done = 0;
  for (const cache::EntryInfo* info : moves) {
    ++done;
    if (!dry_run) {
      // One read of the old manifest: the copy is made from it, and the delete
      // names its digest, so an entry put under the old count meanwhile (a
      // newer manifest under the tag) is not deleted uncopied.
      cache::LookupOptions opts;
      opts.touch = false;
      oci::Digest read;
      auto e = from.LookupManifest(info->key, opts, &read);
      // Listed from a repository the old count does not put it in (moved by an
      // earlier run, or put under the new count): nothing to move.
      if (absl::IsNotFound(e.status())) {
        ++r.gone;
        continue;
      }
      if (!e.ok()) return e.status();
      if (absl::Status s = CopyLookedUp(from, to, *e); !s.ok()) return s;
      absl::Status s = from.DeleteManifest(info->key, read);
      if (!s.ok() && !absl::IsNotFound(s)) return s;
    }
    ++r.moved;
    ProgressEvent ev{done, static_cast<int64_t>(moves.size()), info->key, "move", info->size};
    if (progress && !progress(ev)) return Stopped();
  }
  return r;
}

int ShardsFor(int64_t entries, int64_t limit, double fill) {
  if (limit <= 0) return 0;
  for (int n = 1; n <= 256; ++n) {
    const double mean = static_cast<double>(entries) / n;
    if (mean + 4 * std::sqrt(mean) <= fill * static_cast<double>(limit)) return n;
  }
  return 0;
}

absl::StatusOr<GcResult> LocalAdmin::CollectGarbage(const GcRequest& req,
                                                    const ProgressFn& progress) {
  if (!req.older_than && !req.keep_last) {
    return absl::InvalidArgumentError("gc needs an age (older than) and/or a count to keep");
  }
  if (req.older_than && *req.older_than < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("gc: a negative age");
  }
  if (req.keep_last && *req.keep_last < 0) {
    return absl::InvalidArgumentError("gc: a negative count to keep");
  }
  auto all = ListAll(store_);
  if (!all.ok()) return all.status();
  // Most recently used first; entries used in the same second in key order, so
  // every store (and the CLI through a server) picks the same ones.
  std::sort(all->begin(), all->end(), [](const cache::EntryInfo& x, const cache::EntryInfo& y) {
    if (x.last_used != y.last_used) return x.last_used > y.last_used;
    return x.key < y.key;
  });
  absl::Time cutoff = absl::Now() - req.older_than.value_or(absl::ZeroDuration());
  std::vector<const cache::EntryInfo*> victims;
  for (size_t i = 0; i < all->size(); ++i) {
    const cache::EntryInfo& info = (*all)[i];
    if (req.keep_last && static_cast<int64_t>(i) < *req.keep_last) continue;
    if (req.older_than && info.last_used >= cutoff) continue;
    victims.push_back(&info);
  }
  GcResult r;
  r.entries = static_cast<int64_t>(all->size());
  r.dry_run = req.dry_run;
  std::set<std::string> deleted;
  int64_t seen = 0;
  for (const cache::EntryInfo* info : victims) {
    ++seen;
    if (!req.dry_run) {
      // By age, the entry itself decides (a listing from records may lag).
      absl::Status s = req.older_than ? store_.DeleteIfUnusedSince(info->key, cutoff)
                                      : store_.Delete(info->key);
      if (absl::IsFailedPrecondition(s) && req.older_than) {
        ++r.kept_in_use;
        continue;
      }
      if (!s.ok() && !absl::IsNotFound(s)) return s;
      deleted.insert(info->key);
    }
    ++r.deleted;
    r.bytes += info->size;
    ProgressEvent ev{seen, static_cast<int64_t>(victims.size()), info->key, "delete",
                     info->size};
    if (progress && !progress(ev)) return Stopped();
  }
  // The registry's listing records become one merged set of what is left.
  if (auto* registry = dynamic_cast<cache::RegistryStore*>(remote_);
      registry != nullptr && !req.dry_run) {
    // Moved out of the listing (not used after this): no second copy of a large
    // repository's rows.
    std::vector<cache::EntryInfo> live;
    live.reserve(all->size() - deleted.size());
    for (auto& info : *all) {
      if (!deleted.count(info.key)) live.push_back(std::move(info));
    }
    if (absl::Status s = registry->ReplaceRecords(live); !s.ok()) {
      r.records_error = std::string(s.message());
    }
  }
  if (local_ != nullptr && !req.dry_run) {
    auto gc = local_->CollectUnreferenced();
    if (!gc.ok()) return gc.status();
    r.local_tier = true;
    r.local_blobs_removed = gc->blobs_removed;
    r.local_bytes_freed = gc->bytes_removed;
  }
  return r;
}

absl::StatusOr<StatusReport> LocalAdmin::Status() {
  StatusReport r;
  r.store = store_.Describe();
  if (backlog_ != nullptr) r.backlog = backlog_->size();
  if (local_ != nullptr) {
    auto size = local_->TotalSize();
    if (!size.ok()) return size.status();
    r.local_tier_bytes = *size;
  }
  return r;
}

absl::StatusOr<SyncResult> LocalAdmin::Sync(const SyncRequest& req, const ProgressFn& progress) {
  if (local_ == nullptr || remote_ == nullptr) {
    return absl::FailedPreconditionError(
        "sync needs both a directory (--dir) and a registry (--repo)");
  }
  auto local = ListAll(*local_);
  if (!local.ok()) return local.status();
  auto remote = ListAll(*remote_);
  if (!remote.ok()) return remote.status();
  std::set<std::string> in_local, in_remote;
  std::map<std::string, int64_t> sizes;
  for (const auto& i : *local) {
    in_local.insert(i.key);
    sizes[i.key] = i.size;
  }
  for (const auto& i : *remote) {
    in_remote.insert(i.key);
    sizes[i.key] = i.size;
  }
  std::vector<std::string> up, down;
  if (req.direction != SyncDirection::kDown) {
    for (const auto& k : in_local) {
      // A directory's own bookkeeping (gocacheprog's local session copy) stays.
      if (!in_remote.count(k) && !cache::IsLocalOnlyKey(k)) up.push_back(k);
    }
  }
  if (req.direction != SyncDirection::kUp) {
    for (const auto& k : in_remote) {
      if (!in_local.count(k)) down.push_back(k);
    }
  }
  int64_t total = static_cast<int64_t>(up.size() + down.size());
  int64_t done = 0;
  auto copy = [&](cache::Store& from, cache::Store& to, const std::vector<std::string>& keys,
                  const char* action) -> absl::Status {
    for (const auto& k : keys) {
      if (!req.dry_run) {
        if (absl::Status s = CopyEntry(from, to, k); !s.ok()) return s;
      }
      ProgressEvent ev{++done, total, k, action, sizes[k]};
      if (progress && !progress(ev)) return Stopped();
    }
    return absl::OkStatus();
  };
  if (absl::Status s = copy(*local_, *remote_, up, "push"); !s.ok()) return s;
  if (absl::Status s = copy(*remote_, *local_, down, "pull"); !s.ok()) return s;
  SyncResult r;
  r.pushed = static_cast<int64_t>(up.size());
  r.pulled = static_cast<int64_t>(down.size());
  r.dry_run = req.dry_run;
  r.local = local_->Describe();
  r.remote = remote_->Describe();
  return r;
}

}  // namespace ocicache::admin
