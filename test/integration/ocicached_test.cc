// The ocicached binary end to end: port 0 reporting, health (SERVING while the
// registry answers, NOT_SERVING while it is down), the CLI through --server
// (same exit codes as direct mode), two replicas over one registry, SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "api/grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/cli/cli.h"
#include "test/harness/registry.h"
#include "test/harness/spawn.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using grpc::health::v1::HealthCheckResponse;
using harness::RegistryProcess;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Binary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "ocicache", "/cmd/ocicached/ocicached");
}

// One ocicached process, killed with the test.
class Daemon {
 public:
  static std::unique_ptr<Daemon> Start(std::vector<std::string> args) {
    std::unique_ptr<Daemon> d(new Daemon());
    d->dir_ = testing::TempDir("daemon");
    std::string port_file = d->dir_ + "/port";
    args.insert(args.begin(), {Binary(), "--listen=127.0.0.1:0", "--port_file=" + port_file,
                               "--shutdown_grace=3s"});
    harness::SpawnOptions so;
    so.stdout_path = d->dir_ + "/stdout";
    so.stderr_path = d->dir_ + "/stderr";
    auto port = harness::SpawnReportingPort(args, port_file, so, &d->pid_);
    if (!port.ok()) {
      ADD_FAILURE() << port.status().message();
      return nullptr;
    }
    d->port_ = *port;
    return d;
  }

  ~Daemon() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int port() const { return port_; }
  std::string Stdout() const { return ReadFile(dir_ + "/stdout"); }
  std::string Stderr() const { return ReadFile(dir_ + "/stderr"); }

