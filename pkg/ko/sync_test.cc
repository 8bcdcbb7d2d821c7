// Save and restore against a LayoutStore in a temp dir, concurrent saves (threads
// and processes), the wrapper's Consult, and the `ocicache ko` command.
#include "pkg/ko/sync.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "pkg/ko/command.h"
#include "pkg/ko/gojson.h"
#include "pkg/ko/testdata/golden.h"
#include "pkg/ko/consult.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::ko {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string Hex(char c) { return std::string(64, c); }

std::string TempDir() {
  std::string tmpl = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                     "/kosync.XXXXXX";
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : "";
}

std::string ReadFile(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& p, const std::string& data) {
  fs::create_directories(fs::path(p).parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

std::unique_ptr<layout::LayoutStore> OpenLayout(const std::string& dir) {
  auto s = layout::LayoutStore::Open(dir);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// A KOCACHE as ko leaves it after building two binaries (one of them twice) and
// starting a third whose layer it never finished.
struct Fixture {
  std::string root = TempDir();
  std::string kocache = root + "/kocache";
  std::string app = kocache + "/bin/example.com/app/linux/amd64";
  std::string arm = kocache + "/bin/example.com/tool/linux/arm/v7";
  std::string btod_app, dtod_app;

  Fixture() {
    BuildIdToDiffId b;
    b["app-build-1"] = "sha256:" + Hex('1');
    b["app-build-2"] = "sha256:" + Hex('f');
    b["app-build-3"] = "sha256:" + Hex('9');  // no descriptor: incomplete
    btod_app = EncodeBuildIdToDiffId(b);
    // ko's own bytes, with stale bytes after them (ko does not truncate).
    dtod_app = std::string(golden::kGoldenDiffIdToDescriptor);
    dtod_app = ReplaceKey(dtod_app, "sha256:" + Hex('0'), "sha256:" + Hex('1'));
    WriteFile(app + "/buildid-to-diffid", btod_app + "  \"stale\": \"x\"\n}\n");
    WriteFile(app + "/diffid-to-descriptor", dtod_app);
    WriteFile(app + "/out", "binary");
    BuildIdToDiffId a;
    a["tool-build-1"] = "sha256:" + Hex('f');
    WriteFile(arm + "/buildid-to-diffid", EncodeBuildIdToDiffId(a));
    DiffIdToDescriptor d;
    d["sha256:" + Hex('f')] = golden::kGoldenPlainCompact;
    WriteFile(arm + "/diffid-to-descriptor", EncodeDiffIdToDescriptor(d));
  }
  ~Fixture() { fs::remove_all(root); }

  static std::string ReplaceKey(std::string s, const std::string& from, const std::string& to) {
    size_t p = s.find(from);
    if (p != std::string::npos) s.replace(p, from.size(), to);
    return s;
  }
};

SaveOptions Opts(const std::string& kocache, std::vector<std::string>* warnings = nullptr) {
  SaveOptions o;
  o.kocache = kocache;
  o.tools = {"v0.17.1", "go1.23.5"};
  if (warnings) o.warn = [warnings](absl::string_view w) { warnings->emplace_back(w); };
  return o;
}

TEST(Save, StoresCompleteBuildIdsOnceAndIsIdempotent) {
  Fixture fx;
  auto store = OpenLayout(fx.root + "/store");
  auto st = Save(store.get(), nullptr, Opts(fx.kocache));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->dirs, 2);
  EXPECT_EQ(st->saved, 3);
  EXPECT_EQ(st->present, 0);
  EXPECT_EQ(st->incomplete, 1);
  EXPECT_EQ(st->errors, 0);

  auto e = store->Lookup("tool-build-1", {});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->descriptor, golden::kGoldenPlainCompact);
  auto rec = RecordFromEntry(*e);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->import_path, "example.com/tool");
  EXPECT_EQ(rec->platform, "linux/arm/v7");
  e = store->Lookup("app-build-1", {});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->descriptor, golden::kGoldenFullCompact);  // byte for byte

  st = Save(store.get(), nullptr, Opts(fx.kocache));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->saved, 0);
  EXPECT_EQ(st->present, 3);
}

