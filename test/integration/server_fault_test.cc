// Fault tests against a real docker-registry and real ocicached processes:
// the registry dying in the middle of an upload, ocicached killed with SIGKILL
// while blobs and entries are being written (then restarted on the same port
// and directory: the local tier must be consistent and the client finishes by
// resuming), clients that disconnect in the middle of a stream, and
// GrpcStore's resumable writes through a connection that breaks.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <atomic>
#include <functional>
#include <map>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/client/grpc_store.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "test/harness/registry.h"
#include "test/integration/daemon_process.h"
#include "test/integration/layout_fsck.h"
#include "test/integration/served_store.h"
#include "test/integration/tcp_proxy.h"

namespace ocicache {
namespace {

using harness::RegistryProcess;
using testing::DaemonProcess;

// Deterministic bytes that differ at every position (so a shifted or torn copy
// never hashes right).
std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// A rewindable source over `data` that calls `fn(position)` before every read;
// a read then hands out at most what `fn` returns.
class WatchSource : public oci::ByteSource {
 public:
  WatchSource(absl::string_view data, std::function<size_t(size_t)> fn)
      : data_(data), fn_(std::move(fn)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    n = std::min(n, fn_(pos_));
    size_t k = std::min(n, data_.size() - pos_);
    memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  absl::Status Rewind() override {
    ++rewinds_;
    pos_ = 0;
    return absl::OkStatus();
  }
  int rewinds() const { return rewinds_; }

 private:
  absl::string_view data_;
  std::function<size_t(size_t)> fn_;
  size_t pos_ = 0;
  int rewinds_ = 0;
};

// A WatchSource that calls `fn` once, when the reader has taken `at` bytes
// (before handing out more).
class TriggerSource : public WatchSource {
 public:
  TriggerSource(absl::string_view data, size_t at, std::function<void()> fn)
      : WatchSource(data, [this, at, fn = std::move(fn)](size_t pos) {
          if (!fired_ && pos >= at) {
            fired_ = true;
            fn();
          }
          return fired_ ? SIZE_MAX : at - pos;
        }) {}
  bool fired() const { return fired_; }

 private:
  bool fired_ = false;
};

// The same, without Rewind (a pipe).
class PipeLikeSource : public oci::ByteSource {
 public:
  explicit PipeLikeSource(oci::ByteSource& inner) : inner_(inner) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override { return inner_.Read(buf, n); }

