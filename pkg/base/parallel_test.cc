#include "pkg/base/parallel.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/base/call_scope.h"
#include "pkg/base/thread_pool.h"

namespace ocicache::base {
namespace {

TEST(ParallelForTest, EveryIndexOnceOnSeveralThreads) {
  base::ThreadPool pool(4, 0);
  constexpr size_t kN = 200;
  std::vector<std::atomic<int>> seen(kN);
  absl::Mutex mu;
  std::set<std::thread::id> threads;
  ParallelFor(kN, 4, [&](size_t i) {
    ++seen[i];
    absl::SleepFor(absl::Milliseconds(1));
    absl::MutexLock l(&mu);
    threads.insert(std::this_thread::get_id());
  }, &pool);
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(seen[i].load(), 1) << i;
  EXPECT_GT(threads.size(), 1u);
  EXPECT_LE(threads.size(), 4u);
}

// With every pool thread busy, the caller does all the work itself and returns
// without waiting for the helpers it queued; they later find nothing to do.
TEST(ParallelForTest, ABusyPoolDoesNotHoldTheCallerUp) {
  base::ThreadPool pool(1, 0);
  absl::Notification release;
  ASSERT_TRUE(pool.Submit([&] { release.WaitForNotification(); }));
  std::atomic<int> calls{0};
  ParallelFor(50, 8, [&](size_t) { ++calls; }, &pool);
  EXPECT_EQ(calls.load(), 50);
  release.Notify();
  EXPECT_TRUE(pool.WaitIdle(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(calls.load(), 50);
}

TEST(ParallelForTest, HelpersWorkUnderTheCallersLimits) {
  base::ThreadPool pool(4, 0);
  absl::Time deadline = absl::Now() + absl::Minutes(5);
  base::CallScope scope({.deadline = deadline});
  std::atomic<int> with_limits{0};
  ParallelFor(16, 4, [&](size_t) {
    const base::CallScope* s = base::CallScope::Current();
    if (s != nullptr && s->deadline() == deadline) ++with_limits;
    absl::SleepFor(absl::Milliseconds(2));
  }, &pool);
  EXPECT_EQ(with_limits.load(), 16);
}

TEST(ParallelForTest, NothingToDo) {
  std::atomic<int> calls{0};
  ParallelFor(0, 8, [&](size_t) { ++calls; });
  ParallelFor(1, 8, [&](size_t) { ++calls; });
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace ocicache::base
