// ThreadPool: a fixed set of threads running queued tasks, started in order of
// submission. The destructor stops taking tasks, drops the queued ones and joins
// the threads, so it waits for the tasks that are running. The one pool of the
// project: gocacheprog's lookups, uploads and prefetches, and (through
// SharedThreadPool) the server's batch calls and the tiered store's fills (ParallelFor).
#ifndef OCICACHE_PKG_BASE_THREAD_POOL_H_
#define OCICACHE_PKG_BASE_THREAD_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ocicache::base {

class ThreadPool {
 public:
  // `max_queue`: tasks waiting at most (0: no limit).
  ThreadPool(int threads, size_t max_queue) : max_queue_(max_queue) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~ThreadPool() {
    Abort();
    for (auto& t : threads_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // False when the queue is full or the pool is stopping (the task is not run).
  bool Submit(std::function<void()> fn) {
    absl::MutexLock l(&mu_);
    if (stopping_ || (max_queue_ > 0 && queue_.size() >= max_queue_)) return false;
    queue_.push_back(std::move(fn));
    return true;
  }
  // Waits until no task is queued or running; false at the deadline.
  bool WaitIdle(absl::Time deadline) {
    absl::MutexLock l(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(this, &ThreadPool::IdleLocked), deadline);
  }
  // Stops taking tasks and drops the queued ones; returns how many were dropped.
  size_t Abort() {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    size_t n = queue_.size();
    queue_.clear();
    return n;
  }
  int active() {
    absl::MutexLock l(&mu_);
    return active_;
  }
  bool stopping() {
    absl::MutexLock l(&mu_);
    return stopping_;
  }

 private:
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && active_ == 0;
  }
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }
  void Run() {
    for (;;) {
      std::function<void()> fn;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(this, &ThreadPool::HasWorkLocked));
        if (queue_.empty()) return;  // stopping
        fn = std::move(queue_.front());
        queue_.pop_front();
        ++active_;
      }
      fn();
      absl::MutexLock l(&mu_);
      --active_;
    }
  }

  const size_t max_queue_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// A process-wide pool for short helper tasks that a caller also works on itself
// (ParallelFor): created on first use with `threads` threads (the first
// caller's value wins), never destroyed.
ThreadPool& SharedThreadPool(int threads = 64);

}  // namespace ocicache::base

#endif  // OCICACHE_PKG_BASE_THREAD_POOL_H_
