// The session list, its pack and the local session copy, through the server
// (server_test_util.h) and a real docker-registry.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "pkg/cache/forwarding_store.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/server.h"
#include "pkg/gocacheprog/server_test_util.h"
#include "pkg/oci/digest.h"

namespace ocicache::gocacheprog {
namespace {

TEST_F(RegistryTest, SessionListPrefetchesTheNextBuild) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.test1";
  o.session_pack = false;  // the object-by-object path (the pack: next test)
  std::vector<std::string> bodies;
  std::string in;
  for (int i = 0; i < 30; ++i) {
    bodies.push_back(i % 7 == 0 ? std::string() : Body(300 + i, 1000 + 300 * i));
    in += Get(i + 100, ActionID(300 + i)) + Put(i + 1, ActionID(300 + i), bodies.back());
  }
  in += Close(99);
  Fixture a;
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 30);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 1u);

  // A fresh directory: the list is read at start and its objects prefetched; gets
  // are answered from the prefetch (or, if they come first, fetch it themselves).
  Fixture b;
  std::string gets;
  for (int i = 0; i < 30; ++i) gets += Get(i + 1, ActionID(300 + i));
  gets += Close(99);
  // One lookup thread: with many, gets racing the list read could all fetch their
  // objects themselves first on a loaded machine, leaving nothing to prefetch.
  ServerOptions ob = o;
  ob.lookup_threads = 1;
  Result rb = b.Run(gets, ob, lookup.get(), upload.get());
  for (int i = 0; i < 30; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.session_listed, 30);
  EXPECT_EQ(rb.stats.remote_hits + rb.stats.local_hits, 30);
  EXPECT_GT(rb.stats.prefetched + rb.stats.local_hits, 0);
  EXPECT_EQ(rb.stats.misses, 0);
  // The same build again does not rewrite the list.
  auto again = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->blobs[0].digest, list->blobs[0].digest);
  // Every prefetched object is recorded in the directory too.
  Fixture c(b.dir_);
  Result rc = c.Run(Get(1, ActionID(301)) + Close(2));
  ExpectHit(rc, 1, bodies[1]);
}

