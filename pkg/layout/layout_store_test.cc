// LayoutStore as a whole: opening (and creating, and refusing) a layout, and
// many writers at once: two processes, a writer killed mid-write, threads on
// one key. Blobs, refs, index.json and gc have their own tests
// (layout_blobs_test.cc, layout_refs_test.cc, layout_index_test.cc, layout_gc_test.cc).
#include "pkg/layout/layout_store.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
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

// ---------------------------------------------------------------------------
// Opening.

TEST(LayoutStoreTest, OpenCreatesAValidLayout) {
  std::string dir = NewDir("fresh") + "/nested/cache";
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Describe(), "dir:" + dir);
  auto layout = nlohmann::json::parse(ReadFile(dir + "/oci-layout"));
  EXPECT_EQ(layout["imageLayoutVersion"], "1.0.0");
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_TRUE(idx->manifests.empty());
  struct stat st;
  EXPECT_EQ(::stat((dir + "/blobs/sha256").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(OpenOrDie(dir) != nullptr);  // and opens again
}

TEST(LayoutStoreTest, OpenRefusesWhatIsNotALayout) {
  std::string dir = NewDir("unrelated");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  WriteFile(dir + "/index.json", "{\"some\":\"other tool\"}");
  auto s = LayoutStore::Open(dir);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_TRUE(absl::StrContains(s.status().message(), "oci-layout")) << s.status();
  EXPECT_EQ(ListNames(dir), std::vector<std::string>{"index.json"});  // nothing written

  std::string home = NewDir("home");
  ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
  WriteFile(home + "/notes.txt", "mine");
  EXPECT_EQ(LayoutStore::Open(home).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ListNames(home), std::vector<std::string>{"notes.txt"});

  std::string future = NewDir("future");
  ASSERT_EQ(::mkdir(future.c_str(), 0755), 0);
  WriteFile(future + "/oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
  EXPECT_EQ(LayoutStore::Open(future).status().code(), absl::StatusCode::kFailedPrecondition);

  std::string file = NewDir("file");
  WriteFile(file, "x");
  EXPECT_FALSE(LayoutStore::Open(file).ok());
}

// ---------------------------------------------------------------------------
// Concurrency.

// Child process body: opens the layout (maybe creating it) and puts `n` entries
// from each of two threads. Returns an exit code.
int PutMany(const std::string& dir, const std::string& prefix, int n) {
  auto s = LayoutStore::Open(dir);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.status().ToString().c_str());
    return 2;
  }
  std::atomic<int> failures{0};
  auto work = [&](int t) {
    for (int i = 0; i < n; ++i) {
      std::string key = absl::StrCat(prefix, "/", t, "/", i);
      auto blob = PutBlob(**s, absl::StrCat("output of ", key));
      absl::Status st = blob.ok() ? (*s)->Put(MakeEntry(key, *blob, "go")) : blob.status();
      if (!st.ok()) {
        std::fprintf(stderr, "put %s: %s\n", key.c_str(), st.ToString().c_str());
        ++failures;
      }
    }
  };
  std::thread t1(work, 0), t2(work, 1);
  t1.join();
  t2.join();
  return failures.load() == 0 ? 0 : 1;
}

// Many openers racing on fresh directories: the unlocked first look may see a
// layout half made by another opener (index.json before it sees oci-layout, say);
// that must send it to the locked path, never fail with a contradiction. Opens
// from threads contend for the lock file as processes do (flock is per open file).
TEST(LayoutStoreTest, OpenersRacingOnAFreshDirectoryAllSucceed) {
  constexpr int kRounds = 150;
  constexpr int kOpeners = 6;
  std::atomic<int> failures{0};
  std::string first_error;
  absl::Mutex mu;
  for (int r = 0; r < kRounds; ++r) {
    std::string dir = NewDir(absl::StrCat("race", r));
    std::vector<std::thread> openers;
    for (int t = 0; t < kOpeners; ++t) {
      openers.emplace_back([&, dir] {
        auto s = LayoutStore::Open(dir);
        if (s.ok()) return;
        ++failures;
        absl::MutexLock l(&mu);
        if (first_error.empty()) first_error = std::string(s.status().message());
      });
    }
    for (auto& t : openers) t.join();
  }
  EXPECT_EQ(failures.load(), 0) << first_error;
}

