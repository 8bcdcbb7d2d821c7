// LayoutStore's index.json: rebuilt when unparsable, foreign entries kept,
// deferred writes; and the other tools it is for: skopeo reads the layout, and
// entries skopeo copies in are imported as refs.
#include "pkg/layout/layout_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/entry.h"
#include "pkg/layout/layout_test_util.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {
namespace {

using ::ocicache::cache::Entry;
using ::ocicache::cache::LookupOptions;

// Runs a shell command; returns its exit status and stdout.
int RunShell(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string FindOnPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  for (absl::string_view d : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string p = absl::StrCat(d, "/", prog);
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// ---------------------------------------------------------------------------
// index.json.

TEST(LayoutStoreTest, UnparsableIndexIsRebuiltAndForeignEntriesKept) {
  std::string dir = NewDir("index");
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(blob.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(s->Put(MakeEntry(absl::StrCat("k", i), *blob, "g")).ok());
    WriteFile(dir + "/index.json", "");  // e.g. after a power loss
    ASSERT_TRUE(s->Put(MakeEntry("k3", *blob, "g")).ok());
    EXPECT_EQ(IndexRefs(dir).size(), 4u);
  }
  // Another image in the same layout (what `skopeo copy ... oci:DIR:latest` adds).
  std::string foreign_manifest = "{\"schemaVersion\":2}";
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    ASSERT_TRUE(PutBlob(*s, foreign_manifest).ok());
  }
  auto idx = nlohmann::json::parse(ReadFile(dir + "/index.json"));
  idx["manifests"].push_back(
      {{"mediaType", oci::media::kImageManifest},
       {"digest", oci::Digest::Of(foreign_manifest).str()},
       {"size", foreign_manifest.size()},
       {"annotations",
        {{"org.opencontainers.image.ref.name", "latest"},
         // Brackets, quotes and a fake ref name inside a string must not confuse
         // the index scanner.
         {"org.example.tricky", "}],\"{\\\",\"org.opencontainers.image.ref.name\":\"k.x\""}}}});
  WriteFile(dir + "/index.json", idx.dump());
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(s->Put(MakeEntry("k4", *blob, "g")).ok());
    ASSERT_TRUE(s->Delete("k0").ok());
    auto refs = IndexRefs(dir);
    EXPECT_EQ(refs.size(), 5u);
    EXPECT_EQ(refs["latest"], oci::Digest::Of(foreign_manifest).str());
    EXPECT_FALSE(refs.count(TagOf("k0")));
    // Gc keeps the foreign image's manifest and the index row.
    GcOptions gc;
    gc.min_age = absl::ZeroDuration();
    ASSERT_TRUE(s->Gc(gc).ok());
    EXPECT_TRUE(s->StatBlob(oci::Digest::Of(foreign_manifest)).ok());
    EXPECT_EQ(IndexRefs(dir).count("latest"), 1u);
  }
  {
    // A new instance reads index.json as written by the store (the fast path).
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(s->Put(MakeEntry("k5", *blob, "g")).ok());
    auto refs = IndexRefs(dir);
    EXPECT_EQ(refs.size(), 6u);
    EXPECT_EQ(refs.count("latest"), 1u);
    EXPECT_EQ(refs.count("k.x"), 0u);
    auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
    ASSERT_TRUE(idx.ok());
    bool found = false;
    for (const auto& m : idx->manifests) {
      auto it = m.annotations.find("org.example.tricky");
      if (it == m.annotations.end()) continue;
      found = true;
      EXPECT_EQ(it->second, "}],\"{\\\",\"org.opencontainers.image.ref.name\":\"k.x\"");
    }
    EXPECT_TRUE(found);
  }
}

TEST(LayoutStoreTest, DeferredIndexIsWrittenOnFlushAndClose) {
  std::string dir = NewDir("defer");
  LayoutStore::Options opts;
  opts.index_interval = absl::InfiniteDuration();
  {
    auto s = OpenOrDie(dir, opts);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "d");
    ASSERT_TRUE(blob.ok());
    ASSERT_TRUE(s->Put(MakeEntry("d1", *blob, "g")).ok());
    EXPECT_TRUE(IndexRefs(dir).empty());
    EXPECT_TRUE(s->Lookup("d1", LookupOptions()).ok());  // lookups do not need the index
    ASSERT_TRUE(s->Flush().ok());
    EXPECT_EQ(IndexRefs(dir).size(), 1u);
    ASSERT_TRUE(s->Put(MakeEntry("d2", *blob, "g")).ok());
    EXPECT_EQ(IndexRefs(dir).size(), 1u);
  }
  EXPECT_EQ(IndexRefs(dir).size(), 2u);

  // A finite interval: puts only queue; the background writer writes the first
  // change at once and the next ones an interval after the last rewrite.
  std::string dir2 = NewDir("interval");
  opts.index_interval = absl::Hours(1);
  auto s = OpenOrDie(dir2, opts);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "d");
  ASSERT_TRUE(s->Put(MakeEntry("i1", *blob, "g")).ok());
  absl::Time end = absl::Now() + absl::Seconds(10);
  while (IndexRefs(dir2).empty() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(IndexRefs(dir2).size(), 1u);
  ASSERT_TRUE(s->Put(MakeEntry("i2", *blob, "g")).ok());
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(IndexRefs(dir2), (std::map<std::string, std::string>{{TagOf("i1"), RefOf(dir2, "i1")}}));
  ASSERT_TRUE(s->Delete("i1").ok());  // deletions are never deferred
  EXPECT_TRUE(IndexRefs(dir2).empty());
  ASSERT_TRUE(s->Flush().ok());
  EXPECT_EQ(IndexRefs(dir2), (std::map<std::string, std::string>{{TagOf("i2"), RefOf(dir2, "i2")}}));
}