// The session pack: written at close beside the list (also for a list that had
// none), read in one stream by a fresh directory, skipped by a warm one.
TEST_F(RegistryTest, SessionPackFillsAFreshDirectoryInOneStream) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.pack1";
  o.session_pack = false;
  std::vector<std::string> bodies;
  std::string in;
  std::set<std::string> objects;
  for (int i = 0; i < 40; ++i) {
    // Empty objects, and pairs sharing an object (packed once).
    bodies.push_back(i % 9 == 0 ? std::string() : Body(400 + i % 30, 2000 + 100 * (i % 30)));
    if (!bodies.back().empty()) objects.insert(bodies.back());
    in += Put(i + 1, ActionID(400 + i), bodies.back());
  }
  int64_t distinct = 0;
  for (const auto& b : objects) distinct += static_cast<int64_t>(b.size());
  in += Close(99);
  Fixture a;
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 40);
  EXPECT_EQ(ra.stats.pack_bytes_written, 0);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 1u);

  // The same build with packs on: the unchanged list gets its pack.
  o.session_pack = true;
  Fixture a2(a.dir_);
  std::string again;
  for (int i = 0; i < 40; ++i) again += Get(i + 1, ActionID(400 + i));
  again += Close(99);
  Result ra2 = a2.Run(again, o, lookup.get(), upload.get());
  EXPECT_EQ(ra2.stats.local_hits, 40);
  EXPECT_EQ(ra2.stats.pack_bytes_written, distinct);
  list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_EQ(list->blobs[1].size, distinct);

  // A fresh directory: one stream brings every object; gets wait for it. Gets
  // that come before the list is read are looked up one by one, and the pack is
  // read only while most objects are still missing: one lookup thread keeps those
  // early lookups few even on a loaded machine (with 16 they could win the race).
  Fixture b;
  const int64_t before = lookup->client().request_count();
  ServerOptions ob = o;
  ob.lookup_threads = 1;
  Result rb = b.Run(again, ob, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1);
  EXPECT_EQ(rb.stats.misses, 0);
  EXPECT_EQ(rb.stats.remote_hits, 40);
  EXPECT_EQ(rb.stats.pack_bytes_written, 0);  // unchanged: not written again
  // Session manifest + list + pack, plus lookups of gets that came before the list
  // was read (each a manifest GET and a blob GET): far fewer than one per object.
  const int64_t early = rb.stats.remote_hits - rb.stats.prefetched;
  EXPECT_LE(lookup->client().request_count() - before, 3 + 2 * early);
  // The pack read as three runs of whole objects, each an exact ranged GET of its
  // own (no stat first): the same answers, and one more GET per extra run.
  Fixture b3;
  ServerOptions o3 = ob;
  o3.pack_streams = 3;
  o3.pack_segment_min_bytes = 1;
  const int64_t before3 = lookup->client().request_count();
  Result rb3 = b3.Run(again, o3, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb3, i + 1, bodies[i]);
  EXPECT_EQ(rb3.stats.packs_read, 1);
  EXPECT_EQ(rb3.stats.remote_hits, 40);
  const int64_t early3 = rb3.stats.remote_hits - rb3.stats.prefetched;
  // Session manifest and list, three pack GETs.
  EXPECT_GE(lookup->client().request_count() - before3, 2 + 3);
  EXPECT_LE(lookup->client().request_count() - before3, 2 + 3 + 2 * early3);
  // The directory recorded the session before close was answered: all local hits
  // now, without a registry request.
  Fixture c3(b3.dir_);
  const int64_t before_c3 = lookup->client().request_count();
  Result rc3 = c3.Run(again, o, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rc3, i + 1, bodies[i]);
  EXPECT_EQ(rc3.stats.local_hits, 40);
  EXPECT_EQ(rc3.stats.packs_read, 0);
  EXPECT_EQ(lookup->client().request_count(), before_c3);
  // As one entry, the local session copy (the list and every object), not as one
  // entry per ActionID.
  // The last get: not one of the few that may come before the list is read (those
  // are looked up one by one and stored as entries of their own).
  const std::string key439 = oci::Digest::Of("action-439").hex();  // a non-empty object
  const std::string key400 = oci::Digest::Of("action-400").hex();  // an empty one
  {
    auto copy = c3.local->Lookup(o.session_key + ".local", {});
    ASSERT_TRUE(copy.ok()) << copy.status();
    EXPECT_TRUE(absl::StrContains(copy->config, R"("kind":"go-session-local")")) << copy->config;
    EXPECT_EQ(copy->blobs.size(), 1 + objects.size());
    EXPECT_TRUE(absl::IsNotFound(c3.local->Lookup(key439, {}).status()));
  }
  // The copy answers while the registry is down, and with no registry at all.
  auto down = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 1);
  Fixture d3(b3.dir_);
  Result rd3 = d3.Run(again, o, down.get(), nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rd3, i + 1, bodies[i]);
  EXPECT_EQ(rd3.stats.local_hits, 40);
  Fixture n3(b3.dir_);
  Result rn3 = n3.Run(again, o, nullptr, nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rn3, i + 1, bodies[i]);
  EXPECT_EQ(rn3.stats.local_hits, 40);
  // A session of more objects than one manifest should list is recorded as one
  // entry per ActionID instead (the empty objects' too).
  Fixture b5;
  ServerOptions o5 = ob;
  o5.local_session_max_objects = 5;
  Result rb5 = b5.Run(again, o5, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb5, i + 1, bodies[i]);
  EXPECT_EQ(rb5.stats.packs_read, 1);
  EXPECT_TRUE(b5.local->Lookup(key439, {}).ok());
  EXPECT_TRUE(b5.local->Lookup(key400, {}).ok());
  EXPECT_TRUE(absl::IsNotFound(b5.local->Lookup(o.session_key + ".local", {}).status()));
  Fixture n5(b5.dir_);
  Result rn5 = n5.Run(again, o, nullptr, nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rn5, i + 1, bodies[i]);
  EXPECT_EQ(rn5.stats.local_hits, 40);

  // Recorded in the directory: a warm directory reads no pack.
  Fixture c(b.dir_);
  Result rc = c.Run(again, o, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_EQ(rc.stats.packs_read, 0);
  EXPECT_EQ(rc.stats.local_hits, 40);
}

