#include "test/harness/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "absl/time/clock.h"

namespace ocicache::harness {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int OpenOutput(const std::string& path) {
  if (path.empty()) return ::open("/dev/null", O_WRONLY);
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
}

}  // namespace

absl::StatusOr<int> SpawnReportingPort(const std::vector<std::string>& argv,
                                       const std::string& port_file, const SpawnOptions& opts,
                                       pid_t* pid) {
  *pid = 0;
  if (argv.empty()) return absl::InvalidArgumentError("no program to start");
  std::vector<std::string> args = argv;  // execv wants mutable strings
  pid_t child = fork();
  if (child < 0) return absl::InternalError("fork failed");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(OpenOutput(opts.stdout_path), 1);
    dup2(OpenOutput(opts.stderr_path), 2);
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  *pid = child;
  const std::string name = argv[0].substr(argv[0].rfind('/') + 1);
  auto stderr_text = [&] { return opts.stderr_path.empty() ? "" : ReadAll(opts.stderr_path); };
  absl::Time deadline = absl::Now() + opts.port_timeout;
  while (absl::Now() < deadline) {
    std::string p = ReadAll(port_file);
    int port = 0;
    if (!p.empty() && absl::SimpleAtoi(absl::StripAsciiWhitespace(p), &port) && port > 0) {
      return port;
    }
    int status;
    if (waitpid(child, &status, WNOHANG) == child) {
      *pid = 0;
      return absl::InternalError(absl::StrCat(name, " exited: ", stderr_text()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  *pid = 0;
  return absl::DeadlineExceededError(
      absl::StrCat(name, " did not report a port: ", stderr_text()));
}

}  // namespace ocicache::harness
