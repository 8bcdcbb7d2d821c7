#include "pkg/registry/pacer.h"

#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "pkg/registry/client.h"

namespace ocicache::registry {
namespace {

// A clock that only moves when the pacer sleeps: turns are exact.
struct FakeClock {
  absl::Mutex mu;
  absl::Time t = absl::UnixEpoch() + absl::Hours(1);
  std::vector<absl::Duration> sleeps;
  RequestPacer::Clock clock() {
    return {[this] { absl::MutexLock l(&mu); return t; },
            [this](absl::Duration d) { absl::MutexLock l(&mu); sleeps.push_back(d); t += d; }};
  }
};

TEST(RequestPacer, SpacesRequestsEvenly) {
  FakeClock fc;
  RequestPacer p({.requests_per_second = 4}, fc.clock());
  const absl::Time start = fc.t;
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(p.Admit().ok());
  // The first goes at once; each next one 250 ms after the one before.
  EXPECT_EQ(fc.t - start, absl::Milliseconds(2000));
  ASSERT_EQ(fc.sleeps.size(), 8u);
  for (absl::Duration d : fc.sleeps) EXPECT_EQ(d, absl::Milliseconds(250));
  EXPECT_EQ(p.admitted(), 9);
}

TEST(RequestPacer, IdleTimeIsNotSavedUpAsABurst) {
  FakeClock fc;
  RequestPacer p({.requests_per_second = 10}, fc.clock());
  ASSERT_TRUE(p.Admit().ok());
  fc.t += absl::Seconds(5);  // idle
  ASSERT_TRUE(p.Admit().ok());
  ASSERT_TRUE(p.Admit().ok());
  ASSERT_EQ(fc.sleeps.size(), 1u);
  EXPECT_EQ(fc.sleeps[0], absl::Milliseconds(100));
}

TEST(RequestPacer, ATurnAfterTheDeadlineIsRefusedAndNotCounted) {
  FakeClock fc;
  RequestPacer p({.requests_per_second = 1}, fc.clock());
  ASSERT_TRUE(p.Admit().ok());
  absl::Status s = p.Admit(fc.t + absl::Milliseconds(500));
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_TRUE(fc.sleeps.empty());
  EXPECT_EQ(p.admitted(), 1);
  EXPECT_TRUE(p.Admit(fc.t + absl::Seconds(1)).ok());
}

TEST(RequestPacer, TheBudgetEndsWithAPermanentError) {
  FakeClock fc;
  RequestPacer p({.budget = 3}, fc.clock());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.Admit().ok());
  absl::Status s = p.Admit();
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(IsBudgetSpent(s));
  EXPECT_FALSE(IsTemporary(s)) << "a 429-like code must not be retried";
  EXPECT_TRUE(absl::StrContains(s.message(), "budget of 3")) << s;
  EXPECT_FALSE(IsBudgetSpent(absl::ResourceExhaustedError("429")));
  EXPECT_EQ(p.admitted(), 3);
  EXPECT_TRUE(fc.sleeps.empty());  // no rate: no waiting
}

TEST(RequestPacer, ConcurrentCallersShareTheRate) {
  FakeClock fc;
  RequestPacer p({.requests_per_second = 100, .budget = 40}, fc.clock());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0}, refused{0};
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      for (int j = 0; j < 15; ++j) (p.Admit().ok() ? ok : refused)++;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(refused.load(), 20);
  // 40 turns 10 ms apart: the last one 390 ms after the first.
  absl::MutexLock l(&fc.mu);
  absl::Duration slept;
  for (absl::Duration d : fc.sleeps) slept = std::max(slept, d);
  EXPECT_LE(slept, absl::Milliseconds(390));
  EXPECT_GE(fc.sleeps.size(), 1u);
}

}  // namespace
}  // namespace ocicache::registry