// The directory's session copy follows the list a build wrote, so the next build
// there that uses the same pairs writes neither list nor pack again.
// A first build putting 20 objects (ActionIDs base..base+19) with the session on:
// the list and its pack go to the registry. Returns the objects.
std::vector<std::string> PutSessionOf20(int base, const ServerOptions& o, cache::Store* lookup,
                                        cache::Store* upload) {
  std::vector<std::string> bodies;
  std::string puts;
  for (int i = 0; i < 20; ++i) {
    bodies.push_back(Body(base + i, 1500 + 100 * i));
    puts += Put(i + 1, ActionID(base + i), bodies.back());
  }
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup, upload);
  EXPECT_EQ(ra.stats.uploaded, 20);
  EXPECT_GT(ra.stats.pack_bytes_written, 0);
  return bodies;
}

// Gets of ActionIDs base..base+n-1, then close.
std::string GetsOf(int base, int n) {
  std::string in;
  for (int i = 0; i < n; ++i) in += Get(i + 1, ActionID(base + i));
  return in + Close(99);
}

TEST_F(RegistryTest, LocalSessionCopyFollowsTheListWritten) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.follow1";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(500, o, lookup.get(), upload.get());
  // A fresh directory whose build needs only half of them (from the pack, or,
  // if the gets outrun the list, one by one) writes the shorter list and its pack
  // at close.
  const std::string half = GetsOf(500, 10);
  Fixture b;
  Result rb = b.Run(half, o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.remote_hits, 10);
  EXPECT_GT(rb.stats.pack_bytes_written, 0);
  auto written = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(written.ok()) << written.status();
  // The same build again in that directory: local hits, nothing written.
  Fixture b2(b.dir_);
  Result rb2 = b2.Run(half, o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rb2, i + 1, bodies[i]);
  EXPECT_EQ(rb2.stats.local_hits, 10);
  EXPECT_EQ(rb2.stats.pack_bytes_written, 0);
  auto after = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->blobs[0].digest, written->blobs[0].digest);
  auto copy = b2.local->Lookup(o.session_key + ".local", {});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_TRUE(absl::StrContains(copy->config, R"("pairs":10,)")) << copy->config;
}

// A build close to the listed session (one pair new, one unused) leaves the list
// and its pack alone; one that uses half of it writes a new list and pack.
TEST_F(RegistryTest, ASmallChangeKeepsTheSessionList) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.small1";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(600, o, lookup.get(), upload.get());
  auto first = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(first.ok()) << first.status();

  std::string small;
  for (int i = 0; i < 19; ++i) small += Get(i + 1, ActionID(600 + i));
  small += Put(50, ActionID(699), Body(699, 1000)) + Close(99);
  Fixture b;
  Result rb = b.Run(small, o, lookup.get(), upload.get());
  for (int i = 0; i < 19; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.uploaded, 1);
  EXPECT_EQ(rb.stats.pack_bytes_written, 0);
  auto kept = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->blobs[0].digest, first->blobs[0].digest);

  Fixture c;
  Result rc = c.Run(GetsOf(600, 10), o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_GT(rc.stats.pack_bytes_written, 0);
  auto rewritten = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_NE(rewritten->blobs[0].digest, first->blobs[0].digest);
}

// A cold build lists pairs a warm build never asks for, nearly all without
// bytes: a build that leaves over a quarter of the pairs unused, but none of
// the pack's bytes, keeps the list and its pack (no pack upload at close).
TEST_F(RegistryTest, UnusedPairsWithoutBytesKeepTheSessionList) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.emptyunused1";
  o.lookup_threads = 1;
  std::vector<std::string> bodies;
  std::string puts;
  for (int i = 0; i < 20; ++i) {
    bodies.push_back(Body(800 + i, 1500 + 100 * i));
    puts += Put(i + 1, ActionID(800 + i), bodies.back());
  }
  // Eight empty outputs: 8 of 28 pairs, over a quarter.
  for (int i = 0; i < 8; ++i) puts += Put(30 + i, ActionID(850 + i), "");
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup.get(), upload.get());
  ASSERT_GT(ra.stats.pack_bytes_written, 0);
  auto first = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(absl::StrContains(first->config, R"("pairs":28)")) << first->config;

  Fixture b;
  Result rb = b.Run(GetsOf(800, 20), o, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.pack_bytes_written, 0);
  auto kept = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->blobs[0].digest, first->blobs[0].digest);

  // Half the pack's bytes unused: rewritten.
  Fixture c;
  Result rc = c.Run(GetsOf(800, 10), o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_GT(rc.stats.pack_bytes_written, 0);
}

