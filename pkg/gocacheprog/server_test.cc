// The GOCACHEPROG server driven through in-memory streams: a LayoutStore in a
// temp dir, and for the remote cases a real docker-registry or a fake failing one.
// The session list and pack: session_test.cc.
#include "pkg/gocacheprog/server.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/cache/backlog.h"
#include "pkg/cache/forwarding_store.h"
#include "nlohmann/json.hpp"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/server_test_util.h"
#include "pkg/oci/digest.h"
#include "test/harness/fake_http.h"

namespace ocicache::gocacheprog {
namespace {

using json = nlohmann::json;

TEST(Server, HandshakeAndCleanEof) {
  Fixture f;
  Result r = f.Run("");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.first, R"({"ID":0,"KnownCommands":["get","put","close"]})");
  EXPECT_TRUE(r.by_id.empty());
}

TEST(Server, GetMissPutThenGetHit) {
  Fixture f;
  std::string body = Body(1, 5000);
  // Gets run concurrently with the requests after them: the miss is its own run
  // (go waits for a miss before it builds and puts).
  Result miss = f.Run(Get(1, ActionID(1)) + Close(2));
  ExpectMiss(miss, 1);
  EXPECT_EQ(miss.stats.misses, 1);
  Result r = f.Run(Put(2, ActionID(1), body) + Get(3, ActionID(1)) + Close(4));
  EXPECT_EQ(r.rc, 0);
  ASSERT_TRUE(r.has(2));
  EXPECT_EQ(r.at(2).size(), 2u) << r.at(2).dump();  // ID and DiskPath only
  EXPECT_EQ(ReadFile(r.at(2)["DiskPath"]), body);
  EXPECT_EQ(r.at(2)["DiskPath"], f.local->BlobPath(oci::Digest::Of(body)));
  ExpectHit(r, 3, body);
  EXPECT_EQ(r.at(4), json::parse(R"({"ID":4})"));
  EXPECT_EQ(r.stats.gets, 1);
  EXPECT_EQ(r.stats.local_hits, 1);
  EXPECT_EQ(r.stats.misses, 0);
  EXPECT_EQ(r.stats.puts, 1);
  EXPECT_EQ(r.duplicates, 0);

  // The entry is in the cache format: key = hex ActionID, config, the blob.
  auto e = f.local->Lookup(Hex(ActionID(1)), {});
  ASSERT_TRUE(e.ok()) << e.status();
  json cfg = json::parse(e->config);
  EXPECT_EQ(cfg["kind"], "go-action");
  EXPECT_EQ(cfg["outputID"], oci::Digest::Of(body).str());
  EXPECT_EQ(cfg["size"], 5000);
  ASSERT_EQ(e->blobs.size(), 1u);
  EXPECT_EQ(e->blobs[0].digest, oci::Digest::Of(body));

  // A new process on the same directory hits locally.
  Result again = f.Run(Get(1, ActionID(1)) + Close(2));
  ExpectHit(again, 1, body);
}

TEST(Server, GoVersionAnnotation) {
  Fixture f;
  ServerOptions o;
  o.go_version = "go1.23.5 X:cacheprog";
  f.Run(Put(1, ActionID(1), "x"), o);
  auto e = f.local->Lookup(Hex(ActionID(1)), {});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->annotations.at("org.ocicache.tool.go"), "go1.23.5 X:cacheprog");
}

TEST(Server, ZeroSizeObject) {
  Fixture f;
  Result r = f.Run(Put(1, ActionID(7), "") + Get(2, ActionID(7)) + Close(3));
  ASSERT_TRUE(r.has(1));
  EXPECT_EQ(r.err(1), "");
  std::string path = r.at(1)["DiskPath"];
  EXPECT_EQ(path, f.empty_path);
  EXPECT_TRUE(FileExists(path));
  EXPECT_EQ(ReadFile(path), "");
  ExpectHit(r, 2, "");
  auto e = f.local->Lookup(Hex(ActionID(7)), {});
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->blobs.empty());  // never a zero-size blob
  EXPECT_EQ(json::parse(e->config)["size"], 0);

  // An empty put must name the empty object.
  Result bad = f.Run(Put(1, ActionID(8), "", oci::Digest::Of("not empty").raw()));
  EXPECT_NE(bad.err(1), "");
}

