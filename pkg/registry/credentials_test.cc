#include "pkg/registry/credentials.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ocicache::registry {
namespace {

// A fake `docker-credential-test`: answers by the server URL read from stdin, and
// records that URL for the test to check.
constexpr char kHelper[] = R"(#!/bin/sh
[ "$1" = get ] || { echo "unexpected command $1"; exit 2; }
server=$(cat)
printf '%s' "$server" > "$(dirname "$0")/last_server"
case "$server" in
  helper.example.com) printf '{"ServerURL":"%s","Username":"hu","Secret":"hs"}' "$server" ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"hub","Secret":"hubpw"}' "$server" ;;
  token.example.com) printf '{"ServerURL":"%s","Username":"<token>","Secret":"idtok"}' "$server" ;;
  broken.example.com) echo "boom: keychain locked"; exit 3 ;;
  garbage.example.com) echo "not json s3cret" ;;
  slow.example.com) exec sleep 30 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
)";

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = tmp ? tmp : "/tmp";
    std::string tmpl = base + "/credsXXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    bin_ = dir_ + "/bin";
    ASSERT_EQ(mkdir(bin_.c_str(), 0755), 0);
    std::ofstream(bin_ + "/docker-credential-test") << kHelper;
    ASSERT_EQ(chmod((bin_ + "/docker-credential-test").c_str(), 0755), 0);
    old_path_ = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    setenv("PATH", (bin_ + ":" + old_path_).c_str(), 1);
  }
  void TearDown() override { setenv("PATH", old_path_.c_str(), 1); }

  void WriteConfig(const std::string& json) { std::ofstream(dir_ + "/config.json") << json; }
  std::string LastServer() {
    std::ifstream f(bin_ + "/last_server");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return s;
  }

  std::string dir_, bin_, old_path_;
};

TEST_F(CredentialsTest, NoConfigIsAnonymous) {
  absl::StatusOr<Credentials> c = LoadDockerCredentials("127.0.0.1:5000", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->empty());
}

TEST_F(CredentialsTest, AuthsBase64ByHost) {
  WriteConfig(absl::StrCat(R"({"auths":{"127.0.0.1:5000":{"auth":")",
                           absl::Base64Escape("alice:pa:ss"), R"("}}})"));
  absl::StatusOr<Credentials> c = LoadDockerCredentials("127.0.0.1:5000", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "pa:ss");  // split at the first ':'
  EXPECT_TRUE(c->identity_token.empty());
  // Another host gets nothing.
  c = LoadDockerCredentials("127.0.0.1:5001", dir_);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->empty());
}

TEST_F(CredentialsTest, AuthsKeyMayBeUrl) {
  WriteConfig(R"({"auths":{
      "https://Registry.Example.com/v1/":{"username":"bob","password":"pw"},
      "http://other.example.com:8080":{"identitytoken":"refresh-me"}}})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("registry.example.com", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "bob");
  EXPECT_EQ(c->password, "pw");
  c = LoadDockerCredentials("other.example.com:8080", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->identity_token, "refresh-me");
  EXPECT_TRUE(c->username.empty());
}

TEST_F(CredentialsTest, DockerHubUsesHistoricalKey) {
  WriteConfig(absl::StrCat(R"({"auths":{"https://index.docker.io/v1/":{"auth":")",
                           absl::Base64Escape("hubuser:hubpass"), R"("}}})"));
  for (const char* host : {"docker.io", "index.docker.io", "registry-1.docker.io"}) {
    absl::StatusOr<Credentials> c = LoadDockerCredentials(host, dir_);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->username, "hubuser") << host;
  }
}

TEST_F(CredentialsTest, MalformedConfigIsInvalidArgument) {
  WriteConfig("{not json");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("127.0.0.1:5000", dir_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CredentialsTest, BadBase64DoesNotLeakTheSecret) {
  WriteConfig(R"({"auths":{"h.example.com":{"auth":"s3cret-without-colon!!"}}})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("h.example.com", dir_);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()).find("s3cret"), std::string::npos)
      << c.status();
  // Valid base64 without a colon is rejected too.
  WriteConfig(absl::StrCat(R"({"auths":{"h.example.com":{"auth":")",
                           absl::Base64Escape("nocolon"), R"("}}})"));
  EXPECT_EQ(LoadDockerCredentials("h.example.com", dir_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CredentialsTest, CredHelperPerHost) {
  WriteConfig(R"({"credHelpers":{"helper.example.com":"test"},
                  "auths":{"helper.example.com":{"username":"file","password":"x"}}})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("helper.example.com", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "hu");
  EXPECT_EQ(c->password, "hs");
  EXPECT_EQ(LastServer(), "helper.example.com");
}

TEST_F(CredentialsTest, CredsStoreForEveryHostAndTokenUser) {
  WriteConfig(R"({"credsStore":"test"})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("token.example.com", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->identity_token, "idtok");
  EXPECT_TRUE(c->username.empty());
  EXPECT_TRUE(c->password.empty());
  // Docker Hub is asked for under its historical key.
  c = LoadDockerCredentials("docker.io", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "hub");
  EXPECT_EQ(LastServer(), "https://index.docker.io/v1/");
}

TEST_F(CredentialsTest, HelperNotFoundFallsThroughToAuths) {
  WriteConfig(absl::StrCat(R"({"credsStore":"test","auths":{"unknown.example.com":{"auth":")",
                           absl::Base64Escape("u:p"), R"("}}})"));
  absl::StatusOr<Credentials> c = LoadDockerCredentials("unknown.example.com", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "u");
  c = LoadDockerCredentials("nothing.example.com", dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->empty());
}

TEST_F(CredentialsTest, HelperFailures) {
  WriteConfig(R"({"credsStore":"test"})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("broken.example.com", dir_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(c.status().message()).find("keychain locked"), std::string::npos)
      << c.status();

  c = LoadDockerCredentials("garbage.example.com", dir_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(c.status().message()).find("s3cret"), std::string::npos) << c.status();

  absl::Time start = absl::Now();
  c = LoadDockerCredentials("slow.example.com", dir_, absl::Milliseconds(300));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  WriteConfig(R"({"credsStore":"absent-helper"})");
  c = LoadDockerCredentials("x.example.com", dir_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(c.status().message()).find("docker-credential-absent-helper"),
            std::string::npos);
}

TEST_F(CredentialsTest, DefaultDirFromEnvironment) {
  setenv("DOCKER_CONFIG", dir_.c_str(), 1);
  EXPECT_EQ(DefaultDockerConfigDir(), dir_);
  WriteConfig(R"({"auths":{"env.example.com":{"username":"e","password":"p"}}})");
  absl::StatusOr<Credentials> c = LoadDockerCredentials("env.example.com");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "e");
  unsetenv("DOCKER_CONFIG");
  setenv("HOME", "/nonexistent-home", 1);
  EXPECT_EQ(DefaultDockerConfigDir(), "/nonexistent-home/.docker");
}

TEST(NormalizeAuthKeyTest, Forms) {
  EXPECT_EQ(NormalizeAuthKey("https://index.docker.io/v1/"), "index.docker.io");
  EXPECT_EQ(NormalizeAuthKey("http://LocalHost:5000"), "localhost:5000");
  EXPECT_EQ(NormalizeAuthKey("ghcr.io"), "ghcr.io");
  EXPECT_EQ(NormalizeAuthKey("ghcr.io/team/repo"), "ghcr.io");
}

}  // namespace
}  // namespace ocicache::registry
