// The HTTP server over a store that fails a read after its last byte (as the
// stores do when a digest check fails at the end): the client must never get
// a complete body then. And the event loop: a read that waits on a remote runs
// apart from it, so other connections are answered meanwhile, and Stop ends
// such a read.
#include "pkg/httpcache/server.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/cache/forwarding_store.h"
#include "gtest/gtest.h"
#include "pkg/httpcache/handler.h"
#include "pkg/httpcache/uncorked.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/reapi/instance.h"
#include "test/harness/http_client.h"

namespace ocicache::httpcache {
namespace {

// A LayoutStore whose blob reads deliver every byte, then fail (DataLoss) when
// `corrupt` is set; no blob files to send as they are.
class EndFailingStore : public cache::ForwardingStore {
 public:
  explicit EndFailingStore(std::unique_ptr<cache::Store> s) : ForwardingStore(std::move(s)) {}
  bool corrupt = false;
  // Lookups of keys containing "slow" act as a remote's: a call that must not
  // wait is refused (base::LocalOnly); others wait for `release` (ending
  // early when their call's scope ends) and then answer as the store does.
  absl::Notification release;
  std::atomic<int> slow_waiting{0};
  std::atomic<int> refused{0};

  absl::Status ReadBlob(const oci::Digest& d, int64_t offset, oci::ByteSink& sink) override {
    absl::Status st = ForwardingStore::ReadBlob(d, offset, sink);
    if (st.ok() && corrupt) return absl::DataLossError("digest mismatch after the last byte");
    return st;
  }
  absl::StatusOr<cache::Entry> Lookup(absl::string_view key,
                                      const cache::LookupOptions& o) override {
    if (absl::StrContains(key, "slow")) {
      if (base::LocalOnly()) {
        ++refused;
        return absl::NotFoundError("not asked: the call must not wait");
      }
      ++slow_waiting;
      const base::CallScope* scope = base::CallScope::Current();
      while (!release.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
        if (scope != nullptr) {
          if (absl::Status s = scope->Check(); !s.ok()) {
            --slow_waiting;
            return s;
          }
        }
      }
      --slow_waiting;
    }
    return ForwardingStore::Lookup(key, o);
  }
  std::string Describe() const override { return "end-failing " + ForwardingStore::Describe(); }
};

std::string TempDir() {
  std::string t = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                               "/httpsrv-XXXXXX");
  return mkdtemp(t.data());
}

struct Served {
  std::unique_ptr<EndFailingStore> store;
  std::unique_ptr<reapi::Instances> instances;
  std::unique_ptr<Handler> handler;
  std::unique_ptr<HttpServer> http;
};

std::unique_ptr<Served> Serve(int event_threads = 2) {
  auto s = std::make_unique<Served>();
  auto layout = layout::LayoutStore::Open(TempDir());
  EXPECT_TRUE(layout.ok()) << layout.status();
  if (!layout.ok()) return nullptr;
  s->store = std::make_unique<EndFailingStore>(*std::move(layout));
  s->instances = std::make_unique<reapi::Instances>(s->store.get(), nullptr, reapi::InstanceOptions{});
  s->handler = std::make_unique<Handler>(s->store.get(), s->instances.get(), nullptr, nullptr,
                                         HandlerOptions{});
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.max_body_bytes = 64 << 20;
  o.event_threads = event_threads;
  auto h = HttpServer::Start(s->handler.get(), o);
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok()) return nullptr;
  s->http = *std::move(h);
  return s;
}

TEST(HttpServerTest, ABodyIsNeverCompleteWhenItsReadFailsAtTheEnd) {
  auto s = Serve();
  ASSERT_NE(s, nullptr);
  std::string big(3 << 20, 'b');  // streamed (over the 1 MiB buffered limit)
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  harness::HttpCall put;
  put.method = "PUT";
  put.url = s->http->url() + "/cache/ns/big";
  put.body = big;
  auto r = harness::HttpDo(put);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200);
  harness::HttpCall get;
  get.url = s->http->url() + "/cache/ns/big";
  auto good = harness::HttpDo(get);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(good->body == big);
  // The same read failing after its last byte: the transfer is cut short.
  s->store->corrupt = true;
  auto bad = harness::HttpDo(get);
  if (bad.ok()) {
    EXPECT_NE(bad->body, big) << "a complete body although the read failed";
  } else {
    EXPECT_TRUE(absl::IsUnavailable(bad.status())) << bad.status();
  }
  // CAS blobs take the same path.
  s->store->corrupt = false;
  put.url = s->http->url() + "/cas/" + oci::Digest::Of(big).hex();
  ASSERT_EQ(harness::HttpDo(put)->status, 200);
  s->store->corrupt = true;
  get.url = put.url;
  auto bad_cas = harness::HttpDo(get);
  EXPECT_TRUE(!bad_cas.ok() || bad_cas->body != big);
}

