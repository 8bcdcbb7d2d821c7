// LayoutStore entries through their refs: Put, Lookup, Delete and List; keys of
// every shape; the touch of last use; corrupt and missing manifests and blobs;
// warm lookups (the memo and the quiet-directories trust) seeing what another
// store on the same directory changes.
#include "pkg/layout/layout_store.h"

#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pkg/cache/entry.h"
#include "pkg/layout/layout_test_util.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {
namespace {

using ::ocicache::cache::Entry;
using ::ocicache::cache::LookupOptions;

// ---------------------------------------------------------------------------
// Entries.

TEST(LayoutStoreTest, PutLookupDeleteList) {
  std::string dir = NewDir("entries");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string out = Pattern(2000, 6);
  auto blob = PutBlob(*s, out);
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("action-1", *blob, "go1.23.1");
  e.annotations["org.ocicache.options"] = "abc";
  ASSERT_TRUE(s->Put(e).ok());

  LookupOptions lo;
  auto got = s->Lookup("action-1", lo);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->key, "action-1");
  EXPECT_EQ(got->config, e.config);
  ASSERT_EQ(got->blobs.size(), 1u);
  EXPECT_EQ(got->blobs[0].digest, blob->digest);
  EXPECT_EQ(got->blobs[0].size, 2000);
  EXPECT_EQ(got->blobs[0].media_type, "application/vnd.ocicache.test.output");
  EXPECT_EQ(got->annotations.at("org.ocicache.tool.go"), "go1.23.1");
  EXPECT_EQ(got->annotations.at("org.ocicache.options"), "abc");
  EXPECT_NE(got->created, absl::InfinitePast());

  // On disk: the ref, the manifest blob, the small blobs, the index row.
  std::string ref = RefOf(dir, "action-1");
  auto md = oci::Digest::Parse(ref);
  ASSERT_TRUE(md.ok()) << ref;
  auto manifest = ReadBlobString(*s, *md);
  ASSERT_TRUE(manifest.ok());
  auto m = oci::Manifest::Parse(*manifest);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(s->StatBlob(m->config.digest).ok());
  EXPECT_TRUE(s->StatBlob(m->layers[0].digest).ok());
  auto refs = IndexRefs(dir);
  EXPECT_EQ(refs, (std::map<std::string, std::string>{{TagOf("action-1"), ref}}));

  std::vector<cache::EntryInfo> listed;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo& i) {
                 listed.push_back(i);
                 return true;
               }).ok());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "action-1");
  EXPECT_EQ(listed[0].tag, TagOf("action-1"));
  EXPECT_EQ(listed[0].manifest_digest, *md);
  EXPECT_GE(listed[0].size, 2000);

  // Put replaces the entry for that key, in refs and in index.json.
  Entry e2 = e;
  e2.config = "{\"v\":2}";
  ASSERT_TRUE(s->Put(e2).ok());
  EXPECT_EQ(s->Lookup("action-1", lo)->config, "{\"v\":2}");
  std::string ref2 = RefOf(dir, "action-1");
  EXPECT_NE(ref2, ref);
  EXPECT_EQ(IndexRefs(dir), (std::map<std::string, std::string>{{TagOf("action-1"), ref2}}));

  ASSERT_TRUE(s->Delete("action-1").ok());
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("action-1", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->Delete("action-1")));
  EXPECT_TRUE(absl::IsNotFound(s->Delete("never-was")));
  int n = 0;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(IndexRefs(dir).empty());
  EXPECT_TRUE(s->StatBlob(blob->digest).ok());  // blobs stay for GC
  EXPECT_EQ(s->Lookup("", lo).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LayoutStoreTest, PutRequiresBlobsPresent) {
  std::string dir = NewDir("precondition");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  oci::Descriptor missing{"x", oci::Digest::Of("not stored"), 10};
  absl::Status st = s->Put(MakeEntry("k", missing, "go1"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), missing.digest.str())) << st;
  EXPECT_TRUE(ListNames(dir + "/refs").empty());
  EXPECT_TRUE(IndexRefs(dir).empty());

  // Present but with another size is not the blob the entry names.
  auto blob = PutBlob(*s, "12345");
  ASSERT_TRUE(blob.ok());
  oci::Descriptor wrong = *blob;
  wrong.size = 6;
  EXPECT_EQ(s->Put(MakeEntry("k", wrong, "go1")).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LayoutStoreTest, RequiredAnnotationMismatchIsAMiss) {
  auto s = OpenOrDie(NewDir("annotations"));
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "payload");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(s->Put(MakeEntry("key", *blob, "go1.22.0")).ok());

  LookupOptions same;
  same.require["org.ocicache.tool.go"] = "go1.22.0";
  EXPECT_TRUE(s->Lookup("key", same).ok());
  LookupOptions other;
  other.require["org.ocicache.tool.go"] = "go1.23.0";
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("key", other).status()));
  LookupOptions absent;
  absent.require["org.ocicache.options"] = "x";
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("key", absent).status()));
}

