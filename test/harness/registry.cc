#include "test/harness/registry.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "test/harness/http_client.h"
#include "test/harness/test_pki.h"

namespace ocicache::harness {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kStopGrace = absl::Seconds(5);

std::string ErrnoText(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

absl::Status WriteFile(const std::string& path, absl::string_view data, mode_t mode = 0644) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A double-quoted YAML scalar.
std::string Yaml(absl::string_view s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(raw.data(), static_cast<std::streamsize>(bytes));
  return absl::BytesToHexString(raw);
}

// A port that was free a moment ago: bind 127.0.0.1:0 and release it. Another process
// could take it before the registry binds; Start() retries on "address already in use".
absl::StatusOr<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(ErrnoText("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  int saved = errno;
  close(fd);
  errno = saved;
  if (port <= 0) return absl::InternalError(ErrnoText("binding 127.0.0.1:0 to find a free port"));
  return port;
}

// A bcrypt htpasswd line via libxcrypt (the registry accepts only bcrypt). Cost 5 keeps
// each authenticated request fast; it is a test password.
absl::StatusOr<std::string> HtpasswdLine(const std::string& user, const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", 5, nullptr, 0, salt, sizeof(salt)) == nullptr) {
    return absl::InternalError(ErrnoText("crypt_gensalt_rn($2b$)"));
  }
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* hash = crypt_r(password.c_str(), salt, data.get());
  if (hash == nullptr || !absl::StartsWith(hash, "$2b$")) {
    return absl::InternalError("crypt_r did not produce a bcrypt hash");
  }
  return absl::StrCat(user, ":", hash, "\n");
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

std::string TempBase() {
  for (const char* var : {"TEST_TMPDIR", "TMPDIR"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && *v != '\0') return v;
  }
  return "/tmp";
}

}  // namespace

absl::StatusOr<std::unique_ptr<RegistryProcess>> RegistryProcess::Start(Options options) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("registry binary ", options.binary, " is not executable (",
                     std::strerror(errno), "); install Debian's package docker-registry"));
  }
  std::unique_ptr<RegistryProcess> r(new RegistryProcess);
  r->options_ = std::move(options);
  const Options& o = r->options_;

  if (o.root_dir.empty()) {
    std::string tmpl = TempBase() + "/registry-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(ErrnoText(absl::StrCat("mkdtemp ", tmpl)));
    }
    r->root_dir_ = tmpl;
    r->owns_root_dir_ = true;  // From here the destructor cleans up.
  } else {
    r->root_dir_ = o.root_dir;
  }
  std::error_code ec;
  fs::create_directories(r->root_dir_ + "/storage", ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", r->root_dir_, "/storage: ", ec.message()));

  if (o.auth == Options::kHtpasswd) {
    auto line = HtpasswdLine(o.user, o.password);
    if (!line.ok()) return line.status();
    if (auto s = WriteFile(r->root_dir_ + "/htpasswd", *line, 0600); !s.ok()) return s;
  } else if (o.auth == Options::kToken) {
    TokenIssuer::Options io;
    io.user = o.user;
    io.password = o.password;
    io.service = kService;
    io.issuer = kIssuer;
    auto issuer = TokenIssuer::Start(io);
    if (!issuer.ok()) return issuer.status();
    r->issuer_ = std::move(*issuer);
    if (auto s = WriteFile(r->root_dir_ + "/token-cert.pem", r->issuer_->certificate_pem()); !s.ok()) {
      return s;
    }
  }

  if (o.tls) {
    // A fresh CA per start: nothing outside this root dir can trust the server by accident.
    auto pki = MakeTestPki();
    if (!pki.ok()) return pki.status();
    if (auto s = WriteFile(r->root_dir_ + "/ca.pem", pki->ca_cert_pem); !s.ok()) return s;
    if (auto s = WriteFile(r->root_dir_ + "/server.pem", pki->server_cert_pem); !s.ok()) return s;
    if (auto s = WriteFile(r->root_dir_ + "/server-key.pem", pki->server_key_pem, 0600); !s.ok()) {
      return s;
    }
  }

  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto port = PickFreePort();
    if (!port.ok()) return port.status();
    r->port_ = *port;
    if (last = r->WriteConfig(); !last.ok()) return last;
    last = r->Launch();
    if (last.ok()) return r;
    if (!absl::StrContains(last.message(), "address already in use")) break;
  }
  return last;
}

RegistryProcess::~RegistryProcess() {
  Stop().IgnoreError();
  issuer_.reset();
  if (owns_root_dir_) {
    std::error_code ec;
    fs::remove_all(root_dir_, ec);
  }
}

std::string RegistryProcess::host() const { return absl::StrCat("127.0.0.1:", port_); }
std::string RegistryProcess::base_url() const {
  return (options_.tls ? "https://" : "http://") + host();
}
std::string RegistryProcess::ca_file() const {
  return options_.tls ? root_dir_ + "/ca.pem" : std::string();
}
std::string RegistryProcess::log_path() const { return root_dir_ + "/registry.log"; }

std::string RegistryProcess::LogTail(size_t max_bytes) const {
  std::string log = ReadFileOrEmpty(log_path());
  if (log.size() > max_bytes) log = "..." + log.substr(log.size() - max_bytes);
  return log;
}

