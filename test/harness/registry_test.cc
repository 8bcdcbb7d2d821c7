// Tests of RegistryProcess against the real docker-registry: each auth mode's answer
// on /v2/, token auth end to end (issuer -> bearer -> upload), restarts, storage reuse,
// TLS with a test CA, and startup failures.
#include "test/harness/registry.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "test/harness/http_client.h"
#include "test/harness/test_pki.h"

namespace ocicache::harness {
namespace {

using Options = RegistryProcess::Options;

std::unique_ptr<RegistryProcess> MustStart(Options o) {
  auto r = RegistryProcess::Start(std::move(o));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

std::string Sha256Digest(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return "sha256:" + absl::BytesToHexString(std::string(reinterpret_cast<char*>(out), n));
}

bool ProcessAlive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

bool DirExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A monolithic upload: POST an empty session, then PUT the bytes to its Location with
// ?digest=. Returns the final status (201 on success) or the failing step's status.
long UploadBlob(HttpClient& client, const RegistryProcess& reg, const std::string& repo,
                const std::string& data, const std::vector<std::string>& headers) {
  HttpCall post{.method = "POST", .url = reg.base_url() + "/v2/" + repo + "/blobs/uploads/"};
  post.headers = headers;
  auto started = client.Do(post);
  if (!started.ok()) {
    ADD_FAILURE() << started.status();
    return -1;
  }
  if (started->status != 202) return started->status;
  std::string location = started->header("location");
  EXPECT_FALSE(location.empty());
  if (absl::StartsWith(location, "/")) location = reg.base_url() + location;
  HttpCall put{.method = "PUT"};
  put.url = absl::StrCat(location, absl::StrContains(location, "?") ? "&" : "?",
                         "digest=", Sha256Digest(data));
  put.headers = headers;
  put.body = data;
  auto done = client.Do(put);
  if (!done.ok()) {
    ADD_FAILURE() << done.status();
    return -1;
  }
  return done->status;
}

std::string GetBlob(const RegistryProcess& reg, const std::string& repo, const std::string& data,
                    long* status) {
  auto r = HttpDo({.url = reg.base_url() + "/v2/" + repo + "/blobs/" + Sha256Digest(data)});
  *status = r.ok() ? r->status : -1;
  return r.ok() ? r->body : std::string();
}

TEST(RegistryTest, NoAuthServesUploadsAndSurvivesRestart) {
  auto reg = MustStart({});
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->host().rfind("127.0.0.1:", 0), 0u) << reg->host();
  auto ping = HttpDo({.url = reg->base_url() + "/v2/"});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status, 200);
  EXPECT_EQ(ping->header("docker-distribution-api-version"), "registry/2.0");

  HttpClient client;
  const std::string blob = "hello from the harness";
  EXPECT_EQ(UploadBlob(client, *reg, "a/b", blob, {}), 201);
  long status = 0;
  EXPECT_EQ(GetBlob(*reg, "a/b", blob, &status), blob);
  EXPECT_EQ(status, 200);

  std::string host = reg->host();
  pid_t old_pid = reg->pid();
  ASSERT_TRUE(reg->Restart().ok());
  EXPECT_EQ(reg->host(), host);
  EXPECT_NE(reg->pid(), old_pid);
  EXPECT_FALSE(ProcessAlive(old_pid));
  EXPECT_EQ(GetBlob(*reg, "a/b", blob, &status), blob);
  EXPECT_EQ(status, 200);