TEST(LayoutStoreTest, KeysWithSlashesAndLeadingDash) {
  std::string dir = NewDir("keys");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::vector<std::string> keys = {
      "-aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789_-/AbCdEfGhIjKlMnOpQrSt/uVwXyZ9876543210-_ab",
      "a/b", "a_2fb", "a_b", "--", "-", "../../etc/passwd", ".hidden", std::string(300, '/'),
      std::string(301, '/')};
  for (size_t i = 0; i < keys.size(); ++i) {
    auto blob = PutBlob(*s, absl::StrCat("blob ", i));
    ASSERT_TRUE(blob.ok());
    ASSERT_TRUE(s->Put(MakeEntry(keys[i], *blob, absl::StrCat("v", i))).ok()) << keys[i];
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    auto e = s->Lookup(keys[i], LookupOptions());
    ASSERT_TRUE(e.ok()) << keys[i] << ": " << e.status();
    EXPECT_EQ(e->key, keys[i]);
    EXPECT_EQ(e->annotations["org.ocicache.tool.go"], absl::StrCat("v", i));
  }
  std::set<std::string> listed;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo& i) { return listed.insert(i.key), true; }).ok());
  EXPECT_EQ(listed, std::set<std::string>(keys.begin(), keys.end()));
  EXPECT_EQ(IndexRefs(dir).size(), keys.size());
  // Nothing escaped the layout.
  for (const auto& n : ListNames(dir)) {
    EXPECT_TRUE(n == "oci-layout" || n == "index.json" || n == "blobs" || n == "refs" ||
                n == "tmp" || n == "ocicache.lock")
        << n;
  }
  EXPECT_EQ(ListNames(dir + "/refs").size(), keys.size());
}

TEST(LayoutStoreTest, TouchRefreshesLastUsedOncePerInterval) {
  std::string dir = NewDir("touch");
  absl::Time now = absl::FromUnixSeconds(1700000000);
  LayoutStore::Options opts;
  opts.clock = [&] { return now; };
  auto s = OpenOrDie(dir, opts);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "touched");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(s->Put(MakeEntry("t", *blob, "go1")).ok());
  std::string ref0 = RefOf(dir, "t");

  now += absl::Hours(1);
  auto e = s->Lookup("t", LookupOptions());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->last_used, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(RefOf(dir, "t"), ref0);

  now += absl::Hours(48);
  LookupOptions no_touch;
  no_touch.touch = false;
  ASSERT_TRUE(s->Lookup("t", no_touch).ok());
  EXPECT_EQ(RefOf(dir, "t"), ref0);

  e = s->Lookup("t", LookupOptions());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->last_used, now);
  std::string ref1 = RefOf(dir, "t");
  EXPECT_NE(ref1, ref0);
  EXPECT_EQ(IndexRefs(dir).at(TagOf("t")), ref1);
  auto again = s->Lookup("t", no_touch);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->last_used, now);
  EXPECT_EQ(again->created, absl::FromUnixSeconds(1700000000));
}

TEST(LayoutStoreTest, CorruptManifestIsReportedThenHealedByPut) {
  std::string dir = NewDir("corrupt-manifest");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "x");
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("c", *blob, "go1");
  ASSERT_TRUE(s->Put(e).ok());
  auto md = oci::Digest::Parse(RefOf(dir, "c"));
  ASSERT_TRUE(md.ok());
  ASSERT_EQ(::truncate(BlobPath(dir, *md).c_str(), 20), 0);

  LookupOptions lo;
  lo.touch = false;
  EXPECT_EQ(s->Lookup("c", lo).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  ASSERT_TRUE(s->Put(e).ok());
  EXPECT_TRUE(s->Lookup("c", lo).ok());

  // An entry whose blob is gone is a miss.
  ASSERT_TRUE(s->RemoveBlob(blob->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->RemoveBlob(blob->digest)));
}