 private:
  oci::ByteSource& inner_;
};

std::unique_ptr<client::GrpcStore> Client(const std::string& addr,
                                          client::GrpcStoreOptions opts = {}) {
  return std::make_unique<client::GrpcStore>(client::Dial(addr), addr, opts);
}

absl::StatusOr<v1::StatsResponse> Stats(const std::string& addr) {
  client::GrpcAdmin admin(client::Dial(addr), addr);
  return admin.Stats();
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

cache::Entry EntryFor(const std::string& key, const oci::Digest& d, int64_t size) {
  cache::Entry e;
  e.key = key;
  e.blobs.push_back({});
  e.blobs[0].media_type = oci::media::kOctetStream;
  e.blobs[0].digest = d;
  e.blobs[0].size = size;
  return e;
}

// ---- The registry stops in the middle of an upload ---------------------------

// A registry-only server: the upload streams through to the registry, which is
// killed part-way. The write fails with UNAVAILABLE naming the registry, nothing
// of the blob or its entry is visible, and once the registry is back the same
// write succeeds.
TEST(FaultTest, RegistryKilledMidUploadRegistryOnly) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  const std::string repo = "faults/only";
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/" + repo, "--no_dir"});
  ASSERT_TRUE(d.ok()) << d.status();
  auto direct = registry::Client::Create((*reg)->host());
  ASSERT_TRUE(direct.ok()) << direct.status();

  // Streamed straight through to the registry, then staged on the server as a
  // resumable upload (the registry dies before the server's push).
  for (bool staged : {false, true}) {
    SCOPED_TRACE(staged ? "staged upload" : "direct upload");
    std::string data = Pattern(48 << 20, staged ? 11 : 1);
    oci::Digest digest = oci::Digest::Of(data);
    std::string key = staged ? "staged/kill" : "direct/kill";
    client::GrpcStoreOptions opts;
    opts.write_attempts = 1;
    opts.resumable_min_bytes = staged ? 0 : -1;
    auto store = Client((*d)->address(), opts);

    TriggerSource src(data, 16 << 20, [&] {
      ::kill((*reg)->pid(), SIGKILL);
      ASSERT_TRUE((*reg)->Stop().ok());
    });
    absl::Time start = absl::Now();
    auto w = store->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
    ASSERT_TRUE(src.fired());
    ASSERT_FALSE(w.ok());
    EXPECT_TRUE(absl::IsUnavailable(w.status())) << w.status();
    EXPECT_TRUE(absl::StrContains(w.status().message(), (*reg)->host())) << w.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(60));
    std::cerr << (staged ? "staged" : "direct") << " upload, registry killed: " << w.status()
              << " after " << absl::FormatDuration(absl::Now() - start) << "\n";
    EXPECT_FALSE(store->Put(EntryFor(key, digest, data.size())).ok());

    ASSERT_TRUE((*reg)->Restart().ok());
    // Nothing partial: no blob, no entry, through the server and straight.
    EXPECT_TRUE(absl::IsNotFound((*direct)->StatBlob(repo, digest).status()));
    EXPECT_TRUE(absl::IsNotFound(store->StatBlob(digest).status()));
    EXPECT_TRUE(absl::IsNotFound(store->Lookup(key, {}).status()));

    // The retry succeeds, and the registry holds exactly the blob.
    oci::StringSource again(data);
    auto w2 = store->WriteBlob(digest, static_cast<int64_t>(data.size()), again);
    ASSERT_TRUE(w2.ok()) << w2.status();
    EXPECT_EQ(w2->digest, digest);
    ASSERT_TRUE(store->Put(EntryFor(key, digest, data.size())).ok());
    auto size = (*direct)->StatBlob(repo, digest);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(*size, static_cast<int64_t>(data.size()));
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(store->ReadBlob(digest, 0, sink).ok());
    EXPECT_TRUE(back == data);
  }
  EXPECT_EQ((*d)->Terminate(), 0);
}

// A tiered server takes the upload into its directory first, so the registry
// dying meanwhile degrades to the local tier: the write succeeds, the registry
// shows nothing partial, and the blob reads back whole.
TEST(FaultTest, RegistryKilledMidUploadTiered) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  const std::string repo = "faults/tiered";
  std::string dir = testing::TempDir("tiered");
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/" + repo, "--dir=" + dir});
  ASSERT_TRUE(d.ok()) << d.status();
  std::string data = Pattern(32 << 20, 2);
  oci::Digest digest = oci::Digest::Of(data);
  auto store = Client((*d)->address());
  TriggerSource src(data, 8 << 20, [&] {
    ::kill((*reg)->pid(), SIGKILL);
    ASSERT_TRUE((*reg)->Stop().ok());
  });
  auto w = store->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(store->Put(EntryFor("tiered/kill", digest, data.size())).ok());
  ASSERT_TRUE((*reg)->Restart().ok());
  auto direct = registry::Client::Create((*reg)->host());
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_TRUE(absl::IsNotFound((*direct)->StatBlob(repo, digest).status()));
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE(store->ReadBlob(digest, 0, sink).ok());
  EXPECT_TRUE(back == data);
  EXPECT_EQ((*d)->Terminate(), 0);
  testing::FsckReport r = testing::FsckLayout(dir);
  EXPECT_TRUE(r.problems.empty()) << r.problems[0];
  EXPECT_EQ(r.entries, 1);
}

// ---- A registry's copy of a blob is damaged ----------------------------------

// A blob is hashed once per hop that does not keep it: a registry-only server
// passes the registry's bytes through and the reader's check fails; a tiered
// server's local tier checks them before it keeps them and refuses them.
TEST(FaultTest, DamagedRegistryBlobIsCaughtWhereItIsChecked) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  const std::string repo = "faults/damaged";
  auto only = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/" + repo, "--no_dir"});
  ASSERT_TRUE(only.ok()) << only.status();
  std::string dir = testing::TempDir("damaged");
  auto tiered = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/" + repo, "--dir=" + dir});
  ASSERT_TRUE(tiered.ok()) << tiered.status();

