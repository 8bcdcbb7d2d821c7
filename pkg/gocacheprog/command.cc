#include "pkg/gocacheprog/command.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cmdline/args.h"
#include "pkg/client/grpc_store.h"
#include "pkg/gocacheprog/server.h"
#include "pkg/gocacheprog/session_key.h"
#include "pkg/gocacheprog/stream.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/registry/client.h"

namespace ocicache::gocacheprog {

const char kUsage[] = R"(Usage: ocicache [global flags] gocacheprog [flags]

Go's GOCACHEPROG helper: go build, test and vet read and write their build cache
through it. Outputs live in the local directory (the OCI image layout of
--dir / $OCICACHE_DIR; go reads them from there) and, with --repo /
$OCICACHE_REPO, in a registry repository, so a fresh CI machine starts warm:

  export OCICACHE_REPO=registry.example.com/team/gocache
  export GOCACHEPROG="ocicache gocacheprog"
  go build ./...

Go 1.24 and later understand GOCACHEPROG as they are. Go 1.21 to 1.23 need
GOEXPERIMENT=cacheprog, and it must be set when the go command itself is built:
released go binaries (and Debian's golang-1.2x-go) ignore GOCACHEPROG. Build one:
  GOEXPERIMENT=cacheprog go build -o $HOME/go-cacheprog/go cmd/go
and run that binary (with GOROOT=$(go env GOROOT) if it is not in GOROOT/bin).
GOCACHE must still name a writable directory (go keeps fuzzing data there).

Each go action maps to an entry: key = the ActionID in hex, the output as its
blob, tagged with org.ocicache.tool.go = $GOVERSION. A get tries the local
directory, then the registry (one manifest GET; a hit is copied into the
directory); a put is stored locally, answered at once and uploaded in the
background; close waits for the uploads (--flush-timeout) and records the
session list: the ActionID -> output pairs this build used (unless it differs
little from the list read at start: then that one is kept). The next build with
the same session (module and directory within it, go version, platform,
GOFLAGS; or --session NAME; else the module's latest list) reads it at start and prefetches those outputs, so a fresh machine rarely
waits for the registry one lookup at a time. With the list goes a pack (the
outputs back to back, up to 2 GiB): a fresh directory reads it in one GET
instead of one per output (costs one more copy of the outputs in the
registry per distinct session; --no-session-pack turns it off), and records it
in the directory as one entry (the local session copy), which later builds
there read first, without the registry. A build that finds no list at all (the
module's first here) reads the registry's tag list once when it holds at most
20,000 entries, and asks the registry only for ActionIDs it names: the other
gets are misses without a round trip each (--no-tag-list: ask for every one).
A registry that is down or refuses turns lookups into misses and a warning on
stderr: the build goes on. Uploads wait for it instead (it is asked again every
30 s, and once more at close); those it never takes wait in DIR/backlog for
the next run here. Objects whose digest does not match are refused.

With --server / $OCICACHE_SERVER (an ocicached), lookups and uploads go through
that server instead of the registry (its TLS and token settings as for every
command); outputs still live in the local directory, which go reads.

Environment: OCICACHE_REPO (or KOCACHE_REPO), OCICACHE_DIR (default
~/.cache/ocicache), OCICACHE_SHARDS, OCICACHE_INSECURE, OCICACHE_TLS,
OCICACHE_CA_FILE, OCICACHE_USERNAME, OCICACHE_PASSWORD, DOCKER_CONFIG; global
flags win over them (--password-stdin cannot be used: stdin is go's).
OCICACHE_VERBOSE=1 prints the counters at close like --stats:
  gets, local hits, remote hits, misses, puts, uploaded, upload failures.

Flags:
)";

namespace {

const std::vector<cmdline::FlagSpec>& Flags() {
  static const auto* specs = new std::vector<cmdline::FlagSpec>{
      {"stats", false, false, "", "print the counters on stderr at close"},
      {"stats-file", true, false, "FILE", "append the counters to FILE as one JSON line at close"},
      {"flush-timeout", true, false, "DURATION", "how long close waits for uploads (default 5m)"},
      {"lookup-timeout", true, false, "DURATION",
       "give up a registry lookup that stalls this long (default 5s)"},
      {"session", true, false, "NAME",
       "session list to read at start and write at close (default: one per Go module "
       "and directory in it, go version, GOOS/GOARCH and GOFLAGS, falling back to the "
       "module's latest list; outside a module one per working directory)"},
      {"no-session", false, false, "", "no session list: no prefetching"},
      {"no-session-pack", false, false, "",
       "session list without the pack of its outputs: prefetch one by one"},
      {"no-pack-compression", false, false, "",
       "store the session pack raw, not as zstd frames (for a registry on a fast LAN)"},
      {"no-tag-list", false, false, "",
       "a build with no session list looks every key up, not only those the "
       "registry's tag list names"},
      {"lookup-threads", true, false, "N", "concurrent lookups (default 16)"},
      {"upload-threads", true, false, "N", "concurrent uploads (default 16)"},
      {"help", false, false, "", "show help"},
  };
  return *specs;
}

bool EnvTrue(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return false;
  std::string s(v);
  return !s.empty() && s != "0" && s != "false" && s != "no";
}

int UsageError(const cmdline::CommandEnv& env, absl::string_view message) {
  *env.err << "ocicache gocacheprog: " << message << "\n";
  return 2;
}

bool ParseDurationFlag(const cmdline::Args& a, const char* name, absl::Duration* d) {
  if (!a.Has(name)) return true;
  return absl::ParseDuration(a.Get(name), d) && *d >= absl::ZeroDuration();
}

bool ParseIntFlag(const cmdline::Args& a, const char* name, int* v) {
  if (!a.Has(name)) return true;
  return absl::SimpleAtoi(a.Get(name), v) && *v >= 1 && *v <= 256;
}

std::string Absolute(const std::string& dir) {
  if (dir.empty() || dir[0] == '/') return dir;
  char buf[4096];
  if (::getcwd(buf, sizeof buf) == nullptr) return dir;
  return absl::StrCat(buf, "/", dir);
}

std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

}  // namespace

int Main(const cmdline::CommandEnv& env) {
  std::vector<std::string> argv = {"gocacheprog"};
  argv.insert(argv.end(), env.args.begin(), env.args.end());
  auto a = cmdline::Args::Parse(argv, 1, Flags(), /*stop_at_positional=*/false);
  if (!a.ok()) return UsageError(env, a.status().message());
  if (a->GetBool("help")) {
    *env.out << kUsage << cmdline::FlagHelp(Flags())
             << "\nGlobal flags are listed by 'ocicache --help'.\n";
    return 0;
  }
  if (!a->positional().empty()) return UsageError(env, "takes no arguments");

  ServerOptions opts;
  absl::Duration lookup_timeout = absl::Seconds(5);
  if (!ParseDurationFlag(*a, "flush-timeout", &opts.flush_timeout)) {
    return UsageError(env, "--flush-timeout takes a duration such as 30s or 5m");
  }
  if (!ParseDurationFlag(*a, "lookup-timeout", &lookup_timeout) ||
      lookup_timeout < absl::Seconds(1)) {
    return UsageError(env, "--lookup-timeout takes a duration of at least 1s");
  }
  if (!ParseIntFlag(*a, "lookup-threads", &opts.lookup_threads) ||
      !ParseIntFlag(*a, "upload-threads", &opts.upload_threads)) {
    return UsageError(env, "--lookup-threads and --upload-threads take a number from 1 to 256");
  }
  opts.print_stats = a->GetBool("stats") || EnvTrue("OCICACHE_VERBOSE");
  opts.stats_file = a->Get("stats-file");
  if (const char* v = std::getenv("GOVERSION"); v != nullptr) {
    opts.go_version = std::string(absl::StripAsciiWhitespace(v));
  }
  if (!a->GetBool("no-session")) {
    char buf[4096];
    std::string cwd = ::getcwd(buf, sizeof buf) != nullptr ? buf : "";
    SessionKeys keys =
        SessionKeysFor(a->Get("session"), cwd, [](const char* n) { return EnvOr(n); });
    opts.session_key = keys.exact;
    opts.session_fallback_key = keys.fallback;
  }
  opts.session_pack = !a->GetBool("no-session-pack");
  opts.pack_compression = !a->GetBool("no-pack-compression");
  if (a->GetBool("no-tag-list")) opts.key_snapshot_max_keys = 0;
  std::ostream* err = env.err;
  opts.warn = [err](absl::string_view line) { *err << line << "\n" << std::flush; };

  const stores::StoreConfig& config = env.config;
  if (config.dir.empty()) {
    return UsageError(env, "needs a local directory (--dir or $OCICACHE_DIR; not --no-dir): "
                           "go reads outputs from files");
  }

  // Two remote stores on one repository (or one server): lookups fail fast (go
  // waits for them), uploads are patient (they run in the background).
  std::unique_ptr<cache::Store> lookup_store, upload_store;
  if (!config.server.empty()) {
    // Through ocicached: its tiers are its business; ours is the DiskPath directory.
    auto server = stores::ConnectServer(config);
    if (!server.ok()) return UsageError(env, server.status().message());
    client::GrpcStoreOptions fast = server->options;
    fast.timeout = lookup_timeout;
    fast.read_attempts = 2;
    client::GrpcStoreOptions patient = fast;
    patient.timeout = absl::Minutes(2);
    patient.read_attempts = 5;
    lookup_store = std::make_unique<client::GrpcStore>(server->channel, config.server, fast);
    upload_store = std::make_unique<client::GrpcStore>(server->channel, config.server, patient);
  } else if (!config.repo.empty()) {
    // Lookups on go's critical path give up quickly (--lookup-timeout);
    // uploads run behind the build and are patient.
    registry::ClientOptions fast = stores::RegistryClientOptions(config, stores::Profile::kLookup);
    fast.connect_timeout = std::min(lookup_timeout, fast.connect_timeout);
    fast.stall_timeout = lookup_timeout;
    registry::ClientOptions patient =
        stores::RegistryClientOptions(config, stores::Profile::kBackground);
    for (auto [opt, out] : {std::make_pair(&fast, &lookup_store),
                            std::make_pair(&patient, &upload_store)}) {
      opt->user_agent = "ocicache-gocacheprog/0.1";
      auto store = stores::OpenRegistry(config, *opt);
      if (!store.ok()) {
        *env.err << "ocicache gocacheprog: " << store.status().message() << "\n";
        return 2;
      }
      *out = *std::move(store);
    }
  }

  layout::LayoutStore::Options lopts;
  // index.json is for other tools; rewriting it per put would dominate a build.
  lopts.index_interval = absl::Seconds(2);
  auto local = layout::LayoutStore::Open(Absolute(config.dir), lopts);
  if (!local.ok()) {
    *env.err << "ocicache gocacheprog: " << local.status().message() << "\n";
    return 3;
  }
  auto server = Server::Create(local->get(), lookup_store.get(), upload_store.get(), opts);
  if (!server.ok()) {
    *env.err << "ocicache gocacheprog: " << server.status().message() << "\n";
    return 3;
  }

  int rc;
  if (env.in == &std::cin) {
    FdInput in(STDIN_FILENO);
    rc = (*server)->Serve(in, *env.out);
  } else {
    IstreamInput in(env.in);
    rc = (*server)->Serve(in, *env.out);
  }
  if ((*server)->abandoned()) {
    // Upload threads are stuck in the network: leave without joining them.
    env.out->flush();
    env.err->flush();
    std::fflush(nullptr);
    std::_Exit(rc);
  }
  return rc;
}

}  // namespace ocicache::gocacheprog
