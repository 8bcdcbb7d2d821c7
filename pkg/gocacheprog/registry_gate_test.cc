#include "pkg/gocacheprog/registry_gate.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ocicache::gocacheprog {
namespace {

class Gate {
 public:
  explicit Gate(absl::Duration retry_after = absl::Minutes(1))
      : gate_("registry r", retry_after, [this](absl::string_view w) {
          absl::MutexLock l(&mu_);
          warnings_.emplace_back(w);
        }) {}

  RegistryGate& operator*() { return gate_; }
  RegistryGate* operator->() { return &gate_; }
  std::vector<std::string> warnings() {
    absl::MutexLock l(&mu_);
    return warnings_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> warnings_;
  RegistryGate gate_;
};

// One call through the gate; returns whether it was made.
bool Call(RegistryGate& gate, const absl::Status& outcome) {
  bool probe = false;
  if (!gate.Enter(&probe)) return false;
  gate.Exit(probe, outcome, "lookup");
  return true;
}

TEST(RegistryGate, FirstCallProbesAndAnswersOpenTheWay) {
  Gate g;
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  EXPECT_TRUE(probe);
  EXPECT_FALSE(g->Exit(probe, absl::NotFoundError("manifest unknown"), "lookup"));
  ASSERT_TRUE(g->Enter(&probe));
  EXPECT_FALSE(probe);
  EXPECT_FALSE(g->Exit(probe, absl::OkStatus(), "lookup"));
  EXPECT_TRUE(g.warnings().empty());
}

TEST(RegistryGate, AnOutageSkipsTheRegistryWithOneWarning) {
  Gate g;
  ASSERT_TRUE(Call(*g, absl::UnavailableError("connection refused")));
  EXPECT_FALSE(Call(*g, absl::OkStatus()));
  EXPECT_FALSE(Call(*g, absl::OkStatus()));
  std::vector<std::string> w = g.warnings();
  ASSERT_EQ(w.size(), 1u) << absl::StrJoin(w, "\n");
  EXPECT_TRUE(absl::StrContains(w[0], "registry r is unavailable")) << w[0];
  EXPECT_TRUE(absl::StrContains(w[0], "lookup: connection refused")) << w[0];
  EXPECT_TRUE(absl::StrContains(w[0], "trying again every 1m")) << w[0];
}

// Not an outage for cache::IsOutage, but gocacheprog skips the registry all the same.
TEST(RegistryGate, ARefusalSkipsTheRegistryToo) {
  for (const absl::Status& refusal :
       {absl::UnauthenticatedError("401"), absl::PermissionDeniedError("403"),
        absl::UnimplementedError("405")}) {
    Gate g;
    bool probe = false;
    ASSERT_TRUE(g->Enter(&probe));
    EXPECT_TRUE(RegistryGate::IsRefusal(refusal));
    EXPECT_TRUE(g->Exit(probe, refusal, "lookup")) << refusal;
    EXPECT_FALSE(g->Enter(&probe)) << refusal;
    std::vector<std::string> w = g.warnings();
    ASSERT_EQ(w.size(), 1u) << absl::StrJoin(w, "\n");
    EXPECT_TRUE(absl::StrContains(w[0], "unavailable")) << w[0];
    EXPECT_TRUE(absl::StrContains(w[0], refusal.message())) << w[0];
  }
}

TEST(RegistryGate, OtherFailuresAreWarnedUpToTheLimit) {
  Gate g;
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Call(*g, absl::InvalidArgumentError("manifest invalid")));
  }
  std::vector<std::string> w = g.warnings();
  ASSERT_EQ(w.size(), static_cast<size_t>(RegistryGate::kMaxWarnings));
  EXPECT_EQ(w[0], "registry r: lookup: manifest invalid");
  EXPECT_FALSE(g->TakeWarning());
}