  // Stopped: nothing answers; the destructor removes the temporary root.
  std::string root = reg->root_dir();
  pid_t pid = reg->pid();
  ASSERT_TRUE(reg->Stop().ok());
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_FALSE(HttpDo({.url = reg->base_url() + "/v2/", .timeout_ms = 2000}).ok());
  EXPECT_TRUE(DirExists(root));
  reg.reset();
  EXPECT_FALSE(DirExists(root));
}

TEST(RegistryTest, HtpasswdChallengesAndAcceptsBasic) {
  auto reg = MustStart({.auth = Options::kHtpasswd, .user = "u1", .password = "p@ss word"});
  ASSERT_NE(reg, nullptr);
  auto anon = HttpDo({.url = reg->base_url() + "/v2/"});
  ASSERT_TRUE(anon.ok()) << anon.status();
  EXPECT_EQ(anon->status, 401);
  EXPECT_EQ(anon->header("www-authenticate"),
            absl::StrCat("Basic realm=\"", RegistryProcess::kBasicRealm, "\""));

  HttpCall good{.url = reg->base_url() + "/v2/", .user = "u1", .password = "p@ss word"};
  auto ok = HttpDo(good);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);

  HttpCall bad{.url = reg->base_url() + "/v2/", .user = "u1", .password = "wrong"};
  auto denied = HttpDo(bad);
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->status, 401);

  HttpClient client;
  std::string basic = "Authorization: Basic " + absl::Base64Escape("u1:p@ss word");
  EXPECT_EQ(UploadBlob(client, *reg, "x/y", "blob bytes", {basic}), 201);
}

// Fetches a token from the issuer with Basic credentials.
absl::StatusOr<std::string> FetchToken(const TokenIssuer& issuer, const std::string& scope,
                                       const std::string& user, const std::string& password,
                                       long* status) {
  HttpCall call{.url = absl::StrCat(issuer.realm(), "?service=", RegistryProcess::kService,
                                    "&scope=", scope)};
  call.user = user;
  call.password = password;
  auto r = HttpDo(call);
  if (!r.ok()) return r.status();
  *status = r->status;
  if (r->status != 200) return std::string();
  return nlohmann::json::parse(r->body).at("token").get<std::string>();
}

TEST(RegistryTest, TokenAuthEndToEnd) {
  auto reg = MustStart({.auth = Options::kToken});
  ASSERT_NE(reg, nullptr);
  TokenIssuer* issuer = reg->token_issuer();
  ASSERT_NE(issuer, nullptr);

  auto anon = HttpDo({.url = reg->base_url() + "/v2/"});
  ASSERT_TRUE(anon.ok()) << anon.status();
  EXPECT_EQ(anon->status, 401);
  EXPECT_EQ(anon->header("www-authenticate"),
            absl::StrCat("Bearer realm=\"", issuer->realm(), "\",service=\"",
                         RegistryProcess::kService, "\""));

  // A repository request's challenge names the scope.
  auto repo_anon = HttpDo({.url = reg->base_url() + "/v2/a/b/tags/list"});
  ASSERT_TRUE(repo_anon.ok()) << repo_anon.status();
  EXPECT_EQ(repo_anon->status, 401);
  EXPECT_TRUE(absl::StrContains(repo_anon->header("www-authenticate"),
                                "scope=\"repository:a/b:pull\""))
      << repo_anon->header("www-authenticate");

  long status = 0;
  auto token = FetchToken(*issuer, "repository:a/b:pull,push", "tester", "s3cret", &status);
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_EQ(status, 200);
  std::string bearer = "Authorization: Bearer " + *token;

  auto ping = HttpDo({.url = reg->base_url() + "/v2/", .headers = {bearer}});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status, 200) << ping->body << "\nregistry log:\n" << reg->LogTail();

  HttpClient client;
  const std::string blob = "token-authorised blob";
  EXPECT_EQ(UploadBlob(client, *reg, "a/b", blob, {bearer}), 201) << reg->LogTail();
  auto pulled = HttpDo({.url = reg->base_url() + "/v2/a/b/blobs/" + Sha256Digest(blob),
                        .headers = {bearer}});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->status, 200);
  EXPECT_EQ(pulled->body, blob);

  // The token is for a/b only, and a pull-only token cannot push.
  EXPECT_EQ(UploadBlob(client, *reg, "other/repo", blob, {bearer}), 401);
  auto pull_only = FetchToken(*issuer, "repository:a/b:pull", "tester", "s3cret", &status);
  ASSERT_TRUE(pull_only.ok()) << pull_only.status();
  ASSERT_EQ(status, 200);
  EXPECT_EQ(UploadBlob(client, *reg, "a/b", blob, {"Authorization: Bearer " + *pull_only}), 401);

  // Wrong password at the issuer: 401, and no token counted.
  auto refused = FetchToken(*issuer, "repository:a/b:pull", "tester", "wrong", &status);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(status, 401);
  EXPECT_EQ(issuer->tokens_issued(), 2);

  // An expired token (valid signature) is refused by the registry.
  auto expired = issuer->Sign("tester", {{"repository", "a/b", {"pull"}}},
                              absl::Now() - absl::Hours(2), absl::Minutes(10));
  ASSERT_TRUE(expired.ok()) << expired.status();
  auto late = HttpDo({.url = reg->base_url() + "/v2/a/b/blobs/" + Sha256Digest(blob),
                      .headers = {"Authorization: Bearer " + *expired}});
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->status, 401);

  // The issuer outlives a registry restart; old tokens stay valid (same key).
  ASSERT_TRUE(reg->Restart().ok());
  auto again = HttpDo({.url = reg->base_url() + "/v2/", .headers = {bearer}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->status, 200);
}

