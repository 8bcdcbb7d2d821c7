// Small process helpers for the ko bridge: finding executables in PATH and
// running a command. Free of Abseil on purpose: ocicache-go links only this,
// fastpath and lookup_log, so it starts in about a millisecond (each shared
// library the dynamic loader resolves costs startup time on every `go` call).
#ifndef OCICACHE_PKG_KO_PROCESS_H_
#define OCICACHE_PKG_KO_PROCESS_H_

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

// First line of a command's stdout, trimmed; "" if it fails or exits non-zero
// (stdin and stderr are /dev/null).
std::string FirstLineOf(const std::vector<std::string>& argv);

// Whether two file descriptors are the same open file (e.g. one pipe).
bool SameOpenFile(int a, int b);
// Writes all of s to fd (best effort).
void WriteAll(int fd, const std::string& s);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_PROCESS_H_