TEST(Save, InvalidFilesAreSkippedWithAWarning) {
  Fixture fx;
  WriteFile(fx.arm + "/diffid-to-descriptor", "{ not json");
  auto store = OpenLayout(fx.root + "/store");
  std::vector<std::string> warnings;
  auto st = Save(store.get(), nullptr, Opts(fx.kocache, &warnings));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->invalid_files, 1);
  EXPECT_EQ(st->saved, 2);
  EXPECT_EQ(st->incomplete, 2);  // tool-build-1 has no usable descriptor now
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("diffid-to-descriptor: invalid JSON"), std::string::npos) << warnings[0];
  // Left alone for ko to rewrite.
  EXPECT_EQ(ReadFile(fx.arm + "/diffid-to-descriptor"), "{ not json");
}

TEST(Save, ConcurrentSavesFromThreadsAllSucceed) {
  Fixture fx;
  std::string dir = fx.root + "/store";
  OpenLayout(dir);
  constexpr int kThreads = 4;
  std::vector<absl::StatusOr<SaveStats>> results(kThreads, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto store = OpenLayout(dir);  // one store per job, as separate processes would have
      results[i] = Save(store.get(), nullptr, Opts(fx.kocache));
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->errors, 0);
    EXPECT_EQ(r->saved + r->present, 3);
  }
  auto store = OpenLayout(dir);
  int n = 0;
  ASSERT_TRUE(store->List([&](const cache::EntryInfo&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 3);
}

TEST(Save, ConcurrentSavesFromProcessesAllSucceed) {
  Fixture fx;
  std::string dir = fx.root + "/store";
  OpenLayout(dir);
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = layout::LayoutStore::Open(dir);
      if (!store.ok()) _exit(10);
      auto st = Save(store->get(), nullptr, Opts(fx.kocache));
      _exit(st.ok() && st->errors == 0 && st->saved + st->present == 3 ? 0 : 11);
    }
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(p, &status, 0), p);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  auto store = OpenLayout(dir);
  for (const char* k : {"app-build-1", "app-build-2", "tool-build-1"}) {
    EXPECT_TRUE(store->Lookup(k, {}).ok()) << k;
  }
}

TEST(Restore, RecreatesTheFilesInAnEmptyKocache) {
  Fixture fx;
  auto store = OpenLayout(fx.root + "/store");
  ASSERT_TRUE(Save(store.get(), nullptr, Opts(fx.kocache)).ok());

  RestoreOptions ro;
  ro.kocache = fx.root + "/fresh";
  auto st = Restore(*store, ro);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->listed, 3);
  EXPECT_EQ(st->restored, 3);
  EXPECT_EQ(st->dirs, 2);
  std::string app = ro.kocache + "/bin/example.com/app/linux/amd64";
  // Both descriptors (one is the golden one with every escaping case) come back
  // exactly as ko wrote them.
  EXPECT_EQ(ReadFile(app + "/diffid-to-descriptor"), fx.dtod_app);
  BuildIdToDiffId b;
  b["app-build-1"] = "sha256:" + Hex('1');
  b["app-build-2"] = "sha256:" + Hex('f');
  EXPECT_EQ(ReadFile(app + "/buildid-to-diffid"), EncodeBuildIdToDiffId(b));
  EXPECT_EQ(ReadFile(ro.kocache + "/bin/example.com/tool/linux/arm/v7/buildid-to-diffid"),
            ReadFile(fx.arm + "/buildid-to-diffid"));

  // Again: everything is there.
  st = Restore(*store, ro);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->restored, 0);
  EXPECT_EQ(st->present, 3);
}