  // SIGTERM; the exit code, or -1 if it did not exit within `timeout`.
  int Terminate(absl::Duration timeout = absl::Seconds(20)) {
    kill(pid_, SIGTERM);
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service = "") {
    if (!health_) {
      health_ = grpc::health::v1::Health::NewStub(
          grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    grpc::Status s = health_->Check(&ctx, req, &resp);
    if (!s.ok()) return HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

  // Polls until the health is `want`; false after `timeout`.
  bool AwaitHealth(HealthCheckResponse::ServingStatus want, absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (Health() == want) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

 private:
  Daemon() = default;
  std::string dir_;
  pid_t pid_ = 0;
  int port_ = 0;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

struct CliResult {
  int code;
  std::string out, err;
};

// `ocicache --server ADDR args...`, in this process.
CliResult Cli(const std::string& server, std::vector<std::string> args) {
  args.insert(args.begin(), {"ocicache", "--server", server});
  std::ostringstream out, err;
  int code = cli::Main(args, out, err);
  return {code, out.str(), err.str()};
}

std::string WriteTemp(const std::string& data) {
  std::string path = testing::TempDir("file") + "/f";
  std::ofstream(path) << data;
  return path;
}

TEST(OcicachedTest, ServesALocalDirectory) {
  std::string dir = testing::TempDir("cache");
  auto d = Daemon::Start({"--dir=" + dir});
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->Stdout(), absl::StrCat("listening on 127.0.0.1:", d->port(), "\n"));
  EXPECT_EQ(d->Health(), HealthCheckResponse::SERVING);
  EXPECT_EQ(d->Health("ocicache.v1.Entries"), HealthCheckResponse::SERVING);
  EXPECT_EQ(d->Health("ocicache.v1.Blobs"), HealthCheckResponse::SERVING);

  std::string blob(2500000, 'b');
  for (size_t i = 0; i < blob.size(); i += 7) blob[i] = static_cast<char>(i);
  std::string blob_path = WriteTemp(blob);
  std::string out_path = testing::TempDir("out") + "/out";
  std::string s = d->address();
  auto r = Cli(s, {"put", "k/1", "--blob", blob_path, "--annotation", "org.ocicache.tool.go=go1"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cli(s, {"get", "k/1", "-o", out_path});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(out_path), blob);
  r = Cli(s, {"get", "k/1", "--require", "org.ocicache.tool.go=go2"});
  EXPECT_EQ(r.code, 1) << r.err;
  r = Cli(s, {"get", "absent"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "ocicache: miss: absent (dir:" + dir + ")\n");
  r = Cli(s, {"get", ""});
  EXPECT_EQ(r.code, 2);
  r = Cli(s, {"blob", "pull", oci::Digest::Of("nothing").str()});
  EXPECT_EQ(r.code, 1);
  r = Cli(s, {"ls", "--json"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "\"k/1\"")) << r.out;
  r = Cli(s, {"sync"});
  EXPECT_EQ(r.code, 2) << r.err;  // no registry: a usage error, as without --server
  r = Cli(s, {"gc", "--keep-last", "0", "--dry-run"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "would delete k/1\nwould delete 1 of 1 entries (2.4MiB)\n");
  r = Cli(s, {"rm", "k/1"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cli(s, {"rm", "k/1"});
  EXPECT_EQ(r.code, 1);

  EXPECT_EQ(d->Terminate(), 0);
  std::string log = d->Stderr();
  EXPECT_TRUE(absl::StrContains(log, "Entries/Put \"k/1\" OK")) << log;
  EXPECT_TRUE(absl::StrContains(log, "Blobs/Read")) << log;
  EXPECT_TRUE(absl::StrContains(log, "received SIGTERM")) << log;
  // The CLI now fails as for an unreachable registry: exit 3, one line.
  r = Cli(s, {"get", "k/1"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(OcicachedTest, BadFlags) {
  std::string dir = testing::TempDir("flags");
  pid_t pid = fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 2);
    execl(Binary().c_str(), Binary().c_str(), "--listen=not-an-address", ("--dir=" + dir).c_str(),
          nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(OcicachedTest, HealthFollowsTheRegistry) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto d = Daemon::Start({"--repo=" + (*reg)->host() + "/health/cache",
                          "--dir=" + testing::TempDir("cache"), "--health_interval=200ms"});
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->Health(), HealthCheckResponse::SERVING);
  std::string blob_path = WriteTemp("kept in both tiers");
  ASSERT_EQ(Cli(d->address(), {"put", "before", "--blob", blob_path}).code, 0);

  ASSERT_TRUE((*reg)->Stop().ok());
  EXPECT_TRUE(d->AwaitHealth(HealthCheckResponse::NOT_SERVING, absl::Seconds(15)))
      << d->Stderr();
  // Still answering from the local tier.
  auto r = Cli(d->address(), {"get", "before"});
  EXPECT_EQ(r.code, 0) << r.err;

  ASSERT_TRUE((*reg)->Restart().ok());
  EXPECT_TRUE(d->AwaitHealth(HealthCheckResponse::SERVING, absl::Seconds(15))) << d->Stderr();
  EXPECT_TRUE(absl::StrContains(d->Stderr(), "health: NOT_SERVING"));
  EXPECT_EQ(d->Terminate(), 0);
}

TEST(OcicachedTest, ReplicasServeEachOthersWrites) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  std::string repo = "--repo=" + (*reg)->host() + "/shared/cache";
  auto a = Daemon::Start({repo, "--dir=" + testing::TempDir("a")});
  auto b = Daemon::Start({repo, "--dir=" + testing::TempDir("b")});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::string blob_a = std::string(700000, 'a'), blob_b = std::string(800000, 'b');
  std::string path_a = WriteTemp(blob_a), path_b = WriteTemp(blob_b);
  ASSERT_EQ(Cli(a->address(), {"put", "from/a", "--blob", path_a}).code, 0);
  ASSERT_EQ(Cli(b->address(), {"put", "from/b", "--blob", path_b}).code, 0);
  std::string out = testing::TempDir("out") + "/o";
  auto r = Cli(b->address(), {"get", "from/a", "-o", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(out), blob_a);
  r = Cli(a->address(), {"get", "from/b", "-o", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(out), blob_b);
  EXPECT_EQ(a->Terminate(), 0);
  EXPECT_EQ(b->Terminate(), 0);
}

}  // namespace
}  // namespace ocicache