// A build with no list of its own (another directory of the module, other flags)
// reads the module's latest list (the fallback key), then writes its own.
TEST_F(RegistryTest, AFreshSessionFallsBackToTheModulesLatestList) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.fb-dir-a";
  o.session_fallback_key = "gocacheprog.session.fb-module";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(700, o, lookup.get(), upload.get());
  auto a_list = upload->Lookup(o.session_key, {});
  auto module_list = upload->Lookup(o.session_fallback_key, {});
  ASSERT_TRUE(a_list.ok()) << a_list.status();
  ASSERT_TRUE(module_list.ok()) << module_list.status();
  ASSERT_EQ(module_list->blobs.size(), a_list->blobs.size());
  EXPECT_EQ(module_list->blobs[0].digest, a_list->blobs[0].digest);

  ServerOptions ob = o;
  ob.session_key = "gocacheprog.session.fb-dir-b";
  ASSERT_TRUE(absl::IsNotFound(upload->Lookup(ob.session_key, {}).status()));
  Fixture b;
  Result rb = b.Run(GetsOf(700, 20), ob, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.session_listed, 20);
  EXPECT_EQ(rb.stats.misses, 0);
  // The same pairs, but read under the fallback key: written under its own.
  auto b_list = upload->Lookup(ob.session_key, {});
  ASSERT_TRUE(b_list.ok()) << b_list.status();
  EXPECT_EQ(b_list->blobs[0].digest, a_list->blobs[0].digest);

  // Without a fallback key a fresh session lists nothing.
  ServerOptions oc = ob;
  oc.session_key = "gocacheprog.session.fb-dir-c";
  oc.session_fallback_key.clear();
  Fixture c;
  Result rc = c.Run(GetsOf(700, 20), oc, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_EQ(rc.stats.session_listed, 0);
}

// Text-like objects (as Go's compiled packages are): the pack is stored as zstd
// frames, one per run, far smaller; a fresh directory reads it frame by frame and
// every object arrives intact. Objects that do not compress keep a raw pack.
std::string TextBody(int i, size_t n) {
  std::string s;
  while (s.size() < n) absl::StrAppend(&s, "func f", i, "_", s.size() % 97, "() { return }\n");
  s.resize(n);
  return s;
}

TEST_F(RegistryTest, ACompressiblePackIsStoredAsZstdFrames) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.zstd1";
  o.lookup_threads = 1;
  o.pack_refs = false;  // every object in the frames (references: the next test)
  o.pack_streams = 3;
  o.pack_segment_min_bytes = 64 << 10;  // several frames of this small pack
  std::vector<std::string> bodies;
  std::string puts;
  int64_t total = 0;
  for (int i = 0; i < 24; ++i) {
    bodies.push_back(TextBody(800 + i, 20000 + 500 * i));
    total += static_cast<int64_t>(bodies.back().size());
    puts += Put(i + 1, ActionID(800 + i), bodies.back());
  }
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 24);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_TRUE(absl::StrContains(list->config, R"("packEncoding":"zstd")")) << list->config;
  EXPECT_TRUE(absl::StrContains(list->config, R"("packFrames":[[0,)")) << list->config;
  EXPECT_EQ(std::count(list->config.begin(), list->config.end(), '['), 1 + 3) << list->config;
  EXPECT_LT(list->blobs[1].size * 4, total) << "stored " << list->blobs[1].size << " of " << total;
  EXPECT_EQ(ra.stats.pack_bytes_written, list->blobs[1].size);

  Fixture b;
  Result rb = b.Run(GetsOf(800, 24), o, lookup.get(), upload.get());
  for (int i = 0; i < 24; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1);
  EXPECT_EQ(rb.stats.remote_hits, 24);
  EXPECT_EQ(rb.stats.misses, 0);

  // Without compression (or for objects that do not shrink): the raw pack.
  ServerOptions raw = o;
  raw.session_key = "gocacheprog.session.zstd-off";
  raw.pack_compression = false;
  Fixture c;
  Result rc = c.Run(puts + Close(99), raw, lookup.get(), upload.get());
  auto raw_list = upload->Lookup(raw.session_key, {});
  ASSERT_TRUE(raw_list.ok()) << raw_list.status();
  ASSERT_EQ(raw_list->blobs.size(), 2u);
  EXPECT_FALSE(absl::StrContains(raw_list->config, "packEncoding")) << raw_list->config;
  EXPECT_EQ(raw_list->blobs[1].size, total);
}

