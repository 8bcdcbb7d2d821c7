// Breaker: one process-wide view of whether a remote store (the registry) can be
// reached now, shared by everything that calls it, so that an outage seen once
// stops the calls that follow from queueing behind it.
//
// What counts as an outage is IsOutage(): connection failures, timeouts, 5xx and
// 429 after the client's retries. A rejected certificate, bad credentials or a
// refused request are configuration errors and never open the breaker: they must
// reach the user instead of hiding behind the local tier.
//
// Two sources open it:
//   Note(status)       a call's outcome: an outage opens it for `retry_after`.
//   NoteProbe(status)  a health probe (ocicached's prober): a failing probe opens
//                      it until a probe succeeds; a succeeding probe closes it,
//                      also after an outage a call saw. A probe that fails also
//                      advances probe_epoch(), which calls in flight watch to
//                      give up on the registry at once (see ProbeEpochChanged).
// Without a prober the breaker works from calls alone.
//
// OpenWithin(d) asks whether the remote was out at some time in the last d: a
// blob another server took during the outage may be in its backlog, not yet in
// the registry. A hang is the same evidence seen from elsewhere: a registry that
// stalls (a paused process, a partition that heals) fails the probe of a server
// whose probe fell inside the stall, and only slows the probe of another whose
// probe straddled its end. So an answer that took `slow_answer` or more (a
// probe's, or a call's noted with NoteSlowAnswer) counts for OpenWithin too,
// without opening the breaker.
//
// While open, a recheck (BreakerOptions::recheck: a quick ping, when the owner
// has one) may close it early: one caller at a time (and at most once per
// recheck_interval) runs it inside Usable(), bounded by recheck_timeout; every
// other caller is answered "not usable" at once. So a registry that is back is
// used again by the next call, a registry that refuses connections costs a
// refused connection per call, and a hung one holds one caller at a time for
// recheck_timeout, never a thread per call.
#ifndef OCICACHE_PKG_CACHE_BREAKER_H_
#define OCICACHE_PKG_CACHE_BREAKER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ocicache::cache {

// Whether a status means "the backend is not reachable now" (as opposed to a
// miss, a bad request or a configuration error such as an untrusted certificate).
bool IsOutage(const absl::Status& s);

struct BreakerOptions {
  // After an outage a call saw, how long to skip the remote.
  absl::Duration retry_after = absl::Seconds(30);
  // Told once per outage, when the breaker opens ("" name: "the registry").
  std::function<void(absl::string_view)> warn;
  // A quick check that the remote answers again (see above); null: none.
  std::function<absl::Status()> recheck;
  absl::Duration recheck_interval = absl::ZeroDuration();
  // A recheck gives up after this long (a base::CallScope cap around it).
  absl::Duration recheck_timeout = absl::Milliseconds(500);
  // An answer this slow is a hang seen from its end (see OpenWithin above).
  absl::Duration slow_answer = absl::Seconds(2);
};

class Breaker {
 public:
  // `name` says what is guarded, for warnings ("registry 127.0.0.1:5000/cache").
  explicit Breaker(std::string name, BreakerOptions opts = {});

  // Whether to try the remote now (may run the recheck, see above).
  bool Usable();
  // Records a call's outcome; returns true if it was an outage (the breaker is
  // then open, and the caller should answer without the remote).
  bool Note(const absl::Status& s);
  // Records a health probe's outcome (any failure counts, not only IsOutage:
  // a probe that cannot authenticate means no call will either).
  // `took`: how long the probe took (a slow success is noted as a hang).
  void NoteProbe(const absl::Status& s, absl::Duration took = absl::ZeroDuration());
  // Records a call that got an answer only after `took` (a hang, if at least
  // slow_answer; see above). Never opens the breaker.
  void NoteSlowAnswer(absl::Duration took);

  // Whether the breaker was open, or the remote hung, at some time within the
  // last `d` (a blob written through another server during the outage may still
  // be on its way).
  bool OpenWithin(absl::Duration d);

  // Advanced each time a failing probe opens the breaker.
  int64_t probe_epoch() const { return probe_epoch_.load(std::memory_order_acquire); }
  // For a call that started at `epoch`: UNAVAILABLE once a probe has failed
  // since, else OK. Suits base::CallLimits::check.
  absl::Status ProbeEpochChanged(int64_t epoch) const;

 private:
  void WarnOnce(bool was_usable, const absl::Status& why);

  const std::string name_;
  BreakerOptions opts_;
  std::atomic<int64_t> probe_epoch_{0};
  absl::Mutex mu_;
  bool OpenLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool probe_down_ ABSL_GUARDED_BY(mu_) = false;
  bool rechecking_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_recheck_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Last seen open, or hung (NoteSlowAnswer).
  absl::Time last_open_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_BREAKER_H_
