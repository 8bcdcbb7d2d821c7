// Prefetching the listed objects one by one, and gets claiming their prefetch.
#include "pkg/gocacheprog/session.h"

namespace ocicache::gocacheprog {

bool Session::Downloaded(const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = prefetch_.find(key);
  return it != prefetch_.end() && it->second.state == State::kOk && it->second.downloaded;
}

bool Session::SettledLocked(const std::string* key) const {
  auto it = prefetch_.find(*key);
  return it == prefetch_.end() || it->second.state != State::kFetching;
}

void Session::Settle(const std::string& key, bool ok, bool downloaded) {
  absl::MutexLock l(&mu_);
  auto it = prefetch_.find(key);
  if (it == prefetch_.end()) return;
  it->second.state = ok ? State::kOk : State::kFailed;
  it->second.downloaded = ok && downloaded;
}

void Session::PrefetchOne(const std::string& key) {
  GoObject o;
  {
    absl::MutexLock l(&mu_);
    auto it = prefetch_.find(key);
    if (it == prefetch_.end() || it->second.state != State::kQueued) return;
    it->second.state = State::kFetching;
    o = it->second.object;
  }
  // Already here (a warm directory): nothing to fetch.
  cache::LookupOptions lo;
  lo.touch = false;
  if (auto local = env_.local->Lookup(key, lo); local.ok() && CheckEntry(*local).ok()) {
    Settle(key, true, /*downloaded=*/false);
    return;
  }
  bool probe = false;
  if (!env_.registry->Enter(&probe)) {
    Settle(key, false);
    return;
  }
  oci::Descriptor stored;
  absl::Status s = FetchPair(env_.local, env_.remote_lookup, key, o, env_.n, &stored);
  env_.registry->Exit(probe, s, "prefetching an object");
  NoteStored(o.output_id, stored);
  Settle(key, s.ok());
  if (s.ok()) env_.local->Put(EntryFor(key, o, env_.opts->go_version)).IgnoreError();
}

Session::State Session::Claim(const std::string& key, GoObject* o, bool* fetched_here,
                              bool* from_registry) {
  *fetched_here = false;
  *from_registry = true;
  {
    absl::MutexLock l(&mu_);
    auto it = prefetch_.find(key);
    if (it == prefetch_.end()) return State::kFailed;
    if (it->second.state == State::kFetching) {
      // Another thread is on it: wait for it rather than download it twice.
      struct Wait {
        const Session* session;
        const std::string* key;
      } wait{this, &key};
      // Await evaluates the condition with mu_ held, which the analysis cannot see.
      mu_.Await(absl::Condition(
          +[](Wait* w) ABSL_NO_THREAD_SAFETY_ANALYSIS { return w->session->SettledLocked(w->key); },
          &wait));
      it = prefetch_.find(key);
      *o = it->second.object;
      *from_registry = it->second.downloaded;
      return it->second.state;
    }
    *o = it->second.object;
    *from_registry = it->second.downloaded;
    if (it->second.state != State::kQueued) return it->second.state;
    it->second.state = State::kFetching;  // go asks for it first: fetch it now
  }
  bool probe = false;
  if (!env_.registry->Enter(&probe)) {
    Settle(key, false);
    return State::kFailed;
  }
  oci::Descriptor stored;
  absl::Status s = FetchPair(env_.local, env_.remote_lookup, key, *o, env_.n, &stored);
  env_.registry->Exit(probe, s, "fetching an object");
  NoteStored(o->output_id, stored);
  Settle(key, s.ok());
  *fetched_here = s.ok();
  *from_registry = true;
  return s.ok() ? State::kOk : State::kFailed;
}

}  // namespace ocicache::gocacheprog
