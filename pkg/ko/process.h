// Small process helpers for the ko bridge: finding executables in PATH and
// running a command. Free of Abseil on purpose: ocicache-go links only this,
// fastpath and lookup_log, so it starts in about a millisecond (each shared
// library the dynamic loader resolves costs startup time on every `go` call).
#ifndef OCICACHE_PKG_KO_PROCESS_H_
#define OCICACHE_PKG_KO_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace ocicache::ko {

// realpath(3), or "" if it fails.
std::string RealPath(const std::string& path);
// The real path of the running executable (/proc/self/exe), or "".
std::string SelfExe();
// The directory part of a path ("." when there is none).
std::string DirName(const std::string& path);

// The first executable regular file `name` in $PATH whose real path is not
// `exclude_real` (e.g. the running wrapper itself); "" if none. A name with a '/'
// is returned as is when it is executable.
std::string FindInPath(const std::string& name, const std::string& exclude_real = "");

struct RunOptions {
  bool capture_stdout = true;  // else stdout goes to /dev/null
  bool null_stdin = false;     // else inherited
  bool null_stderr = false;    // else inherited
};

struct RunResult {
  int exit_code = 0;  // the exit status, or 128 + signal
  std::string out;    // stdout, when captured
};

// Runs argv[0] (a path) with argv and the current environment. False (and
// *error) only if it could not be started.
bool RunCommand(const std::vector<std::string>& argv, const RunOptions& opts, RunResult* result,
                std::string* error);

// A command started with a pipe on its stdin (StartWithInput), so that it can
// start up while the caller still works out what to send it.
struct Child {
  pid_t pid = -1;
  int stdin_fd = -1;  // the pipe's write end (close-on-exec)
};
// Starts argv like RunCommand (stdout not captured: /dev/null) with its stdin
// reading from a new pipe. False (and *error) if it could not be started.
bool StartWithInput(const std::vector<std::string>& argv, const RunOptions& opts, Child* child,
                    std::string* error);
// Writes `input` to the child's stdin, closes it and waits for the child.
// SIGPIPE must be ignored (the child may exit without reading).
bool FinishWithInput(Child* child, const std::string& input, RunResult* result,
                     std::string* error);
// Closes the child's stdin without waiting: it ends on its own (on EOF).
void Abandon(Child* child);

// First line of a command's stdout, trimmed; "" if it fails or exits non-zero
// (stdin and stderr are /dev/null).
std::string FirstLineOf(const std::vector<std::string>& argv);

// Whether two file descriptors are the same open file (e.g. one pipe).
bool SameOpenFile(int a, int b);
// Writes all of s to fd (best effort).
void WriteAll(int fd, const std::string& s);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_PROCESS_H_