absl::Status RegistryProcess::WriteConfig() {
  // One secret per root dir, so upload sessions survive a restart on the same storage.
  std::string secret_path = root_dir_ + "/http-secret";
  std::string secret = ReadFileOrEmpty(secret_path);
  if (secret.empty()) {
    secret = RandomHex(16);
    if (auto s = WriteFile(secret_path, secret, 0600); !s.ok()) return s;
  }
  std::string c = absl::StrCat(
      "# Written by ocicache's test harness (test/harness/registry.cc).\n"
      "version: 0.1\n"
      "log:\n"
      "  level: warn\n"
      "  formatter: text\n"
      "  accesslog:\n"
      "    disabled: ", options_.access_log ? "false" : "true", "\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: ", Yaml(root_dir_ + "/storage"), "\n"
      "  delete:\n"
      "    enabled: true\n"
      "  maintenance:\n"
      "    uploadpurging:\n"
      "      enabled: false\n"
      "    readonly:\n"
      "      enabled: ", options_.read_only ? "true" : "false", "\n"
      "http:\n"
      "  addr: ", Yaml(host()), "\n"
      "  secret: ", Yaml(secret), "\n");
  if (options_.tls) {
    absl::StrAppend(&c,
                    "  tls:\n"
                    "    certificate: ", Yaml(root_dir_ + "/server.pem"), "\n"
                    "    key: ", Yaml(root_dir_ + "/server-key.pem"), "\n");
  }
  if (options_.auth == Options::kHtpasswd) {
    absl::StrAppend(&c,
                    "auth:\n"
                    "  htpasswd:\n"
                    "    realm: ", Yaml(kBasicRealm), "\n"
                    "    path: ", Yaml(root_dir_ + "/htpasswd"), "\n");
  } else if (options_.auth == Options::kToken) {
    absl::StrAppend(&c,
                    "auth:\n"
                    "  token:\n"
                    "    realm: ", Yaml(issuer_->realm()), "\n"
                    "    service: ", Yaml(kService), "\n"
                    "    issuer: ", Yaml(kIssuer), "\n"
                    "    rootcertbundle: ", Yaml(root_dir_ + "/token-cert.pem"), "\n");
  }
  return WriteFile(root_dir_ + "/config.yml", c);
}

absl::Status RegistryProcess::Launch() {
  // Everything the child needs is prepared before fork: after it, in a multithreaded
  // process, only async-signal-safe calls are allowed.
  std::string config = root_dir_ + "/config.yml";
  std::string log = log_path();
  std::vector<char*> argv = {const_cast<char*>("docker-registry"), const_cast<char*>("serve"),
                             config.data(), nullptr};
  // A minimal environment: REGISTRY_* variables would override the config.
  std::string path_env = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  std::string tmp_env = "TMPDIR=" + root_dir_;
  std::vector<char*> envp = {path_env.data(), tmp_env.data(), nullptr};
  {
    std::ofstream marker(log, std::ios::app);
    marker << "=== harness: starting " << options_.binary << " on " << host() << " ===\n";
  }
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::InternalError(ErrnoText(absl::StrCat("open ", log)));
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::InternalError(ErrnoText("fork"));
  }
  if (pid == 0) {
    setpgid(0, 0);                          // Own group: Stop() signals it as a whole.
    prctl(PR_SET_PDEATHSIG, SIGKILL);       // Die with the forking thread.
    if (getppid() != parent) _exit(127);    // The parent died before prctl.
    sigset_t none;                          // Tests may block or ignore signals;
    sigemptyset(&none);                     // exec keeps masks and SIG_IGN, so reset them.
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &dfl, nullptr);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    if (null_fd >= 0) dup2(null_fd, 0);
    close_range(3, ~0U, 0);
    execve(options_.binary.c_str(), argv.data(), envp.data());
    static const char kMsg[] = "harness: execve of the registry failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  setpgid(pid, pid);  // Also from the parent, so it holds before we ever signal the group.
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  pid_ = pid;

  // Ready when GET /v2/ gets an HTTP answer: 200, or 401 with auth. With TLS the probe
  // verifies the certificate against the test CA, so a bad certificate fails Start().
  absl::Time deadline = absl::Now() + absl::Milliseconds(options_.start_timeout_ms);
  std::string last_error = "no attempt";
  for (;;) {
    int status = 0;
    pid_t w = waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      pid_ = 0;
      return absl::InternalError(absl::StrCat("docker-registry ", DescribeWaitStatus(status),
                                              " during startup on ", host(), "; log ", log,
                                              " ends with:\n", LogTail()));
    }
    HttpCall call;
    call.url = base_url() + "/v2/";
    call.timeout_ms = 1000;
    call.ca_file = ca_file();
    auto reply = HttpDo(call);
    if (reply.ok() && (reply->status == 200 || reply->status == 401)) return absl::OkStatus();
    last_error = reply.ok() ? absl::StrCat("HTTP ", reply->status) : std::string(reply.status().message());
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  Stop().IgnoreError();
  return absl::DeadlineExceededError(absl::StrCat(
      "docker-registry on ", host(), " did not answer GET /v2/ within ", options_.start_timeout_ms,
      " ms (last: ", last_error, "); log ", log, " ends with:\n", LogTail()));
}

absl::Status RegistryProcess::Stop() {
  if (pid_ == 0) return absl::OkStatus();
  kill(-pid_, SIGTERM);
  absl::Time deadline = absl::Now() + kStopGrace;
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid_, &status, WNOHANG);
    if (w == pid_ || (w < 0 && errno == ECHILD)) break;
    if (absl::Now() >= deadline) {
      kill(-pid_, SIGKILL);  // SIGKILL cannot be ignored: the blocking wait is bounded.
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  pid_ = 0;
  return absl::OkStatus();
}

absl::Status RegistryProcess::Restart() {
  if (auto s = Stop(); !s.ok()) return s;
  return Launch();
}

}  // namespace ocicache::harness