TEST(RegistryTest, ReadOnlyRefusesWrites) {
  auto reg = MustStart({.read_only = true});
  ASSERT_NE(reg, nullptr);
  auto ping = HttpDo({.url = reg->base_url() + "/v2/"});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status, 200);
  HttpClient client;
  EXPECT_EQ(UploadBlob(client, *reg, "a/b", "data", {}), 405);
}

TEST(RegistryTest, CallerRootDirIsKeptAndReused) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/reuse-", getpid());
  const std::string blob = "persisted";
  {
    auto first = MustStart({.root_dir = dir});
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first->root_dir(), dir);
    HttpClient client;
    ASSERT_EQ(UploadBlob(client, *first, "keep/me", blob, {}), 201);
  }
  EXPECT_TRUE(DirExists(dir + "/storage"));
  auto second = MustStart({.root_dir = dir});
  ASSERT_NE(second, nullptr);
  long status = 0;
  EXPECT_EQ(GetBlob(*second, "keep/me", blob, &status), blob);
  EXPECT_EQ(status, 200);
}

X509* ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}

std::string ReadAll(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

TEST(TestPkiTest, CaSignsALoopbackServerCertificate) {
  auto pki = MakeTestPki();
  ASSERT_TRUE(pki.ok()) << pki.status();
  EXPECT_TRUE(absl::StartsWith(pki->server_key_pem, "-----BEGIN PRIVATE KEY-----"));
  X509* ca = ParseCert(pki->ca_cert_pem);
  X509* server = ParseCert(pki->server_cert_pem);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(X509_check_ca(ca), 1);  // basicConstraints CA:TRUE
  EXPECT_EQ(X509_check_ca(server), 0);
  EXPECT_EQ(X509_check_ip_asc(server, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(server, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(server, "example.com", 0, 0, nullptr), 0);

  // The chain verifies for a TLS server with only the CA trusted.
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, server, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_ip_asc(X509_STORE_CTX_get0_param(ctx), "127.0.0.1");
  EXPECT_EQ(X509_verify_cert(ctx), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);

  // Another CA does not vouch for it.
  auto other = MakeTestPki();
  ASSERT_TRUE(other.ok()) << other.status();
  X509* other_ca = ParseCert(other->ca_cert_pem);
  EXPECT_NE(X509_verify(server, X509_get0_pubkey(other_ca)), 1);
  EXPECT_EQ(X509_verify(server, X509_get0_pubkey(ca)), 1);
  X509_free(other_ca);
  X509_free(server);
  X509_free(ca);
}

TEST(RegistryTest, TlsServesHttpsWithTheTestCa) {
  auto reg = MustStart({.tls = true});
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->base_url(), "https://" + reg->host());
  EXPECT_EQ(reg->ca_file(), reg->root_dir() + "/ca.pem");
  EXPECT_TRUE(absl::StartsWith(ReadAll(reg->ca_file()), "-----BEGIN CERTIFICATE-----"));
  EXPECT_TRUE(absl::StrContains(ReadAll(reg->root_dir() + "/config.yml"), "tls:"));

  auto ping = HttpDo({.url = reg->base_url() + "/v2/", .ca_file = reg->ca_file()});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status, 200);
  // DNS:localhost is in the certificate too.
  auto by_name = HttpDo({.url = absl::StrCat("https://localhost:", reg->host().substr(10), "/v2/"),
                         .ca_file = reg->ca_file()});
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(by_name->status, 200);

  // Without the test CA the certificate is not trusted.
  auto untrusted = HttpDo({.url = reg->base_url() + "/v2/"});
  ASSERT_FALSE(untrusted.ok());
  EXPECT_TRUE(absl::StrContains(untrusted.status().message(), "certificate")) << untrusted.status();
  // Plain HTTP gets Go's answer for HTTP on a TLS port.
  auto plain = HttpDo({.url = "http://" + reg->host() + "/v2/"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->status, 400);
  EXPECT_TRUE(absl::StrContains(plain->body, "HTTPS server")) << plain->body;

  // Uploads work over TLS, and Restart() keeps the certificate.
  HttpCall post{.method = "POST", .url = reg->base_url() + "/v2/t/ls/blobs/uploads/",
                .ca_file = reg->ca_file()};
  auto started = HttpDo(post);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->status, 202);
  std::string ca_pem = ReadAll(reg->ca_file());
  ASSERT_TRUE(reg->Restart().ok());
  EXPECT_EQ(ReadAll(reg->ca_file()), ca_pem);
  ping = HttpDo({.url = reg->base_url() + "/v2/", .ca_file = reg->ca_file()});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status, 200);
}

