#include "pkg/cache/breaker.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/registry/client.h"

namespace ocicache::cache {

bool IsOutage(const absl::Status& s) { return registry::IsTemporary(s); }

Breaker::Breaker(std::string name, BreakerOptions opts)
    : name_(std::move(name)), opts_(std::move(opts)) {
  if (!opts_.warn) {
    opts_.warn = [](absl::string_view msg) { std::cerr << "ocicache: warning: " << msg << "\n"; };
  }
}

bool Breaker::OpenLocked() const { return probe_down_ || absl::Now() < down_until_; }

bool Breaker::OpenWithin(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return OpenLocked() || absl::Now() - last_open_ < d;
}

bool Breaker::Usable() {
  {
    absl::MutexLock l(&mu_);
    if (!OpenLocked()) return true;
    last_open_ = absl::Now();
    if (!opts_.recheck || rechecking_ || absl::Now() < next_recheck_) return false;
    // A call that must not wait leaves the recheck to one that may.
    if (base::LocalOnly()) return false;
    rechecking_ = true;
  }
  absl::Status s;
  {
    base::CallScope scope({.cap = absl::Now() + opts_.recheck_timeout});
    s = opts_.recheck();
  }
  absl::MutexLock l(&mu_);
  rechecking_ = false;
  next_recheck_ = absl::Now() + opts_.recheck_interval;
  last_open_ = absl::Now();
  if (!s.ok()) return false;
  // Answered: closed until a call or the next probe says otherwise.
  probe_down_ = false;
  down_until_ = absl::InfinitePast();
  return true;
}

void Breaker::WarnOnce(bool was_usable, const absl::Status& why) {
  if (!was_usable) return;
  opts_.warn(absl::StrCat(name_.empty() ? "the registry" : name_,
                          " is unavailable, using the local tier only: ", why.message()));
}

bool Breaker::Note(const absl::Status& s) {
  if (!IsOutage(s)) return false;
  // A call kept off the registry (base::CallLimits::local_only) learnt
  // nothing about it.
  const base::CallScope* scope = base::CallScope::Current();
  if (scope != nullptr && scope->local_only()) return true;
  bool was_usable;
  {
    absl::MutexLock l(&mu_);
    was_usable = !OpenLocked();
    down_until_ = absl::Now() + opts_.retry_after;
    last_open_ = absl::Now();
  }
  WarnOnce(was_usable, s);
  return true;
}

void Breaker::NoteSlowAnswer(absl::Duration took) {
  if (took < opts_.slow_answer) return;
  absl::MutexLock l(&mu_);
  last_open_ = absl::Now();
}

void Breaker::NoteProbe(const absl::Status& s, absl::Duration took) {
  bool was_usable;
  {
    absl::MutexLock l(&mu_);
    was_usable = !OpenLocked();
    if (!was_usable || took >= opts_.slow_answer) last_open_ = absl::Now();
    if (s.ok()) {
      probe_down_ = false;
      down_until_ = absl::InfinitePast();
      return;
    }
    if (!probe_down_) probe_epoch_.fetch_add(1, std::memory_order_acq_rel);
    probe_down_ = true;
    last_open_ = absl::Now();
  }
  WarnOnce(was_usable, s);
}

absl::Status Breaker::ProbeEpochChanged(int64_t epoch) const {
  if (probe_epoch() == epoch) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      name_.empty() ? "the registry" : name_, " failed its health check meanwhile"));
}

}  // namespace ocicache::cache
