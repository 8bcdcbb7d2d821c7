// Malformed requests to every RPC of ocicache.v1 get an error status, never a
// crash; resumable writes, reads with offsets and limits, batch calls; garbage
// bytes on the port leave the server answering.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/cache/format.h"
#include "pkg/client/grpc_store.h"
#include "pkg/rpc/auth.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using grpc::StatusCode;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 127.0.0.1:1 (nothing listens there) may be named as a Mount target.
    auto s = testing::ServeLayout({}, {"127.0.0.1:1"});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    channel_ = client::Dial(store_->server().address());
    entries_ = v1::Entries::NewStub(channel_);
    blobs_ = v1::Blobs::NewStub(channel_);
    admin_ = v1::Admin::NewStub(channel_);
  }

  // A blob in the store.
  oci::Digest Blob(const std::string& data) {
    oci::StringSource src(data);
    auto d = store_->WriteBlob(oci::Digest(), -1, src);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? d->digest : oci::Digest();
  }

  // Sends `msgs` on a Write stream (WritesDone after them) and returns the status.
  grpc::Status Write(const std::vector<v1::WriteRequest>& msgs, v1::WriteResponse* resp) {
    grpc::ClientContext ctx;
    auto w = blobs_->Write(&ctx, resp);
    for (const auto& m : msgs) {
      if (!w->Write(m)) break;
    }
    w->WritesDone();
    return w->Finish();
  }

  // Reads a whole Read stream.
  grpc::Status Read(const v1::ReadRequest& req, std::string* out, int* messages = nullptr) {
    grpc::ClientContext ctx;
    auto r = blobs_->Read(&ctx, req);
    v1::ReadResponse msg;
    int n = 0;
    while (r->Read(&msg)) {
      out->append(msg.data());
      ++n;
    }
    if (messages != nullptr) *messages = n;
    return r->Finish();
  }

  // The server still answers.
  void ExpectAlive() {
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_key("still-alive?");
    v1::Entry e;
    EXPECT_EQ(entries_->Lookup(&ctx, req, &e).error_code(), StatusCode::NOT_FOUND);
  }

  std::unique_ptr<testing::ServedStore> store_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Entries::Stub> entries_;
  std::unique_ptr<v1::Blobs::Stub> blobs_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

v1::WriteRequest Msg(int64_t offset, const std::string& data, bool finish) {
  v1::WriteRequest m;
  m.set_write_offset(offset);
  m.set_data(data);
  m.set_finish_write(finish);
  return m;
}

v1::WriteRequest First(const std::string& digest, int64_t size, int64_t offset,
                       const std::string& data, bool finish, const std::string& upload_id = "") {
  v1::WriteRequest m = Msg(offset, data, finish);
  m.set_digest(digest);
  m.set_size(size);
  m.set_upload_id(upload_id);
  return m;
}

TEST_F(BadInputTest, Lookup) {
  for (const std::string& key : {std::string(), std::string("a\nb"), std::string("nul\0x", 5),
                                 std::string(5000, 'k')}) {
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_key(key);
    v1::Entry e;
    EXPECT_EQ(entries_->Lookup(&ctx, req, &e).error_code(), StatusCode::INVALID_ARGUMENT) << key.size();
  }
  ExpectAlive();
}

