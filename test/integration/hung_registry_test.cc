// A registry that hangs: it accepts connections and never answers (the real
// docker-registry stopped with SIGSTOP). ocicached must not queue behind it:
// calls end when their caller cancels or its deadline passes, a call that moves
// no blob stream waits at most --registry_timeout, and once the health probe
// fails, lookups answer from the local tier (or miss) at once, a tiered server
// takes puts into its directory, and calls already waiting give up.
#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/grpc/health/v1/health.grpc.pb.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/client/grpc_store.h"
#include "test/harness/registry.h"
#include "test/integration/daemon_process.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using grpc::health::v1::HealthCheckResponse;
using harness::RegistryProcess;
using testing::DaemonProcess;

// Resumes a stopped registry when the test ends, however it ends, so that
// RegistryProcess can stop it.
class Paused {
 public:
  // kill() only queues SIGSTOP: until every thread of the registry is stopped it
  // may still answer a request (a quick real miss). Wait for that, up to 2 s.
  explicit Paused(pid_t pid) : pid_(pid) {
    ::kill(pid_, SIGSTOP);
    const absl::Time end = absl::Now() + absl::Seconds(2);
    while (!AllStopped() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(2));
  }
  ~Paused() { ::kill(pid_, SIGCONT); }

 private:
  // Every thread's state in /proc/PID/task/TID/stat is T (stopped).
  bool AllStopped() const {
    const std::string dir = absl::StrCat("/proc/", pid_, "/task");
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return false;
    bool all = true;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream stat(absl::StrCat(dir, "/", e->d_name, "/stat"));
      std::string line;
      std::getline(stat, line);
      const size_t paren = line.rfind(')');
      if (paren == std::string::npos || paren + 2 >= line.size()) continue;  // thread gone
      const char state = line[paren + 2];
      if (state != 'T' && state != 't') all = false;
    }
    ::closedir(d);
    return all;
  }
  pid_t pid_;
};

class Server {
 public:
  explicit Server(const DaemonProcess& d)
      : channel_(grpc::CreateChannel(d.address(), grpc::InsecureChannelCredentials())),
        entries_(v1::Entries::NewStub(channel_)),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  // Lookup with an optional client deadline; the status and how long it took.
  grpc::Status Lookup(const std::string& key, absl::Duration deadline = absl::InfiniteDuration(),
                      absl::Duration* took = nullptr) {
    grpc::ClientContext ctx;
    if (deadline != absl::InfiniteDuration()) {
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    }
    v1::LookupRequest req;
    req.set_key(key);
    v1::Entry resp;
    absl::Time start = absl::Now();
    grpc::Status s = entries_->Lookup(&ctx, req, &resp);
    if (took != nullptr) *took = absl::Now() - start;
    return s;
  }

  grpc::Status Put(const std::string& key, absl::Duration* took) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    v1::PutRequest req;
    req.mutable_entry()->set_key(key);
    req.mutable_entry()->set_config(R"({"k":"v"})");
    v1::PutResponse resp;
    absl::Time start = absl::Now();
    grpc::Status s = entries_->Put(&ctx, req, &resp);
    *took = absl::Now() - start;
    return s;
  }

  HealthCheckResponse::ServingStatus Health() {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest req;
    HealthCheckResponse resp;
    if (!health_->Check(&ctx, req, &resp).ok()) return HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

  bool AwaitHealth(HealthCheckResponse::ServingStatus want, absl::Duration timeout) {
    absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (Health() == want) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Entries::Stub> entries_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// Access-log lines for `method` in the server's stderr.
int LoggedCalls(const DaemonProcess& d, absl::string_view method) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(d.Stderr(), '\n')) {
    if (absl::StrContains(line, absl::StrCat(" ", method, " "))) ++n;
  }
  return n;
}

constexpr absl::Duration kFast = absl::Seconds(1);

// A tiered server: once health says NOT_SERVING, hits come from the directory,
// misses are NOT_FOUND and puts land in the directory, each within a second.
TEST(HungRegistryTest, TieredServerAnswersFromItsDirectoryOnceHealthFails) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/hung/tiered",
                                 "--dir=" + testing::TempDir("hung-tiered"),
                                 "--health_interval=1s"});
  ASSERT_TRUE(d.ok()) << d.status();
  Server server(**d);
  absl::Duration took;
  ASSERT_TRUE(server.Put("kept", &took).ok());
  ASSERT_EQ(server.Health(), HealthCheckResponse::SERVING);

  Paused paused((*reg)->pid());
  ASSERT_TRUE(server.AwaitHealth(HealthCheckResponse::NOT_SERVING, absl::Seconds(30)))
      << (*d)->Stderr();
  for (int i = 0; i < 3; ++i) {
    grpc::Status hit = server.Lookup("kept", absl::InfiniteDuration(), &took);
    EXPECT_TRUE(hit.ok()) << hit.error_message();
    EXPECT_LT(took, kFast) << "hit " << i;
    grpc::Status miss = server.Lookup(absl::StrCat("absent-", i), absl::InfiniteDuration(), &took);
    EXPECT_EQ(miss.error_code(), grpc::StatusCode::NOT_FOUND) << miss.error_message();
    EXPECT_LT(took, kFast) << "miss " << i;
    grpc::Status put = server.Put(absl::StrCat("during-", i), &took);
    EXPECT_TRUE(put.ok()) << put.error_message();
    EXPECT_LT(took, kFast) << "put " << i;
  }
  EXPECT_TRUE(server.Lookup("during-0").ok());
}

