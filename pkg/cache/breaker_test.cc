#include "pkg/cache/breaker.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/registry/client.h"

namespace ocicache::cache {
namespace {

// What the registry client returns for a registry that refuses connections
// (port 1 on loopback: nothing listens there), with no retries.
absl::Status Outage() {
  registry::ClientOptions o;
  o.retry.max_attempts = 1;
  auto c = registry::Client::Create("127.0.0.1:1", o);
  if (!c.ok()) return c.status();
  return (*c)->Ping();
}

TEST(BreakerTest, ConfigurationErrorsNeverOpenIt) {
  std::vector<std::string> warned;
  Breaker b("registry r", {absl::Seconds(30), [&](absl::string_view m) { warned.emplace_back(m); }});
  EXPECT_FALSE(b.Note(absl::PermissionDeniedError("denied")));
  EXPECT_FALSE(b.Note(absl::InvalidArgumentError("MANIFEST_INVALID")));
  EXPECT_FALSE(b.Note(absl::NotFoundError("miss")));
  EXPECT_TRUE(b.Usable());
  EXPECT_TRUE(warned.empty());
}

TEST(BreakerTest, FailingProbeOpensUntilAProbeSucceeds) {
  std::vector<std::string> warned;
  Breaker b("registry r", {absl::ZeroDuration(), [&](absl::string_view m) { warned.emplace_back(m); }});
  int64_t epoch = b.probe_epoch();
  EXPECT_TRUE(b.ProbeEpochChanged(epoch).ok());
  b.NoteProbe(absl::UnavailableError("no answer"));
  EXPECT_FALSE(b.Usable());
  EXPECT_TRUE(absl::IsUnavailable(b.ProbeEpochChanged(epoch)));
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_NE(warned[0].find("registry r is unavailable"), std::string::npos) << warned[0];
  // A second failing probe is the same outage: no new warning, same epoch.
  int64_t during = b.probe_epoch();
  b.NoteProbe(absl::UnavailableError("no answer"));
  EXPECT_EQ(b.probe_epoch(), during);
  EXPECT_EQ(warned.size(), 1u);
  b.NoteProbe(absl::OkStatus());
  EXPECT_TRUE(b.Usable());
}

TEST(BreakerTest, ASucceedingProbeEndsAnOutageACallSaw) {
  Breaker b("registry r", {absl::Hours(1), [](absl::string_view) {}});
  absl::Status outage = Outage();
  ASSERT_TRUE(IsOutage(outage)) << outage;
  EXPECT_TRUE(b.Note(outage));
  EXPECT_FALSE(b.Usable());
  int64_t epoch = b.probe_epoch();
  b.NoteProbe(absl::OkStatus());
  EXPECT_TRUE(b.Usable());
  // A call's outage does not end calls in flight; only a failing probe does.
  EXPECT_EQ(b.probe_epoch(), epoch);
}

// While open, one caller at a time runs the recheck; the others are told "not
// usable" without waiting; a recheck that passes closes the breaker.
// A hang seen from its end: a probe or a call that was answered, but slowly,
// counts for OpenWithin (another server may have seen the hang as an outage)
// without opening the breaker; a quick answer does not.
TEST(BreakerTest, ASlowAnswerCountsAsRecentTroubleWithoutOpening) {
  Breaker quick("registry");
  quick.NoteProbe(absl::OkStatus(), absl::Milliseconds(300));
  quick.NoteSlowAnswer(absl::Seconds(1));
  EXPECT_FALSE(quick.OpenWithin(absl::Minutes(1)));

  Breaker probed("registry");
  probed.NoteProbe(absl::OkStatus(), absl::Seconds(7));
  EXPECT_TRUE(probed.Usable());
  EXPECT_TRUE(probed.OpenWithin(absl::Minutes(1)));

  Breaker called("registry");
  called.NoteSlowAnswer(absl::Seconds(3));
  EXPECT_TRUE(called.Usable());
  EXPECT_TRUE(called.OpenWithin(absl::Minutes(1)));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(called.OpenWithin(absl::Milliseconds(10)));  // it ages out
}

TEST(BreakerTest, OneCallerAtATimeRechecks) {
  absl::Notification entered, release;
  std::atomic<int> rechecks{0};
  std::atomic<bool> back{false};
  BreakerOptions o;
  o.warn = [](absl::string_view) {};
  o.recheck = [&]() -> absl::Status {
    if (++rechecks == 1) {
      entered.Notify();
      release.WaitForNotification();
    }
    return back ? absl::OkStatus() : absl::UnavailableError("still down");
  };
  Breaker b("registry r", o);
  b.NoteProbe(absl::UnavailableError("no answer"));
  bool first = true;
  std::thread t([&] { first = b.Usable(); });
  entered.WaitForNotification();
  absl::Time start = absl::Now();
  EXPECT_FALSE(b.Usable());  // the recheck in flight is not waited for
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  release.Notify();
  t.join();
  EXPECT_FALSE(first);
  EXPECT_EQ(rechecks.load(), 1);
  back = true;
  EXPECT_TRUE(b.Usable());
  EXPECT_EQ(rechecks.load(), 2);
  EXPECT_TRUE(b.Usable());  // closed: no more rechecks
  EXPECT_EQ(rechecks.load(), 2);
}

}  // namespace
}  // namespace ocicache::cache