TEST(Server, ManyConcurrentGetsAnsweredOnceEach) {
  Fixture f;
  std::string in;
  std::vector<std::string> bodies;
  for (int i = 0; i < 40; ++i) {
    bodies.push_back(Body(i, 100 + i * 37));
    in += Put(1000 + i, ActionID(i), bodies.back());
  }
  for (int i = 0; i < 400; ++i) in += Get(i + 1, ActionID(i % 80));
  in += Close(9999);
  ServerOptions o;
  o.lookup_threads = 8;
  Result r = f.Run(in, o);
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.duplicates, 0);
  EXPECT_EQ(r.by_id.size(), 40u + 400u + 1u);
  for (int i = 0; i < 400; ++i) {
    int a = i % 80;
    if (a < 40) {
      ExpectHit(r, i + 1, bodies[a]);
    } else {
      ExpectMiss(r, i + 1);
    }
  }
  EXPECT_EQ(r.stats.local_hits, 200);
  EXPECT_EQ(r.stats.misses, 200);
}

TEST(Server, LargeBodyStreams) {
  Fixture f;
  std::string body = Body(3, (5 << 20) + 3);
  Result r = f.Run(Put(1, ActionID(3), body) + Get(2, ActionID(3)));
  EXPECT_EQ(r.err(1), "");
  ExpectHit(r, 2, body);
}

TEST(Server, BadRequestsAreErrorsForTheirId) {
  Fixture f;
  std::string body = Body(5, 300);
  std::string in;
  // Wrong-length ActionID on a get and on a put (whose body is skipped).
  in += absl::StrCat(R"({"ID":1,"Command":"get","ActionID":")", Base64Encode("short"), "\"}\n\n");
  in += absl::StrCat(R"({"ID":2,"Command":"put","ActionID":")", Base64Encode(std::string(31, 'a')),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n\"", Base64Encode(body), "\"\n");
  // Unknown command.
  in += R"({"ID":3,"Command":"frobnicate"})" "\n\n";
  // A get without ActionID.
  in += R"({"ID":4,"Command":"get"})" "\n\n";
  // Bad base64 in the body.
  in += absl::StrCat(R"({"ID":5,"Command":"put","ActionID":")", Base64Encode(ActionID(5)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n\"", Base64Encode(body).substr(0, 100), "*",
                     Base64Encode(body).substr(101), "\"\n");
  // A body shorter than BodySize.
  in += absl::StrCat(R"({"ID":6,"Command":"put","ActionID":")", Base64Encode(ActionID(6)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":301})", "\n\n\"", Base64Encode(body), "\"\n");
  // A body longer than BodySize.
  in += absl::StrCat(R"({"ID":7,"Command":"put","ActionID":")", Base64Encode(ActionID(7)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":299})", "\n\n\"", Base64Encode(body), "\"\n");
  // A body that does not hash to ObjectID.
  in += Put(8, ActionID(8), body, oci::Digest::Of("something else").raw());
  // A put whose body line is missing: the next request follows at once.
  in += absl::StrCat(R"({"ID":9,"Command":"put","ActionID":")", Base64Encode(ActionID(9)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n");
  // A cut request line with its ID: an error for that ID; its body is skipped.
  in += absl::StrCat(R"({"ID":10,"Command":"put","ActionID":")", "\n\n\"",
                     Base64Encode(body), "\"\n");
  // A request line of 2 MiB.
  in += absl::StrCat(R"({"ID":11,"Command":"get","ActionID":")", std::string(2 << 20, 'A'),
                     "\"}\n\n");
  // And everything still works afterwards.
  in += Put(12, ActionID(12), body) + Get(13, ActionID(12));
  for (int id : {5, 6, 7, 8, 9}) in += Get(100 + id, ActionID(id));
  in += Close(14);

  Result r = f.Run(in);
  EXPECT_EQ(r.rc, 0);
  for (int id = 1; id <= 11; ++id) EXPECT_NE(r.err(id), "") << id << ": " << r.at(id).dump();
  EXPECT_TRUE(absl::StrContains(r.err(1), "5 bytes")) << r.err(1);
  EXPECT_TRUE(absl::StrContains(r.err(2), "31 bytes")) << r.err(2);
  EXPECT_TRUE(absl::StrContains(r.err(3), "unknown command")) << r.err(3);
  EXPECT_TRUE(absl::StrContains(r.err(5), "base64")) << r.err(5);
  EXPECT_TRUE(absl::StrContains(r.err(6), "300 bytes")) << r.err(6);
  EXPECT_TRUE(absl::StrContains(r.err(7), "longer")) << r.err(7);
  EXPECT_TRUE(absl::StrContains(r.err(8), "ObjectID")) << r.err(8);
  EXPECT_TRUE(absl::StrContains(r.err(9), "missing")) << r.err(9);
  EXPECT_TRUE(absl::StrContains(r.err(11), "too long")) << r.err(11);
  EXPECT_EQ(r.err(12), "");
  ExpectHit(r, 13, body);
  // Nothing was stored for the refused puts.
  for (int id : {5, 6, 7, 8, 9}) ExpectMiss(r, 100 + id);
  EXPECT_EQ(r.at(14), json::parse(R"({"ID":14})"));
  EXPECT_EQ(r.stats.errors, 11);
}