// The background writer writes what puts queued without any further call, and
// one rewrite takes a burst of puts.
TEST(LayoutStoreTest, BackgroundIndexWriterCatchesUp) {
  std::string dir = NewDir("catchup");
  LayoutStore::Options opts;
  opts.index_interval = absl::Milliseconds(100);
  auto s = OpenOrDie(dir, opts);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "d");
  ASSERT_TRUE(blob.ok());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(s->Put(MakeEntry(absl::StrCat("b", i), *blob, "g")).ok());
  }
  absl::Time end = absl::Now() + absl::Seconds(10);
  while (IndexRefs(dir).size() < 50 && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(IndexRefs(dir).size(), 50u);
  EXPECT_EQ(IndexRefs(dir).at(TagOf("b49")), RefOf(dir, "b49"));
}

// ---------------------------------------------------------------------------
// Other tools.

TEST(LayoutStoreTest, SkopeoReadsTheLayout) {
  std::string skopeo = FindOnPath("skopeo");
  ASSERT_FALSE(skopeo.empty()) << "skopeo is required for this test and is not on PATH ("
                               << (std::getenv("PATH") ? std::getenv("PATH") : "") << ")";
  std::string dir = NewDir("skopeo");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, Pattern(10000, 11));
  ASSERT_TRUE(blob.ok());
  std::string key = "go/build/id";
  Entry e = MakeEntry(key, *blob, "go1.23");
  cache::Location loc;
  loc.media_type = oci::media::kLayerTarGzip;
  loc.digest = oci::Digest::Of("elsewhere");
  loc.size = 9;
  loc.url = "https://registry.example/v2/cache/blobs/" + loc.digest.str();
  e.locations.push_back(loc);
  ASSERT_TRUE(s->Put(e).ok());
  std::string tag = TagOf(key);
  auto md = oci::Digest::Parse(RefOf(dir, key));
  ASSERT_TRUE(md.ok());
  auto manifest = ReadBlobString(*s, *md);
  ASSERT_TRUE(manifest.ok());

  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string env = absl::StrCat("HOME='", tmp ? tmp : "/tmp", "' TMPDIR='", tmp ? tmp : "/tmp",
                                 "' ");
  std::string out;
  int rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", dir, ":", tag, " 2>&1"), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(out), *manifest);

  // A copy to another layout keeps the manifest byte for byte, and that layout
  // opens as a store with the entry (refs imported from its index.json).
  std::string copy = NewDir("skopeo-copy");
  rc = RunShell(absl::StrCat(env, skopeo, " --insecure-policy copy --preserve-digests oci:", dir, ":",
                        tag, " oci:", copy, ":", tag, " 2>&1"),
           &out);
  ASSERT_EQ(rc, 0) << out;
  rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", copy, ":", tag, " 2>&1"), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(out), *manifest);
  auto c = OpenOrDie(copy);
  ASSERT_TRUE(c);
  auto got = c->Lookup(key, LookupOptions());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->config, e.config);
  ASSERT_EQ(got->locations.size(), 1u);
  EXPECT_EQ(got->locations[0].url, loc.url);
  EXPECT_TRUE(*ReadBlobString(*c, blob->digest) == Pattern(10000, 11));

  // Copied into a layout that is already a store: the next Gc imports the entry.
  std::string live = NewDir("skopeo-live");
  auto l = OpenOrDie(live);
  ASSERT_TRUE(l);
  rc = RunShell(absl::StrCat(env, skopeo, " --insecure-policy copy --preserve-digests oci:", dir,
                             ":", tag, " oci:", live, ":", tag, " 2>&1"),
                &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::IsNotFound(l->Lookup(key, LookupOptions()).status()));  // refs are the truth
  GcOptions gc;
  gc.min_age = absl::ZeroDuration();
  auto g = l->Gc(gc);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->refs_imported, 1);
  EXPECT_EQ(g->entries, 1);
  auto imported = l->Lookup(key, LookupOptions());
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->config, e.config);
  EXPECT_EQ(IndexRefs(live).at(tag), md->str());
}

// skopeo (containers/image) accepts only names matching the image-spec grammar for
// org.opencontainers.image.ref.name: component ::= alphanum (separator alphanum)*,
// separator ::= [-._:@+] | "--". Go build ids start with '-' and contain '/'.
TEST(LayoutStoreTest, SkopeoReadsEveryKeyShape) {
  std::string skopeo = FindOnPath("skopeo");
  ASSERT_FALSE(skopeo.empty()) << "skopeo is required for this test and is not on PATH";
  const std::regex ref_name(
      "[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*(/[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*)*");
  std::string dir = NewDir("skopeo-keys");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "k");
  ASSERT_TRUE(blob.ok());
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string env = absl::StrCat("HOME='", tmp ? tmp : "/tmp", "' ");
  for (std::string key : {"-aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789_-/AbCdEfGhIjKlMnOpQrSt/u-_",
                          "/leading-slash", "trailing-", "a---b", "plain"}) {
    ASSERT_TRUE(s->Put(MakeEntry(key, *blob, "g")).ok());
    std::string tag = TagOf(key);
    EXPECT_TRUE(std::regex_match(tag, ref_name))
        << "cache::TagForKey(\"" << key << "\") = \"" << tag
        << "\" is not a valid OCI layout ref name (annotations.md grammar)";
    std::string out;
    int rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", dir, ":", tag, " 2>&1"), &out);
    EXPECT_EQ(rc, 0) << key << ": " << out;
  }
}

}  // namespace
}  // namespace ocicache::layout
