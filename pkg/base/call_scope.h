// CallScope: the limits of the call a thread is working for, so that code far
// below the RPC layer (the registry client's HTTP requests, its retry loop) stops
// when the caller is gone or out of time, without every interface in between
// taking a context argument.
//
// A scope is installed on the current thread for its lifetime and nests: an inner
// scope never loosens an outer one (its deadlines are the earlier of the two, and
// both checks apply). Work handed to another thread carries the limits along with
// Capture()/Adopt (ParallelFor does this).
//
//   base::CallScope scope({.deadline = caller_deadline,
//                          .cap = absl::Now() + absl::Seconds(30),
//                          .check = [ctx] { return ctx->IsCancelled() ? Cancelled : Ok; }});
//   store.Lookup(key);  // its registry requests end at the deadline or on cancel
//
// Two deadlines, because they mean different things to the code that hits them:
//   deadline  the caller's own: passing it is DEADLINE_EXCEEDED, the caller's business.
//   cap       the server's bound on waiting for a backend: passing it means the
//             backend did not answer in time, an outage (UNAVAILABLE, temporary).
#ifndef OCICACHE_PKG_BASE_CALL_SCOPE_H_
#define OCICACHE_PKG_BASE_CALL_SCOPE_H_

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ocicache::base {

struct CallLimits {
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time cap = absl::InfiniteFuture();
  // OK while the call should go on; otherwise the status to end it with
  // (e.g. CANCELLED when the caller went away). Called often: keep it cheap.
  // Must be safe to call from any thread the call's work runs on.
  std::function<absl::Status()> check;
  // Set for a call that must not wait on a remote: an HTTP read tried on the
  // server's event loop before it is handed to a thread that may block. Code
  // about to reach a remote asks LocalOnly(), which notes the want here, and
  // carries on as if the remote were out of reach; the caller sees the flag
  // and runs the call again where it may wait. Reads only: a write must never
  // take its out-of-reach path (deferral) for this.
  std::shared_ptr<std::atomic<bool>> local_only;
};

bool LocalOnly();

class CallScope {
 public:
  explicit CallScope(CallLimits limits);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // The innermost scope on this thread, or null.
  static const CallScope* Current();

  // The earlier of deadline and cap.
  absl::Time end() const { return std::min(deadline_, cap_); }
  absl::Time deadline() const { return deadline_; }
  absl::Time cap() const { return cap_; }
  // OK while the call should go on: every check of this and the enclosing
  // scopes passes and end() has not passed. Otherwise why not: the check's
  // status, DEADLINE_EXCEEDED, or UNAVAILABLE for the cap (see TimeUp).
  absl::Status Check() const;
  // The status for end() having passed: DEADLINE_EXCEEDED when the caller's
  // deadline is the one that passed, else UNAVAILABLE (the cap).
  absl::Status TimeUp() const;
  // Whether this call must stay off remotes (CallLimits::local_only, from
  // this scope or an enclosing one).
  bool local_only() const { return local_only_ != nullptr; }

  // The limits in force on this thread (none: default CallLimits), to install
  // on another thread with a CallScope of its own.
  static CallLimits Capture();

 private:
  friend bool LocalOnly();
  const CallScope* outer_;
  absl::Time deadline_;
  absl::Time cap_;
  std::function<absl::Status()> check_;
  std::shared_ptr<std::atomic<bool>> local_only_;
};

// True when the call this thread works for must stay off remotes
// (CallLimits::local_only); then it also notes that the call wanted one.
bool LocalOnly();

// Runs fn under the limits captured from the thread that made the wrapper.
std::function<void()> WithCurrentLimits(std::function<void()> fn);

}  // namespace ocicache::base

#endif  // OCICACHE_PKG_BASE_CALL_SCOPE_H_
