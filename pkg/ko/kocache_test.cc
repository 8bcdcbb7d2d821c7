#include "pkg/ko/kocache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "pkg/cache/format.h"
#include "pkg/ko/entry.h"
#include "pkg/ko/gojson.h"
#include "pkg/ko/testdata/golden.h"
#include "pkg/ko/wrapper.h"

namespace ocicache::ko {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string Hex(char c) { return std::string(64, c); }

std::string TempDir() {
  std::string tmpl = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                     "/kocache.XXXXXX";
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

TEST(KoFiles, RoundTripIsByteIdenticalToKo) {
  auto b = ParseBuildIdToDiffId(golden::kGoldenBuildIdToDiffId);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->size(), 3u);
  EXPECT_EQ(EncodeBuildIdToDiffId(*b), golden::kGoldenBuildIdToDiffId);

  auto d = ParseDiffIdToDescriptor(golden::kGoldenDiffIdToDescriptor);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 2u);
  EXPECT_EQ(EncodeDiffIdToDescriptor(*d), golden::kGoldenDiffIdToDescriptor);
  // The compact form of each descriptor is json.Marshal's.
  EXPECT_EQ(d->at("sha256:" + Hex('0')), golden::kGoldenFullCompact);
  EXPECT_EQ(d->at("sha256:" + Hex('f')), golden::kGoldenPlainCompact);
}

TEST(KoFiles, EncodeSortsKeysAsGo) {
  BuildIdToDiffId m;
  m["zz1234567890abcdefgh/aaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccc"] = "sha256:" + Hex('1');
  m["Abc_-0123456789abcde/aaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccc"] = "sha256:" + Hex('3');
  m["-A_z0123456789abcdef/aaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccc"] = "sha256:" + Hex('2');
  EXPECT_EQ(EncodeBuildIdToDiffId(m), golden::kGoldenBuildIdToDiffId);
  EXPECT_EQ(EncodeBuildIdToDiffId({}), "{}\n");
}

TEST(KoFiles, TrailingGarbageIsTolerated) {
  std::string s = std::string(golden::kGoldenBuildIdToDiffId) + "cccccccccc\": \"sha256:" + Hex('9') + "\"\n}\n";
  auto b = ParseBuildIdToDiffId(s);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->size(), 3u);
  std::string d = std::string(golden::kGoldenDiffIdToDescriptor) + "    }\n  }\n}\n";
  auto m = ParseDiffIdToDescriptor(d);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->size(), 2u);
}

TEST(KoFiles, EmptyAndNullAreEmpty) {
  for (const char* s : {"", "\n", "null", "null\ngarbage"}) {
    auto b = ParseBuildIdToDiffId(s);
    ASSERT_TRUE(b.ok()) << s << ": " << b.status();
    EXPECT_TRUE(b->empty());
  }
}

TEST(KoFiles, InvalidContentIsReportedClearly) {
  struct Case {
    std::string bytes;
    std::string expect;
  } cases[] = {
      {"{\"a\": ", "invalid JSON"},
      {"[1,2]", "a JSON object was expected, not array"},
      {"{\"id\": 5}", "is not a string"},
      {"{\"id\": \"sha256:abc\"}", "is not a sha256 digest"},
      {"{\"id\": \"sha512:" + Hex('a') + "\"}", "is not a sha256 digest"},
  };
  for (const auto& c : cases) {
    auto b = ParseBuildIdToDiffId(c.bytes);
    ASSERT_FALSE(b.ok()) << c.bytes;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(b.status().message().find(c.expect), std::string::npos) << b.status();
  }
  auto d = ParseDiffIdToDescriptor("{\"sha256:" + Hex('a') + "\": {\"mediaType\": \"m\", \"size\": 1.5, \"digest\": \"sha256:" + Hex('b') + "\"}}");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("integer size"), std::string::npos) << d.status();
  d = ParseDiffIdToDescriptor("{\"nope\": {}}");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("diffid \"nope\""), std::string::npos) << d.status();
}

TEST(KoFiles, CompleteRecords) {
  KoFiles f;
  f.build_to_diff["b1"] = "sha256:" + Hex('1');
  f.build_to_diff["b2"] = "sha256:" + Hex('2');  // no descriptor
  f.diff_to_desc["sha256:" + Hex('1')] = golden::kGoldenPlainCompact;
  int incomplete = 0;
  auto recs = CompleteRecords(f, &incomplete);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(incomplete, 1);
  EXPECT_EQ(recs[0].build_id, "b1");
  EXPECT_EQ(recs[0].descriptor, golden::kGoldenPlainCompact);
}

