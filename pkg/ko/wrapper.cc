#include "pkg/ko/wrapper.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "pkg/ko/fastpath.h"
#include "pkg/ko/lookup_log.h"
#include "pkg/ko/process.h"

namespace ocicache::ko {

const char kWrapperUsage[] = R"(Usage: ocicache-go ARGS...   (as ko's KO_GO_PATH)

A `go` that runs the real go with the same arguments, streams and exit code,
and lets ko's KOCACHE use the ocicache store:

  KOCACHE=$PWD/.kocache KO_GO_PATH=/path/to/ocicache-go ko build ./cmd/app
  ocicache ko save        # afterwards: store the new layer metadata

On `go tool buildid FILE` for FILE under $KOCACHE/bin, a build id the KOCACHE
files beside FILE do not know is looked up in the cache (`ocicache ko lookup`:
local directory, then one registry request; on a fresh KOCACHE it starts while
go reads the build id); a hit is written into
buildid-to-diffid and diffid-to-descriptor as ko writes them, so ko skips
building that layer. A miss or an unreachable registry changes nothing; cache
problems never fail the build. Each lookup is a line in $KOCACHE/ocicache-go.log,
which `ocicache ko save` reports (hits and misses per binary) and clears.

Environment:
  OCICACHE_GO            the real go (default: first `go` in PATH that is not this binary)
  OCICACHE_BIN           the ocicache binary (default: beside this one, then PATH)
  KOCACHE                ko's cache directory (lookups happen only when set)
  OCICACHE_REPO, OCICACHE_DIR, ...   the store, as for `ocicache` (see ocicache --help)
  OCICACHE_KO_LOG        lookup log (default $KOCACHE/ocicache-go.log; "off" disables)
  OCICACHE_GOCACHEPROG=1 also share Go's build cache: `go build|install|test|run` get
                         GOCACHEPROG="<ocicache> gocacheprog" (and GOEXPERIMENT=cacheprog
                         on Go 1.21-1.23) unless GOCACHEPROG is set
  KO_VERSION             ko's version, for entries' staleness (default: `ko version`)

`ocicache-go --ocicache-help` prints this; every other argument goes to go.
)";

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

bool EnvTrue(const char* name) {
  std::string s = Env(name);
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s == "1" || s == "true" || s == "yes" || s == "on";
}

double NowMs() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

void Warn(const std::string& msg) { WriteAll(2, "ocicache-go: warning: " + msg + "\n"); }

// Whether FILE's directory is inside KOCACHE/bin (by real paths); sets *dir to
// FILE's directory as given and *rel to "bin/..." relative to KOCACHE.
bool UnderKocacheBin(const std::string& kocache, const std::string& file, std::string* dir,
                     std::string* rel) {
  std::string bin = RealPath(kocache + "/bin");
  std::string d = RealPath(DirName(file));
  if (bin.empty() || d.empty() || d.compare(0, bin.size() + 1, bin + "/") != 0) return false;
  *dir = DirName(file);
  *rel = "bin/" + d.substr(bin.size() + 1);
  return true;
}

[[noreturn]] void ExecGo(const std::string& go, int argc, char** argv) {
  std::vector<char*> args;
  args.push_back(const_cast<char*>(go.c_str()));
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(go.c_str(), args.data());
  std::fprintf(stderr, "ocicache-go: cannot run %s: %s\n", go.c_str(), strerror(errno));
  std::fflush(stderr);
  _exit(127);
}

