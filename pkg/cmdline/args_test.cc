#include "pkg/cmdline/args.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ocicache::cmdline {
namespace {

TEST(ArgsTest, DashesAndUnderscoresNameTheSameFlag) {
  std::vector<FlagSpec> specs = {{"ca-file"}, {"password-stdin", false}};
  for (const char* spelling : {"--ca-file=x.pem", "--ca_file=x.pem"}) {
    auto a = Args::Parse({"ocicache", spelling, "--password_stdin"}, 1, specs, false);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->Get("ca-file"), "x.pem") << spelling;
    EXPECT_TRUE(a->GetBool("password-stdin"));
  }
  EXPECT_FALSE(Args::Parse({"ocicache", "--ca-fil=x"}, 1, specs, false).ok());
}

TEST(ArgsTest, UnderscoreFlagNamesRewritesNamesOnly) {
  std::vector<std::string> in = {"ocicached", "--ca-file=/a-b/c-d.pem", "--no-dir",
                                 "--max_threads", "8", "--", "--not-a-flag"};
  std::vector<char*> argv;
  for (auto& s : in) argv.push_back(s.data());
  UnderscoreFlagNames(static_cast<int>(argv.size()), argv.data());
  EXPECT_STREQ(argv[1], "--ca_file=/a-b/c-d.pem");
  EXPECT_STREQ(argv[2], "--no_dir");
  EXPECT_STREQ(argv[3], "--max_threads");
  EXPECT_STREQ(argv[4], "8");
  EXPECT_STREQ(argv[6], "--not-a-flag");
}

}  // namespace
}  // namespace ocicache::cmdline