  std::string data = Pattern(3 << 20, 21);
  oci::Digest digest = oci::Digest::Of(data);
  auto store = Client((*only)->address());
  oci::StringSource src(data);
  ASSERT_TRUE(store->WriteBlob(digest, static_cast<int64_t>(data.size()), src).ok());

  // One byte flipped in the registry's file, the size unchanged.
  const std::string file = absl::StrCat((*reg)->root_dir(), "/storage/docker/registry/v2/blobs/sha256/",
                                        digest.hex().substr(0, 2), "/", digest.hex(), "/data");
  int fd = ::open(file.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << file;
  char flipped = static_cast<char>(data[1 << 20] ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &flipped, 1, 1 << 20), 1);
  ::close(fd);

  // Registry only: the bytes come through as stored, and the client's check
  // refuses them.
  auto raw = v1::Blobs::NewStub(client::Dial((*only)->address()));
  grpc::ClientContext ctx;
  v1::ReadRequest req;
  req.set_digest(digest.str());
  auto reader = raw->Read(&ctx, req);
  std::string got;
  v1::ReadResponse chunk;
  while (reader->Read(&chunk)) got += chunk.data();
  grpc::Status fin = reader->Finish();
  EXPECT_TRUE(fin.ok()) << fin.error_message();
  ASSERT_EQ(got.size(), data.size());
  EXPECT_NE(oci::Digest::Of(got), digest);
  std::string back;
  oci::StringSink sink(&back);
  absl::Status r = store->ReadBlob(digest, 0, sink);
  EXPECT_TRUE(absl::IsDataLoss(r)) << r;

  // Tiered: the local tier refuses to keep them (DATA_LOSS naming the blob)
  // and holds nothing of it afterwards.
  auto via_tier = Client((*tiered)->address());
  std::string back2;
  oci::StringSink sink2(&back2);
  absl::Status r2 = via_tier->ReadBlob(digest, 0, sink2);
  EXPECT_TRUE(absl::IsDataLoss(r2)) << r2;
  EXPECT_TRUE(absl::StrContains(r2.message(), digest.str())) << r2;
  EXPECT_EQ(FileSize(absl::StrCat(dir, "/blobs/sha256/", digest.hex())), -1);

  // Repaired in the registry (pushed again), both read it whole.
  ASSERT_TRUE((*reg)->Stop().ok());
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_TRUE((*reg)->Restart().ok());
  oci::StringSource again(data);
  ASSERT_TRUE(store->WriteBlob(digest, static_cast<int64_t>(data.size()), again).ok());
  for (auto* s : {store.get(), via_tier.get()}) {
    std::string whole;
    oci::StringSink ws(&whole);
    absl::Status rs = s->ReadBlob(digest, 0, ws);
    ASSERT_TRUE(rs.ok()) << rs;
    EXPECT_TRUE(whole == data);
  }
  EXPECT_EQ((*only)->Terminate(), 0);
  EXPECT_EQ((*tiered)->Terminate(), 0);
}

// ---- ocicached killed with SIGKILL in the middle of writes --------------------