TEST(LayoutStoreTest, TwoProcessesPutConcurrently) {
  std::string dir = NewDir("procs");  // created by the children, racing
  std::vector<pid_t> pids;
  for (const char* prefix : {"-procA", "procB"}) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) ::_exit(PutMany(dir, prefix, 100));
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }

  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::set<std::string> tags;
  LookupOptions lo;
  lo.touch = false;
  for (const char* prefix : {"-procA", "procB"}) {
    for (int t = 0; t < 2; ++t) {
      for (int i = 0; i < 100; ++i) {
        std::string key = absl::StrCat(prefix, "/", t, "/", i);
        auto e = s->Lookup(key, lo);
        ASSERT_TRUE(e.ok()) << key << ": " << e.status();
        EXPECT_EQ(*ReadBlobString(*s, e->blobs.at(0).digest), "output of " + key);
        tags.insert(TagOf(key));
      }
    }
  }
  int listed = 0;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo&) { return ++listed, true; }).ok());
  EXPECT_EQ(listed, 400);
  auto refs = IndexRefs(dir);
  EXPECT_EQ(refs.size(), 400u);
  for (const auto& tag : tags) {
    ASSERT_TRUE(refs.count(tag)) << tag;
    EXPECT_EQ(refs[tag], absl::StripTrailingAsciiWhitespace(ReadFile(dir + "/refs/" + tag)));
  }
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());
}

// A writer killed at an arbitrary point leaves only complete, verifiable files
// under their final names; stray temp files are Gc's.
TEST(LayoutStoreTest, KilledWriterLeavesNoPartialFiles) {
  std::string dir = NewDir("killed");
  ASSERT_TRUE(OpenOrDie(dir));
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = LayoutStore::Open(dir);
    if (!s.ok()) ::_exit(2);
    for (int i = 0;; ++i) {
      std::string data = Pattern(2 << 20, i);  // big enough to be caught mid-write
      auto blob = PutBlob(**s, data);
      if (!blob.ok() || !(*s)->Put(MakeEntry(absl::StrCat("killed/", i), *blob, "go")).ok()) {
        ::_exit(3);
      }
    }
  }
  ::usleep(400 * 1000);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with " << WEXITSTATUS(status);

  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  for (const auto& name : ListNames(dir + "/blobs/sha256")) {
    std::string data = ReadFile(dir + "/blobs/sha256/" + name);
    EXPECT_EQ(oci::Digest::Of(data).hex(), name) << "partial blob under its final name";
  }
  int entries = 0;
  for (const auto& tag : ListNames(dir + "/refs")) {
    auto d = oci::Digest::Parse(absl::StripTrailingAsciiWhitespace(ReadFile(dir + "/refs/" + tag)));
    ASSERT_TRUE(d.ok()) << "partial ref " << tag;
    EXPECT_TRUE(s->StatBlob(*d).ok()) << tag;
    ++entries;
  }
  EXPECT_GT(entries, 0);
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_GE(idx->manifests.size() + 1, static_cast<size_t>(entries));  // at most the last one lags
  GcOptions gc;
  gc.min_age = absl::ZeroDuration();
  auto g = s->Gc(gc);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->entries, entries);
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());
  EXPECT_EQ(IndexRefs(dir).size(), static_cast<size_t>(entries));
}

TEST(LayoutStoreTest, ThreadsReplacingOneKeyLeaveIndexAndRefAgreeing) {
  std::string dir = NewDir("samekey");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "same");
  ASSERT_TRUE(blob.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Entry e = MakeEntry("shared", *blob, "go");
        e.config = absl::StrCat("{\"writer\":", t, ",\"i\":", i, "}");
        EXPECT_TRUE(s->Put(e).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(IndexRefs(dir), (std::map<std::string, std::string>{
                                {TagOf("shared"), RefOf(dir, "shared")}}));
}

}  // namespace
}  // namespace ocicache::layout
