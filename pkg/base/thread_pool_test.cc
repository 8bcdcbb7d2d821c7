#include "pkg/base/thread_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ocicache::base {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskAndWaitsIdle) {
  ThreadPool pool(3, 0);
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pool.Submit([&] { ++done; }));
  EXPECT_TRUE(pool.WaitIdle(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(done.load(), 100);
}

TEST(ThreadPoolTest, BoundedQueueRefusesAndAbortDropsQueued) {
  ThreadPool pool(1, 2);
  absl::Notification running, release;
  ASSERT_TRUE(pool.Submit([&] {
    running.Notify();
    release.WaitForNotification();
  }));
  running.WaitForNotification();
  std::atomic<int> ran{0};
  EXPECT_TRUE(pool.Submit([&] { ++ran; }));
  EXPECT_TRUE(pool.Submit([&] { ++ran; }));
  EXPECT_FALSE(pool.Submit([&] { ++ran; }));  // queue full
  EXPECT_EQ(pool.Abort(), 2u);
  EXPECT_FALSE(pool.Submit([&] { ++ran; }));  // stopping
  release.Notify();
  EXPECT_TRUE(pool.WaitIdle(absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(ran.load(), 0);
}

}  // namespace
}  // namespace ocicache::base
