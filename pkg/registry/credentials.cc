#include "pkg/registry/credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace ocicache::registry {
namespace {

constexpr char kDockerHubKey[] = "https://index.docker.io/v1/";

bool IsDockerHub(absl::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

// A helper's or file's text reduced to one short line, for error messages.
std::string OneLine(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  s = s.substr(0, s.find('\n'));
  if (s.size() > 200) return absl::StrCat(s.substr(0, 200), "...");
  return std::string(s);
}

std::string GetString(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Closes a file descriptor on scope exit.
struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Runs argv with `input` on stdin; collects stdout+stderr (merged). Kills the
// process after `timeout`.
absl::Status RunProcess(const std::vector<std::string>& argv, absl::string_view input,
                        absl::Duration timeout, std::string* output, int* exit_code) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  FdCloser in_r{in[0]}, in_w{in[1]};
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  FdCloser out_r{out[0]}, out_w{out[1]};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat(argv[0], ": cannot run: ", std::strerror(rc), rc == ENOENT ? " (not on PATH)" : ""));
  }
  in_r.Close();
  out_w.Close();

  // The input is a host name: far below the pipe buffer, so this cannot block.
  // A helper that exits without reading gives EPIPE: SIGPIPE is blocked in this
  // thread for the write, and a resulting pending signal consumed.
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  if (::write(in_w.fd, input.data(), input.size()) < 0 && errno == EPIPE) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  in_w.Close();
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    struct pollfd p = {out_r.fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;  // timeout: re-checked above
    ssize_t r = ::read(out_r.fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (output->size() < (1 << 20)) output->append(buf, static_cast<size_t>(r));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], ": no answer after ", absl::FormatDuration(timeout)));
  }
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return absl::OkStatus();
}

// One `auths` entry to Credentials.
absl::StatusOr<Credentials> FromAuthEntry(const std::string& key, const nlohmann::json& e) {
  Credentials c;
  if (!e.is_object()) return c;
  std::string auth = GetString(e, "auth");
  if (!auth.empty()) {
    std::string decoded;
    size_t colon;
    if (!absl::Base64Unescape(auth, &decoded) ||
        (colon = decoded.find(':')) == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("docker config: auths[\"", key, "\"].auth is not base64 \"user:password\""));
    }
    c.username = decoded.substr(0, colon);
    c.password = decoded.substr(colon + 1);
  } else {
    c.username = GetString(e, "username");
    c.password = GetString(e, "password");
  }
  c.identity_token = GetString(e, "identitytoken");
  if (c.username.empty() && c.password.empty()) c.password = GetString(e, "registrytoken");
  return c;
}

// Finds `host`'s entry in an object keyed by hosts or URLs.
const nlohmann::json* FindHostEntry(const nlohmann::json& obj, const std::string& host,
                                    std::string* matched_key) {
  if (!obj.is_object()) return nullptr;
  std::vector<std::string> exact = {host};
  if (IsDockerHub(host)) exact = {kDockerHubKey, "docker.io", "index.docker.io"};
  for (const auto& k : exact) {
    auto it = obj.find(k);
    if (it != obj.end()) {
      *matched_key = k;
      return &*it;
    }
  }
  std::string want = IsDockerHub(host) ? "index.docker.io" : host;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (NormalizeAuthKey(it.key()) == want) {
      *matched_key = it.key();
      return &*it;
    }
  }
  return nullptr;
}

}  // namespace

std::string NormalizeAuthKey(absl::string_view key) {
  absl::string_view k = absl::StripAsciiWhitespace(key);
  size_t scheme = k.find("://");
  if (scheme != absl::string_view::npos) k.remove_prefix(scheme + 3);
  k = k.substr(0, k.find('/'));
  return absl::AsciiStrToLower(k);
}

std::string DefaultDockerConfigDir() {
  const char* dc = std::getenv("DOCKER_CONFIG");
  if (dc != nullptr && *dc != '\0') return dc;
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.docker");
  return "";
}

absl::StatusOr<Credentials> RunCredentialHelper(absl::string_view helper,
                                                absl::string_view server_url,
                                                absl::Duration timeout) {
  std::string prog = absl::StrCat("docker-credential-", helper);
  std::string out;
  int code = 0;
  absl::Status s = RunProcess({prog, "get"}, server_url, timeout, &out, &code);
  if (!s.ok()) return s;
  if (code != 0) {
    // docker-credential-helpers' ErrCredentialsNotFound text.
    if (absl::StrContains(absl::AsciiStrToLower(out), "credentials not found")) {
      return Credentials{};
    }
    return absl::UnavailableError(
        absl::StrCat(prog, " get: exit ", code, ": ", OneLine(out)));
  }
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    // Never echo the output: it may hold the secret.
    return absl::UnavailableError(absl::StrCat(prog, " get: output is not a JSON object"));
  }
  Credentials c;
  std::string user = GetString(j, "Username");
  std::string secret = GetString(j, "Secret");
  if (user == "<token>") {
    c.identity_token = secret;
  } else {
    c.username = user;
    c.password = secret;
  }
  return c;
}

absl::StatusOr<Credentials> LoadDockerCredentials(absl::string_view registry,
                                                  absl::string_view config_dir,
                                                  absl::Duration helper_timeout) {
  std::string dir = config_dir.empty() ? DefaultDockerConfigDir() : std::string(config_dir);
  if (dir.empty()) return Credentials{};
  std::string path = absl::StrCat(dir, "/config.json");
  std::ifstream f(path, std::ios::binary);
  if (!f) return Credentials{};  // no config: anonymous
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json cfg = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }

  std::string host = NormalizeAuthKey(registry);
  std::string server_url = IsDockerHub(host) ? kDockerHubKey : host;
  std::string key;

  std::string helper;
  auto helpers = cfg.find("credHelpers");
  if (helpers != cfg.end()) {
    const nlohmann::json* h = FindHostEntry(*helpers, host, &key);
    if (h != nullptr && h->is_string()) helper = h->get<std::string>();
  }
  if (helper.empty()) helper = GetString(cfg, "credsStore");
  if (!helper.empty()) {
    absl::StatusOr<Credentials> c = RunCredentialHelper(helper, server_url, helper_timeout);
    if (!c.ok() || !c->empty()) return c;
  }

  auto auths = cfg.find("auths");
  if (auths != cfg.end()) {
    const nlohmann::json* e = FindHostEntry(*auths, host, &key);
    if (e != nullptr) return FromAuthEntry(key, *e);
  }
  return Credentials{};
}

}  // namespace ocicache::registry
