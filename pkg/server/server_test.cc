#include "pkg/server/server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>

#include "gtest/gtest.h"
#include "pkg/cache/forwarding_store.h"
#include "pkg/client/grpc_store.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::server {
namespace {

std::string TempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/server-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

// A store whose lookups take `delay` and say when they started; the rest is a
// LayoutStore's.
class SlowStore : public cache::ForwardingStore {
 public:
  static std::unique_ptr<SlowStore> Open(absl::Duration delay) {
    auto base = layout::LayoutStore::Open(TempDir());
    if (!base.ok()) return nullptr;
    return std::unique_ptr<SlowStore>(new SlowStore(*std::move(base), delay));
  }
  std::string Describe() const override { return "slow"; }
  absl::StatusOr<cache::Entry> Lookup(absl::string_view key,
                                      const cache::LookupOptions& opts) override {
    if (!started.HasBeenNotified()) started.Notify();
    absl::SleepFor(delay_);
    return absl::NotFoundError(absl::StrCat("slow miss: ", key));
  }
  absl::Notification started;

 private:
  SlowStore(std::unique_ptr<layout::LayoutStore> base, absl::Duration delay)
      : ForwardingStore(std::move(base)), delay_(delay) {}
  absl::Duration delay_;
};

absl::StatusOr<std::unique_ptr<CacheServer>> Serve(std::unique_ptr<cache::Store> store,
                                                   ServerOptions opts = {}) {
  stores::StoreSet set;
  set.store = std::move(store);
  opts.listen = "127.0.0.1:0";
  return CacheServer::Start(std::move(set), std::move(opts));
}

TEST(CacheServerTest, ReportsItsPortAndProbes) {
  auto local = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(local.ok());
  std::atomic<int> probes{0};
  std::atomic<bool> healthy{true};
  ServerOptions opts;
  opts.health_interval = absl::Milliseconds(50);
  opts.probe = [&]() -> absl::Status {
    ++probes;
    return healthy ? absl::OkStatus() : absl::UnavailableError("down");
  };
  auto s = Serve(*std::move(local), opts);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT((*s)->port(), 0);
  EXPECT_EQ((*s)->address(), absl::StrCat("127.0.0.1:", (*s)->port()));
  EXPECT_TRUE((*s)->serving());
  healthy = false;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*s)->serving() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE((*s)->serving());
  EXPECT_GE(probes.load(), 2);
  EXPECT_GE((*s)->counters().backend_errors.load(), 1);
}

TEST(CacheServerTest, PortInUse) {
  auto a = Serve(*layout::LayoutStore::Open(TempDir()));
  ASSERT_TRUE(a.ok());
  stores::StoreSet set;
  set.store = *layout::LayoutStore::Open(TempDir());
  ServerOptions opts;
  opts.listen = (*a)->address();
  auto b = CacheServer::Start(std::move(set), opts);
  EXPECT_FALSE(b.ok());
}

// Shutdown lets a call in flight finish within the grace period, and refuses new ones.
TEST(CacheServerTest, ShutdownDrains) {
  auto store = SlowStore::Open(absl::Milliseconds(500));
  ASSERT_NE(store, nullptr);
  SlowStore* slow = store.get();
  auto s = Serve(std::move(store));
  ASSERT_TRUE(s.ok()) << s.status();
  std::string addr = (*s)->address();
  client::GrpcStore c(client::Dial(addr), addr);
  absl::Status in_flight;
  std::thread t([&] { in_flight = c.Lookup("k", {}).status(); });
  slow->started.WaitForNotification();
  (*s)->Shutdown(absl::Seconds(5));
  t.join();
  EXPECT_TRUE(absl::IsNotFound(in_flight)) << in_flight;
  EXPECT_EQ(in_flight.message(), "slow miss: k");
  client::GrpcStore late(client::Dial(addr), addr);
  EXPECT_TRUE(absl::IsUnavailable(late.Lookup("k", {}).status()));
}

// After the grace period, calls still in flight are cancelled.
TEST(CacheServerTest, ShutdownCancelsAfterGrace) {
  auto store = SlowStore::Open(absl::Seconds(2));
  ASSERT_NE(store, nullptr);
  SlowStore* slow = store.get();
  auto s = Serve(std::move(store));
  ASSERT_TRUE(s.ok()) << s.status();
  std::string addr = (*s)->address();
  client::GrpcStore c(client::Dial(addr), addr);
  absl::Status in_flight;
  absl::Time done;
  std::thread t([&] {
    in_flight = c.Lookup("k", {}).status();
    done = absl::Now();
  });
  slow->started.WaitForNotification();
  absl::Time start = absl::Now();
  (*s)->Shutdown(absl::Milliseconds(100));
  t.join();
  EXPECT_FALSE(in_flight.ok());
  EXPECT_FALSE(absl::IsNotFound(in_flight)) << in_flight;
  EXPECT_LT(done - start, absl::Seconds(1.5));
}

// One request on a bidi-streaming method, raw bytes in and out (the callback
// API: the reflection protocol's generated classes are inside gRPC's library).
class RawBidiCall : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawBidiCall(grpc::GenericStub* stub, const std::string& method, const std::string& request) {
    grpc::Slice slice(request);
    request_ = grpc::ByteBuffer(&slice, 1);
    stub->PrepareBidiStreamingCall(&ctx_, method, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&buf_);
    StartCall();
  }
  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    std::vector<grpc::Slice> slices;
    if (buf_.Dump(&slices).ok()) {
      for (const auto& sl : slices) response_.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    StartRead(&buf_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }
  bool Wait() { return done_.WaitForNotificationWithTimeout(absl::Seconds(30)); }
  const grpc::Status& status() const { return status_; }
  const std::string& response() const { return response_; }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_, buf_;
  std::string response_;
  grpc::Status status_;
  absl::Notification done_;
};