TEST(Server, GarbageLineStopsWithAnErrorLine) {
  Fixture f;
  std::string body = Body(9, 10);
  Result r = f.Run(Put(1, ActionID(1), body) + "this is not json\n" + Get(2, ActionID(1)));
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err(1), "");
  EXPECT_FALSE(r.has(2));
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_TRUE(absl::StrContains(r.warnings.back(), "unusable request")) << r.warnings.back();
}

TEST(Server, StreamEndingInsideABody) {
  Fixture f;
  std::string body = Body(10, 1000);
  std::string put = Put(1, ActionID(1), body);
  Result r = f.Run(put.substr(0, put.size() - 200));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err(1), "");
  Result r2 = f.Run(Get(1, ActionID(1)));
  ExpectMiss(r2, 1);
  // Nothing half-written was left as a blob.
  EXPECT_FALSE(FileExists(f.local->BlobPath(oci::Digest::Of(body))));
}

// A local entry holding its object (as `ocicache sync` copies a registry's
// entry into a directory) gets the object's file before the hit is answered.
TEST(Server, ALocalEntryHoldingItsObjectGetsItsFile) {
  const std::string body = Body(77, 5000);
  cache::Entry e;
  e.key = Hex(ActionID(77));
  e.config = absl::StrCat(R"({"kind":"go-action","outputID":")", oci::Digest::Of(body).str(),
                          R"(","size":)", body.size(), R"(,"data":")", absl::Base64Escape(body),
                          "\"}");
  Fixture f;
  ASSERT_TRUE(f.local->Put(e).ok());
  ASSERT_FALSE(FileExists(f.local->BlobPath(oci::Digest::Of(body))));
  Result r = f.Run(Get(1, ActionID(77)) + Close(9));
  ExpectHit(r, 1, body);
  EXPECT_EQ(r.stats.local_hits, 1);
}

TEST(Server, PutOfAnExistingObjectIsVerified) {
  Fixture f;
  std::string body = Body(11, 2000);
  Result r = f.Run(Put(1, ActionID(1), body) + Put(2, ActionID(2), body) + Get(3, ActionID(2)));
  EXPECT_EQ(r.err(1), "");
  EXPECT_EQ(r.err(2), "");
  ExpectHit(r, 3, body);
  // Same digest claimed, different bytes of the same size: refused, blob intact.
  std::string other = Body(12, 2000);
  Result bad = f.Run(Put(1, ActionID(3), other, oci::Digest::Of(body).raw()));
  EXPECT_NE(bad.err(1), "");
  EXPECT_EQ(ReadFile(f.local->BlobPath(oci::Digest::Of(body))), body);
}

// ---------------------------------------------------------------------------
// With a registry.