TEST(FaultTest, ServerKilledMidWriteResumesAndStaysConsistent) {
  std::string dir = testing::TempDir("killed");
  auto d = DaemonProcess::Start({"--dir=" + dir});
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string addr = (*d)->address();

  // Writers of small blobs and entries, failing while the server is down.
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::map<std::string, std::string> acked;  // key -> blob, Put answered OK
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      client::GrpcStoreOptions o;
      o.write_attempts = 1;
      o.timeout = absl::Seconds(5);
      auto s = Client(addr, o);
      for (int i = 0; !stop && i < 100000; ++i) {
        std::string key = absl::StrCat("w", t, "/", i);
        std::string blob = Pattern(200000 + 1000 * (i % 50), 1000 * t + i);
        oci::StringSource src(blob);
        auto w = s->WriteBlob(oci::Digest(), -1, src);
        if (w.ok() && s->Put(EntryFor(key, w->digest, w->size)).ok()) {
          absl::MutexLock l(&mu);
          acked[key] = blob;
        } else {
          ++failures;
          absl::SleepFor(absl::Milliseconds(50));
        }
      }
    });
  }

  // A direct (not resumable) upload held open at the kill: its temp file is
  // what the crash leaves behind in the directory.
  std::string torn = Pattern(10 << 20, 12);
  oci::Digest torn_digest = oci::Digest::Of(torn);
  auto raw = v1::Blobs::NewStub(client::Dial(addr));
  grpc::ClientContext raw_ctx;
  v1::WriteResponse raw_resp;
  auto raw_w = raw->Write(&raw_ctx, &raw_resp);
  for (int64_t off = 0; off < (5 << 20); off += 1 << 20) {
    v1::WriteRequest m;
    if (off == 0) {
      m.set_digest(torn_digest.str());
      m.set_size(static_cast<int64_t>(torn.size()));
    }
    m.set_write_offset(off);
    m.set_data(torn.substr(off, 1 << 20));
    ASSERT_TRUE(raw_w->Write(m));
  }
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (Files(dir + "/tmp").empty() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_FALSE(Files(dir + "/tmp").empty()) << "the open upload has no temp file";

  // The big resumable write: the server dies at 40 MiB and comes back.
  std::string data = Pattern(64 << 20, 3);
  oci::Digest digest = oci::Digest::Of(data);
  client::GrpcStoreOptions opts;
  opts.replay_bytes = 4 << 20;
  auto store = Client(addr, opts);
  int64_t committed_at_kill = -1;
  TriggerSource src(data, 40 << 20, [&] {
    (*d)->Kill();
    for (const auto& f : Files(dir + "/uploads")) {  // the big one's
      if (absl::EndsWith(f, ".part")) {
        committed_at_kill = std::max(committed_at_kill, FileSize(dir + "/uploads/" + f));
      }
    }
    ASSERT_TRUE((*d)->Restart().ok()) << (*d)->Stderr();
  });
  auto w = store->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
  ASSERT_TRUE(src.fired());
  ASSERT_TRUE(w.ok()) << w.status() << "\n" << (*d)->Stderr();
  EXPECT_EQ(w->digest, digest);
  EXPECT_EQ(w->size, static_cast<int64_t>(data.size()));
  // It resumed: the new process received only what was not staged before.
  ASSERT_GT(committed_at_kill, 0);
  auto stats = Stats(addr);
  ASSERT_TRUE(stats.ok()) << stats.status();
  // The access log of the new process: the upload's bytes received there.
  int64_t resent = -1;
  std::istringstream log((*d)->Stderr());
  for (std::string line; std::getline(log, line);) {
    if (absl::StrContains(line, "Blobs/Write \"" + digest.str()) &&
        absl::StrContains(line, " OK ")) {
      absl::string_view bytes = absl::string_view(line).substr(line.rfind(' ') + 1);
      ASSERT_TRUE(absl::ConsumeSuffix(&bytes, "B")) << line;
      ASSERT_TRUE(absl::SimpleAtoi(bytes, &resent)) << line;
    }
  }
  EXPECT_EQ(resent, static_cast<int64_t>(data.size()) - committed_at_kill)
      << "staged at the kill: " << committed_at_kill;
  ASSERT_TRUE(store->Put(EntryFor("big", digest, data.size())).ok());

  // The open direct upload died with the server.
  EXPECT_EQ(raw_w->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::IsNotFound(store->StatBlob(torn_digest).status()));
  absl::SleepFor(absl::Milliseconds(500));  // writers get going again
  stop = true;
  for (auto& t : writers) t.join();
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE(store->ReadBlob(digest, 0, sink).ok());
  EXPECT_TRUE(back == data);
  EXPECT_EQ((*d)->Terminate(), 0);

  // The directory after the crash: no torn blob, no dangling ref, every
  // acknowledged entry whole.
  testing::FsckReport r = testing::FsckLayout(dir);
  for (const auto& p : r.problems) ADD_FAILURE() << p;
  auto layout = layout::LayoutStore::Open(dir);
  ASSERT_TRUE(layout.ok()) << layout.status();
  cache::LookupOptions no_touch;
  no_touch.touch = false;
  {
    absl::MutexLock l(&mu);
    EXPECT_GT(acked.size(), 0u);
    for (const auto& [key, blob] : acked) {
      auto e = (*layout)->Lookup(key, no_touch);
      ASSERT_TRUE(e.ok()) << key << ": " << e.status();
      std::string got;
      oci::StringSink s(&got);
      ASSERT_TRUE((*layout)->ReadBlob(e->blobs[0].digest, 0, s).ok()) << key;
      EXPECT_TRUE(got == blob) << key;
    }
  }
  // Gc finds no broken ref; what the crash left in tmp/ is only temp files.
  auto gc = (*layout)->Gc({.min_age = absl::ZeroDuration()});
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->broken_refs_removed, 0);
  EXPECT_GE(r.temp_files, 1);  // at least the torn upload's, ignored until now
  EXPECT_EQ(gc->temp_files_removed, r.temp_files);
  EXPECT_EQ(testing::FsckLayout(dir).temp_files, 0);
  std::cerr << "after SIGKILL: " << r.blobs << " blobs, " << r.entries << " entries, "
            << r.temp_files << " temp files left by the crash, " << failures
            << " writes failed while the server was down, resumed at " << committed_at_kill
            << " of " << data.size() << " bytes\n";
}