harness::HttpReply Call(const std::string& method, const std::string& url,
                       const std::string& body = "") {
  harness::HttpCall c;
  c.method = method;
  c.url = url;
  c.body = body;
  c.timeout_ms = 5000;
  auto r = harness::HttpDo(c);
  EXPECT_TRUE(r.ok()) << method << " " << url << ": " << r.status();
  return r.ok() ? *r : harness::HttpReply{};
}

bool WaitFor(const std::function<bool()>& cond) {
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return cond();
}

TEST(HttpServerTest, AReadThatWaitsOnTheRemoteHoldsUpNoOtherConnection) {
  auto s = Serve(/*event_threads=*/1);  // one loop: any wait in it would hold up all
  ASSERT_NE(s, nullptr);
  const std::string base = s->http->url() + "/cache/ns/";
  ASSERT_EQ(Call("PUT", base + "fast", "local bytes").status, 200);
  ASSERT_EQ(Call("PUT", base + "slow", "remote bytes").status, 200);
  std::vector<std::thread> slow;
  std::vector<harness::HttpReply> slow_replies(3);
  for (int i = 0; i < 3; ++i) {
    slow.emplace_back([&, i] { slow_replies[i] = Call("GET", base + "slow"); });
  }
  // Tried on the event loop, refused there, then waiting on workers.
  ASSERT_TRUE(WaitFor([&] { return s->store->slow_waiting.load() == 3; }));
  EXPECT_GE(s->store->refused.load(), 3);
  // Meanwhile other connections get their answers, from the one event loop.
  for (int i = 0; i < 20; ++i) {
    auto r = Call("GET", base + "fast");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "local bytes");
  }
  EXPECT_EQ(Call("GET", base + "missing").status, 404);
  std::string big(3 << 20, 'x');  // streamed both ways through the loop
  EXPECT_EQ(Call("PUT", base + "big", big).status, 200);
  EXPECT_TRUE(Call("GET", base + "big").body == big);
  EXPECT_EQ(s->store->slow_waiting.load(), 3);
  s->store->release.Notify();
  for (auto& t : slow) t.join();
  for (const auto& r : slow_replies) {
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "remote bytes");
  }
}

// Each open plain connection is registered as never corked (uncorked.h) from
// its start until it closes, so a large body goes out uncorked.
TEST(HttpServerTest, AConnectionIsNeverCorkedWhileOpen) {
  auto s = Serve();
  ASSERT_NE(s, nullptr);
  const std::string base = s->http->url() + "/cache/ns/";
  ASSERT_EQ(Call("PUT", base + "slow", "remote bytes").status, 200);
  ASSERT_TRUE(WaitFor([&] { return NeverCorkedCount() == 0; }));
  std::thread client([&] {
    auto r = Call("GET", base + "slow");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "remote bytes");
  });
  ASSERT_TRUE(WaitFor([&] { return s->store->slow_waiting.load() == 1; }));
  EXPECT_EQ(NeverCorkedCount(), 1u);
  s->store->release.Notify();
  client.join();
  EXPECT_TRUE(WaitFor([&] { return NeverCorkedCount() == 0; }));
  std::string big(3 << 20, 'x');
  EXPECT_EQ(Call("PUT", base + "big", big).status, 200);
  EXPECT_TRUE(Call("GET", base + "big").body == big);
  EXPECT_TRUE(WaitFor([&] { return NeverCorkedCount() == 0; }));
}

TEST(HttpServerTest, StopEndsAReadWaitingOnTheRemote) {
  auto s = Serve();
  ASSERT_NE(s, nullptr);
  const std::string url = s->http->url() + "/cache/ns/slow";
  ASSERT_EQ(Call("PUT", url, "remote bytes").status, 200);
  std::thread client([&] {
    harness::HttpCall c;
    c.url = url;
    c.timeout_ms = 20000;
    auto r = harness::HttpDo(c);
    // Cut off, or answered as a miss: never the body, never a hang.
    if (r.ok()) EXPECT_NE(r->status, 200);
  });
  ASSERT_TRUE(WaitFor([&] { return s->store->slow_waiting.load() == 1; }));
  absl::Time start = absl::Now();
  s->http->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(s->store->slow_waiting.load(), 0);
  client.join();
}

}  // namespace
}  // namespace ocicache::httpcache