// GOCACHEPROG for `go build` and friends.
void SetUpCacheProg(const std::string& go, const std::string& self) {
  if (!Env("GOCACHEPROG").empty()) return;
  std::string bin = FindOcicache(self);
  if (bin.empty()) {
    Warn("OCICACHE_GOCACHEPROG is set but no ocicache binary was found (set OCICACHE_BIN); "
         "building without the shared Go cache");
    return;
  }
  std::string version = FirstLineOf({go, "env", "GOVERSION"});
  int minor = GoMinorVersion(version);
  if (minor >= 0 && minor < 21) {
    Warn("GOCACHEPROG needs Go 1.21 or later, this is " + version +
         "; building without the shared Go cache");
    return;
  }
  if (minor >= 21 && minor <= 23) {
    setenv("GOEXPERIMENT", AddExperiment(Env("GOEXPERIMENT"), "cacheprog").c_str(), 1);
  }
  std::string quoted = bin;
  if (bin.find_first_of(" \t\n'\"") != std::string::npos) {
    quoted = bin.find('\'') == std::string::npos ? "'" + bin + "'" : "\"" + bin + "\"";
  }
  setenv("GOCACHEPROG", (quoted + " gocacheprog").c_str(), 1);
}

// Whether a store lookup is likely for the binary in DIR: ko has recorded no
// layer beside it yet (a fresh KOCACHE) and did not just miss it.
bool LookupLikely(const std::string& dir) {
  struct stat st;
  if (stat((dir + "/" + kBuildIdToDiffIdFile).c_str(), &st) == 0) return false;
  return stat((dir + "/" + kRecentMissFile).c_str(), &st) != 0 ||
         std::time(nullptr) - st.st_mtime >= kRecentMissSeconds;
}

// `go tool buildid FILE` under KOCACHE/bin.
int BuildId(const std::string& go, const std::string& self, const std::vector<std::string>& args,
            const std::string& kocache, const std::string& dir, const std::string& rel) {
  // The lookup runs in ocicache, which logs the event itself. Its stdout is
  // /dev/null: nothing may be added to the build id. ko reads stdout and stderr
  // through one pipe; then warnings go to the log only.
  const bool warn_stderr = !SameOpenFile(1, 2);
  const std::string ocicache = FindOcicache(self);
  auto lookup_argv = [&](const std::string& id) {
    std::vector<std::string> v = {ocicache, "ko", "lookup", "--kocache", kocache};
    if (warn_stderr) v.push_back("--warn-stderr");
    v.push_back("--");
    v.push_back(args[2]);
    v.push_back(id);
    return v;
  };
  RunOptions lookup_opts;
  lookup_opts.capture_stdout = false;
  lookup_opts.null_stdin = true;
  lookup_opts.null_stderr = !warn_stderr;
  // On a fresh KOCACHE, ocicache starts (loads its libraries, opens its stores)
  // while go reads the build id, and reads the id from its stdin: that start no
  // longer adds to the wrapper's time.
  Child early;
  std::string error;
  if (!ocicache.empty() && LookupLikely(dir) &&
      !StartWithInput(lookup_argv("-"), lookup_opts, &early, &error)) {
    early = Child{};
  }
  std::vector<std::string> argv = {go};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r;
  if (!RunCommand(argv, RunOptions{}, &r, &error)) {
    Abandon(&early);
    std::fprintf(stderr, "ocicache-go: %s\n", error.c_str());
    return 127;
  }
  // Only now (go has exited): an ignored SIGPIPE would have been inherited by go.
  signal(SIGPIPE, SIG_IGN);
  std::string id = r.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r' || id.back() == ' ')) id.pop_back();
  if (r.exit_code == 0 && !id.empty() && id.find_first_of(" \t\r\n") == std::string::npos) {
    double start = NowMs();
    LookupEvent ev;
    ev.dir = rel;
    ev.build_id = id;
    if (KocacheKnows(dir, id)) {
      ev.result = "local";
    } else if (RecentMiss(dir, id)) {
      ev.result = "recent-miss";
    }
    if (!ev.result.empty()) {
      Abandon(&early);  // it reads end of input and exits without a word
      ev.ms = NowMs() - start;
      AppendLookupLog(LookupLogPath(kocache), ev);
    } else {
      if (ocicache.empty()) {
        ev.result = "error";
        ev.message = "no ocicache binary found (set OCICACHE_BIN): cache not used";
        AppendLookupLog(LookupLogPath(kocache), ev);
        if (warn_stderr) Warn(ev.message);
      } else {
        RunResult lr;
        std::string lerr;
        bool ran = early.pid > 0 ? FinishWithInput(&early, id + "\n", &lr, &lerr)
                                 : RunCommand(lookup_argv(id), lookup_opts, &lr, &lerr);
        if (!ran || lr.exit_code != 0) {
          ev.result = "error";
          ev.message = "ocicache ko lookup failed (" +
                       (lerr.empty() ? "exit " + std::to_string(lr.exit_code) : lerr) +
                       "): cache not used";
          AppendLookupLog(LookupLogPath(kocache), ev);
          if (warn_stderr) Warn(ev.message);
        }
      }
    }
  }
  Abandon(&early);  // go failed or printed no build id
  WriteAll(1, r.out);
  return r.exit_code;
}

}  // namespace

