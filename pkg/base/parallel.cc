#include "pkg/base/parallel.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "pkg/base/call_scope.h"

namespace ocicache::base {
namespace {

// What the caller and its helpers share. Owned jointly, so a helper that starts
// after the caller has returned touches only this.
struct Loop {
  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;  // the caller is done: helpers do nothing
  int running ABSL_GUARDED_BY(mu) = 0;      // helpers inside work()
  std::atomic<size_t> next{0};
};

}  // namespace

void ParallelFor(size_t n, size_t max_threads, const std::function<void(size_t)>& fn,
                 base::ThreadPool* pool) {
  auto loop = std::make_shared<Loop>();
  // References the caller's `fn`: run only by the caller, or by a helper that
  // registered in `running` before the caller closed the loop.
  std::function<void()> work = base::WithCurrentLimits([&fn, n, l = loop.get()] {
    for (size_t i; (i = l->next.fetch_add(1)) < n;) fn(i);
  });
  size_t helpers = std::min(n, std::max<size_t>(max_threads, 1)) - (n > 0 ? 1 : 0);
  if (helpers > 0 && pool == nullptr) pool = &base::SharedThreadPool();
  for (size_t t = 0; t < helpers; ++t) {
    bool queued = pool->Submit([loop, work] {
      {
        absl::MutexLock l(&loop->mu);
        if (loop->closed) return;
        ++loop->running;
      }
      work();
      absl::MutexLock l(&loop->mu);
      --loop->running;
    });
    if (!queued) break;  // the caller does the rest
  }
  work();
  absl::MutexLock l(&loop->mu);
  loop->closed = true;
  auto idle = [&loop]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(loop->mu) { return loop->running == 0; };
  loop->mu.Await(absl::Condition(&idle));
}

}  // namespace ocicache::base