// Once the refs and blobs directories have been quiet for a second, a warm
// lookup trusts its memo without a stat of each file; a ref or blob another
// store (another process) adds or removes still shows at once, through the
// directories. A blob truncated in place shows when it is read.
TEST(LayoutStoreTest, QuietDirectoriesStillShowOtherProcessesChanges) {
  std::string dir = NewDir("quiet");
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  ASSERT_TRUE(a && b);
  auto kb = PutBlob(*a, Pattern(3000, 21));
  auto jb = PutBlob(*a, Pattern(4000, 22));
  ASSERT_TRUE(kb.ok() && jb.ok());
  ASSERT_TRUE(a->Put(MakeEntry("k", *kb, "go1")).ok());
  ASSERT_TRUE(a->Put(MakeEntry("j", *jb, "go1")).ok());
  LookupOptions lo;
  lo.touch = false;
  absl::SleepFor(absl::Milliseconds(1100));
  for (int i = 0; i < 2; ++i) {  // checked, then trusted
    ASSERT_TRUE(a->Lookup("k", lo).ok());
    ASSERT_TRUE(a->Lookup("j", lo).ok());
  }

  // Truncated in place (no directory changes): the trusted memo still answers,
  // which shows the stats were skipped; reading the blob finds it out, moves
  // it aside (a change), and from then on the entry is a miss.
  ASSERT_EQ(::truncate(BlobPath(dir, kb->digest).c_str(), 100), 0);
  ASSERT_TRUE(a->Lookup("k", lo).ok());
  std::string got;
  oci::StringSink sink(&got);
  EXPECT_TRUE(absl::IsDataLoss(a->ReadBlob(kb->digest, 0, sink)));
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));

  // Quiet again; then the other store removes j's blob: a miss at once.
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(b->RemoveBlob(jb->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("j", lo).status()));

  // Quiet again; then the other store deletes the entry: a miss at once.
  ASSERT_TRUE(PutBlob(*b, Pattern(4000, 22)).ok());
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(b->Delete("j").ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("j", lo).status()));
}

// Warm lookups answer from a memo of decoded entries while the ref file is
// unchanged; every change another store (another process) makes is still seen.
TEST(LayoutStoreTest, WarmLookupsSeeChangesFromOtherProcesses) {
  std::string dir = NewDir("memo");
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  ASSERT_TRUE(a && b);
  auto blob = PutBlob(*a, Pattern(3000, 9));
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("k", *blob, "go1");
  e.config = "{\"v\":1}";
  ASSERT_TRUE(a->Put(e).ok());
  LookupOptions lo;
  lo.touch = false;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(a->Lookup("k", lo)->config, "{\"v\":1}");

  // Replaced by the other store: the new entry.
  Entry e2 = e;
  e2.config = "{\"v\":2}";
  ASSERT_TRUE(b->Put(e2).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Its manifest truncated: never a hit; healed by a Put.
  auto md = oci::Digest::Parse(RefOf(dir, "k"));
  ASSERT_TRUE(md.ok());
  ASSERT_EQ(::truncate(BlobPath(dir, *md).c_str(), 20), 0);
  EXPECT_FALSE(a->Lookup("k", lo).ok());
  EXPECT_FALSE(a->Lookup("k", lo).ok());
  ASSERT_TRUE(b->Put(e2).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Its blob gone: a miss.
  ASSERT_TRUE(b->RemoveBlob(blob->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));
  ASSERT_TRUE(PutBlob(*b, Pattern(3000, 9)).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Deleted by the other store: a miss.
  ASSERT_TRUE(b->Delete("k").ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));

  // A required annotation is checked against the remembered entry too.
  ASSERT_TRUE(b->Put(e).ok());
  ASSERT_TRUE(a->Lookup("k", lo).ok());
  LookupOptions want = lo;
  want.require["org.ocicache.tool.go"] = "go2";
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", want).status()));
  want.require["org.ocicache.tool.go"] = "go1";
  EXPECT_TRUE(a->Lookup("k", want).ok());
}

}  // namespace
}  // namespace ocicache::layout