TEST_F(RegistryTest, CloseFlushesUploadsAndAFreshDirectoryHitsRemotely) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  std::vector<std::string> bodies;
  std::string in;
  for (int i = 0; i < 12; ++i) {
    // Up to 6 KiB, and one object of 40 KiB (a blob of its own).
    bodies.push_back(i == 0 ? std::string() : Body(100 + i, i == 11 ? 40000 : 50 * i * i + 1));
    in += Put(i + 1, ActionID(100 + i), bodies.back());
  }
  in += Close(99);
  Fixture a;
  ServerOptions o;
  o.go_version = "go1.23.5";
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.rc, 0);
  EXPECT_EQ(ra.stats.puts, 12);
  EXPECT_EQ(ra.stats.uploaded, 12) << absl::StrJoin(ra.warnings, "\n");
  EXPECT_EQ(ra.stats.upload_failures, 0);
  // Every entry is in the registry once close has answered.
  // Objects of up to 16 KiB live inside their entry, no blob of their own.
  for (int i = 0; i < 12; ++i) {
    auto e = upload->Lookup(Hex(ActionID(100 + i)), {});
    ASSERT_TRUE(e.ok()) << i << ": " << e.status();
    EXPECT_EQ(e->annotations["org.ocicache.tool.go"], "go1.23.5");
    const bool inside = i > 0 && i < 11;
    EXPECT_EQ(absl::StrContains(e->config, R"("data":")"), inside) << i << ": " << e->config;
    EXPECT_EQ(e->blobs.size(), i == 11 ? 1u : 0u) << i;
    if (i > 0) {
      EXPECT_EQ(upload->StatBlob(oci::Digest::Of(bodies[i])).ok(), i == 11) << i;
    }
  }

  // A fresh machine: empty directory, same registry.
  Fixture b;
  std::string gets;
  for (int i = 0; i < 12; ++i) gets += Get(i + 1, ActionID(100 + i));
  gets += Get(50, ActionID(5000));  // never stored
  for (int i = 0; i < 12; ++i) gets += Get(i + 101, ActionID(100 + i));
  gets += Get(150, ActionID(5000));  // a known miss now
  gets += Close(99);
  Result rb = b.Run(gets, {}, lookup.get(), upload.get());
  EXPECT_EQ(rb.rc, 0);
  for (int i = 0; i < 12; ++i) {
    ExpectHit(rb, i + 1, bodies[i]);
    ExpectHit(rb, i + 101, bodies[i]);
  }
  ExpectMiss(rb, 50);
  ExpectMiss(rb, 150);
  // The second round may race the first for the same keys, but every get hits.
  EXPECT_EQ(rb.stats.remote_hits + rb.stats.local_hits, 24);
  EXPECT_GE(rb.stats.remote_hits, 12);
  EXPECT_EQ(rb.stats.misses, 2);
  EXPECT_EQ(rb.stats.remote_errors, 0);
  // Filled into the local tier: a third process needs no registry.
  Fixture c(b.dir_);
  Result rc = c.Run(Get(1, ActionID(105)) + Close(2));
  ExpectHit(rc, 1, bodies[5]);
  EXPECT_EQ(rc.stats.local_hits, 1);
}

// Entries of older writers name a small object's blob instead of holding it:
// they still hit. An entry whose bytes do not match its outputID is a miss.
TEST_F(RegistryTest, EntriesNamingASmallObjectsBlobStillHitAndBadBytesMiss) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  const std::string old_body = Body(2001, 3000), bad_body = Body(2002, 2000);
  auto config = [](const std::string& body, const std::string& data) {
    return absl::StrCat(R"({"kind":"go-action","outputID":")", oci::Digest::Of(body).str(),
                        R"(","size":)", body.size(),
                        data.empty() ? "" : absl::StrCat(R"(,"data":")", data, "\""), "}");
  };
  oci::StringSource src(old_body);
  auto blob = upload->WriteBlob(oci::Digest::Of(old_body), old_body.size(), src);
  ASSERT_TRUE(blob.ok()) << blob.status();
  cache::Entry old_entry;
  old_entry.key = Hex(ActionID(2001));
  old_entry.config = config(old_body, "");
  old_entry.blobs.push_back(*blob);
  ASSERT_TRUE(upload->Put(old_entry).ok());
  // Bytes inside that are not the object the config names.
  std::string wrong = bad_body;
  wrong[7] ^= 1;
  cache::Entry bad;
  bad.key = Hex(ActionID(2002));
  bad.config = config(bad_body, absl::Base64Escape(wrong));
  ASSERT_TRUE(upload->Put(bad).ok());

  Fixture f;
  Result r = f.Run(Get(1, ActionID(2001)) + Get(2, ActionID(2002)) + Close(9), {}, lookup.get(),
                   upload.get());
  ExpectHit(r, 1, old_body);
  ExpectMiss(r, 2);
  EXPECT_EQ(r.stats.remote_hits, 1);
  // The hit is recorded locally in the local form, naming the blob.
  Fixture local(f.dir_);
  Result again = local.Run(Get(1, ActionID(2001)) + Close(9));
  ExpectHit(again, 1, old_body);
  EXPECT_EQ(again.stats.local_hits, 1);
}