// A registry-only server stages uploads in a temporary directory of its own.
// Killed, it cannot clean it: the next server removes it at start, and the
// client, finding its upload gone (QueryWrite NOT_FOUND), sends it again from
// the rewound source.
TEST(FaultTest, RegistryOnlyServerKilledMidUpload) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  std::string tmp = testing::TempDir("tmpdir");
  const char* old_tmp = std::getenv("TMPDIR");
  std::string saved = old_tmp != nullptr ? old_tmp : "";
  setenv("TMPDIR", tmp.c_str(), 1);  // inherited by the daemon
  auto d = DaemonProcess::Start({"--repo=" + (*reg)->host() + "/faults/staged", "--no_dir"});
  if (saved.empty()) unsetenv("TMPDIR"); else setenv("TMPDIR", saved.c_str(), 1);
  ASSERT_TRUE(d.ok()) << d.status();
  auto staging = [&] {
    std::vector<std::string> out;
    for (const auto& f : Files(tmp)) {
      if (absl::StartsWith(f, "ocicached-uploads-")) out.push_back(f);
    }
    return out;
  };
  ASSERT_EQ(staging().size(), 1u);
  const std::string first_dir = staging()[0];
  EXPECT_TRUE(absl::StartsWith(first_dir, absl::StrCat("ocicached-uploads-", (*d)->pid(), "-")));

  std::string data = Pattern(40 << 20, 13);
  oci::Digest digest = oci::Digest::Of(data);
  client::GrpcStoreOptions opts;
  opts.replay_bytes = 1 << 20;
  auto store = Client((*d)->address(), opts);
  int64_t staged_at_kill = -1;
  TriggerSource src(data, 20 << 20, [&] {
    (*d)->Kill();
    for (const auto& f : Files(tmp + "/" + first_dir)) {
      if (absl::EndsWith(f, ".part")) staged_at_kill = FileSize(tmp + "/" + first_dir + "/" + f);
    }
    setenv("TMPDIR", tmp.c_str(), 1);
    absl::Status s = (*d)->Restart();
    if (saved.empty()) unsetenv("TMPDIR"); else setenv("TMPDIR", saved.c_str(), 1);
    ASSERT_TRUE(s.ok()) << s;
  });
  auto w = store->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
  ASSERT_TRUE(src.fired());
  ASSERT_TRUE(w.ok()) << w.status() << "\n" << (*d)->Stderr();
  EXPECT_GT(staged_at_kill, 0);
  EXPECT_GE(src.rewinds(), 1);  // the upload was gone: sent again from the start
  // The dead server's directory is gone; the new server has its own.
  std::vector<std::string> now = staging();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], first_dir);
  EXPECT_TRUE(absl::StrContains((*d)->Stderr(), "removed 1 upload staging director"));
  auto direct = registry::Client::Create((*reg)->host());
  ASSERT_TRUE(direct.ok());
  auto size = (*direct)->StatBlob("faults/staged", digest);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, static_cast<int64_t>(data.size()));
  EXPECT_EQ((*d)->Terminate(), 0);
  EXPECT_TRUE(staging().empty());
}

// ---- Clients that go away in the middle of a stream --------------------------

class DisconnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions opts;
    opts.max_threads = 4;  // a leaked call would soon starve the server
    // A reset connection gRPC has not seen end is found by the server's ping
    // well within the waits below.
    opts.keepalive = absl::Seconds(2);
    opts.keepalive_timeout = absl::Seconds(2);
    auto s = testing::ServeLayout(std::move(opts));
    ASSERT_TRUE(s.ok()) << s.status();
    served_ = *std::move(s);
    layout_dir_ = served_->server().store().Describe().substr(4);  // "dir:<path>"
    proxy_ = *testing::TcpProxy::Start(served_->server().port());
  }

  // The server's temp files: every one must be gone once the calls ended.
  bool AwaitNoTempFiles(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (Files(layout_dir_ + "/tmp").empty()) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::unique_ptr<testing::ServedStore> served_;
  std::string layout_dir_;
  std::unique_ptr<testing::TcpProxy> proxy_;
};

TEST_F(DisconnectTest, CancelledWritesLeaveNothing) {
  auto stub = v1::Blobs::NewStub(client::Dial(served_->server().address()));
  std::string data = Pattern(6 << 20, 4);
  oci::Digest digest = oci::Digest::Of(data);
  int busy = 0;
  for (int i = 0; i < 12; ++i) {
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    auto w = stub->Write(&ctx, &resp);
    const int64_t chunk = 1 << 20;
    bool sent = true;
    for (int64_t off = 0; off < 3 * chunk && sent; off += chunk) {
      v1::WriteRequest m;
      if (off == 0) {
        m.set_digest(digest.str());
        m.set_size(static_cast<int64_t>(data.size()));
      }
      m.set_write_offset(off);
      m.set_data(data.substr(off, chunk));
      sent = w->Write(m);
    }
    if (!sent) {
      // All 4 threads still busy with cancelled calls ending: the server says
      // so at once. Allowed a few times, never for long.
      EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      ASSERT_LT(++busy, 50);
      absl::SleepFor(absl::Milliseconds(20));
      --i;
      continue;
    }
    ctx.TryCancel();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(AwaitNoTempFiles(absl::Seconds(10))) << Files(layout_dir_ + "/tmp").size();
  EXPECT_TRUE(absl::IsNotFound(served_->StatBlob(digest).status()));
  // A resumable upload cancelled part-way stays staged (for a resume), not a blob.
  {
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    auto w = stub->Write(&ctx, &resp);
    for (int64_t off = 0; off < (3 << 20); off += 1 << 20) {
      v1::WriteRequest m;
      if (off == 0) {
        m.set_upload_id("cancelled-upload");
        m.set_digest(digest.str());
        m.set_size(static_cast<int64_t>(data.size()));
      }
      m.set_write_offset(off);
      m.set_data(data.substr(off, 1 << 20));
      ASSERT_TRUE(w->Write(m));
    }
    auto query = [&](v1::QueryWriteResponse* qr) {
      grpc::ClientContext qctx;
      v1::QueryWriteRequest req;
      req.set_upload_id("cancelled-upload");
      return stub->QueryWrite(&qctx, req, qr);
    };
    // Cancel once the server has staged some of it.
    v1::QueryWriteResponse qr;
    absl::Time until = absl::Now() + absl::Seconds(10);
    while (!(query(&qr).ok() && qr.committed_size() > 0) && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ctx.TryCancel();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_TRUE(absl::IsNotFound(served_->StatBlob(digest).status()));
    grpc::Status q = query(&qr);
    ASSERT_TRUE(q.ok()) << q.error_message();
    EXPECT_GT(qr.committed_size(), 0);
    EXPECT_LE(qr.committed_size(), 3 << 20);
    EXPECT_FALSE(qr.complete());
  }
  // Every call was freed: more calls than threads still get answers.
  for (int i = 0; i < 10; ++i) {
    oci::StringSource src(data);
    auto d = served_->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
    ASSERT_TRUE(d.ok()) << i << ": " << d.status();
  }
}

TEST_F(DisconnectTest, CancelledReadsAreFreed) {
  std::string data = Pattern(24 << 20, 5);
  oci::StringSource src(data);
  auto d = served_->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  auto stub = v1::Blobs::NewStub(client::Dial(served_->server().address()));
  // Readers that take one chunk and cancel, and readers that never read at all
  // (the server blocks on flow control) and cancel.
  for (int i = 0; i < 12; ++i) {
    grpc::ClientContext ctx;
    v1::ReadRequest req;
    req.set_digest(d->digest.str());
    auto r = stub->Read(&ctx, req);
    v1::ReadResponse msg;
    if (i % 2 == 0) ASSERT_TRUE(r->Read(&msg));
    else absl::SleepFor(absl::Milliseconds(100));
    ctx.TryCancel();
    while (r->Read(&msg)) {
    }
    EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  for (int i = 0; i < 10; ++i) {
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(served_->ReadBlob(d->digest, 0, sink).ok()) << i;
    EXPECT_TRUE(back == data);
  }
}

// The connection itself breaks (a reset through the proxy) in the middle of a
// Write and of a Read: no partial blob, and the server answers the next calls.
TEST_F(DisconnectTest, ResetConnections) {
  std::string data = Pattern(24 << 20, 6);
  oci::Digest digest = oci::Digest::Of(data);
  client::GrpcStoreOptions o;
  o.write_attempts = 1;
  for (int i = 0; i < 4; ++i) {
    auto via = Client(proxy_->address(), o);
    proxy_->CutAfter(5 << 20);
    oci::StringSource src(data);
    auto w = via->WriteBlob(digest, static_cast<int64_t>(data.size()), src);
    EXPECT_TRUE(absl::IsUnavailable(w.status())) << w.status();
  }
  EXPECT_EQ(proxy_->cuts(), 4);
  EXPECT_TRUE(AwaitNoTempFiles(absl::Seconds(10)));
  EXPECT_TRUE(absl::IsNotFound(served_->StatBlob(digest).status()));

  oci::StringSource src(data);
  ASSERT_TRUE(served_->WriteBlob(digest, static_cast<int64_t>(data.size()), src).ok());
  // A reader whose connection resets: the client's sink gets part, the call
  // fails (no second stream allowed here).
  o.read_attempts = 1;
  for (int i = 0; i < 4; ++i) {
    auto via = Client(proxy_->address(), o);
    ASSERT_TRUE(via->StatBlob(digest).ok());  // the connection is up
    proxy_->CutAfterDown(3 << 20);
    std::string part;
    oci::StringSink sink(&part);
    // Cut once the client has received data: gRPC cannot retry, the read fails.
    absl::Status s = via->ReadBlob(digest, 0, sink);
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_LT(part.size(), data.size());
  }
  for (int i = 0; i < 10; ++i) {
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(served_->ReadBlob(digest, 0, sink).ok()) << i;
    EXPECT_TRUE(back == data);
  }
}

// ---- GrpcStore resumes a write whose connection breaks -----------------------

TEST_F(DisconnectTest, ResumableWriteContinuesAfterABreak) {
  const std::string server = served_->server().address();
  std::string data = Pattern(40 << 20, 7);
  oci::Digest digest = oci::Digest::Of(data);
  int64_t n = static_cast<int64_t>(data.size());

  // From the bytes kept in memory: the source is a pipe and cannot rewind, so
  // only a resume can finish the write.
  client::GrpcStoreOptions o;
  o.replay_bytes = 8 << 20;
  auto via = Client(proxy_->address(), o);
  auto before = Stats(server);
  ASSERT_TRUE(before.ok()) << before.status();
  proxy_->CutAfter(12 << 20);
  oci::StringSource inner(data);
  PipeLikeSource pipe(inner);
  auto w = via->WriteBlob(digest, n, pipe);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->digest, digest);
  EXPECT_EQ(proxy_->cuts(), 1);
  EXPECT_GE(proxy_->connections(), 2);
  auto after = Stats(server);
  ASSERT_TRUE(after.ok()) << after.status();
  // Each byte reached the store once: the second stream began where the first ended.
  EXPECT_EQ(after->bytes_in() - before->bytes_in(), n);

  // From the source rewound (nothing kept in memory), twice broken.
  std::string data2 = Pattern(20 << 20, 8);
  oci::Digest digest2 = oci::Digest::Of(data2);
  o.replay_bytes = 0;
  auto via2 = Client(proxy_->address(), o);
  // The second cut is armed once the first has happened (the source is read
  // ahead of what reaches the proxy, so arming both at once could merge them).
  const int64_t cuts_before = proxy_->cuts();
  bool armed = false;
  WatchSource src(data2, [&](size_t pos) {
    if (!armed && proxy_->cuts() == cuts_before + 1 && pos >= (2u << 20)) {
      armed = true;
      proxy_->CutAfter(2 << 20);
    }
    return SIZE_MAX;
  });
  proxy_->CutAfter(3 << 20);
  before = Stats(server);
  auto w2 = via2->WriteBlob(digest2, static_cast<int64_t>(data2.size()), src);
  ASSERT_TRUE(w2.ok()) << w2.status();
  EXPECT_EQ(w2->digest, digest2);
  EXPECT_TRUE(armed);
  EXPECT_EQ(proxy_->cuts(), 3);
  EXPECT_GE(src.rewinds(), 1);
  after = Stats(server);
  EXPECT_EQ(after->bytes_in() - before->bytes_in(), static_cast<int64_t>(data2.size()));

  // A small blob streams straight into the store and is sent again whole.
  std::string small = Pattern(6 << 20, 9);
  auto via3 = Client(proxy_->address());
  proxy_->CutAfter(3 << 20);
  oci::StringSource small_src(small);
  PipeLikeSource small_pipe(small_src);
  auto w3 = via3->WriteBlob(oci::Digest::Of(small), static_cast<int64_t>(small.size()), small_pipe);
  ASSERT_TRUE(w3.ok()) << w3.status();
  EXPECT_EQ(proxy_->cuts(), 4);

  for (const auto& [d, bytes] : {std::pair{digest, &data}, std::pair{digest2, &data2},
                                 std::pair{oci::Digest::Of(small), &small}}) {
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(served_->ReadBlob(d, 0, sink).ok());
    EXPECT_TRUE(back == *bytes);
  }
  EXPECT_TRUE(AwaitNoTempFiles(absl::Seconds(10)));
}

// A read whose connection breaks goes on from the bytes already received,
// and the whole blob is still verified.
TEST_F(DisconnectTest, ReadContinuesAfterABreak) {
  std::string data = Pattern(12 << 20, 14);
  oci::StringSource src(data);
  auto d = served_->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  auto via = Client(proxy_->address());
  ASSERT_TRUE(via->StatBlob(d->digest).ok());
  proxy_->CutAfterDown(5 << 20);
  // The sink only appends: a second stream from offset 0 would repeat bytes.
  std::string back;
  oci::StringSink sink(&back);
  absl::Status s = via->ReadBlob(d->digest, 0, sink);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data);
  EXPECT_EQ(proxy_->cuts(), 1);
  EXPECT_GE(proxy_->connections(), 2);
}

// A server that cannot be reached at all is no broken stream: the write and
// the read fail at once, as without retries.
TEST(ClientRetryTest, UnreachableServerFailsAtOnce) {
  auto store = Client("127.0.0.1:1");
  std::string data = Pattern(20 << 20, 15);
  oci::StringSource src(data);
  absl::Time start = absl::Now();
  auto w = store->WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
  EXPECT_TRUE(absl::IsUnavailable(w.status())) << w.status();
  std::string back;
  oci::StringSink sink(&back);
  EXPECT_TRUE(absl::IsUnavailable(store->ReadBlob(oci::Digest::Of(data), 0, sink)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// A break with nothing to send again from (no kept bytes, no rewind) ends the
// write with the connection's error and says why it could not resume.
TEST_F(DisconnectTest, NoResumeWithoutTheBytes) {
  std::string data = Pattern(20 << 20, 10);
  client::GrpcStoreOptions o;
  o.replay_bytes = 0;
  auto via = Client(proxy_->address(), o);
  proxy_->CutAfter(8 << 20);
  oci::StringSource inner(data);
  PipeLikeSource pipe(inner);
  auto w = via->WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), pipe);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(absl::IsUnavailable(w.status())) << w.status();
  EXPECT_TRUE(absl::StrContains(w.status().message(), "cannot resume")) << w.status();
}

}  // namespace
}  // namespace ocicache