// The pack a filling build writes names the objects it uploaded as blobs of
// their own (each entry's blob: a zstd frame, or the object itself when it does
// not compress) instead of sending their bytes a second time; its frames hold
// only the small objects, which travel inside their entries. A fresh directory
// reads each named blob by a GET of its own and every object arrives intact; a
// machine that read them so names them again when it rewrites the list.
std::string Diag(const Result& r) {
  return absl::StrCat(r.stats.prefetched, " prefetched, ", r.stats.remote_hits, " remote hits, ",
                      r.stats.session_listed, " listed; ", absl::StrJoin(r.warnings, "\n"));
}

TEST_F(RegistryTest, APackNamesTheObjectsTheRegistryHoldsAlready) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.refs1";
  o.lookup_threads = 1;
  o.pack_ref_min_bytes = 1;  // these blobs are small (the default names 128 KiB and up)
  // 10 text objects (uploaded as frames), 3 random ones (as they are), 7 small
  // text ones (inside their entries).
  std::vector<std::string> bodies;
  std::string puts;
  int64_t small = 0;
  for (int i = 0; i < 20; ++i) {
    bodies.push_back(i < 10   ? TextBody(1700 + i, 20000 + 700 * i)
                     : i < 13 ? Body(1700 + i, 30000)
                              : TextBody(1700 + i, 3000 + 100 * i));
    if (i >= 13) small += static_cast<int64_t>(bodies.back().size());
    puts += Put(i + 1, ActionID(1700 + i), bodies.back());
  }
  // With the default bound none of these blobs is named: all in the frames.
  ServerOptions defaults = o;
  defaults.session_key = "gocacheprog.session.refs-default";
  defaults.pack_ref_min_bytes = ServerOptions().pack_ref_min_bytes;
  Fixture a0;
  Result ra0 = a0.Run(puts + Close(99), defaults, lookup.get(), upload.get());
  EXPECT_EQ(ra0.stats.pack_refs, 0);
  auto list0 = upload->Lookup(defaults.session_key, {});
  ASSERT_TRUE(list0.ok()) << list0.status();
  EXPECT_TRUE(absl::StrContains(list0->config, R"("packEncoding":"zstd")")) << list0->config;
  EXPECT_EQ(list0->blobs.size(), 2u);

  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 20);
  EXPECT_EQ(ra.stats.pack_refs, 13);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(absl::StrContains(list->config, R"("packEncoding":"zstd-refs")")) << list->config;
  EXPECT_TRUE(absl::StrContains(list->config, R"("packRefs":[0,1,2,3,4,5,6,7,8,9,10,11,12])"))
      << list->config;
  ASSERT_EQ(list->blobs.size(), 2u + 13);
  // Only the small objects went up a second time, compressed.
  EXPECT_EQ(ra.stats.pack_bytes_written, list->blobs[1].size);
  EXPECT_LT(list->blobs[1].size, small);
  // Each named layer is the blob its object's entry names.
  for (int i = 0; i < 13; ++i) {
    auto e = upload->Lookup(Hex(ActionID(1700 + i)), {});
    ASSERT_TRUE(e.ok()) << i << ": " << e.status();
    ASSERT_EQ(e->blobs.size(), 1u) << i;
    EXPECT_EQ(list->blobs[2 + i].digest, e->blobs[0].digest) << i;
    EXPECT_EQ(list->blobs[2 + i].media_type, i < 10 ? "application/zstd"
                                                    : "application/octet-stream") << i;
  }

  // A fresh directory: the session manifest, its list, the frame and one GET per
  // named blob (plus lookups of gets that came before the list was read). Its
  // build adds 4 objects over 16 KiB (a fifth of the pairs, so the list is
  // written again): the new list names the 13 blobs it read and the 4 it
  // uploaded, and its frames still hold only the small objects.
  std::string more;
  for (int i = 0; i < 4; ++i) {
    bodies.push_back(TextBody(1720 + i, 25000 + i));
    more += Put(30 + i, ActionID(1720 + i), bodies.back());
  }
  std::string gets;
  for (int i = 0; i < 20; ++i) gets += Get(i + 1, ActionID(1700 + i));
  Fixture b;
  const int64_t before = lookup->client().request_count();
  Result rb = b.Run(gets + more + Close(99), o, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1) << Diag(rb);
  EXPECT_EQ(rb.stats.misses, 0);
  EXPECT_EQ(rb.stats.remote_hits, 20);
  const int64_t early = rb.stats.remote_hits - rb.stats.prefetched;
  EXPECT_LE(lookup->client().request_count() - before, 2 + 1 + 13 + 2 * early);
  EXPECT_EQ(rb.stats.pack_refs, 17);
  list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 2u + 17) << list->config;
  EXPECT_EQ(rb.stats.pack_bytes_written, list->blobs[1].size);
  EXPECT_LT(list->blobs[1].size, small);

  // A third machine reads that list: all 24 objects, none looked up alone.
  std::string all = gets;
  for (int i = 0; i < 4; ++i) all += Get(30 + i, ActionID(1720 + i));
  Fixture c;
  Result rc = c.Run(all + Close(99), o, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rc, i + 1, bodies[i]);
  for (int i = 0; i < 4; ++i) ExpectHit(rc, 30 + i, bodies[20 + i]);
  EXPECT_EQ(rc.stats.packs_read, 1) << Diag(rc);
  EXPECT_EQ(rc.stats.misses, 0);
  EXPECT_EQ(rc.stats.pack_bytes_written, 0);  // the same pairs: not written again

  // A list naming the wrong blob for an object (another object's frame): that
  // object fails its check and is looked up alone; no get gets wrong bytes.
  cache::Entry forged = *list;
  std::swap(forged.blobs[2], forged.blobs[3]);
  ASSERT_TRUE(upload->Put(forged).ok());
  Fixture d;
  Result rd = d.Run(all + Close(99), o, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rd, i + 1, bodies[i]);
  for (int i = 0; i < 4; ++i) ExpectHit(rd, 30 + i, bodies[20 + i]);
  EXPECT_EQ(rd.stats.misses, 0);
  EXPECT_EQ(rd.stats.remote_hits, 24);
}

