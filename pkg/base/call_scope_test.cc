#include "pkg/base/call_scope.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ocicache::base {
namespace {

TEST(CallScopeTest, NoneByDefault) {
  EXPECT_EQ(CallScope::Current(), nullptr);
  CallLimits l = CallScope::Capture();
  EXPECT_EQ(l.deadline, absl::InfiniteFuture());
  EXPECT_FALSE(l.check);
}

TEST(CallScopeTest, InnerScopesNeverLoosenOuterOnes) {
  absl::Time soon = absl::Now() + absl::Seconds(5);
  CallScope outer({.deadline = soon, .cap = absl::InfiniteFuture(), .check = nullptr});
  {
    CallScope inner({.deadline = soon + absl::Hours(1), .cap = soon + absl::Seconds(1),
                     .check = nullptr});
    EXPECT_EQ(CallScope::Current(), &inner);
    EXPECT_EQ(inner.deadline(), soon);
    EXPECT_EQ(inner.cap(), soon + absl::Seconds(1));
    EXPECT_EQ(inner.end(), soon);
  }
  EXPECT_EQ(CallScope::Current(), &outer);
}

TEST(CallScopeTest, ChecksOfEveryEnclosingScopeApply) {
  std::atomic<bool> cancelled{false};
  CallScope outer({.check = [&]() -> absl::Status {
    return cancelled ? absl::CancelledError("gone") : absl::OkStatus();
  }});
  CallScope inner({});
  EXPECT_TRUE(inner.Check().ok());
  cancelled = true;
  EXPECT_TRUE(absl::IsCancelled(inner.Check()));
}

TEST(CallScopeTest, TheDeadlineThatPassedNamesTheCode) {
  {
    CallScope s({.deadline = absl::Now() - absl::Seconds(1)});
    EXPECT_TRUE(absl::IsDeadlineExceeded(s.Check()));
  }
  {
    CallScope s({.cap = absl::Now() - absl::Seconds(1)});
    EXPECT_TRUE(absl::IsUnavailable(s.Check()));
  }
}

TEST(CallScopeTest, LimitsFollowWorkToAnotherThread) {
  std::atomic<bool> cancelled{false};
  absl::Time d = absl::Now() + absl::Minutes(1);
  CallScope scope({.deadline = d, .check = [&]() -> absl::Status {
                     return cancelled ? absl::CancelledError("gone") : absl::OkStatus();
                   }});
  absl::Time seen_deadline;
  absl::Status seen;
  std::thread t(WithCurrentLimits([&] {
    ASSERT_NE(CallScope::Current(), nullptr);
    seen_deadline = CallScope::Current()->deadline();
    cancelled = true;
    seen = CallScope::Current()->Check();
  }));
  t.join();
  EXPECT_EQ(seen_deadline, d);
  EXPECT_TRUE(absl::IsCancelled(seen));
  // Without a scope the wrapper adds none.
  std::thread u([] {
    std::function<void()> fn = WithCurrentLimits([] { EXPECT_EQ(CallScope::Current(), nullptr); });
    fn();
  });
  u.join();
}

TEST(CallScopeTest, LocalOnlyIsNotedByWhoeverAsksAndFollowsWork) {
  EXPECT_FALSE(LocalOnly());  // no scope: calls may wait
  {
    CallScope plain({});
    EXPECT_FALSE(LocalOnly());
  }
  auto wanted = std::make_shared<std::atomic<bool>>(false);
  CallScope outer({.local_only = wanted});
  EXPECT_TRUE(CallScope::Current()->local_only());
  EXPECT_FALSE(wanted->load());  // nothing asked yet
  {
    CallScope inner({.cap = absl::Now() + absl::Seconds(1)});  // inherits it
    std::thread t(WithCurrentLimits([] { EXPECT_TRUE(LocalOnly()); }));
    t.join();
  }
  EXPECT_TRUE(wanted->load());
}

}  // namespace
}  // namespace ocicache::base
