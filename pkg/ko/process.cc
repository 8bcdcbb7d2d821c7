#include "pkg/ko/process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

extern char** environ;

namespace ocicache::ko {

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return "";
  return buf;
}

std::string SelfExe() { return RealPath("/proc/self/exe"); }

std::string DirName(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return ".";
  if (p == 0) return "/";
  return path.substr(0, p);
}

namespace {

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string FindInPath(const std::string& name, const std::string& exclude_real) {
  if (name.find('/') != std::string::npos) return IsExecutableFile(name) ? name : "";
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::string p = path;
  size_t start = 0;
  for (;;) {
    size_t end = p.find(':', start);
    std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (IsExecutableFile(candidate) &&
        (exclude_real.empty() || RealPath(candidate) != exclude_real)) {
      return candidate;
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

namespace {

// Waits for pid; its exit status (or 128 + signal) into result.
bool WaitFor(pid_t pid, RunResult* result, std::string* error) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      *error = std::string("waitpid: ") + strerror(errno);
      return false;
    }
  }
  result->exit_code = WIFEXITED(status) ? WEXITSTATUS(status)
                      : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                            : 1;
  return true;
}

// Starts argv[0] with argv, the current environment and the file actions `fa`
// (destroyed here).
bool Spawn(const std::vector<std::string>& argv, posix_spawn_file_actions_t* fa, pid_t* pid,
           std::string* error) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(pid, argv[0].c_str(), fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(fa);
  if (rc != 0) {
    *error = "cannot run " + argv[0] + ": " + strerror(rc);
    return false;
  }
  return true;
}

}  // namespace

bool RunCommand(const std::vector<std::string>& argv, const RunOptions& opts, RunResult* result,
                std::string* error) {
  if (argv.empty()) {
    *error = "no command";
    return false;
  }
  int fds[2] = {-1, -1};
  if (opts.capture_stdout && pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (opts.capture_stdout) {
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  if (opts.null_stdin) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (opts.null_stderr) posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  bool started = Spawn(argv, &fa, &pid, error);
  if (opts.capture_stdout) close(fds[1]);
  if (!started) {
    if (opts.capture_stdout) close(fds[0]);
    return false;
  }
  result->out.clear();
  if (opts.capture_stdout) {
    char buf[8192];
    for (;;) {
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n > 0) {
        result->out.append(buf, n);
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    close(fds[0]);
  }
  return WaitFor(pid, result, error);
}

bool StartWithInput(const std::vector<std::string>& argv, const RunOptions& opts, Child* child,
                    std::string* error) {
  if (argv.empty()) {
    *error = "no command";
    return false;
  }
  int fds[2] = {-1, -1};
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (opts.null_stderr) posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  bool started = Spawn(argv, &fa, &pid, error);
  close(fds[0]);
  if (!started) {
    close(fds[1]);
    return false;
  }
  child->pid = pid;
  child->stdin_fd = fds[1];
  return true;
}

bool FinishWithInput(Child* child, const std::string& input, RunResult* result,
                     std::string* error) {
  WriteAll(child->stdin_fd, input);  // a child that exits early: EPIPE, ignored
  close(child->stdin_fd);
  child->stdin_fd = -1;
  result->out.clear();
  bool ok = WaitFor(child->pid, result, error);
  child->pid = -1;
  return ok;
}

void Abandon(Child* child) {
  if (child->stdin_fd >= 0) close(child->stdin_fd);
  child->stdin_fd = -1;
  child->pid = -1;
}

std::string FirstLineOf(const std::vector<std::string>& argv) {
  RunOptions o;
  o.null_stdin = true;
  o.null_stderr = true;
  RunResult r;
  std::string err;
  if (!RunCommand(argv, o, &r, &err) || r.exit_code != 0) return "";
  std::string s = r.out.substr(0, r.out.find('\n'));
  size_t b = s.find_first_not_of(" \t\r");
  size_t e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool SameOpenFile(int a, int b) {
  struct stat sa, sb;
  if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += n;
  }
}

}  // namespace ocicache::ko