std::string FindRealGo(const std::string& self, std::string* error) {
  std::string want = Env("OCICACHE_GO");
  if (!want.empty()) {
    std::string go = FindInPath(want);
    if (go.empty()) {
      *error = "OCICACHE_GO=" + want + " is not an executable";
      return "";
    }
    if (!self.empty() && RealPath(go) == self) {
      *error = "OCICACHE_GO=" + want + " is ocicache-go itself";
      return "";
    }
    return go;
  }
  std::string go = FindInPath("go", self);
  if (go.empty()) *error = "no go in PATH other than ocicache-go itself (set OCICACHE_GO)";
  return go;
}

std::string FindOcicache(const std::string& self) {
  std::string bin = Env("OCICACHE_BIN");
  if (!bin.empty() && access(bin.c_str(), X_OK) == 0) return bin;
  if (!self.empty()) {
    std::string beside = DirName(self) + "/ocicache";
    if (access(beside.c_str(), X_OK) == 0) return beside;
  }
  return FindInPath("ocicache");
}

std::string AddExperiment(std::string_view goexperiment, std::string_view name) {
  size_t start = 0;
  while (start <= goexperiment.size()) {
    size_t end = goexperiment.find(',', start);
    std::string_view part = goexperiment.substr(start, end == std::string_view::npos ? end : end - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part == name) return std::string(goexperiment);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  std::string out(goexperiment);
  while (!out.empty() && out.back() == ',') out.pop_back();
  if (!out.empty()) out += ",";
  out += name;
  return out;
}

int GoMinorVersion(std::string_view v) {
  if (v.substr(0, 4) != "go1.") return -1;
  v.remove_prefix(4);
  int minor = 0;
  size_t n = 0;
  while (n < v.size() && v[n] >= '0' && v[n] <= '9' && n < 6) minor = minor * 10 + (v[n++] - '0');
  return n == 0 ? -1 : minor;
}

int WrapperMain(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--ocicache-help") {
    std::fputs(kWrapperUsage, stdout);
    return 0;
  }
  std::string self = SelfExe();
  std::string error;
  std::string go = FindRealGo(self, &error);
  if (go.empty()) {
    std::fprintf(stderr, "ocicache-go: %s\n", error.c_str());
    return 127;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "tool" && args[1] == "buildid") {
    std::string kocache = Env("KOCACHE");
    std::string dir, rel;
    if (!kocache.empty() && UnderKocacheBin(kocache, args[2], &dir, &rel)) {
      return BuildId(go, self, args, kocache, dir, rel);
    }
  }
  if (!args.empty() && EnvTrue("OCICACHE_GOCACHEPROG") &&
      (args[0] == "build" || args[0] == "install" || args[0] == "test" || args[0] == "run")) {
    SetUpCacheProg(go, self);
  }
  ExecGo(go, argc, argv);
}

}  // namespace ocicache::ko