Record SampleRecord(const std::string& build_id, char diff = '1') {
  Record r;
  r.build_id = build_id;
  r.diff_id = "sha256:" + Hex(diff);
  r.descriptor = golden::kGoldenFullCompact;
  r.import_path = "example.com/app/cmd/x";
  r.platform = "linux/amd64";
  return r;
}

TEST(MergeIntoDir, CreatesFilesExactlyAsKo) {
  std::string root = TempDir();
  std::string dir = root + "/bin/example.com/app/linux/amd64";
  std::vector<std::string> warnings;
  Warn warn = [&](absl::string_view m) { warnings.emplace_back(m); };
  auto m = MergeIntoDir(dir, {SampleRecord("bid-1")}, warn);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->added, 1);
  EXPECT_TRUE(warnings.empty());
  std::string desc_file = ReadFile(dir + "/diffid-to-descriptor");
  // Same bytes as ko would write for that map.
  DiffIdToDescriptor expect;
  expect["sha256:" + Hex('1')] = golden::kGoldenFullCompact;
  EXPECT_EQ(desc_file, EncodeDiffIdToDescriptor(expect));
  EXPECT_EQ(ReadFile(dir + "/buildid-to-diffid"),
            "{\n  \"bid-1\": \"sha256:" + Hex('1') + "\"\n}\n");
  // ko creates them with 0755 (before umask); no temp files left.
  struct stat st;
  ASSERT_EQ(stat((dir + "/buildid-to-diffid").c_str(), &st), 0);
  mode_t um = umask(0);
  umask(um);
  EXPECT_EQ(st.st_mode & 0777, 0755 & ~um);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);

  // Merging again is a no-op; a second build id is added, existing content kept.
  m = MergeIntoDir(dir, {SampleRecord("bid-1", '7')}, warn);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->added, 0);
  EXPECT_EQ(m->present, 1);
  m = MergeIntoDir(dir, {SampleRecord("bid-2", '2')}, warn);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->added, 1);
  KoFiles f = ReadKoFiles(dir);
  EXPECT_EQ(f.build_to_diff.size(), 2u);
  EXPECT_EQ(f.build_to_diff["bid-1"], "sha256:" + Hex('1'));
  EXPECT_EQ(f.diff_to_desc.size(), 2u);
  fs::remove_all(root);
}

