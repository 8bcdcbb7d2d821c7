// RegistryGate: the registry as gocacheprog's lookups, uploads and session see it
// (private to this package). Every remote call is bracketed:
//
//   bool probe;
//   if (gate.Enter(&probe)) {
//     absl::Status s = <the call>;
//     gate.Exit(probe, s, "lookup");
//   }
//
// Whether the registry is skipped is the decision of one cache::Breaker: an
// outage (cache::IsOutage) opens it for `retry_after`, and it warns as it opens.
// The gate adds two things:
//
//   - One call at a time tests the registry while its state is in doubt: at first
//     contact the others wait for that call's outcome, and once the breaker lets
//     calls through again after an outage, the others skip the registry until that
//     call has an answer. So a registry that never answers costs one timeout per
//     retry_after, not one per thread.
//   - A refusal (Unauthenticated, PermissionDenied, Unimplemented) also skips the
//     registry for retry_after, although cache::IsOutage does not count it as an
//     outage (for a store whose errors reach the user, a configuration error must
//     not hide behind the local tier). For go, no registry error can be more than
//     a warning line, and every request would be refused the same way, each at the
//     cost of a round trip; so gocacheprog records a refusal with the breaker as an
//     outage (NoteRefusalAsOutage).
//
// Warnings: the breaker's line when it opens, once per outage (it opens again at
// each failed retry; the gate passes the line on only if the registry answered
// since the last outage), and for failures that are neither a miss, an outage nor
// a refusal, one line each up to kMaxWarnings in all (a budget shared with
// TakeWarning); later ones are dropped.
#ifndef OCICACHE_PKG_GOCACHEPROG_REGISTRY_GATE_H_
#define OCICACHE_PKG_GOCACHEPROG_REGISTRY_GATE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/breaker.h"

namespace ocicache::gocacheprog {

class RegistryGate {
 public:
  // Warnings of failures that are neither misses nor outages, at most.
  static constexpr int kMaxWarnings = 3;

  // `where` names the registry in warnings; `warn` receives each warning line.
  RegistryGate(std::string where, absl::Duration retry_after,
               std::function<void(absl::string_view)> warn);
  RegistryGate(const RegistryGate&) = delete;
  RegistryGate& operator=(const RegistryGate&) = delete;

  // Whether to make a remote call now. When true, *probe says whether this call
  // is the one testing the registry; pass it to Exit. When false, the caller goes
  // on without the registry (a lookup is a miss, an upload a failure).
  bool Enter(bool* probe);
  // For calls that need not answer go at once (uploads): like Enter, but while
  // the registry is skipped it waits, until the breaker lets a call through again
  // and that call's outcome is known, rather than giving up. One transient
  // outage then delays the session's uploads instead of losing them. False only
  // once StopWaiting was called (then it is Enter).
  bool EnterOrWait(bool* probe);
  // Ends the waits of EnterOrWait, now and later (at close: what still waits
  // goes to the backlog). With `recheck`, a call that finds the registry paused
  // after that first asks it again with `recheck` (Recheck), once per outage,
  // while the others wait for the answer: an answer lets them all through. So
  // an outage met after close began, by an upload still in flight, costs one
  // check rather than that upload.
  void StopWaiting(std::function<absl::Status()> recheck = nullptr);
  // Whether calls skip the registry now (paused after an outage or a refusal).
  bool Skipping();
  // Asks the registry now with `call`, whatever is left of retry_after, and
  // records the answer: an answer (a miss included) ends the pause at once,
  // waking EnterOrWait. Returns whether the registry answers.
  bool Recheck(const std::function<absl::Status()>& call);
  // Records the outcome of a call Enter allowed; `what` names it in warnings.
  // Returns true when the registry is now skipped (an outage or a refusal). Any
  // other outcome, a miss included, shows that the registry answers.
  bool Exit(bool probe, const absl::Status& s, absl::string_view what);
  // For a call that entered and was never made: gives up its probe (if it was
  // one) without an outcome, so another call tests the registry instead.
  void Abandon(bool probe);

  // Takes one warning of the kMaxWarnings budget; false once it is spent.
  bool TakeWarning();

  // Whether `s` is a refusal: the registry answers, but will not serve us.
  static bool IsRefusal(const absl::Status& s);

 private:
  // gocacheprog's own rule (see above): a refusal opens the breaker as an outage
  // would, noted as a plain UNAVAILABLE status (an outage for cache::IsOutage).
  // Returns Breaker::Note's answer: true, the breaker is open.
  bool NoteRefusalAsOutage(const absl::Status& s);
  // The breaker's warning sink: forwards the first warning of an outage.
  void BreakerOpened(absl::string_view message);
  bool ProbeDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !probing_; }
  // EnterOrWait's wake-up: StopWaiting, or an outcome that lets calls through.
  bool WaitOverLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_waiting_ || (known_ && !down_);
  }
  bool RecheckDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !rechecking_; }

  const std::string where_;
  const absl::Duration retry_after_;
  const std::function<void(absl::string_view)> warn_;

  absl::Mutex mu_;
  bool known_ ABSL_GUARDED_BY(mu_) = false;    // some call has an outcome
  bool down_ ABSL_GUARDED_BY(mu_) = false;     // the last outcome skipped the registry
  bool probing_ ABSL_GUARDED_BY(mu_) = false;  // a call is testing the registry
  int warnings_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_waiting_ ABSL_GUARDED_BY(mu_) = false;
  std::function<absl::Status()> recheck_ ABSL_GUARDED_BY(mu_);  // StopWaiting's
  // Outages so far (each change from answering to skipped), the outage the last
  // recheck after StopWaiting was for, and whether one runs now.
  int64_t outages_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rechecked_ ABSL_GUARDED_BY(mu_) = -1;
  bool rechecking_ ABSL_GUARDED_BY(mu_) = false;

  // Last: its warning sink uses the members above.
  cache::Breaker breaker_;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_REGISTRY_GATE_H_