TEST_F(BadInputTest, BatchLookup) {
  cache::Entry e;
  e.key = "present";
  e.blobs.push_back({});
  e.blobs[0].digest = Blob("batch blob");
  e.blobs[0].size = 10;
  ASSERT_TRUE(store_->Put(e).ok());
  {
    grpc::ClientContext ctx;
    v1::BatchLookupRequest req;
    for (int i = 0; i < 1001; ++i) req.add_keys(absl::StrCat("k", i));
    v1::BatchLookupResponse resp;
    EXPECT_EQ(entries_->BatchLookup(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  grpc::ClientContext ctx;
  v1::BatchLookupRequest req;
  req.add_keys("absent");
  req.add_keys("");
  req.add_keys("present");
  for (int i = 0; i < 100; ++i) req.add_keys(absl::StrCat("many/", i));
  v1::BatchLookupResponse resp;
  ASSERT_TRUE(entries_->BatchLookup(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 103);
  EXPECT_EQ(resp.results(0).code(), static_cast<int>(StatusCode::NOT_FOUND));
  EXPECT_EQ(resp.results(1).code(), static_cast<int>(StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(resp.results(2).code(), 0);
  EXPECT_EQ(resp.results(2).key(), "present");
  EXPECT_EQ(resp.results(2).entry().blobs_size(), 1);
  EXPECT_EQ(resp.results(102).key(), "many/99");
}

TEST_F(BadInputTest, Put) {
  oci::Digest d = Blob("put blob");
  auto put = [&](const v1::PutRequest& req) {
    grpc::ClientContext ctx;
    v1::PutResponse resp;
    return entries_->Put(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(put(v1::PutRequest()), StatusCode::INVALID_ARGUMENT);  // no entry
  v1::PutRequest good;
  good.mutable_entry()->set_key("k");
  auto* b = good.mutable_entry()->add_blobs();
  b->set_digest(d.str());
  b->set_size(8);
  b->set_media_type("application/octet-stream");

  v1::PutRequest bad = good;
  bad.mutable_entry()->set_key("");
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_digest("sha256:short");
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_digest("");
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_size(-1);
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_digest(oci::Digest::Of("absent").str());
  EXPECT_EQ(put(bad), StatusCode::FAILED_PRECONDITION);
  bad = good;
  bad.mutable_entry()->set_config("not json");
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_created()->set_nanos(2000000000);
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  auto* loc = bad.mutable_entry()->add_locations();
  loc->set_digest("md5:abc");
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  for (int i = 0; i < 3000; ++i) (*bad.mutable_entry()->mutable_annotations())[absl::StrCat("a", i)] = std::string(100, 'v');
  EXPECT_NE(put(bad), StatusCode::OK);  // manifest over 256 KiB
  EXPECT_EQ(put(good), StatusCode::OK);
  ExpectAlive();
}

TEST_F(BadInputTest, DeleteAndList) {
  {
    grpc::ClientContext ctx;
    v1::DeleteRequest req;
    v1::DeleteResponse resp;
    EXPECT_EQ(entries_->Delete(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteRequest req;
    req.set_key("never stored");
    v1::DeleteResponse resp;
    EXPECT_EQ(entries_->Delete(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ListRequest req;
    req.set_page_size(-1);
    auto r = entries_->List(&ctx, req);
    v1::ListResponse page;
    while (r->Read(&page)) {
    }
    EXPECT_EQ(r->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
  }
  oci::Digest d = Blob("list blob");
  for (int i = 0; i < 5; ++i) {
    cache::Entry e;
    e.key = absl::StrCat("list/", i);
    e.blobs.push_back({});
    e.blobs[0].digest = d;
    e.blobs[0].size = 9;
    ASSERT_TRUE(store_->Put(e).ok());
  }
  grpc::ClientContext ctx;
  v1::ListRequest req;
  req.set_page_size(2);
  auto r = entries_->List(&ctx, req);
  v1::ListResponse page;
  int pages = 0, entries = 0;
  while (r->Read(&page)) {
    ++pages;
    entries += page.entries_size();
    EXPECT_LE(page.entries_size(), 2);
  }
  EXPECT_TRUE(r->Finish().ok());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(entries, 5);
}

TEST_F(BadInputTest, Stat) {
  oci::Digest d = Blob("stat blob");
  auto stat = [&](const v1::StatRequest& req, v1::StatResponse* resp) {
    grpc::ClientContext ctx;
    return blobs_->Stat(&ctx, req, resp).error_code();
  };
  v1::StatResponse resp;
  v1::StatRequest req;
  req.add_blobs()->set_digest("sha256:zz");
  EXPECT_EQ(stat(req, &resp), StatusCode::INVALID_ARGUMENT);
  req.Clear();
  req.add_blobs();  // no digest
  EXPECT_EQ(stat(req, &resp), StatusCode::INVALID_ARGUMENT);
  req.Clear();
  auto* neg = req.add_blobs();
  neg->set_digest(d.str());
  neg->set_size(-3);
  EXPECT_EQ(stat(req, &resp), StatusCode::INVALID_ARGUMENT);
  req.Clear();
  for (int i = 0; i < 1001; ++i) req.add_blobs()->set_digest(d.str());
  EXPECT_EQ(stat(req, &resp), StatusCode::INVALID_ARGUMENT);

  req.Clear();
  req.add_blobs()->set_digest(d.str());                            // present, any size
  auto* wrong = req.add_blobs();                                   // present, other size
  wrong->set_digest(d.str());
  wrong->set_size(99);
  req.add_blobs()->set_digest(oci::Digest::Of("absent").str());    // absent
  resp.Clear();
  ASSERT_EQ(stat(req, &resp), StatusCode::OK);
  ASSERT_EQ(resp.present_size(), 1);
  EXPECT_EQ(resp.present(0).size(), 9);
  EXPECT_EQ(resp.missing_size(), 2);
}

TEST_F(BadInputTest, Read) {
  std::string data(3 * (1 << 20) + 5, 'r');
  for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>(i / 4096);
  oci::Digest d = Blob(data);
  auto read = [&](const std::string& digest, int64_t offset, int64_t limit, std::string* out,
                  int* msgs = nullptr) {
    v1::ReadRequest req;
    req.set_digest(digest);
    req.set_read_offset(offset);
    req.set_read_limit(limit);
    return Read(req, out, msgs).error_code();
  };
  std::string out;
  EXPECT_EQ(read("", 0, 0, &out), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(read("sha256:../../etc/passwd", 0, 0, &out), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(read(d.str(), -1, 0, &out), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(read(d.str(), 0, -1, &out), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(read(oci::Digest::Of("absent").str(), 0, 0, &out), StatusCode::NOT_FOUND);
  EXPECT_EQ(read(d.str(), static_cast<int64_t>(data.size()) + 1, 0, &out), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(read(d.str(), std::numeric_limits<int64_t>::max(), 0, &out), StatusCode::OUT_OF_RANGE);
  out.clear();
  EXPECT_EQ(read(d.str(), static_cast<int64_t>(data.size()), 0, &out), StatusCode::OK);
  EXPECT_TRUE(out.empty());

  int msgs = 0;
  out.clear();
  ASSERT_EQ(read(d.str(), 0, 0, &out, &msgs), StatusCode::OK);
  EXPECT_EQ(out, data);
  EXPECT_EQ(msgs, 4);  // 1 MiB chunks
  out.clear();
  ASSERT_EQ(read(d.str(), 1000, 5000, &out), StatusCode::OK);
  EXPECT_EQ(out, data.substr(1000, 5000));
  out.clear();
  ASSERT_EQ(read(d.str(), data.size() - 10, 1 << 30, &out), StatusCode::OK);
  EXPECT_EQ(out, data.substr(data.size() - 10));
}

TEST_F(BadInputTest, Write) {
  std::string data = "some blob bytes";
  std::string digest = oci::Digest::Of(data).str();
  int64_t n = static_cast<int64_t>(data.size());
  v1::WriteResponse resp;
  EXPECT_EQ(Write({}, &resp).error_code(), StatusCode::INVALID_ARGUMENT);  // empty stream
  EXPECT_EQ(Write({First("sha256:nope", n, 0, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, -7, 0, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, std::numeric_limits<int64_t>::max(), 0, data, true)}, &resp)
                .error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Write({First(digest, n, 5, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);  // must start at 0
  // Wrong digest, short, long, a gap, no finish_write: nothing is stored.
  EXPECT_EQ(Write({First(oci::Digest::Of("other").str(), n, 0, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n + 10, 0, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, 3, 0, data, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n, 0, "some ", false), Msg(9, "bytes", true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First("", -1, 0, "some ", false), Msg(5, "blob", false)}, &resp).error_code(),
            StatusCode::CANCELLED);
  EXPECT_TRUE(absl::IsNotFound(store_->StatBlob(oci::Digest::Of(data)).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->StatBlob(oci::Digest::Of("some blob")).status()));

  // In pieces, then again: the second finishes at once.
  ASSERT_TRUE(Write({First(digest, n, 0, "some ", false), Msg(5, "blob ", false),
                     Msg(10, "bytes", true)},
                    &resp)
                  .ok());
  EXPECT_EQ(resp.committed_size(), n);
  EXPECT_EQ(resp.digest(), digest);
  EXPECT_TRUE(resp.complete());
  v1::WriteResponse again;
  ASSERT_TRUE(Write({First(digest, n, 0, "some ", false)}, &again).ok());
  EXPECT_EQ(again.committed_size(), n);
  EXPECT_TRUE(again.complete());
  ExpectAlive();
}

// A blob of unknown size is cut off at the server's limit.
TEST(BlobLimitTest, UnknownSizeStopsAtTheLimit) {
  server::ServerOptions opts;
  opts.service.max_blob_bytes = 100000;
  auto served = testing::ServeLayout(std::move(opts));
  ASSERT_TRUE(served.ok()) << served.status();
  std::string big(150000, 'L');
  oci::StringSource src(big);
  EXPECT_TRUE(absl::IsResourceExhausted((*served)->WriteBlob(oci::Digest(), -1, src).status()));
  const std::string small_bytes(90000, 's');
  oci::StringSource small(small_bytes);
  EXPECT_TRUE((*served)->WriteBlob(oci::Digest(), -1, small).ok());
  auto stub = v1::Blobs::NewStub(client::Dial((*served)->server().address()));
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  auto w = stub->Write(&ctx, &resp);
  w->Write(First("", -1, 0, big.substr(0, 60000), false, "resumable-big"));
  w->Write(Msg(60000, big.substr(60000, 60000), true));
  w->WritesDone();
  EXPECT_EQ(w->Finish().error_code(), StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(BadInputTest, ResumableWrite) {
  std::string data(200000, 'z');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  std::string digest = oci::Digest::Of(data).str();
  int64_t n = static_cast<int64_t>(data.size());
  auto query = [&](const std::string& id, v1::QueryWriteResponse* resp) {
    grpc::ClientContext ctx;
    v1::QueryWriteRequest req;
    req.set_upload_id(id);
    return blobs_->QueryWrite(&ctx, req, resp).error_code();
  };
  v1::QueryWriteResponse q;
  EXPECT_EQ(query("", &q), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(query("never-started", &q), StatusCode::NOT_FOUND);
  v1::WriteResponse resp;
  EXPECT_EQ(Write({First(digest, n, 0, "x", false, std::string(1000, 'u'))}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);

  // The first stream sends 70000 bytes and stops without finish_write.
  ASSERT_TRUE(Write({First(digest, n, 0, data.substr(0, 50000), false, "job-1"),
                     Msg(50000, data.substr(50000, 20000), false)},
                    &resp)
                  .ok());
  EXPECT_EQ(resp.committed_size(), 70000);
  EXPECT_FALSE(resp.complete());
  ASSERT_EQ(query("job-1", &q), StatusCode::OK);
  EXPECT_EQ(q.committed_size(), 70000);
  EXPECT_FALSE(q.complete());
  EXPECT_TRUE(absl::IsNotFound(store_->StatBlob(oci::Digest::Of(data)).status()));

  // Past the committed size, another blob under the same id, a gap: refused.
  EXPECT_EQ(Write({First(digest, n, 80000, "x", false, "job-1")}, &resp).error_code(),
            StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Write({First(oci::Digest::Of("x").str(), 1, 0, "x", true, "job-1")}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n, 70000, "abc", false, "job-1"), Msg(90000, "x", false)}, &resp)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  // That attempt staged 3 wrong bytes; rewind to 70000 and finish from there.
  ASSERT_EQ(query("job-1", &q), StatusCode::OK);
  EXPECT_EQ(q.committed_size(), 70003);
  ASSERT_TRUE(Write({First(digest, n, 70000, data.substr(70000, 1000), false, "job-1"),
                     Msg(71000, data.substr(71000), true)},
                    &resp)
                  .ok());
  EXPECT_TRUE(resp.complete());
  EXPECT_EQ(resp.committed_size(), n);
  EXPECT_EQ(resp.digest(), digest);
  ASSERT_EQ(query("job-1", &q), StatusCode::OK);
  EXPECT_TRUE(q.complete());
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE(store_->ReadBlob(oci::Digest::Of(data), 0, sink).ok());
  EXPECT_EQ(back, data);

  // A resumable upload whose bytes are wrong is discarded at the end.
  EXPECT_EQ(Write({First(oci::Digest::Of("y").str(), 3, 0, "abc", true, "job-2")}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(query("job-2", &q), StatusCode::NOT_FOUND);
}

TEST_F(BadInputTest, Mount) {
  auto mount = [&](const v1::MountRequest& req, v1::MountResponse* resp) {
    grpc::ClientContext ctx;
    return blobs_->Mount(&ctx, req, resp).error_code();
  };
  oci::Digest d = Blob("mount blob");
  v1::MountResponse resp;
  EXPECT_EQ(mount(v1::MountRequest(), &resp), StatusCode::INVALID_ARGUMENT);  // no from
  v1::MountRequest req;
  req.mutable_from()->set_digest(d.str());
  req.mutable_from()->set_size(10);
  EXPECT_EQ(mount(req, &resp), StatusCode::INVALID_ARGUMENT);  // no url
  req.mutable_from()->set_url("https://registry.example/v2/a/blobs/" + d.str());
  v1::MountRequest bad = req;
  bad.mutable_from()->set_digest("sha256:1");
  EXPECT_EQ(mount(bad, &resp), StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.mutable_from()->set_size(-5);
  EXPECT_EQ(mount(bad, &resp), StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.set_key("k");  // a key needs a target
  EXPECT_EQ(mount(bad, &resp), StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.set_target_repository("Not A Repo");
  EXPECT_EQ(mount(bad, &resp), StatusCode::INVALID_ARGUMENT);
  // Present already.
  ASSERT_EQ(mount(req, &resp), StatusCode::OK);
  EXPECT_EQ(resp.placed_by(), v1::MountResponse::ALREADY_PRESENT);
  EXPECT_EQ(resp.location().size(), 10);
  // Absent, and a directory-only cache cannot fetch: an error, not a crash.
  bad = req;
  bad.mutable_from()->set_digest(oci::Digest::Of("absent").str());
  bad.mutable_from()->set_url("https://registry.example/v2/a/blobs/" + bad.from().digest());
  EXPECT_NE(mount(bad, &resp), StatusCode::OK);
  ExpectAlive();
}

TEST_F(BadInputTest, Admin) {
  auto gc = [&](const v1::GarbageCollectRequest& req) {
    grpc::ClientContext ctx;
    auto r = admin_->GarbageCollect(&ctx, req);
    v1::Progress p;
    while (r->Read(&p)) {
    }
    return r->Finish().error_code();
  };
  v1::GarbageCollectRequest req;
  EXPECT_EQ(gc(req), StatusCode::INVALID_ARGUMENT);  // no criterion
  req.set_keep_last(-1);
  EXPECT_EQ(gc(req), StatusCode::INVALID_ARGUMENT);
  req.Clear();
  req.set_older_than_seconds(-5);
  EXPECT_EQ(gc(req), StatusCode::INVALID_ARGUMENT);
  req.Clear();
  req.set_older_than_seconds(3600);
  req.set_dry_run(true);
  EXPECT_EQ(gc(req), StatusCode::OK);

  auto sync = [&](const v1::SyncRequest& req) {
    grpc::ClientContext ctx;
    auto r = admin_->Sync(&ctx, req);
    v1::Progress p;
    while (r->Read(&p)) {
    }
    return r->Finish().error_code();
  };
  v1::SyncRequest s;
  s.set_direction(static_cast<v1::SyncRequest::Direction>(42));
  EXPECT_EQ(sync(s), StatusCode::INVALID_ARGUMENT);
  s.set_direction(v1::SyncRequest::UP);
  EXPECT_EQ(sync(s), StatusCode::FAILED_PRECONDITION);  // no registry

  grpc::ClientContext ctx;
  v1::StatsResponse stats;
  ASSERT_TRUE(admin_->Stats(&ctx, v1::StatsRequest(), &stats).ok());
  EXPECT_NE(stats.store().find("dir:"), std::string::npos);
}

TEST_F(BadInputTest, StatsCountLookups) {
  ExpectAlive();
  ExpectAlive();
  grpc::ClientContext ctx;
  v1::StatsResponse stats;
  ASSERT_TRUE(admin_->Stats(&ctx, v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.lookups(), 2);
  EXPECT_EQ(stats.misses(), 2);
  EXPECT_EQ(stats.hits(), 0);
}

// Raw bytes as a request: protobuf cannot parse them (or they are not UTF-8
// where a string is expected); the call fails, the server lives.
TEST_F(BadInputTest, UnparsableMessages) {
  grpc::GenericStub stub(channel_);
  std::vector<std::string> bodies = {
      std::string("\x0a\x02\xff\xfe", 4),          // LookupRequest.key, not UTF-8
      std::string("\x0a\xff\xff\xff\xff\x0f", 6),  // a length far past the end
      std::string("\xff\xff\xff\xff", 4),          // no valid tag
  };
  for (const char* method : {"/ocicache.v1.Entries/Lookup", "/ocicache.v1.Entries/Put",
                             "/ocicache.v1.Blobs/Stat", "/ocicache.v1.Admin/Stats",
                             "/ocicache.v1.Entries/NoSuchMethod"}) {
    for (const auto& body : bodies) {
      grpc::Slice slice(body);
      grpc::ByteBuffer req(&slice, 1), resp;
      grpc::ClientContext ctx;
      absl::Notification done;
      grpc::Status status;
      stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
        status = std::move(s);
        done.Notify();
      });
      ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30))) << method;
      // StatsRequest has no fields: field 1 is an unknown field, skipped.
      if (std::string(method) != "/ocicache.v1.Admin/Stats" || body[0] == '\xff') {
        EXPECT_FALSE(status.ok()) << method << " " << body.size();
      }
    }
  }
  ExpectAlive();
}

TEST_F(BadInputTest, OversizedMessage) {
  client::DialOptions big;
  big.max_message_bytes = 64 << 20;
  auto stub = v1::Entries::NewStub(client::Dial(store_->server().address(), big));
  grpc::ClientContext ctx;
  v1::PutRequest req;
  req.mutable_entry()->set_key("huge");
  req.mutable_entry()->set_config(std::string(20 << 20, ' '));
  v1::PutResponse resp;
  EXPECT_EQ(stub->Put(&ctx, req, &resp).error_code(), StatusCode::RESOURCE_EXHAUSTED);
  ExpectAlive();
}

// A BatchLookup whose entries would exceed the server's message size limit
// (16 MiB) answers: the entries that fit, and RESOURCE_EXHAUSTED for the keys
// past them, instead of failing the whole call in the transport.
TEST_F(BadInputTest, BatchLookupReplyStaysUnderTheMessageLimit) {
  constexpr int kKeys = 300;
  const std::string config = "{\"pad\":\"" + std::string(60 << 10, 'x') + "\"}";
  for (int i = 0; i < kKeys; ++i) {
    grpc::ClientContext ctx;
    v1::PutRequest req;
    req.mutable_entry()->set_key(absl::StrCat("big", i));
    req.mutable_entry()->set_config(config);
    v1::PutResponse resp;
    ASSERT_TRUE(entries_->Put(&ctx, req, &resp).ok()) << i;
  }
  client::DialOptions big;
  big.max_message_bytes = 64 << 20;  // the client would take more: the server's limit counts
  auto stub = v1::Entries::NewStub(client::Dial(store_->server().address(), big));
  grpc::ClientContext ctx;
  v1::BatchLookupRequest req;
  for (int i = 0; i < kKeys; ++i) req.add_keys(absl::StrCat("big", i));
  v1::BatchLookupResponse resp;
  grpc::Status s = stub->BatchLookup(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  ASSERT_EQ(resp.results_size(), kKeys);
  int answered = 0, left_out = 0;
  for (const auto& r : resp.results()) {
    if (r.code() == 0) {
      ++answered;
      EXPECT_EQ(r.entry().config(), config);
    } else {
      EXPECT_EQ(r.code(), static_cast<int>(StatusCode::RESOURCE_EXHAUSTED)) << r.message();
      EXPECT_FALSE(r.has_entry());
      ++left_out;
    }
  }
  EXPECT_GT(answered, 200);
  EXPECT_GT(left_out, 0);
  EXPECT_LE(resp.ByteSizeLong(), size_t{16} << 20);
  ExpectAlive();
}

// Bytes that are not HTTP/2 at all, HTTP/1.1, and an HTTP/2 preface followed by
// junk frames, each on its own connection: the server drops them and lives.
TEST_F(BadInputTest, GarbageOnThePort) {
  int port = store_->server().port();
  std::mt19937 rng(42);
  std::string random(65536, '\0');
  for (auto& c : random) c = static_cast<char>(rng());
  std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::vector<std::string> payloads = {
      random,
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      preface + random.substr(0, 5000),
      preface + std::string("\x00\x00\x04\x04\x00\x00\x00\x00\x00\xff\xff\xff\xff", 13),
      std::string(1, '\0'),
  };
  for (const auto& p : payloads) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    (void)::send(fd, p.data(), p.size(), MSG_NOSIGNAL);
    char buf[1024];
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
  }
  ExpectAlive();
}

}  // namespace
}  // namespace ocicache

namespace ocicache {
namespace {

constexpr char kReader[] = "reader-token-0123456789";
constexpr char kWriter[] = "writer-token-0123456789";

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions opts;
    auto auth = rpc::TokenAuth::Parse(absl::StrCat(kReader, " read\n", kWriter, " write\n"));
    ASSERT_TRUE(auth.ok()) << auth.status();
    opts.auth = *std::move(auth);
    auto s = testing::ServeLayout(std::move(opts));
    ASSERT_TRUE(s.ok()) << s.status();
    served_ = *std::move(s);
  }

  std::unique_ptr<client::GrpcStore> As(const std::string& token) {
    client::GrpcStoreOptions opts;
    opts.token = token;
    const std::string& addr = served_->server().address();
    return std::make_unique<client::GrpcStore>(client::Dial(addr), addr, opts);
  }

  std::unique_ptr<testing::ServedStore> served_;
};

TEST_F(AuthTest, ScopesDecide) {
  std::string data = "authorized bytes";
  auto write_blob = [&](cache::Store& s) {
    oci::StringSource src(data);
    return s.WriteBlob(oci::Digest(), -1, src).status();
  };
  // No token, or an unknown one: UNAUTHENTICATED for everything.
  auto anonymous = As("");
  EXPECT_TRUE(absl::IsUnauthenticated(anonymous->Lookup("k", {}).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(write_blob(*anonymous)));
  EXPECT_TRUE(absl::IsUnauthenticated(As("wrong-token-0123456789")->Lookup("k", {}).status()));
  // Read-only: reads work, writes are PERMISSION_DENIED.
  auto reader = As(kReader);
  EXPECT_TRUE(absl::IsNotFound(reader->Lookup("k", {}).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(write_blob(*reader)));
  cache::Entry e;
  e.key = "k";
  EXPECT_TRUE(absl::IsPermissionDenied(reader->Put(e)));
  EXPECT_TRUE(absl::IsPermissionDenied(reader->Delete("k")));
  client::GrpcAdmin reader_admin(client::Dial(served_->server().address()), "x", kReader);
  admin::GcRequest gc;
  gc.keep_last = 0;
  EXPECT_TRUE(absl::IsPermissionDenied(reader_admin.CollectGarbage(gc, nullptr).status()));
  EXPECT_TRUE(reader_admin.Stats().ok());
  // Read-write: everything.
  auto writer = As(kWriter);
  ASSERT_TRUE(write_blob(*writer).ok());
  e.blobs.push_back({});
  e.blobs[0].digest = oci::Digest::Of(data);
  e.blobs[0].size = static_cast<int64_t>(data.size());
  ASSERT_TRUE(writer->Put(e).ok());
  EXPECT_TRUE(reader->Lookup("k", {}).ok());
  std::string back;
  oci::StringSink sink(&back);
  EXPECT_TRUE(reader->ReadBlob(e.blobs[0].digest, 0, sink).ok());
  EXPECT_EQ(back, data);
  client::GrpcAdmin writer_admin(client::Dial(served_->server().address()), "x", kWriter);
  EXPECT_TRUE(writer_admin.CollectGarbage(gc, nullptr).ok());
}

}  // namespace
}  // namespace ocicache

namespace ocicache {
namespace {

// An HTTP exchange on 127.0.0.1:port: the whole response.
std::string HttpExchange(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
  ::close(fd);
  return out;
}

TEST(MetricsTest, PrometheusText) {
  server::ServerOptions opts;
  opts.metrics_listen = "127.0.0.1:0";
  auto served = testing::ServeLayout(std::move(opts));
  ASSERT_TRUE(served.ok()) << served.status();
  int port = (*served)->server().metrics_port();
  ASSERT_GT(port, 0);
  EXPECT_TRUE(absl::IsNotFound((*served)->Lookup("a", {}).status()));
  EXPECT_TRUE(absl::IsNotFound((*served)->Lookup("b", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument((*served)->Lookup("", {}).status()));

  std::string resp = HttpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(resp, "HTTP/1.1 200 OK\r\n")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "text/plain; version=0.0.4")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "\nocicached_lookups_total 2\n")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "\nocicached_misses_total 2\n")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "\nocicached_serving 1\n")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "ocicached_calls_total{method=\"Entries/Lookup\",code=\"NOT_FOUND\"} 2")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "ocicached_calls_total{method=\"Entries/Lookup\",code=\"INVALID_ARGUMENT\"} 1")) << resp;
  EXPECT_TRUE(absl::StrContains(resp, "\nocicached_local_tier_bytes ")) << resp;

  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404"));
  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "\x16\x03\x01garbage\r\n\r\n"), "HTTP/1.1 400"));
  // A client that sends nothing is dropped after a timeout; others still get answers.
  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "GET /metrics HTTP/1.0\r\n\r\n"), "HTTP/1.1 200"));
}

}  // namespace
}  // namespace ocicache

// Boundaries and huge values for every RPC: each answer is a status (never a
// crash, never a hang), the one the contract in cache.proto names.
namespace ocicache {
namespace {

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();

TEST_F(BadInputTest, EntriesBoundaries) {
  auto lookup = [&](const std::string& key) {
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_key(key);
    (*req.mutable_require())[""] = "";
    v1::Entry e;
    return entries_->Lookup(&ctx, req, &e).error_code();
  };
  EXPECT_EQ(lookup(std::string(cache::format::kMaxKeyBytes, 'k')), StatusCode::NOT_FOUND);
  EXPECT_EQ(lookup(std::string(cache::format::kMaxKeyBytes + 1, 'k')), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(lookup("cr\rkey"), StatusCode::INVALID_ARGUMENT);

  // BatchLookup: none, exactly the limit, duplicates; answers in request order.
  {
    grpc::ClientContext ctx;
    v1::BatchLookupResponse resp;
    ASSERT_TRUE(entries_->BatchLookup(&ctx, v1::BatchLookupRequest(), &resp).ok());
    EXPECT_EQ(resp.results_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    v1::BatchLookupRequest req;
    for (int i = 0; i < 1000; ++i) req.add_keys(i % 2 ? "dup" : absl::StrCat("k", i));
    v1::BatchLookupResponse resp;
    ASSERT_TRUE(entries_->BatchLookup(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.results_size(), 1000);
    EXPECT_EQ(resp.results(999).key(), "dup");
    EXPECT_EQ(resp.results(998).key(), "k998");
  }

  // Put: huge and negative sizes, locations without size or URL, a bad
  // original descriptor, timestamps out of range.
  oci::Digest d = Blob("boundary blob");
  auto put = [&](const v1::PutRequest& req) {
    grpc::ClientContext ctx;
    v1::PutResponse resp;
    return entries_->Put(&ctx, req, &resp).error_code();
  };
  v1::PutRequest good;
  good.mutable_entry()->set_key("bounds");
  auto* b = good.mutable_entry()->add_blobs();
  b->set_digest(d.str());
  b->set_size(13);
  v1::PutRequest bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_size(kMax64);
  EXPECT_EQ(put(bad), StatusCode::FAILED_PRECONDITION);  // not stored with that size
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_digest("SHA256:" + d.hex());
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_blobs(0)->set_digest("sha512:" + std::string(128, 'a'));
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  auto* loc = bad.mutable_entry()->add_locations();
  loc->set_digest(d.str());
  loc->set_size(-1);
  loc->set_url("https://r.example/v2/a/blobs/" + d.str());
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->mutable_last_used()->set_seconds(kMax64);
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  // A location Mount could not use: not a blob URL, or one naming another digest.
  for (std::string url : {std::string("not a url"), std::string("https://r.example/a/b"),
                          "https://r.example/v2/a/blobs/" + Blob("other").str()}) {
    bad = good;
    auto* l = bad.mutable_entry()->add_locations();
    l->set_digest(d.str());
    l->set_size(13);
    l->set_url(url);
    EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT) << url;
  }
  // A last-used time far in the future is the server's now: gc still sees it.
  {
    v1::PutRequest future = good;
    future.mutable_entry()->set_key("from-the-future");
    future.mutable_entry()->mutable_last_used()->set_seconds(253402300799);  // 9999-12-31
    future.mutable_entry()->mutable_created()->set_seconds(253402300799);
    EXPECT_EQ(put(future), StatusCode::OK);
    grpc::ClientContext lctx;
    v1::LookupRequest lreq;
    lreq.set_key("from-the-future");
    v1::Entry got;
    ASSERT_TRUE(entries_->Lookup(&lctx, lreq, &got).ok());
    EXPECT_LE(got.last_used().seconds(), absl::ToUnixSeconds(absl::Now()) + 1);
    EXPECT_LE(got.created().seconds(), absl::ToUnixSeconds(absl::Now()) + 1);
    grpc::ClientContext dctx;
    v1::DeleteRequest dreq;
    dreq.set_key("from-the-future");
    v1::DeleteResponse dresp;
    ASSERT_TRUE(entries_->Delete(&dctx, dreq, &dresp).ok());
  }
  bad = good;
  bad.mutable_entry()->set_config("[1,2]");  // JSON, but not an object
  EXPECT_EQ(put(bad), StatusCode::INVALID_ARGUMENT);
  bad = good;
  bad.mutable_entry()->set_config(std::string(65 << 10, ' '));
  EXPECT_EQ(put(bad), StatusCode::RESOURCE_EXHAUSTED);  // over the 64 KiB limit
  EXPECT_EQ(put(good), StatusCode::OK);

  {
    grpc::ClientContext ctx;
    v1::DeleteRequest req;
    req.set_key("new\nline");
    v1::DeleteResponse resp;
    EXPECT_EQ(entries_->Delete(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  // List: a page size over the limit is the limit.
  grpc::ClientContext ctx;
  v1::ListRequest req;
  req.set_page_size(std::numeric_limits<int32_t>::max());
  auto r = entries_->List(&ctx, req);
  v1::ListResponse page;
  int entries = 0;
  while (r->Read(&page)) {
    EXPECT_LE(page.entries_size(), 1000);
    entries += page.entries_size();
  }
  EXPECT_TRUE(r->Finish().ok());
  EXPECT_EQ(entries, 1);
  ExpectAlive();
}

TEST_F(BadInputTest, BlobsBoundaries) {
  std::string data(5000, 'b');
  oci::Digest d = Blob(data);
  // Stat: a huge size is another size (missing), an unknown algorithm is malformed.
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    auto* x = req.add_blobs();
    x->set_digest(d.str());
    x->set_size(kMax64);
    v1::StatResponse resp;
    ASSERT_TRUE(blobs_->Stat(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.missing_size(), 1);
  }
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    req.add_blobs()->set_digest("sha512:" + std::string(128, '0'));
    v1::StatResponse resp;
    EXPECT_EQ(blobs_->Stat(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  // Read: a huge limit reads to the end; offset + limit never overflows.
  auto read = [&](int64_t offset, int64_t limit, std::string* out) {
    v1::ReadRequest req;
    req.set_digest(d.str());
    req.set_read_offset(offset);
    req.set_read_limit(limit);
    return Read(req, out).error_code();
  };
  std::string out;
  ASSERT_EQ(read(0, kMax64, &out), StatusCode::OK);
  EXPECT_EQ(out, data);
  out.clear();
  ASSERT_EQ(read(4999, kMax64, &out), StatusCode::OK);
  EXPECT_EQ(out, "b");
  out.clear();
  EXPECT_EQ(read(5001, kMax64, &out), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(read(std::numeric_limits<int64_t>::min(), 0, &out), StatusCode::INVALID_ARGUMENT);

  // Write: negative offsets, in the first message and later, with and without
  // an upload id; data after finish_write; upload ids at and past the limit,
  // and ids that look like paths (staged under hashed names, never outside).
  std::string blob = "write boundary bytes";
  std::string digest = oci::Digest::Of(blob).str();
  int64_t n = static_cast<int64_t>(blob.size());
  v1::WriteResponse resp;
  EXPECT_EQ(Write({First(digest, n, -1, blob, true)}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n, 0, "write ", false), Msg(-6, "boundary bytes", true)}, &resp)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n, -5, blob, true, "neg-offset")}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First(digest, n, 0, "write ", false, "neg-later"), Msg(-1, "x", true)}, &resp)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({First("", kMax64 - 1, 0, blob, true, "huge-size")}, &resp).error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Write({First(digest, n, 0, "x", false, std::string(257, 'u'))}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  for (const std::string& id : {std::string(256, 'u'), std::string("../../../../tmp/escape"),
                                std::string("/etc/passwd"), std::string("nul\0id", 6)}) {
    ASSERT_TRUE(Write({First(digest, n, 0, blob, true, id)}, &resp).ok()) << id;
    EXPECT_TRUE(resp.complete());
    grpc::ClientContext ctx;
    v1::QueryWriteRequest q;
    q.set_upload_id(id);
    v1::QueryWriteResponse qr;
    ASSERT_TRUE(blobs_->QueryWrite(&ctx, q, &qr).ok()) << id;
    EXPECT_TRUE(qr.complete());
  }
  {
    grpc::ClientContext ctx;
    v1::QueryWriteRequest q;
    q.set_upload_id(std::string(257, 'u'));
    v1::QueryWriteResponse qr;
    EXPECT_EQ(blobs_->QueryWrite(&ctx, q, &qr).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  // Messages after finish_write are not data of the blob.
  std::string other = "after the finish";
  EXPECT_TRUE(Write({First(oci::Digest::Of(other).str(), static_cast<int64_t>(other.size()), 0,
                           other, true),
                     Msg(static_cast<int64_t>(other.size()), "trailing junk", false)},
                    &resp)
                  .ok());
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE(store_->ReadBlob(oci::Digest::Of(other), 0, sink).ok());
  EXPECT_EQ(back, other);

  // Mount: a URL naming another digest, a huge size, an unreachable target.
  auto mount = [&](const v1::MountRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::MountResponse mr;
    return blobs_->Mount(&ctx, req, &mr).error_code();
  };
  v1::MountRequest m;
  m.mutable_from()->set_digest(d.str());
  m.mutable_from()->set_size(5000);
  m.mutable_from()->set_url("http://127.0.0.1:1/v2/a/blobs/" + oci::Digest::Of("x").str());
  m.set_target_repository("127.0.0.1:1/some/repo");
  StatusCode c = mount(m);
  EXPECT_TRUE(c == StatusCode::INVALID_ARGUMENT || c == StatusCode::UNAVAILABLE) << c;
  m.mutable_from()->set_url("http://127.0.0.1:1/v2/a/blobs/" + d.str());
  EXPECT_EQ(mount(m), StatusCode::UNAVAILABLE);  // nothing listens on port 1
  m.set_target_repository("127.0.0.2:1/some/repo");  // not allowed
  EXPECT_EQ(mount(m), StatusCode::PERMISSION_DENIED);
  m.set_target_repository("127.0.0.1:1/some/repo");
  m.clear_target_repository();
  m.mutable_from()->set_size(kMax64);
  EXPECT_EQ(mount(m), StatusCode::INVALID_ARGUMENT);  // present, but not with that size
  ExpectAlive();
}

TEST_F(BadInputTest, AdminBoundaries) {
  for (auto set : {+[](v1::GarbageCollectRequest* r) { r->set_older_than_seconds(kMax64); },
                   +[](v1::GarbageCollectRequest* r) { r->set_keep_last(kMax64); }}) {
    grpc::ClientContext ctx;
    v1::GarbageCollectRequest req;
    set(&req);
    auto r = admin_->GarbageCollect(&ctx, req);
    v1::Progress p, last;
    while (r->Read(&p)) last = p;
    ASSERT_TRUE(r->Finish().ok());
    EXPECT_EQ(last.gc_result().deleted(), 0);
  }
  ExpectAlive();
}

// Connections that stop part-way through the HTTP/2 preface, or say HTTP/1.1
// with an h2c upgrade, held open while real calls go on; then many junk
// connections at once.
TEST_F(BadInputTest, TruncatedPrefacesAndJunkConnections) {
  int port = store_->server().port();
  auto connect = [&]() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  };
  std::vector<int> held;
  for (const std::string& p :
       {std::string("PRI * HTTP/2.0\r\n"), std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n"),
        std::string("PRI"), std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", 25),
        std::string("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")}) {
    int fd = connect();
    (void)::send(fd, p.data(), p.size(), MSG_NOSIGNAL);
    held.push_back(fd);
  }
  // While they hang there, the server answers.
  for (int i = 0; i < 3; ++i) ExpectAlive();
  for (int fd : held) ::close(fd);

  std::vector<int> junk;
  std::mt19937 rng(7);
  for (int i = 0; i < 64; ++i) {
    int fd = connect();
    std::string bytes(1 + rng() % 3000, '\0');
    for (auto& ch : bytes) ch = static_cast<char>(rng());
    if (i % 4 == 0) bytes = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes;
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    junk.push_back(fd);
  }
  ExpectAlive();
  for (int fd : junk) ::close(fd);
  ExpectAlive();
}

}  // namespace
}  // namespace ocicache

namespace ocicache {
namespace {

// Every RPC with its request left empty (all fields missing): the documented
// answer, never a crash.
TEST_F(BadInputTest, EmptyRequestToEveryRpc) {
  auto code = [](const grpc::Status& s) { return s.error_code(); };
  {
    grpc::ClientContext ctx;
    v1::Entry resp;
    EXPECT_EQ(code(entries_->Lookup(&ctx, {}, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::BatchLookupResponse resp;
    EXPECT_EQ(code(entries_->BatchLookup(&ctx, {}, &resp)), StatusCode::OK);
    EXPECT_EQ(resp.results_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    v1::PutResponse resp;
    EXPECT_EQ(code(entries_->Put(&ctx, {}, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::PutRequest req;
    req.mutable_entry();  // present, but empty: no key
    v1::PutResponse resp;
    EXPECT_EQ(code(entries_->Put(&ctx, req, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteResponse resp;
    EXPECT_EQ(code(entries_->Delete(&ctx, {}, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    auto r = entries_->List(&ctx, {});
    v1::ListResponse page;
    while (r->Read(&page)) {
    }
    EXPECT_EQ(code(r->Finish()), StatusCode::OK);
  }
  {
    grpc::ClientContext ctx;
    v1::StatResponse resp;
    EXPECT_EQ(code(blobs_->Stat(&ctx, {}, &resp)), StatusCode::OK);
    EXPECT_EQ(resp.present_size() + resp.missing_size(), 0);
  }
  {
    std::string out;
    EXPECT_EQ(code(Read({}, &out)), StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::WriteResponse resp;
    // One empty message: no digest, size 0, no finish_write: nothing stored.
    EXPECT_EQ(code(Write({v1::WriteRequest()}, &resp)), StatusCode::CANCELLED);
    // The same with finish_write: the empty blob, which is a valid blob.
    v1::WriteRequest fin;
    fin.set_finish_write(true);
    ASSERT_EQ(code(Write({fin}, &resp)), StatusCode::OK);
    EXPECT_EQ(resp.digest(), oci::Digest::Of("").str());
    EXPECT_EQ(resp.committed_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    v1::QueryWriteResponse resp;
    EXPECT_EQ(code(blobs_->QueryWrite(&ctx, {}, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::MountResponse resp;
    EXPECT_EQ(code(blobs_->Mount(&ctx, {}, &resp)), StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext ctx2;
    v1::MountRequest req;
    req.mutable_from();  // present, but no digest
    EXPECT_EQ(code(blobs_->Mount(&ctx2, req, &resp)), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    auto r = admin_->GarbageCollect(&ctx, {});
    v1::Progress p;
    while (r->Read(&p)) {
    }
    EXPECT_EQ(code(r->Finish()), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    auto r = admin_->Sync(&ctx, {});
    v1::Progress p;
    while (r->Read(&p)) {
    }
    EXPECT_EQ(code(r->Finish()), StatusCode::FAILED_PRECONDITION);  // no registry
  }
  {
    grpc::ClientContext ctx;
    v1::StatsResponse resp;
    EXPECT_EQ(code(admin_->Stats(&ctx, {}, &resp)), StatusCode::OK);
  }
  ExpectAlive();
}

}  // namespace
}  // namespace ocicache