// Reflection lists the services, so grpcurl works without the .proto files.
TEST(CacheServerTest, Reflection) {
  auto s = Serve(*layout::LayoutStore::Open(TempDir()));
  ASSERT_TRUE(s.ok()) << s.status();
  grpc::GenericStub stub(client::Dial((*s)->address()));
  // ServerReflectionRequest{list_services: ""}: field 7, length 0.
  RawBidiCall call(&stub, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                   std::string("\x3a\x00", 2));
  ASSERT_TRUE(call.Wait());
  EXPECT_TRUE(call.status().ok()) << call.status().error_message();
  for (const char* name : {"ocicache.v1.Entries", "ocicache.v1.Blobs", "ocicache.v1.Admin",
                           "grpc.health.v1.Health"}) {
    EXPECT_NE(call.response().find(name), std::string::npos) << name;
  }
}

// Issue 11, defect 8: a request with invalid UTF-8 in a string field never
// reaches a handler (proto3 parsing refuses it); gRPC answered INTERNAL with no
// message and nothing was logged. Now INVALID_ARGUMENT, with a log line.
TEST(CacheServerTest, RequestsThatDoNotParseAreInvalidArgument) {
  auto local = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(local.ok());
  absl::Mutex mu;
  std::vector<std::string> lines;
  ServerOptions opts;
  opts.service.access_log = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    lines.emplace_back(line);
  };
  auto s = Serve(*std::move(local), opts);
  ASSERT_TRUE(s.ok()) << s.status();
  grpc::GenericStub stub(client::Dial((*s)->address()));
  // Field 1 (LookupRequest.key; FindMissingBlobsRequest.instance_name), 2 bytes, not UTF-8.
  const std::string bad("\x0a\x02\xff\xfe", 4);
  for (const char* method : {"/ocicache.v1.Entries/Lookup",
                             "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"}) {
    RawBidiCall call(&stub, method, bad);
    ASSERT_TRUE(call.Wait()) << method;
    EXPECT_EQ(call.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_NE(call.status().error_message().find("not valid UTF-8"), std::string::npos)
        << method << ": " << call.status().error_message();
  }
  {
    absl::MutexLock l(&mu);
    int logged = 0;
    for (const auto& line : lines) logged += line.find("INVALID_ARGUMENT") != std::string::npos;
    EXPECT_GE(logged, 2);
  }
  // A well-formed request still reaches its handler (a miss, not a parse error).
  RawBidiCall good(&stub, "/ocicache.v1.Entries/Lookup", std::string("\x0a\x02ok", 4));
  ASSERT_TRUE(good.Wait());
  EXPECT_EQ(good.status().error_code(), grpc::StatusCode::NOT_FOUND) << good.status().error_message();
}

// Issue 11, defect 3: with its fds nearly exhausted every Put failed with "Too
// many open files" while health said SERVING. Health now counts fds.
TEST(CacheServerTest, HealthCountsFileDescriptors) {
  auto local = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(local.ok());
  ServerOptions opts;
  opts.health_interval = absl::Milliseconds(20);
  opts.probe = [] { return absl::OkStatus(); };
  auto srv = Serve(*std::move(local), opts);
  ASSERT_TRUE(srv.ok()) << srv.status();
  EXPECT_TRUE((*srv)->serving());
  ResourceUsage before = MeasureResources("");
  ASSERT_GT(before.open_fds, 0);
  EXPECT_EQ(before.open_fds, (*srv)->resources().open_fds);

  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = before.open_fds + 40;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> fds;
  while (fds.size() < 38) {
    int fd = dup(0);
    if (fd < 0) break;
    fds.push_back(fd);
  }
  auto wait_for = [&](bool want) {
    for (int i = 0; i < 200 && (*srv)->serving() != want; ++i) absl::SleepFor(absl::Milliseconds(10));
    return (*srv)->serving() == want;
  };
  EXPECT_TRUE(wait_for(false)) << "NOT_SERVING expected with " << fds.size() << " extra fds";
  EXPECT_GT((*srv)->resources().open_fds, before.open_fds + 30);
  for (int fd : fds) close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(wait_for(true));
}

TEST(Resources, FullDiskAndFdFigures) {
  ResourceLimits limits;
  ResourceUsage u;
  u.open_fds = 10;
  u.max_fds = 1024;
  u.disk_size_bytes = int64_t{100} << 30;
  u.disk_free_bytes = int64_t{10} << 30;
  EXPECT_TRUE(CheckResources(u, limits).ok());
  EXPECT_EQ(MinFreeBytes(u, limits), (int64_t{100} << 30) / 100);  // 1% of 100 GiB
  u.disk_free_bytes = 100 << 20;
  absl::Status s = CheckResources(u, limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("disk is full: 100 MiB free"), std::string::npos) << s;
  u.disk_free_bytes = int64_t{10} << 30;
  u.open_fds = 1000;
  s = CheckResources(u, limits);
  EXPECT_NE(s.message().find("1000 of 1024 file descriptors"), std::string::npos) << s;
  // A small filesystem (a test's tmpfs) keeps an eighth free, not 64 MiB.
  ResourceUsage small;
  small.disk_size_bytes = 64 << 20;
  EXPECT_EQ(MinFreeBytes(small, limits), 8 << 20);
  // Nothing measured: nothing to report.
  EXPECT_TRUE(CheckResources(ResourceUsage(), limits).ok());
}

}  // namespace
}  // namespace ocicache::server