// A registry-only server: once health says NOT_SERVING, misses are NOT_FOUND
// and puts UNAVAILABLE within a second; a lookup that was already waiting on
// the registry (no deadline of its own, no server cap) ends when the probe
// fails instead of when the registry wakes. Once the registry answers again,
// calls reach it again.
TEST(HungRegistryTest, RegistryOnlyServerFailsFastOnceHealthFails) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/hung/only", "--no_dir",
                                 "--health_interval=1s", "--registry_timeout=0"});
  ASSERT_TRUE(d.ok()) << d.status();
  Server server(**d);
  absl::Duration took;
  ASSERT_TRUE(server.Put("kept", &took).ok());

  grpc::Status waiting;
  absl::Time waiting_ended;
  std::thread waiter;
  {
    Paused paused((*reg)->pid());
    waiter = std::thread([&] {
      waiting = server.Lookup("waiting");
      waiting_ended = absl::Now();
    });
    ASSERT_TRUE(server.AwaitHealth(HealthCheckResponse::NOT_SERVING, absl::Seconds(30)))
        << (*d)->Stderr();
    absl::Time not_serving = absl::Now();
    waiter.join();
    EXPECT_EQ(waiting.error_code(), grpc::StatusCode::NOT_FOUND) << waiting.error_message();
    EXPECT_LT(waiting_ended - not_serving, absl::Seconds(3));

    for (int i = 0; i < 3; ++i) {
      grpc::Status miss = server.Lookup(absl::StrCat("absent-", i), absl::InfiniteDuration(), &took);
      EXPECT_EQ(miss.error_code(), grpc::StatusCode::NOT_FOUND) << miss.error_message();
      EXPECT_LT(took, kFast) << "miss " << i;
      grpc::Status put = server.Put(absl::StrCat("during-", i), &took);
      EXPECT_EQ(put.error_code(), grpc::StatusCode::UNAVAILABLE) << put.error_message();
      EXPECT_LT(took, kFast) << "put " << i;
    }
  }
  // The registry answers again: within a couple of seconds calls reach it.
  absl::Time end = absl::Now() + absl::Seconds(10);
  grpc::Status hit;
  while (absl::Now() < end && !(hit = server.Lookup("kept")).ok()) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(hit.ok()) << hit.error_message();
}

// Callers that give up (a 1 s deadline) free the server: every one of their
// calls ends on the server within a few seconds of the deadline, long before
// the registry would answer, with no health probe to help (it runs hourly
// here) and no server cap.
TEST(HungRegistryTest, CallsEndWhenTheirCallersGiveUp) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/hung/deadline", "--no_dir",
                                 "--health_interval=1h", "--registry_timeout=0"});
  ASSERT_TRUE(d.ok()) << d.status();
  Server server(**d);
  ASSERT_EQ(server.Lookup("warm-up").error_code(), grpc::StatusCode::NOT_FOUND);
  const int before = LoggedCalls(**d, "Entries/Lookup");

  Paused paused((*reg)->pid());
  constexpr int kCallers = 24;
  std::vector<std::thread> callers;
  std::atomic<int> deadline_exceeded{0};
  absl::Mutex others_mu;
  std::string others;  // what the callers that did not time out got
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      absl::Duration took;
      grpc::Status s = server.Lookup(absl::StrCat("gone-", i), absl::Seconds(1), &took);
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        ++deadline_exceeded;
      } else {
        absl::MutexLock l(&others_mu);
        absl::StrAppend(&others, "caller ", i, ": code ", s.error_code(), " \"", s.error_message(),
                        "\" after ", absl::FormatDuration(took), "; ");
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(deadline_exceeded.load(), kCallers) << others << "\n" << (*d)->Stderr();
  absl::Time end = absl::Now() + absl::Seconds(5);
  int ended = 0;
  while (absl::Now() < end && (ended = LoggedCalls(**d, "Entries/Lookup") - before) < kCallers) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(ended, kCallers) << (*d)->Stderr();
}

// The server's cap: a lookup with no deadline of its own on a hung registry
// ends after --registry_timeout as a miss, and the lookups after it do not
// wait again.
TEST(HungRegistryTest, ServerCapEndsTheWait) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/hung/cap", "--no_dir",
                                 "--health_interval=1h", "--registry_timeout=2s"});
  ASSERT_TRUE(d.ok()) << d.status();
  Server server(**d);
  ASSERT_EQ(server.Lookup("warm-up").error_code(), grpc::StatusCode::NOT_FOUND);

  Paused paused((*reg)->pid());
  absl::Duration took;
  grpc::Status first = server.Lookup("first", absl::InfiniteDuration(), &took);
  EXPECT_EQ(first.error_code(), grpc::StatusCode::NOT_FOUND) << first.error_message();
  EXPECT_GE(took, absl::Seconds(2) - absl::Milliseconds(50));
  EXPECT_LT(took, absl::Seconds(6));
  for (int i = 0; i < 3; ++i) {
    grpc::Status next = server.Lookup(absl::StrCat("next-", i), absl::InfiniteDuration(), &took);
    EXPECT_EQ(next.error_code(), grpc::StatusCode::NOT_FOUND) << next.error_message();
    EXPECT_LT(took, kFast) << "lookup " << i;
  }
}

}  // namespace
}  // namespace ocicache