// A registry that refuses the list naming blobs (one was deleted since this
// process saw it, say): the whole pack is written instead, and it serves.
class RefusesNamedBlobs : public cache::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  absl::Status Put(const cache::Entry& e) override {
    if (absl::StrContains(e.config, "zstd-refs")) {
      return absl::FailedPreconditionError("entry names blob sha256:... which is not in go/cache");
    }
    return ForwardingStore::Put(e);
  }
};

TEST_F(RegistryTest, AListRefusedForItsNamedBlobsIsWrittenWithTheWholePack) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  RefusesNamedBlobs refusing(RegistryStoreFor(reg_->host(), absl::Seconds(10), 3));
  ServerOptions o;
  o.session_key = "gocacheprog.session.refs-refused";
  o.lookup_threads = 1;
  o.pack_ref_min_bytes = 1;
  std::vector<std::string> bodies;
  std::string puts;
  for (int i = 0; i < 6; ++i) {
    bodies.push_back(TextBody(1800 + i, 30000 + i));
    puts += Put(i + 1, ActionID(1800 + i), bodies.back());
  }
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup.get(), &refusing);
  EXPECT_EQ(ra.stats.uploaded, 6);
  EXPECT_EQ(ra.stats.pack_refs, 0);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(absl::StrContains(list->config, R"("packEncoding":"zstd")")) << list->config;
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_EQ(ra.stats.pack_bytes_written, list->blobs[1].size);

  Fixture b;
  Result rb = b.Run(GetsOf(1800, 6), o, lookup.get(), upload.get());
  for (int i = 0; i < 6; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1);
  EXPECT_EQ(rb.stats.misses, 0);
}

