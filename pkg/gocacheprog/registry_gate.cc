#include "pkg/gocacheprog/registry_gate.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace ocicache::gocacheprog {
namespace {

// `s` with `what` before its message (code and payloads kept, so IsOutage judges
// it as it would `s`): the breaker's warning then says which call saw the outage.
absl::Status WithContext(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(what, ": ", s.message()));
  s.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace

RegistryGate::RegistryGate(std::string where, absl::Duration retry_after,
                           std::function<void(absl::string_view)> warn)
    : where_(std::move(where)),
      retry_after_(retry_after),
      warn_(std::move(warn)),
      breaker_(where_, [this] {
        cache::BreakerOptions o;
        o.retry_after = retry_after_;
        o.warn = [this](absl::string_view message) { BreakerOpened(message); };
        return o;
      }()) {}

bool RegistryGate::IsRefusal(const absl::Status& s) {
  return absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s) || absl::IsUnimplemented(s);
}

bool RegistryGate::Enter(bool* probe) {
  *probe = false;
  for (;;) {
    // Paused after an outage: go on without the registry.
    if (!breaker_.Usable()) return false;
    absl::MutexLock l(&mu_);
    if (known_ && !down_) return true;
    if (!probing_) {
      probing_ = true;
      *probe = true;
      return true;
    }
    // Someone is testing the registry. After an outage, do not wait for it.
    if (down_) return false;
    // First contact: wait for its outcome, then decide again.
    mu_.Await(absl::Condition(this, &RegistryGate::ProbeDoneLocked));
  }
}

bool RegistryGate::EnterOrWait(bool* probe) {
  // How often a waiting call looks again: the breaker's pause ends by the clock,
  // which no condition variable signals.
  constexpr absl::Duration kPoll = absl::Milliseconds(100);
  for (;;) {
    if (Enter(probe)) return true;
    std::function<absl::Status()> recheck;
    {
      absl::MutexLock l(&mu_);
      if (!stop_waiting_) {
        mu_.AwaitWithTimeout(absl::Condition(this, &RegistryGate::WaitOverLocked), kPoll);
        continue;
      }
      if (rechecking_) {
        // Another call asks the registry: its answer decides for this one too.
        mu_.Await(absl::Condition(this, &RegistryGate::RecheckDoneLocked));
        continue;
      }
      if (!recheck_ || rechecked_ == outages_) return false;
      rechecking_ = true;
      rechecked_ = outages_;
      recheck = recheck_;
    }
    Recheck(recheck);
    absl::MutexLock l(&mu_);
    rechecking_ = false;
  }
}

void RegistryGate::StopWaiting(std::function<absl::Status()> recheck) {
  absl::MutexLock l(&mu_);
  stop_waiting_ = true;
  recheck_ = std::move(recheck);
}

bool RegistryGate::Skipping() {
  if (!breaker_.Usable()) return true;
  absl::MutexLock l(&mu_);
  return known_ && down_;
}

bool RegistryGate::Recheck(const std::function<absl::Status()>& call) {
  const absl::Status s = call();
  const bool answered = !cache::IsOutage(s) && !IsRefusal(s);
  if (answered) {
    // An answer ends the pause now (an outcome through Exit would leave the
    // breaker open until retry_after has passed).
    breaker_.NoteProbe(absl::OkStatus());
    absl::MutexLock l(&mu_);
    known_ = true;
    down_ = false;
    return true;
  }
  Exit(/*probe=*/false, s, "checking the registry again");
  return false;
}

bool RegistryGate::Exit(bool probe, const absl::Status& s, absl::string_view what) {
  // The breaker is called without mu_ held: its warning sink takes mu_.
  const absl::Status noted = WithContext(s, what);
  bool skip = breaker_.Note(noted);
  if (!skip && IsRefusal(s)) skip = NoteRefusalAsOutage(noted);
  bool show = false;
  {
    absl::MutexLock l(&mu_);
    if (probe) probing_ = false;
    if (skip && (!known_ || !down_)) ++outages_;
    known_ = true;
    down_ = skip;
    if (!skip && !s.ok() && !absl::IsNotFound(s)) show = warnings_++ < kMaxWarnings;
  }
  if (show) warn_(absl::StrCat(where_, ": ", what, ": ", s.message()));
  return skip;
}

void RegistryGate::Abandon(bool probe) {
  if (!probe) return;
  absl::MutexLock l(&mu_);
  probing_ = false;
}

bool RegistryGate::NoteRefusalAsOutage(const absl::Status& s) {
  // The refusal's message, as an outage (a plain UNAVAILABLE status is one).
  return breaker_.Note(absl::UnavailableError(s.message()));
}

bool RegistryGate::TakeWarning() {
  absl::MutexLock l(&mu_);
  return warnings_++ < kMaxWarnings;
}

void RegistryGate::BreakerOpened(absl::string_view message) {
  {
    absl::MutexLock l(&mu_);
    // The breaker opens again at each failed retry; no call has succeeded since
    // the outage that was warned: still the same outage.
    if (down_) return;
  }
  warn_(absl::StrCat(message, "; trying again every ", absl::FormatDuration(retry_after_)));
}

}  // namespace ocicache::gocacheprog
