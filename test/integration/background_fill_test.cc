// How ocicached fills its local tier from a registry hit (docs/SERVER.md,
// "Registry hits and the local tier"), with the real binary over the real
// registry behind a slow link (test/harness/link_proxy.h):
//   --fill_in_background=false  the blobs are copied before the answer
//   default (background fills)  the hit is answered once the registry's
//                               manifest is read; its blobs are copied into
//                               the local tier by a background pool
// The link's bandwidth makes copying the entry's 2.4 MB take about 4 s, so
// which of the two happened shows in the local tier right after the answer:
// no blob yet, or every blob. Either way every read gets the right bytes and
// the local tier ends up holding the entry.
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/cache/entry.h"
#include "pkg/client/grpc_store.h"
#include "pkg/oci/stream.h"
#include "pkg/stores/stores.h"
#include "test/harness/link_proxy.h"
#include "test/harness/registry.h"
#include "test/integration/daemon_process.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using harness::RegistryProcess;
using testing::DaemonProcess;

constexpr int kBlobs = 24;

class BackgroundFillTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto r = RegistryProcess::Start({});
    ASSERT_TRUE(r.ok()) << r.status();
    registry_ = r->release();
    harness::LinkOptions link;
    link.one_way_delay = absl::Milliseconds(5);
    link.bits_per_second = 5'000'000;  // 2.4 MB: about 4 s
    auto p = harness::LinkProxy::Start(registry_->host(), link);
    ASSERT_TRUE(p.ok()) << p.status();
    proxy_ = p->release();
  }
  static void TearDownTestSuite() {
    delete proxy_;
    proxy_ = nullptr;
    delete registry_;
    registry_ = nullptr;
  }

  // Puts an entry of kBlobs blobs of 100 KB under `key` in `repo` (the
  // registry itself, as another machine would), and returns the blobs' bytes.
  static std::vector<std::string> PutEntry(const std::string& repo, const std::string& key) {
    stores::StoreConfig c;
    c.repo = absl::StrCat(registry_->host(), "/", repo);
    auto set = stores::OpenStores(c);
    EXPECT_TRUE(set.ok()) << set.status();
    if (!set.ok()) return {};
    cache::Entry e;
    e.key = key;
    std::vector<std::string> contents;
    for (int i = 0; i < kBlobs; ++i) {
      contents.push_back(absl::StrCat(key, " blob ", i, std::string(100000, 'a' + i % 26)));
      oci::StringSource src(contents.back());
      auto d = set->store->WriteBlob(oci::Digest(), -1, src);
      EXPECT_TRUE(d.ok()) << d.status();
      if (!d.ok()) return {};
      e.blobs.push_back(*d);
    }
    absl::Status s = set->store->Put(e);
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? contents : std::vector<std::string>{};
  }

  // How many of `entry`'s blobs the layout at `dir` holds.
  static int LocalBlobs(const std::string& dir, const cache::Entry& entry) {
    int n = 0;
    for (const auto& b : entry.blobs) {
      struct stat st;
      if (::stat(absl::StrCat(dir, "/blobs/sha256/", b.digest.hex()).c_str(), &st) == 0) ++n;
    }
    return n;
  }

  // Looks `key` up through a fresh ocicached with `flags` over the slow link;
  // returns how many blobs its local tier held when the answer came, after
  // checking every blob reads back right and the tier ends up with all.
  static int BlobsLocalAtTheAnswer(const std::string& repo, const std::string& key,
                                   const std::vector<std::string>& contents,
                                   std::vector<std::string> flags) {
    const std::string dir = testing::TempDir("background-fill");
    std::vector<std::string> args = {absl::StrCat("--repo=", proxy_->address(), "/", repo),
                                     "--dir=" + dir, "--access_log=false"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto d = DaemonProcess::Start(args);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return -1;
    client::GrpcStore server(client::Dial((*d)->address()), (*d)->address());
    auto hit = server.Lookup(key, {});
    const int at_answer = hit.ok() ? LocalBlobs(dir, *hit) : -1;
    EXPECT_TRUE(hit.ok()) << hit.status();
    if (!hit.ok()) return -1;
    EXPECT_EQ(hit->blobs.size(), contents.size());
    for (size_t i = 0; i < hit->blobs.size() && i < contents.size(); ++i) {
      std::string back;
      oci::StringSink sink(&back);
      absl::Status s = server.ReadBlob(hit->blobs[i].digest, 0, sink);
      EXPECT_TRUE(s.ok()) << i << ": " << s;
      EXPECT_EQ(back, contents[i]) << i;
    }
    // The copies end in the local tier, with no further call (bounded wait).
    const absl::Time end = absl::Now() + absl::Seconds(60);
    while (LocalBlobs(dir, *hit) < kBlobs && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_EQ(LocalBlobs(dir, *hit), kBlobs) << (*d)->Stderr();
    return at_answer;
  }

  static RegistryProcess* registry_;
  static harness::LinkProxy* proxy_;
};

RegistryProcess* BackgroundFillTest::registry_ = nullptr;
harness::LinkProxy* BackgroundFillTest::proxy_ = nullptr;

TEST_F(BackgroundFillTest, WithoutBackgroundFillsTheBlobsAreCopiedBeforeTheAnswer) {
  auto contents = PutEntry("bg/first", "bg/entry");
  ASSERT_EQ(contents.size(), static_cast<size_t>(kBlobs));
  EXPECT_EQ(BlobsLocalAtTheAnswer("bg/first", "bg/entry", contents, {"--fill_in_background=false"}),
            kBlobs);
}

TEST_F(BackgroundFillTest, ByDefaultAHitIsAnsweredBeforeItsBlobsAreCopied) {
  auto contents = PutEntry("bg/background", "bg/entry");
  ASSERT_EQ(contents.size(), static_cast<size_t>(kBlobs));
  // The copy of 2.4 MB takes about 4 s on this link; the answer one manifest GET.
  EXPECT_LT(BlobsLocalAtTheAnswer("bg/background", "bg/entry", contents, {}), kBlobs);
}

}  // namespace
}  // namespace ocicache