TEST(ServerRemote, KnownMissesAreNotAskedTwice) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest& r) {
    if (r.path() == "/v2/") return harness::FakeResponse::Json(200, "{}");
    return harness::FakeResponse::Json(
        404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  Fixture f;
  Result r = f.Run(Get(1, ActionID(1)) + Get(2, ActionID(2)) + Close(3) , {}, lookup.get(), nullptr);
  // Separate requests so the second get of the same ID comes after the first.
  Result r2;
  {
    ServerOptions o;
    o.lookup_threads = 1;
    r2 = f.Run(Get(1, ActionID(9)) + Get(2, ActionID(9)) + Get(3, ActionID(9)) + Close(4), o,
               lookup.get(), nullptr);
  }
  ExpectMiss(r, 1);
  ExpectMiss(r, 2);
  ExpectMiss(r2, 1);
  ExpectMiss(r2, 3);
  int manifest_gets = 0;
  for (const auto& req : (*fake)->requests()) {
    if (absl::StrContains(req.path(), "/manifests/") && req.method == "GET") ++manifest_gets;
  }
  EXPECT_EQ(manifest_gets, 3);  // IDs 1, 2, 9 once each
}

// Issue 11, defect 4 for gocacheprog: puts that could not be uploaded (the
// registry answered 500) wait in DIR/backlog, and the next run pushes them.
TEST(ServerRemote, PutsNotUploadedArePushedByTheNextRun) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest&) {
    return harness::FakeResponse::Text(500, "broken");
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto broken = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 1);
  Fixture f;
  std::string in;
  for (int i = 0; i < 4; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  in += Put(104, ActionID(4), "");  // an empty object too
  in += Close(999);
  Result r = f.Run(in, {}, nullptr, broken.get());
  EXPECT_EQ(r.stats.upload_failures, 5);
  auto backlog = cache::Backlog::Open(f.dir_ + "/backlog");
  ASSERT_TRUE(backlog.ok());
  auto keys = (*backlog)->Keys(0);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 5u);
  bool said = false;
  for (const auto& w : r.warnings) said |= absl::StrContains(w, "wait in");
  EXPECT_TRUE(said);

  // The next run, with the registry back (a directory stands in for it), pushes them.
  auto registry = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(registry.ok());
  Result r2 = f.Run(Close(1), {}, nullptr, registry->get());
  EXPECT_EQ(r2.stats.upload_failures, 0);
  EXPECT_EQ(r2.stats.uploaded, 5);
  for (const auto& key : *keys) {
    auto e = (*registry)->Lookup(key, cache::LookupOptions());
    EXPECT_TRUE(e.ok()) << key << ": " << e.status();
  }
  EXPECT_EQ((*backlog)->Keys(0)->size(), 0u);
}

// A directory standing in for a registry, whose first `fail_puts` entry writes
// fail as an outage would (UNAVAILABLE).
class BlipStore : public cache::ForwardingStore {
 public:
  BlipStore(std::unique_ptr<cache::Store> s, int fail_puts)
      : ForwardingStore(std::move(s)), fail_puts_(fail_puts) {}
  std::atomic<int> puts{0};

  absl::Status Put(const cache::Entry& e) override {
    if (++puts <= fail_puts_) return absl::UnavailableError("connection reset by peer");
    return ForwardingStore::Put(e);
  }

 private:
  const int fail_puts_;
};

