// The HTTP server over a store that fails a read after its last byte (as the
// stores do when a digest check fails at the end): the client must never get
// a complete body then. Also: a refused request with a large body is
// answered before the body is read.
#include "pkg/httpcache/server.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/httpcache/handler.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/reapi/instance.h"
#include "test/harness/http_client.h"

namespace ocicache::httpcache {
namespace {

// A LayoutStore whose blob reads deliver every byte, then fail (DataLoss) when
// `corrupt` is set; no blob files to send as they are.
class EndFailingStore : public cache::Store {
 public:
  explicit EndFailingStore(std::unique_ptr<cache::Store> s) : s_(std::move(s)) {}
  bool corrupt = false;

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& d) override { return s_->StatBlob(d); }
  absl::Status ReadBlob(const oci::Digest& d, int64_t offset, oci::ByteSink& sink) override {
    absl::Status st = s_->ReadBlob(d, offset, sink);
    if (st.ok() && corrupt) return absl::DataLossError("digest mismatch after the last byte");
    return st;
  }
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& e, int64_t size,
                                            oci::ByteSource& src) override {
    return s_->WriteBlob(e, size, src);
  }
  absl::Status MountBlob(const cache::Location& from) override { return s_->MountBlob(from); }
  absl::StatusOr<cache::Entry> Lookup(absl::string_view key,
                                      const cache::LookupOptions& o) override {
    return s_->Lookup(key, o);
  }
  absl::Status Put(const cache::Entry& e) override { return s_->Put(e); }
  absl::Status Delete(absl::string_view key) override { return s_->Delete(key); }
  absl::Status List(const std::function<bool(const cache::EntryInfo&)>& fn) override {
    return s_->List(fn);
  }
  std::string Describe() const override { return "end-failing " + s_->Describe(); }

 private:
  std::unique_ptr<cache::Store> s_;
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

std::unique_ptr<Served> Serve() {
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

}  // namespace
}  // namespace ocicache::httpcache