// Objects over 16 KiB that compress go up as zstd frames (their entries say
// "encoding":"zstd"); those that do not, as they are. Every way a machine gets
// an object back decodes the frame: a get, the session's object-by-object
// prefetch (which finds no blob of the outputID and reads the entry), and a
// local directory holding the registry's form (as `ocicache sync` copies it).
TEST_F(RegistryTest, CompressibleObjectsTravelAsZstdFrames) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.objects-zstd";
  o.session_pack = false;  // objects one by one
  o.lookup_threads = 1;
  // 40 KB and 9 MiB of text (compressed in memory / streamed), 40 KB random.
  const std::vector<std::string> bodies = {TextBody(1200, 40000), TextBody(1201, 9 << 20),
                                           Body(1202, 40000)};
  std::string puts;
  for (int i = 0; i < 3; ++i) puts += Put(i + 1, ActionID(1200 + i), bodies[i]);
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 3) << absl::StrJoin(ra.warnings, "\n");
  std::vector<cache::Entry> stored;
  for (int i = 0; i < 3; ++i) {
    auto e = upload->Lookup(Hex(ActionID(1200 + i)), {});
    ASSERT_TRUE(e.ok()) << i << ": " << e.status();
    ASSERT_EQ(e->blobs.size(), 1u) << i;
    const bool text = i < 2;
    EXPECT_EQ(absl::StrContains(e->config, R"("encoding":"zstd")"), text) << e->config;
    EXPECT_EQ(e->blobs[0].media_type, text ? "application/zstd" : "application/octet-stream");
    EXPECT_EQ(upload->StatBlob(oci::Digest::Of(bodies[i])).ok(), !text) << i;
    if (text) {
      EXPECT_LT(e->blobs[0].size * 4, static_cast<int64_t>(bodies[i].size())) << i;
    }
    stored.push_back(*e);
  }

  // A fresh machine's gets; then one whose session list prefetches them.
  Fixture b;
  Result rb = b.Run(GetsOf(1200, 3), {}, lookup.get(), upload.get());
  for (int i = 0; i < 3; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.remote_hits, 3);
  EXPECT_TRUE(rb.warnings.empty()) << absl::StrJoin(rb.warnings, "\n");
  // Each fetched entry was recorded in the directory, in its local form (the
  // object's blob, not the frame): the same gets are local hits now.
  Fixture b2(b.dir_);
  Result rb2 = b2.Run(GetsOf(1200, 3), {}, lookup.get(), upload.get());
  for (int i = 0; i < 3; ++i) ExpectHit(rb2, i + 1, bodies[i]);
  EXPECT_EQ(rb2.stats.local_hits, 3);
  Fixture c;
  Result rc = c.Run(GetsOf(1200, 3), o, lookup.get(), upload.get());
  for (int i = 0; i < 3; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_EQ(rc.stats.session_listed, 3);
  EXPECT_EQ(rc.stats.misses, 0);
  EXPECT_EQ(rc.stats.remote_errors, 0);

  // The registry's form copied into a directory: the frame is decoded there.
  Fixture d;
  std::string frame;
  oci::StringSink sink(&frame);
  ASSERT_TRUE(upload->ReadBlob(stored[0].blobs[0].digest, 0, sink).ok());
  oci::StringSource src(frame);
  ASSERT_TRUE(d.local->WriteBlob(stored[0].blobs[0].digest, -1, src).ok());
  ASSERT_TRUE(d.local->Put(stored[0]).ok());
  Result rd = d.Run(Get(1, ActionID(1200)) + Close(9));
  ExpectHit(rd, 1, bodies[0]);
  EXPECT_EQ(rd.stats.local_hits, 1);

  // Off: every object as it is.
  ServerOptions off;
  off.object_compression = false;
  Fixture e;
  Result re = e.Run(Put(1, ActionID(1210), bodies[0]) + Close(9), off, lookup.get(),
                    upload.get());
  EXPECT_EQ(re.stats.uploaded, 1);
  EXPECT_TRUE(upload->StatBlob(oci::Digest::Of(bodies[0])).ok());
}

TEST_F(RegistryTest, RandomObjectsKeepARawPack) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.zstd-random";
  PutSessionOf20(900, o, lookup.get(), upload.get());
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_FALSE(absl::StrContains(list->config, "packEncoding")) << list->config;
}

// A pack stored in a way this version does not know (a later encoding) is not
// used: the objects come one by one, all of them.
TEST_F(RegistryTest, AnUnknownPackEncodingFallsBackToObjectByObject) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.zstd-future";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(950, o, lookup.get(), upload.get());
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->config.back(), '}');
  cache::Entry future = *list;
  future.config.pop_back();
  future.config += R"(,"packEncoding":"brotli-9000","packFrames":[[0,5]]})";
  ASSERT_TRUE(upload->Put(future).ok());

  Fixture b;
  Result rb = b.Run(GetsOf(950, 20), o, lookup.get(), upload.get());
  for (int i = 0; i < 20; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 0);
  EXPECT_EQ(rb.stats.session_listed, 20);
  EXPECT_EQ(rb.stats.misses, 0);
}