TEST(RegistryTest, TlsWithHtpasswd) {
  auto reg = MustStart({.auth = Options::kHtpasswd, .tls = true});
  ASSERT_NE(reg, nullptr);
  auto anon = HttpDo({.url = reg->base_url() + "/v2/", .ca_file = reg->ca_file()});
  ASSERT_TRUE(anon.ok()) << anon.status();
  EXPECT_EQ(anon->status, 401);
  HttpCall good{.url = reg->base_url() + "/v2/", .user = "tester", .password = "s3cret",
                .ca_file = reg->ca_file()};
  auto ok = HttpDo(good);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
}

TEST(RegistryTest, WithoutTlsThereIsNoCaFile) {
  auto reg = MustStart({});
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->ca_file(), "");
  EXPECT_FALSE(std::ifstream(reg->root_dir() + "/ca.pem").good());
}

TEST(RegistryTest, StartupFailuresAreExplained) {
  auto missing = RegistryProcess::Start({.binary = "/nonexistent/docker-registry"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "docker-registry")) << missing.status();

  // A binary that exits at once: the error says so and quotes the log.
  auto quits = RegistryProcess::Start({.binary = "/bin/false"});
  ASSERT_FALSE(quits.ok());
  EXPECT_TRUE(absl::StrContains(quits.status().message(), "exited with status 1")) << quits.status();
  EXPECT_TRUE(absl::StrContains(quits.status().message(), "=== harness: starting")) << quits.status();

  // A binary that never answers: bounded by start_timeout_ms, and killed (with its
  // process group) when the deadline passes.
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string script = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/silent-", getpid(), ".sh");
  {
    FILE* f = std::fopen(script.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("#!/bin/sh\nsleep 30\n", f);
    std::fclose(f);
    chmod(script.c_str(), 0755);
  }
  absl::Time start = absl::Now();
  auto silent = RegistryProcess::Start({.binary = script, .start_timeout_ms = 500});
  ASSERT_FALSE(silent.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_EQ(silent.status().code(), absl::StatusCode::kDeadlineExceeded) << silent.status();
  EXPECT_TRUE(absl::StrContains(silent.status().message(), "did not answer GET /v2/ within 500 ms"))
      << silent.status();
  std::remove(script.c_str());
}

}  // namespace
}  // namespace ocicache::harness
