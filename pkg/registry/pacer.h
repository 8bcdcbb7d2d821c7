// RequestPacer: what one process (or one command) may ask of a registry: a rate
// (requests per second, evenly spaced, no bursts) and a budget (requests in all).
// Registries rate-limit (Docker Hub, ECR, GHCR answer 429) or bill per request;
// gc and sync over a large repository are the callers that need it
// (`ocicache --registry-rate N --registry-budget N`).
//
// Shared by every client that should count against the same limits
// (ClientOptions::pacer); each HTTP exchange the transport starts takes one turn
// (a redirect it follows is not paced separately).
#ifndef OCICACHE_PKG_REGISTRY_PACER_H_
#define OCICACHE_PKG_REGISTRY_PACER_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ocicache::registry {

struct PacerOptions {
  double requests_per_second = 0;  // 0: no rate limit
  int64_t budget = 0;              // 0: no budget
};

class RequestPacer {
 public:
  struct Clock {
    std::function<absl::Time()> now;
    std::function<void(absl::Duration)> sleep;
  };
  static Clock RealClock();

  explicit RequestPacer(PacerOptions opts, Clock clock = RealClock());

  // Takes one request's turn: waits until it comes, then counts it.
  //   ResourceExhausted  the budget is spent (permanent: retrying cannot help;
  //                      registry::IsTemporary is false)
  //   DeadlineExceeded   the turn would come after `until` (nothing counted)
  absl::Status Admit(absl::Time until = absl::InfiniteFuture());

  int64_t admitted() const;
  const PacerOptions& options() const { return opts_; }

 private:
  const PacerOptions opts_;
  const Clock clock_;
  const absl::Duration interval_;
  mutable absl::Mutex mu_;
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // the next free turn
  int64_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
};

// Whether `s` is a RequestPacer's "budget spent".
bool IsBudgetSpent(const absl::Status& s);

}  // namespace ocicache::registry

#endif  // OCICACHE_PKG_REGISTRY_PACER_H_