TEST(Restore, FiltersAndMerges) {
  Fixture fx;
  auto store = OpenLayout(fx.root + "/store");
  ASSERT_TRUE(Save(store.get(), nullptr, Opts(fx.kocache)).ok());
  RestoreOptions ro;
  ro.kocache = fx.root + "/fresh";
  ro.import_paths = {"example.com/tool"};
  auto st = Restore(*store, ro);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->selected, 1);
  EXPECT_EQ(st->restored, 1);
  EXPECT_FALSE(fs::exists(ro.kocache + "/bin/example.com/app"));

  // An existing file keeps its entries; new ones are merged in.
  std::string app = ro.kocache + "/bin/example.com/app/linux/amd64";
  BuildIdToDiffId mine;
  mine["local-build"] = "sha256:" + Hex('f');
  WriteFile(app + "/buildid-to-diffid", EncodeBuildIdToDiffId(mine));
  DiffIdToDescriptor d;
  d["sha256:" + Hex('f')] = golden::kGoldenPlainCompact;
  WriteFile(app + "/diffid-to-descriptor", EncodeDiffIdToDescriptor(d));
  ro.import_paths.clear();
  ro.max = 2;
  st = Restore(*store, ro);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->selected, 2);
  KoFiles f = ReadKoFiles(app);
  EXPECT_TRUE(f.build_to_diff.count("local-build"));
  EXPECT_GE(f.build_to_diff.size(), 2u);

  // Entries of another known ko version are skipped.
  RestoreOptions other;
  other.kocache = fx.root + "/other";
  other.ko_version = "v9.9.9";
  st = Restore(*store, other);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->restored, 0);
  EXPECT_EQ(st->skipped, 3);
}

// ---- the wrapper's lookup --------------------------------------------------

struct ConsultFixture {
  std::string root = TempDir();
  std::string store_dir = root + "/store";
  std::string kocache = root + "/kocache";
  std::string dir = kocache + "/bin/example.com/app/linux/amd64";
  int opens = 0;
  std::vector<std::string> warnings;

  ConsultFixture() { fs::create_directories(dir); }
  ~ConsultFixture() { fs::remove_all(root); }

  std::function<absl::StatusOr<WrapperStores>()> Opener() {
    return [this]() -> absl::StatusOr<WrapperStores> {
      ++opens;
      auto s = layout::LayoutStore::Open(store_dir);
      if (!s.ok()) return s.status();
      WrapperStores w;
      w.store = *std::move(s);
      w.registry_requests = [] { return int64_t{0}; };
      return w;
    };
  }
  Warn W() {
    return [this](absl::string_view m) { warnings.emplace_back(m); };
  }
  LookupEvent Run(const std::string& id) {
    ConsultOptions o;
    o.dir = dir;
    o.build_id = id;
    o.ko_version = "v0.17.1";
    return Consult(o, Opener(), W());
  }
};

TEST(Consult, MissThenHitThenLocal) {
  ConsultFixture fx;
  LookupEvent ev = fx.Run("bid-A");
  EXPECT_EQ(ev.result, "miss");
  EXPECT_FALSE(fs::exists(fx.dir + "/buildid-to-diffid"));
  EXPECT_FALSE(fs::exists(fx.dir + "/diffid-to-descriptor"));
  // ko asks again after building the layer: not looked up again.
  ev = fx.Run("bid-A");
  EXPECT_EQ(ev.result, "recent-miss");
  EXPECT_EQ(fx.opens, 1);

  // Another machine saved it meanwhile.
  {
    Record r;
    r.build_id = "bid-B";
    r.diff_id = "sha256:" + Hex('1');
    r.descriptor = golden::kGoldenFullCompact;
    r.import_path = "example.com/app";
    r.platform = "linux/amd64";
    auto e = EntryFromRecord(r, {"v0.17.1", "go1.23.5"});
    ASSERT_TRUE(e.ok());
    auto s = OpenLayout(fx.store_dir);
    ASSERT_TRUE(s->Put(*e).ok());
  }
  ev = fx.Run("bid-B");
  EXPECT_EQ(ev.result, "hit") << ev.message;
  KoFiles f = ReadKoFiles(fx.dir);
  ASSERT_EQ(f.build_to_diff.count("bid-B"), 1u);
  EXPECT_EQ(f.build_to_diff["bid-B"], "sha256:" + Hex('1'));
  EXPECT_EQ(f.diff_to_desc.at("sha256:" + Hex('1')), golden::kGoldenFullCompact);
  ev = fx.Run("bid-B");
  EXPECT_EQ(ev.result, "local");
  EXPECT_EQ(fx.opens, 2);
  EXPECT_TRUE(fx.warnings.empty());
}

TEST(Consult, OtherKoVersionIsAMiss) {
  ConsultFixture fx;
  Record r;
  r.build_id = "bid-C";
  r.diff_id = "sha256:" + Hex('1');
  r.descriptor = golden::kGoldenPlainCompact;
  auto e = EntryFromRecord(r, {"v0.15.0", "go1.23.5"});
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(OpenLayout(fx.store_dir)->Put(*e).ok());
  LookupEvent ev = fx.Run("bid-C");
  EXPECT_EQ(ev.result, "miss");
  EXPECT_NE(ev.message.find("v0.15.0"), std::string::npos);
  EXPECT_FALSE(fs::exists(fx.dir + "/buildid-to-diffid"));
}