TEST(MergeIntoDir, InvalidFileIsTreatedAsEmptyWithAWarning) {
  std::string root = TempDir();
  std::string dir = root + "/d";
  WriteFile(dir + "/buildid-to-diffid", "{\"x\": ");
  WriteFile(dir + "/diffid-to-descriptor", golden::kGoldenDiffIdToDescriptor);
  chmod((dir + "/buildid-to-diffid").c_str(), 0600);
  KoFiles before = ReadKoFiles(dir);
  ASSERT_EQ(before.problems.size(), 1u);
  EXPECT_NE(before.problems[0].find("buildid-to-diffid: invalid JSON"), std::string::npos)
      << before.problems[0];
  std::vector<std::string> warnings;
  auto m = MergeIntoDir(dir, {SampleRecord("bid-1", '1')}, [&](absl::string_view w) { warnings.emplace_back(w); });
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("treated as empty"), std::string::npos);
  KoFiles after = ReadKoFiles(dir);
  EXPECT_TRUE(after.problems.empty());
  EXPECT_EQ(after.build_to_diff.size(), 1u);
  EXPECT_EQ(after.diff_to_desc.size(), 3u);  // the two ko had plus ours
  struct stat st;
  ASSERT_EQ(stat((dir + "/buildid-to-diffid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // an existing file keeps its mode
  fs::remove_all(root);
}

TEST(BinPaths, SplitAndJoin) {
  std::string ip, pl;
  ASSERT_TRUE(SplitBinPath("github.com/a/b/cmd/x/linux/amd64", &ip, &pl).ok());
  EXPECT_EQ(ip, "github.com/a/b/cmd/x");
  EXPECT_EQ(pl, "linux/amd64");
  ASSERT_TRUE(SplitBinPath("example.com/app/linux/arm/v7", &ip, &pl).ok());
  EXPECT_EQ(ip, "example.com/app");
  EXPECT_EQ(pl, "linux/arm/v7");
  ASSERT_TRUE(SplitBinPath("example.com/linux/app/linux/arm64", &ip, &pl).ok());
  EXPECT_EQ(ip, "example.com/linux/app");
  ASSERT_TRUE(SplitBinPath("example.com/app/windows/amd64:10.0.17763.1879", &ip, &pl).ok());
  EXPECT_EQ(pl, "windows/amd64:10.0.17763.1879");
  EXPECT_FALSE(SplitBinPath("linux/amd64", &ip, &pl).ok());
  EXPECT_FALSE(SplitBinPath("example.com/app/amd64", &ip, &pl).ok());

  auto d = BinDir("/k", "example.com/app", "linux/arm/v7");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, "/k/bin/example.com/app/linux/arm/v7");
  EXPECT_FALSE(BinDir("/k", "../../etc", "linux/amd64").ok());
  EXPECT_FALSE(BinDir("/k", "/abs", "linux/amd64").ok());
  EXPECT_FALSE(BinDir("/k", "a//b", "linux/amd64").ok());
  EXPECT_FALSE(BinDir("/k", "a", "linux").ok());
  EXPECT_FALSE(BinDir("/k", "a", "linux/../x").ok());
  EXPECT_FALSE(BinDir("/k", "", "linux/amd64").ok());
}

TEST(BinPaths, FindBinDirs) {
  std::string root = TempDir();
  WriteFile(root + "/bin/example.com/a/linux/amd64/buildid-to-diffid", "{}");
  WriteFile(root + "/bin/example.com/a/linux/arm/v7/buildid-to-diffid", "{}");
  WriteFile(root + "/bin/example.com/b/linux/amd64/out", "binary");
  WriteFile(root + "/bin/weird/buildid-to-diffid", "{}");
  std::vector<std::string> warnings;
  auto dirs = FindBinDirs(root, [&](absl::string_view w) { warnings.emplace_back(w); });
  ASSERT_TRUE(dirs.ok()) << dirs.status();
  ASSERT_EQ(dirs->size(), 2u);
  EXPECT_EQ((*dirs)[0].import_path, "example.com/a");
  EXPECT_EQ((*dirs)[0].platform, "linux/amd64");
  EXPECT_EQ((*dirs)[1].platform, "linux/arm/v7");
  EXPECT_EQ(warnings.size(), 1u);
  auto none = FindBinDirs(root + "/nothing", nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  fs::remove_all(root);
}

TEST(Entry, MappingKeepsTheDescriptorByteForByte) {
  Record r = SampleRecord("-AbC/def/ghi/jkl");
  ToolVersions tools{"v0.17.1", "go1.23.5"};
  auto e = EntryFromRecord(r, tools);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->key, r.build_id);
  EXPECT_EQ(e->config, "{\"kind\":\"ko\",\"diffid\":\"sha256:" + Hex('1') +
                           "\",\"importPath\":\"example.com/app/cmd/x\",\"platform\":\"linux/amd64\"}");
  EXPECT_EQ(e->descriptor, golden::kGoldenFullCompact);
  EXPECT_EQ(e->annotations.at(kAnnotationKoVersion), "v0.17.1");
  EXPECT_EQ(e->annotations.at(kAnnotationGoVersion), "go1.23.5");
  EXPECT_EQ(e->annotations.at(kAnnotationImportPath), "example.com/app/cmd/x");
  EXPECT_EQ(e->annotations.at(kAnnotationPlatform), "linux/amd64");
  // The descriptor's first url names a registry blob with its digest: a location.
  ASSERT_EQ(e->locations.size(), 1u);
  EXPECT_EQ(e->locations[0].url, "https://example.com/v2/a/blobs/sha256:" + Hex('b'));
  EXPECT_EQ(e->locations[0].size, 42);
  EXPECT_EQ(e->locations[0].media_type, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
  // It is a valid entry for the format, and survives encoding.
  auto enc = cache::EncodeEntry(*e, absl::Now());
  ASSERT_TRUE(enc.ok()) << enc.status();
  auto dec = cache::DecodeEntry(enc->manifest, r.build_id);
  ASSERT_TRUE(dec.ok()) << dec.status();
  auto back = RecordFromEntry(*dec);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->build_id, r.build_id);
  EXPECT_EQ(back->diff_id, r.diff_id);
  EXPECT_EQ(back->descriptor, r.descriptor);
  EXPECT_EQ(back->import_path, r.import_path);
  EXPECT_EQ(back->platform, r.platform);
}

TEST(Entry, RejectsWhatIsNotKo) {
  cache::Entry e;
  e.key = "k";
  e.config = "{\"kind\":\"go\"}";
  e.descriptor = golden::kGoldenPlainCompact;
  EXPECT_FALSE(RecordFromEntry(e).ok());
  e.config = "{\"kind\":\"ko\",\"diffid\":\"nope\"}";
  EXPECT_FALSE(RecordFromEntry(e).ok());
  e.config = "{\"kind\":\"ko\",\"diffid\":\"sha256:" + Hex('1') + "\"}";
  e.descriptor = "{\"mediaType\":\"m\"}";
  EXPECT_FALSE(RecordFromEntry(e).ok());
  Record r = SampleRecord("x");
  r.descriptor = "{";
  EXPECT_FALSE(EntryFromRecord(r, {}).ok());
  r = SampleRecord("bad\nkey");
  EXPECT_FALSE(EntryFromRecord(r, {}).ok());
}

TEST(Entry, KoVersionCompatibility) {
  EXPECT_TRUE(KoVersionCompatible("v0.17.1", "v0.17.1"));
  EXPECT_FALSE(KoVersionCompatible("v0.17.1", "v0.18.0"));
  EXPECT_TRUE(KoVersionCompatible("unknown", "v0.18.0"));
  EXPECT_TRUE(KoVersionCompatible("v0.17.1", "unknown"));
  EXPECT_TRUE(KoVersionCompatible("", "v0.18.0"));
}

TEST(FastPath, KocacheKnowsWhatKoWouldFind) {
  std::string root = TempDir();
  std::string dir = root + "/d";
  EXPECT_FALSE(KocacheKnows(dir, "b1"));
  BuildIdToDiffId b;
  b["b1"] = "sha256:" + Hex('0');
  b["b2"] = "sha256:" + Hex('7');  // no descriptor
  WriteFile(dir + "/buildid-to-diffid", EncodeBuildIdToDiffId(b) + "garbage\n}");
  EXPECT_FALSE(KocacheKnows(dir, "b1"));  // no descriptor file yet
  WriteFile(dir + "/diffid-to-descriptor", golden::kGoldenDiffIdToDescriptor);
  EXPECT_TRUE(KocacheKnows(dir, "b1"));
  EXPECT_FALSE(KocacheKnows(dir, "b2"));
  EXPECT_FALSE(KocacheKnows(dir, "b3"));
  WriteFile(dir + "/diffid-to-descriptor", "{\"sha256:" + Hex('0') + "\": ");
  EXPECT_FALSE(KocacheKnows(dir, "b1"));
  fs::remove_all(root);
}

TEST(FastPath, RecentMiss) {
  std::string root = TempDir();
  EXPECT_FALSE(RecentMiss(root, "b1"));
  ASSERT_TRUE(WriteFileAtomic(root, kRecentMissFile, "b1\n").ok());
  EXPECT_TRUE(RecentMiss(root, "b1"));
  EXPECT_FALSE(RecentMiss(root, "b2"));
  EXPECT_FALSE(RecentMiss(root, "b1", /*max_age_seconds=*/0));
  fs::remove_all(root);
}

TEST(Wrapper, Helpers) {
  EXPECT_EQ(AddExperiment("", "cacheprog"), "cacheprog");
  EXPECT_EQ(AddExperiment("loopvar", "cacheprog"), "loopvar,cacheprog");
  EXPECT_EQ(AddExperiment("a,cacheprog", "cacheprog"), "a,cacheprog");
  EXPECT_EQ(AddExperiment("a, cacheprog ,b", "cacheprog"), "a, cacheprog ,b");
  EXPECT_EQ(AddExperiment("a,", "cacheprog"), "a,cacheprog");
  EXPECT_EQ(GoMinorVersion("go1.23.5"), 23);
  EXPECT_EQ(GoMinorVersion("go1.24rc1"), 24);
  EXPECT_EQ(GoMinorVersion("go1.21"), 21);
  EXPECT_EQ(GoMinorVersion("devel go1.25-abc"), -1);
  EXPECT_EQ(GoMinorVersion(""), -1);
}

}  // namespace
}  // namespace ocicache::ko