TEST(RegistryGate, OneWarningPerOutageAcrossRetries) {
  Gate g(absl::Milliseconds(20));
  ASSERT_TRUE(Call(*g, absl::UnavailableError("down")));
  EXPECT_FALSE(Call(*g, absl::OkStatus()));
  absl::SleepFor(absl::Milliseconds(40));
  // Past the pause: one call tests the registry again; still down, no new warning.
  ASSERT_TRUE(Call(*g, absl::DeadlineExceededError("timeout")));
  EXPECT_FALSE(Call(*g, absl::OkStatus()));
  EXPECT_EQ(g.warnings().size(), 1u);
  absl::SleepFor(absl::Milliseconds(40));
  // Back, then down again: a new outage, a new warning.
  ASSERT_TRUE(Call(*g, absl::OkStatus()));
  ASSERT_TRUE(Call(*g, absl::UnavailableError("down again")));
  EXPECT_EQ(g.warnings().size(), 2u) << absl::StrJoin(g.warnings(), "\n");
}

TEST(RegistryGate, AtFirstContactOthersWaitForTheProbe) {
  Gate g;
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  ASSERT_TRUE(probe);
  absl::Notification entered;
  bool other_entered = false, other_probe = true;
  std::thread other([&] {
    other_entered = g->Enter(&other_probe);
    entered.Notify();
  });
  EXPECT_FALSE(entered.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  g->Exit(probe, absl::OkStatus(), "lookup");
  other.join();
  EXPECT_TRUE(other_entered);
  EXPECT_FALSE(other_probe);
}

// A probe given up without a call (the session's list read, dropped when go
// closed at once): a waiting call becomes the probe instead of waiting forever,
// and no warning is given.
TEST(RegistryGate, AnAbandonedProbeHandsTheTestToAWaitingCall) {
  Gate g;
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  ASSERT_TRUE(probe);
  absl::Notification entered;
  bool other_entered = false, other_probe = false;
  std::thread other([&] {
    other_entered = g->Enter(&other_probe);
    entered.Notify();
  });
  EXPECT_FALSE(entered.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  g->Abandon(probe);
  other.join();
  EXPECT_TRUE(other_entered);
  EXPECT_TRUE(other_probe);
  g->Exit(other_probe, absl::OkStatus(), "lookup");
  EXPECT_TRUE(g.warnings().empty());
}

TEST(RegistryGate, AtFirstContactAnOutageSkipsTheWaitingCalls) {
  Gate g;
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  absl::Notification entered;
  bool other_entered = true;
  std::thread other([&] {
    bool p = false;
    other_entered = g->Enter(&p);
    entered.Notify();
  });
  EXPECT_FALSE(entered.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  g->Exit(probe, absl::UnavailableError("timeout"), "lookup");
  other.join();
  EXPECT_FALSE(other_entered);
}

TEST(RegistryGate, AfterAPauseOthersSkipWhileOneProbes) {
  Gate g(absl::Milliseconds(20));
  ASSERT_TRUE(Call(*g, absl::UnavailableError("down")));
  absl::SleepFor(absl::Milliseconds(40));
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  EXPECT_TRUE(probe);
  bool other = false;
  EXPECT_FALSE(g->Enter(&other));  // at once, not after the probe
  g->Exit(probe, absl::OkStatus(), "lookup");
  EXPECT_TRUE(g->Enter(&other));
  EXPECT_FALSE(other);
  g->Exit(other, absl::OkStatus(), "lookup");
}

// Uploads wait out a pause: once the breaker lets a call through, the waiting
// call is made (as the probe), instead of being dropped.
TEST(RegistryGate, AWaitingCallIsMadeWhenThePauseEnds) {
  Gate g(absl::Milliseconds(300));
  EXPECT_TRUE(Call(*g, absl::UnavailableError("connection refused")));
  EXPECT_TRUE(g->Skipping());
  bool probe = false;
  EXPECT_FALSE(g->Enter(&probe));  // a lookup does not wait
  const absl::Time start = absl::Now();
  ASSERT_TRUE(g->EnterOrWait(&probe));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  EXPECT_TRUE(probe);
  EXPECT_FALSE(g->Exit(probe, absl::OkStatus(), "upload"));
  EXPECT_FALSE(g->Skipping());
}

TEST(RegistryGate, StopWaitingEndsTheWaits) {
  Gate g(absl::Hours(1));
  EXPECT_TRUE(Call(*g, absl::UnavailableError("connection refused")));
  std::atomic<int> made{0}, dropped{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&] {
      bool probe = false;
      if (g->EnterOrWait(&probe)) {
        ++made;
      } else {
        ++dropped;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(made.load() + dropped.load(), 0);  // still waiting
  const absl::Time stop = absl::Now();
  g->StopWaiting();
  for (auto& t : waiters) t.join();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(2));
  EXPECT_EQ(dropped.load(), 4);
  // Later calls do not wait either.
  bool probe = false;
  EXPECT_FALSE(g->EnterOrWait(&probe));
}

// At close, an upload that meets an outage after StopWaiting (it was in flight
// then) asks the registry once more instead of giving up; the others waiting
// share that one check, and a registry that stays down costs one check per
// outage.
TEST(RegistryGate, AfterStopWaitingAnOutageGetsOneRecheck) {
  Gate g(absl::Hours(1));
  bool probe = false;
  ASSERT_TRUE(g->Enter(&probe));
  g->Exit(probe, absl::OkStatus(), "upload");  // the registry answers
  std::atomic<int> checks{0};
  std::atomic<bool> answers{true};
  g->StopWaiting([&] {
    ++checks;
    absl::SleepFor(absl::Milliseconds(50));  // the others arrive meanwhile
    return answers.load() ? absl::NotFoundError("blob unknown")
                          : absl::UnavailableError("connection refused");
  });
  // The outage comes after StopWaiting (an upload in flight at close).
  EXPECT_TRUE(Call(*g, absl::UnavailableError("connection reset by peer")));
  std::atomic<int> made{0};
  std::vector<std::thread> uploads;
  for (int i = 0; i < 4; ++i) {
    uploads.emplace_back([&] {
      bool p = false;
      if (g->EnterOrWait(&p)) {
        ++made;
        g->Exit(p, absl::OkStatus(), "upload");
      }
    });
  }
  for (auto& t : uploads) t.join();
  EXPECT_EQ(made.load(), 4);
  EXPECT_EQ(checks.load(), 1);
  // A second outage, and the registry stays down: one check, then no waits.
  answers = false;
  EXPECT_TRUE(Call(*g, absl::UnavailableError("connection reset by peer")));
  EXPECT_FALSE(g->EnterOrWait(&probe));
  EXPECT_FALSE(g->EnterOrWait(&probe));
  EXPECT_EQ(checks.load(), 2);
}

TEST(RegistryGate, ARecheckThatIsAnsweredEndsThePauseAtOnce) {
  Gate g(absl::Hours(1));
  EXPECT_TRUE(Call(*g, absl::UnavailableError("connection refused")));
  std::atomic<bool> made{false};
  std::thread waiter([&] {
    bool probe = false;
    made = g->EnterOrWait(&probe);
    if (made) g->Exit(probe, absl::OkStatus(), "upload");
  });
  // Still down: the recheck says so and the pause goes on.
  EXPECT_FALSE(g->Recheck([] { return absl::UnavailableError("connection refused"); }));
  EXPECT_TRUE(g->Skipping());
  // A miss is an answer.
  EXPECT_TRUE(g->Recheck([] { return absl::NotFoundError("blob unknown"); }));
  EXPECT_FALSE(g->Skipping());
  waiter.join();
  EXPECT_TRUE(made.load());
  EXPECT_EQ(g.warnings().size(), 1u) << absl::StrJoin(g.warnings(), "\n");
}

}  // namespace
}  // namespace ocicache::gocacheprog