TEST(Consult, StoreErrorsAreOneWarningNeverAFailure) {
  ConsultFixture fx;
  ConsultOptions o;
  o.dir = fx.dir;
  o.build_id = "bid-D";
  LookupEvent ev = Consult(
      o, []() -> absl::StatusOr<WrapperStores> { return absl::UnavailableError("connection refused"); },
      fx.W());
  EXPECT_EQ(ev.result, "error");
  ASSERT_EQ(fx.warnings.size(), 1u);
  EXPECT_NE(fx.warnings[0].find("connection refused"), std::string::npos);
}

TEST(Consult, InvalidKocacheFileIsReplacedOnAHit) {
  ConsultFixture fx;
  WriteFile(fx.dir + "/buildid-to-diffid", "garbage{");
  Record r;
  r.build_id = "bid-E";
  r.diff_id = "sha256:" + Hex('2');
  r.descriptor = golden::kGoldenPlainCompact;
  ASSERT_TRUE(OpenLayout(fx.store_dir)->Put(*EntryFromRecord(r, {})).ok());
  LookupEvent ev = fx.Run("bid-E");
  EXPECT_EQ(ev.result, "hit");
  ASSERT_EQ(fx.warnings.size(), 1u);
  EXPECT_NE(fx.warnings[0].find("invalid JSON"), std::string::npos) << fx.warnings[0];
  EXPECT_EQ(ReadKoFiles(fx.dir).build_to_diff.count("bid-E"), 1u);
}

// ---- the command -------------------------------------------------------------

int RunKo(const std::vector<std::string>& args, const std::string& store_dir, std::string* out,
          std::string* err) {
  std::ostringstream o, e;
  std::istringstream in;
  cmdline::CommandEnv env;
  env.config.dir = store_dir;
  env.args = args;
  env.in = &in;
  env.out = &o;
  env.err = &e;
  int rc = Main(env);
  *out = o.str();
  *err = e.str();
  return rc;
}

TEST(Command, SaveRestoreAndHelp) {
  Fixture fx;
  std::string out, err;
  EXPECT_EQ(RunKo({"--help"}, fx.root + "/s", &out, &err), 0);
  EXPECT_NE(out.find("save|restore"), std::string::npos);
  EXPECT_EQ(RunKo({"save", "--help"}, fx.root + "/s", &out, &err), 0);
  EXPECT_NE(out.find("--kocache"), std::string::npos);
  EXPECT_EQ(RunKo({"restore", "--help"}, fx.root + "/s", &out, &err), 0);
  EXPECT_NE(out.find("--import-path"), std::string::npos);
  EXPECT_EQ(RunKo({"frob"}, fx.root + "/s", &out, &err), 2);
  EXPECT_EQ(RunKo({"save", "--bogus"}, fx.root + "/s", &out, &err), 2);
  EXPECT_EQ(RunKo({"restore", "--max", "x", "--kocache", "k"}, fx.root + "/s", &out, &err), 2);

  EXPECT_EQ(RunKo({"save", "--kocache", fx.kocache}, fx.root + "/s", &out, &err), 0) << err;
  EXPECT_EQ(out.substr(0, out.find('\n')),
            "ko save: 3 saved, 0 already present, 1 skipped incomplete (2 directories)");
  EXPECT_EQ(RunKo({"save", "--kocache", fx.kocache, "--json"}, fx.root + "/s", &out, &err), 0);
  auto j = ojson::parse(out);
  EXPECT_EQ(j["saved"], 0);
  EXPECT_EQ(j["present"], 3);

  std::string fresh = fx.root + "/fresh";
  EXPECT_EQ(RunKo({"restore", "--kocache", fresh}, fx.root + "/s", &out, &err), 0) << err;
  EXPECT_NE(out.find("3 restored into 2 directories"), std::string::npos) << out;
  EXPECT_EQ(ReadFile(fresh + "/bin/example.com/app/linux/amd64/diffid-to-descriptor"), fx.dtod_app);
}

}  // namespace
}  // namespace ocicache::ko