// One outage among the uploads (a reset connection) pauses the registry; the
// upload that met it and those behind it wait instead of failing, and at close
// the server asks the registry again, finds it answering, and uploads every one.
TEST(ServerRemote, OneBlipDelaysUploadsButLosesNone) {
  auto dir = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(dir.ok());
  BlipStore blip(*std::move(dir), /*fail_puts=*/1);
  Fixture f;
  std::string in;
  for (int i = 0; i < 20; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  in += Close(999);
  ServerOptions o;
  o.remote_retry_after = absl::Hours(1);  // only the recheck at close ends the pause
  o.upload_threads = 4;
  Result r = f.Run(in, o, nullptr, &blip);
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.upload_failures, 0);
  EXPECT_EQ(r.stats.uploaded, 20);
  EXPECT_EQ(blip.puts.load(), 21);  // the one that met the outage, twice
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(blip.Lookup(Hex(ActionID(i)), {}).ok()) << i;
  }
  bool warned = false;
  for (const auto& w : r.warnings) warned |= absl::StrContains(w, "unavailable");
  EXPECT_TRUE(warned) << absl::StrJoin(r.warnings, "\n");
  auto backlog = cache::Backlog::Open(f.dir_ + "/backlog");
  ASSERT_TRUE(backlog.ok());
  EXPECT_EQ((*backlog)->size(), 0u);
}

TEST(ServerRemote, RegistryAnswering500GivesMissesNotErrors) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest&) {
    return harness::FakeResponse::Text(500, "broken");
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  auto upload = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  Fixture f;
  std::string in;
  for (int i = 0; i < 5; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  for (int i = 0; i < 100; ++i) in += Get(i + 1, ActionID(1000 + i));
  for (int i = 0; i < 5; ++i) in += Get(200 + i, ActionID(i));
  in += Close(999);
  absl::Time start = absl::Now();
  Result r = f.Run(in, {}, lookup.get(), upload.get());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  for (int i = 0; i < 100; ++i) ExpectMiss(r, i + 1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(r.err(100 + i), "");
    ExpectHit(r, 200 + i, Body(i, 100));
  }
  EXPECT_EQ(r.stats.upload_failures, 5);
  EXPECT_EQ(r.at(999), json::parse(R"({"ID":999})"));
  // The outage pauses the registry: not one request per get.
  EXPECT_LT((*fake)->request_count(), 40);
  bool warned = false;
  for (const auto& w : r.warnings) warned |= absl::StrContains(w, "unavailable");
  EXPECT_TRUE(warned) << absl::StrJoin(r.warnings, "\n");
}

TEST(ServerRemote, RegistryNeverAnsweringStillClosesInBoundedTime) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest&) {
    harness::FakeResponse resp = harness::FakeResponse::Text(200, "late");
    resp.stall_ms = 60000;
    return resp;
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(1), 1);
  auto upload = RegistryStoreFor((*fake)->host(), absl::Seconds(1), 1);
  Fixture f;
  std::string in;
  for (int i = 0; i < 3; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  for (int i = 0; i < 50; ++i) in += Get(i + 1, ActionID(1000 + i));
  in += Close(999);
  ServerOptions o;
  o.flush_timeout = absl::Seconds(3);
  absl::Time start = absl::Now();
  Result r = f.Run(in, o, lookup.get(), upload.get());
  absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  for (int i = 0; i < 50; ++i) ExpectMiss(r, i + 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.err(100 + i), "");
  EXPECT_EQ(r.at(999), json::parse(R"({"ID":999})"));
  (*fake)->Stop();
}

TEST(ServerRemote, UnreachableRegistry) {
  // Nothing listens on port 1.
  auto lookup = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 2);
  auto upload = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 2);
  Fixture f;
  std::string in = Put(1, ActionID(1), "abc");
  for (int i = 0; i < 30; ++i) in += Get(i + 10, ActionID(100 + i));
  in += Get(2, ActionID(1)) + Close(3);
  absl::Time start = absl::Now();
  Result r = f.Run(in, {}, lookup.get(), upload.get());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  ExpectHit(r, 2, "abc");
  for (int i = 0; i < 30; ++i) ExpectMiss(r, i + 10);
}

}  // namespace
}  // namespace ocicache::gocacheprog