// Objects that compress very well: a small last chunk of a frame decodes to more
// than the decoder's output buffer, and all of it must come out (else the tail
// objects would be fetched one by one: more requests).
TEST_F(RegistryTest, AHighlyCompressedFrameIsDecodedToItsEnd) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.zstd-big";
  o.lookup_threads = 1;
  o.pack_refs = false;  // the objects in frames
  o.pack_streams = 2;
  o.pack_segment_min_bytes = 1 << 20;
  std::vector<std::string> bodies;
  std::string puts;
  for (int i = 0; i < 6; ++i) {
    bodies.push_back(TextBody(1000 + i, (3 << 20) / 2 + i));
    puts += Put(i + 1, ActionID(1000 + i), bodies.back());
  }
  Fixture a;
  a.Run(puts + Close(99), o, lookup.get(), upload.get());
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_TRUE(absl::StrContains(list->config, R"("packEncoding":"zstd")")) << list->config;
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_LT(list->blobs[1].size * 50, 9 << 20) << "not highly compressed";

  Fixture b;
  const int64_t before = lookup->client().request_count();
  Result rb = b.Run(GetsOf(1000, 6), o, lookup.get(), upload.get());
  for (int i = 0; i < 6; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1);
  EXPECT_EQ(rb.stats.misses, 0);
  // Session manifest and list, and one GET per frame (plus the lookups of gets
  // that came before the list was read; objects the frames did not bring would be
  // prefetched one by one: two requests each).
  const int64_t early = rb.stats.remote_hits - rb.stats.prefetched;
  EXPECT_LE(lookup->client().request_count() - before, 2 + 2 + 2 * early);
}

}  // namespace
// The first build of a module in a registry (no list under its key or its
// module's): the registry's tag list, read once, says which keys to ask for, so
// gets for keys it does not hold are misses without a round trip each; keys it
// holds (another module's outputs here) are still looked up and hit. With the
// snapshot off, or with more entries in the registry than it may read, every get
// asks the registry as before.
TEST_F(RegistryTest, AFirstBuildAsksTheRegistryOnlyForKeysItHolds) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions other;
  other.session_key = "gocacheprog.session.snap-other";
  const std::string body0 = Body(1300, 4000), body1 = Body(1301, 5000);
  Fixture a;
  Result ra = a.Run(Put(1, ActionID(1300), body0) + Put(2, ActionID(1301), body1) + Close(9),
                    other, lookup.get(), upload.get());
  ASSERT_EQ(ra.stats.uploaded, 2);

  auto first_build = [&](const std::string& name, size_t max_keys, int64_t* requests) {
    ServerOptions o;
    o.session_key = "gocacheprog.session.snap-" + name;
    o.session_fallback_key = "gocacheprog.session.snap-module-" + name;
    o.key_snapshot_max_keys = max_keys;
    std::string in = Get(1, ActionID(1300)) + Get(2, ActionID(1301));
    for (int i = 0; i < 20; ++i) in += Get(10 + i, ActionID(1400 + i));
    const int64_t before = lookup->request_count();
    Fixture f;
    Result r = f.Run(in + Close(99), o, lookup.get(), upload.get());
    *requests = lookup->request_count() - before;
    ExpectHit(r, 1, body0);
    ExpectHit(r, 2, body1);
    for (int i = 0; i < 20; ++i) ExpectMiss(r, 10 + i);
    EXPECT_EQ(r.stats.remote_hits, 2) << name;
    EXPECT_EQ(r.stats.misses, 20) << name;
    return r.stats.known_absent;
  };
  int64_t with = 0, without = 0, capped = 0;
  EXPECT_EQ(first_build("on", 20000, &with), 20);
  EXPECT_EQ(first_build("off", 0, &without), 0);
  EXPECT_EQ(first_build("capped", 1, &capped), 0);  // the repository holds more than 1
  // Lists (2) and the tag list, then one manifest per hit (objects this small
  // live inside their entry); without the snapshot also the 20 lookups of
  // absent keys.
  EXPECT_LE(with, 3 + 2);
  EXPECT_GE(without, 2 + 2 + 20);
  EXPECT_GE(capped, 3 + 2 + 20);
}

}  // namespace ocicache::gocacheprog
