#include "pkg/gocacheprog/session_key.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace ocicache::gocacheprog {
namespace {

TEST(ParseModulePath, ReadsTheModuleLine) {
  EXPECT_EQ(ParseModulePath("module example.com/app\n\ngo 1.23\n"), "example.com/app");
  EXPECT_EQ(ParseModulePath("// a comment\nmodule  \"example.com/q\" // note\n"), "example.com/q");
  EXPECT_EQ(ParseModulePath("module `example.com/b`\n"), "example.com/b");
  EXPECT_EQ(ParseModulePath("go 1.23\nrequire x v1\n"), "");
  EXPECT_EQ(ParseModulePath("modulex example.com/a\n"), "");
  EXPECT_EQ(ParseModulePath("module \"unterminated\n"), "");
}

class SessionKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/session-key-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  // A checkout of module `path` at root_/name, with a subdirectory cmd/app.
  std::string Checkout(const std::string& name, const std::string& path) {
    std::string dir = root_ + "/" + name;
    ::mkdir(dir.c_str(), 0755);
    ::mkdir((dir + "/cmd").c_str(), 0755);
    ::mkdir((dir + "/cmd/app").c_str(), 0755);
    std::ofstream(dir + "/go.mod") << "module " << path << "\n\ngo 1.23\n";
    return dir;
  }

  std::string root_;
  std::map<std::string, std::string> env_ = {{"GOVERSION", "go1.23.5"}, {"GOOS", "linux"},
                                             {"GOARCH", "amd64"}};
  std::function<std::string(const char*)> Env() {
    return [this](const char* n) { auto it = env_.find(n); return it == env_.end() ? "" : it->second; };
  }
};

TEST_F(SessionKeyTest, FindsTheNearestGoMod) {
  std::string a = Checkout("a", "example.com/app");
  auto m = FindGoModule(a + "/cmd/app");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->path, "example.com/app");
  EXPECT_EQ(m->root, a);
  EXPECT_EQ(m->rel, "cmd/app");
  auto top = FindGoModule(a + "/");
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->rel, ".");
  EXPECT_FALSE(FindGoModule(root_).has_value());
  EXPECT_FALSE(FindGoModule("relative/dir").has_value());
}

// Two checkouts of one module in different directories (two CI runners) share
// their keys; another directory within it or other flags share only the fallback.
TEST_F(SessionKeyTest, KeysNameTheModuleNotTheCheckout) {
  std::string a = Checkout("runner-1", "example.com/app");
  std::string b = Checkout("runner-2-other-branch", "example.com/app");
  SessionKeys ka = SessionKeysFor("", a, Env());
  SessionKeys kb = SessionKeysFor("", b, Env());
  EXPECT_TRUE(absl::StartsWith(ka.exact, "gocacheprog.session.")) << ka.exact;
  EXPECT_EQ(ka.exact, kb.exact);
  EXPECT_EQ(ka.fallback, kb.fallback);
  EXPECT_NE(ka.exact, ka.fallback);

  SessionKeys sub = SessionKeysFor("", a + "/cmd/app", Env());
  EXPECT_NE(sub.exact, ka.exact);
  EXPECT_EQ(sub.fallback, ka.fallback);

  env_["GOFLAGS"] = "-race";
  SessionKeys race = SessionKeysFor("", a, Env());
  EXPECT_NE(race.exact, ka.exact);
  EXPECT_EQ(race.fallback, ka.fallback);

  env_["GOARCH"] = "arm64";
  EXPECT_NE(SessionKeysFor("", a, Env()).fallback, ka.fallback);

  std::string other = Checkout("other", "example.com/other");
  env_ = {{"GOVERSION", "go1.23.5"}, {"GOOS", "linux"}, {"GOARCH", "amd64"}};
  EXPECT_NE(SessionKeysFor("", other, Env()).fallback, ka.fallback);
}

TEST_F(SessionKeyTest, ANameOrNoModule) {
  SessionKeys named = SessionKeysFor("nightly", root_, Env());
  EXPECT_EQ(named.fallback, "");
  EXPECT_EQ(SessionKeysFor("nightly", "/elsewhere", Env()).exact, named.exact);
  // Outside a module: per directory, no fallback.
  SessionKeys gopath = SessionKeysFor("", root_, Env());
  EXPECT_EQ(gopath.fallback, "");
  EXPECT_NE(gopath.exact, named.exact);
  std::string d = root_ + "/x";
  ::mkdir(d.c_str(), 0755);
  EXPECT_NE(SessionKeysFor("", d, Env()).exact, gopath.exact);
}

}  // namespace
}  // namespace ocicache::gocacheprog
