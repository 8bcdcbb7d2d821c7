// A repository at scale (issue 15): fills --entries entries (default 100,000;
// unique 256-byte blobs) through one registry-only ocicached (a child process)
// with --threads clients in parallel, over a docker-registry on loopback
// (test/harness, access log on to count its requests). At 1k, 10k and 100k
// entries (those up to --entries) it pauses the fill and measures:
//   lookup     p50/p90 of 500 lookups of random existing keys, each one manifest
//              GET (a RegistryStore in this process: what `ocicache get` does),
//              and p50 as a ratio to its value at the first mark
//   ls, gc     `ocicache --repo R --no-dir ls --json` and `gc --older-than 10000h
//              --dry-run` run as child processes: wall time, peak RSS (rusage),
//              and the registry requests they caused (access-log lines)
// ocicached records the entries it puts (listing records, docs/FORMAT.md) and
// pushes them every 1,000 rows (measured 3 s after the fill pauses, so a push
// due is done), so up to 999 entries at a mark are listed from their manifests. Goals at 100k (issue 15): lookup within 10% of 1k; ls and gc
// under 60 s, at most 1,000 requests beyond the tag lists, peak RSS under 100 MB.
// Lookups are measured three times per mark: as the fill left the registry (once
// the fills' writes are on disk: sync); in the steady state, after --warmup
// (5,000) more, interleaved with bare GETs of other random manifests (the
// registry's own cost); and after the registry process restarts on the same storage (with
// its CPU per lookup).
// Local tier: a second ocicached with a local directory only (no registry) is
// filled with the same entries by the same clients, in a phase of its own at
// each mark; its put rate is over the last min(10,000, 4/5 of the puts since
// the last mark) puts, and its ratio is to the first mark's (goal at 100k:
// within 20%).
// bench/local_tier_bench measures the layout alone, without gRPC.
//
//   bazel run -c opt //bench:scale_bench -- [--entries=100000] [--threads=8]
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pkg/cache/entry.h"
#include "pkg/cache/format.h"
#include "pkg/cache/registry_store.h"
#include "pkg/client/grpc_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "test/harness/http_client.h"
#include "test/harness/registry.h"
#include "test/harness/spawn.h"

ABSL_FLAG(int, entries, 100000, "entries to fill");
ABSL_FLAG(int, threads, 8, "clients putting in parallel");
ABSL_FLAG(std::string, ocicached, "", "ocicached binary (default: from the runfiles)");
ABSL_FLAG(std::string, ocicache, "", "ocicache binary (default: from the runfiles)");
ABSL_FLAG(int, max_minutes, 60, "give up after this long");
ABSL_FLAG(int, warmup, 5000, "untimed lookups before the warm measurement at each mark");

namespace {

using ocicache::cache::Entry;
using ocicache::harness::RegistryProcess;

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "scale_bench: %s\n", why.c_str());
  std::exit(1);
}

std::string Runfile(const char* argv0, const std::string& flag, const std::string& rel) {
  if (!flag.empty()) return flag;
  std::vector<std::string> candidates;
  if (const char* r = getenv("RUNFILES_DIR")) candidates.push_back(absl::StrCat(r, "/ocicache/", rel));
  candidates.push_back(absl::StrCat(argv0, ".runfiles/ocicache/", rel));
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  Fail(absl::StrCat(rel, " not found; run through bazel or pass its flag"));
}

int64_t LogLines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StrContains(line, "\"GET /v2/") || absl::StrContains(line, "\"HEAD /v2/") ||
        absl::StrContains(line, "\"PUT /v2/") || absl::StrContains(line, "\"POST /v2/") ||
        absl::StrContains(line, "\"DELETE /v2/") || absl::StrContains(line, "\"PATCH /v2/")) {
      ++n;
    }
  }
  return n;
}

struct Run {
  absl::Duration wall;
  int64_t max_rss_kb = 0;
  int exit_code = -1;
};

Run RunChild(const std::vector<std::string>& argv) {
  Run r;
  absl::Time t0 = absl::Now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  r.wall = absl::Now() - t0;
  r.max_rss_kb = ru.ru_maxrss;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// User plus system CPU seconds of a process so far.
double CpuSeconds(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  if (fields.size() < 13) return 0;
  return (std::stod(fields[11]) + std::stod(fields[12])) / sysconf(_SC_CLK_TCK);
}

struct Mark {
  int n = 0;
  double fill_rate = 0;
  double local_rate = 0;  // puts/s of the local-tier server over the last window
  absl::Duration p50, p90;
  double reg_cpu_ms = 0;        // registry CPU per lookup
  // After --warmup more lookups: ours, and bare GETs of other random manifests
  // (the registry's own cost; the two interleaved).
  absl::Duration p50_warm, p90_warm, bare_p50_warm;
  absl::Duration p50_restart;  // after the registry process restarts
  double reg_cpu_ms_restart = 0;
  Run ls, gc;
  int64_t ls_requests = 0, gc_requests = 0;
  int64_t tag_list_requests = 0;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int total = absl::GetFlag(FLAGS_entries);
  const int threads = absl::GetFlag(FLAGS_threads);
  const std::string ocicached = Runfile(argv[0], absl::GetFlag(FLAGS_ocicached), "cmd/ocicached/ocicached");
  const std::string ocicache = Runfile(argv[0], absl::GetFlag(FLAGS_ocicache), "cmd/ocicache/ocicache");
  const absl::Time give_up = absl::Now() + absl::Minutes(absl::GetFlag(FLAGS_max_minutes));

  RegistryProcess::Options ro;
  ro.access_log = true;
  auto reg = RegistryProcess::Start(ro);
  if (!reg.ok()) Fail(reg.status().ToString());
  const std::string repo = "scale/bench";
  const std::string ref = absl::StrCat((*reg)->host(), "/", repo);
  const std::string port_file = absl::StrCat((*reg)->root_dir(), "/ocicached.port");
  pid_t server_pid = 0;
  ocicache::harness::SpawnOptions so;
  so.stderr_path = absl::StrCat((*reg)->root_dir(), "/ocicached.err");
  auto port = ocicache::harness::SpawnReportingPort(
      {ocicached, "--listen=127.0.0.1:0", "--port_file=" + port_file, "--http_listen=",
       "--repo=" + ref, "--no_dir", "--access_log=false"},
      port_file, so, &server_pid);
  if (!port.ok()) Fail(port.status().ToString());
  const std::string server = absl::StrCat("127.0.0.1:", *port);
  // The local-tier server: a directory only.
  const std::string local_port_file = absl::StrCat((*reg)->root_dir(), "/ocicached-local.port");
  pid_t local_pid = 0;
  ocicache::harness::SpawnOptions lso;
  lso.stderr_path = absl::StrCat((*reg)->root_dir(), "/ocicached-local.err");
  auto local_port = ocicache::harness::SpawnReportingPort(
      {ocicached, "--listen=127.0.0.1:0", "--port_file=" + local_port_file, "--http_listen=",
       "--dir=" + absl::StrCat((*reg)->root_dir(), "/tier"), "--access_log=false"},
      local_port_file, lso, &local_pid);
  if (!local_port.ok()) Fail(local_port.status().ToString());
  const std::string local_server = absl::StrCat("127.0.0.1:", *local_port);

  auto rclient = ocicache::registry::Client::Create((*reg)->host());
  if (!rclient.ok()) Fail(rclient.status().ToString());
  auto direct = ocicache::cache::RegistryStore::Create(std::move(*rclient), repo);
  if (!direct.ok()) Fail(direct.status().ToString());

  std::vector<int> marks;
  for (int m : {1000, 10000, 100000}) {
    if (m <= total) marks.push_back(m);
  }
  if (marks.empty() || marks.back() != total) marks.push_back(total);

  std::vector<std::unique_ptr<ocicache::client::GrpcStore>> clients, local_clients;
  for (int t = 0; t < threads; ++t) {
    clients.push_back(std::make_unique<ocicache::client::GrpcStore>(
        ocicache::client::Dial(server), server, ocicache::client::GrpcStoreOptions{}));
    local_clients.push_back(std::make_unique<ocicache::client::GrpcStore>(
        ocicache::client::Dial(local_server), local_server, ocicache::client::GrpcStoreOptions{}));
  }
  // Puts entries [from, to) through `via` with all threads; the wall time.
  auto fill = [&](std::vector<std::unique_ptr<ocicache::client::GrpcStore>>& via, int from,
                  int to) {
    std::atomic<int> next{from};
    std::atomic<bool> failed{false};
    absl::Time t0 = absl::Now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i; (i = next.fetch_add(1)) < to && !failed;) {
          if (absl::Now() > give_up) {
            failed = true;
            return;
          }
          std::string bytes = absl::StrFormat("scale entry %0243d", i);
          ocicache::oci::StringSource src(bytes);
          auto d = via[t]->WriteBlob(ocicache::oci::Digest::Of(bytes), bytes.size(), src);
          Entry e;
          e.key = absl::StrCat("scale/", i);
          e.config = absl::StrCat(R"({"n":)", i, "}");
          if (d.ok()) e.blobs.push_back(*d);
          absl::Status s = d.ok() ? via[t]->Put(e) : d.status();
          if (!s.ok()) {
            std::fprintf(stderr, "put %d: %s\n", i, s.ToString().c_str());
            failed = true;
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    if (failed) Fail("the fill failed or ran out of time");
    return absl::Now() - t0;
  };
  std::vector<Mark> rows;
  int filled = 0;
  std::mt19937_64 rng(7);
  for (int mark : marks) {
    absl::Duration took = fill(clients, filled, mark);
    Mark row;
    row.n = mark;
    row.fill_rate = (mark - filled) / absl::ToDoubleSeconds(took);
    // The server pushes its records within 2 s of 1,000 rows waiting; measured
    // after that, so the rows of a just-reached threshold are not counted twice
    // (and the push does not run beside the local tier's fill).
    absl::SleepFor(absl::Seconds(3));
    // The local tier to the same size: untimed up to the window (at least the
    // first fifth of the new puts, where the clients' connections start), then
    // timed.
    const int window = std::min(10000, (mark - filled) * 4 / 5);
    fill(local_clients, filled, mark - window);
    row.local_rate = window / absl::ToDoubleSeconds(fill(local_clients, mark - window, mark));
    filled = mark;
    // The local tier's fill leaves its directory's writes in the page cache
    // (90,000 entries before the 100k mark) and the local server rewrites its
    // index.json within 2 s: let both reach the disk first, so the lookups
    // measure the registry, not the write-back of the phase before them.
    absl::SleepFor(absl::Seconds(3));
    ::sync();
    // One lookup of a random existing key (not touching it), timed; a failure
    // ends the benchmark.
    auto timed_lookup = [&] {
      const std::string key = absl::StrCat("scale/", rng() % mark);
      ocicache::cache::LookupOptions lo;
      lo.touch = false;
      const absl::Time s = absl::Now();
      auto got = (*direct)->Lookup(key, lo);
      const absl::Duration took = absl::Now() - s;
      if (!got.ok()) Fail(absl::StrCat("lookup ", key, ": ", got.status().ToString()));
      return took;
    };
    // 500 lookups of random keys: p50, p90 and the registry's CPU per lookup.
    auto lookups = [&](absl::Duration* p50, absl::Duration* p90, double* cpu_ms) {
      std::vector<absl::Duration> lat;
      const double cpu0 = CpuSeconds((*reg)->pid());
      for (int k = 0; k < 500; ++k) lat.push_back(timed_lookup());
      *cpu_ms = (CpuSeconds((*reg)->pid()) - cpu0) * 1000 / 500;
      std::sort(lat.begin(), lat.end());
      *p50 = lat[lat.size() / 2];
      if (p90 != nullptr) *p90 = lat[lat.size() * 9 / 10];
    };
    lookups(&row.p50, &row.p90, &row.reg_cpu_ms);
    // A registry process that has just been filled (or started) answers a large
    // repository slowly for its first few thousand requests (measured with a
    // bare client in the fifteenth session: README, "Status"). The steady state: --warmup untimed
    // lookups, then 500 of ours interleaved with 500 bare GETs of other random
    // manifests (one curl handle, keep-alive, no decoding): the registry's own
    // cost at this size, beside ours. Not of the same manifests: a key's second
    // GET is cheaper than its first on a large repository (1.05 against
    // 1.8 ms at 100k in the fifteenth session), and every lookup of a build is a
    // key's first.
    {
      for (int k = 0; k < absl::GetFlag(FLAGS_warmup); ++k) timed_lookup();
      ocicache::harness::HttpClient bare;
      std::vector<absl::Duration> ours, raw;
      for (int k = 0; k < 500; ++k) {
        ours.push_back(timed_lookup());
        auto tag = ocicache::cache::TagForKey(absl::StrCat("scale/", rng() % mark));
        if (!tag.ok()) Fail(tag.status().ToString());
        const absl::Time s = absl::Now();
        auto reply = bare.Do({.url = absl::StrCat("http://", (*reg)->host(), "/v2/", repo,
                                                  "/manifests/", *tag),
                              .headers = {"Accept: application/vnd.oci.image.manifest.v1+json"}});
        raw.push_back(absl::Now() - s);
        if (!reply.ok() || reply->status != 200) {
          Fail(absl::StrCat("bare GET of ", *tag, ": ",
                            reply.ok() ? absl::StrCat(reply->status) : reply.status().ToString()));
        }
      }
      std::sort(ours.begin(), ours.end());
      std::sort(raw.begin(), raw.end());
      row.p50_warm = ours[ours.size() / 2];
      row.p90_warm = ours[ours.size() * 9 / 10];
      row.bare_p50_warm = raw[raw.size() / 2];
    }
    // Again after the registry process restarts on the same storage (its
    // in-memory caches empty, nothing left running from the fill): separates
    // what the repository's size costs a lookup from the state of the process.
    if (absl::Status st = (*reg)->Stop(); !st.ok()) Fail(st.ToString());
    if (absl::Status st = (*reg)->Restart(); !st.ok()) Fail(st.ToString());
    lookups(&row.p50_restart, nullptr, &row.reg_cpu_ms_restart);
    // The server sees the registry again before the fill goes on.
    {
      const ocicache::oci::Digest probe =
          ocicache::oci::Digest::Of(absl::StrFormat("scale entry %0243d", 0));
      absl::Time until = absl::Now() + absl::Seconds(60);
      while (!clients[0]->StatBlob(probe).ok()) {
        if (absl::Now() > until) Fail("the server did not see the restarted registry within 60 s");
        absl::SleepFor(absl::Milliseconds(250));
      }
    }

    const std::string log = (*reg)->log_path();
    int64_t before = LogLines(log);
    row.ls = RunChild({ocicache, "--repo", ref, "--no-dir", "ls", "--json"});
    row.ls_requests = LogLines(log) - before;
    before = LogLines(log);
    row.gc = RunChild({ocicache, "--repo", ref, "--no-dir", "--quiet", "gc", "--older-than",
                       "10000h", "--dry-run"});
    row.gc_requests = LogLines(log) - before;
    if (row.ls.exit_code != 0 || row.gc.exit_code != 0) {
      Fail(absl::StrCat("ls exited ", row.ls.exit_code, ", gc ", row.gc.exit_code));
    }
    rows.push_back(row);
    std::fprintf(stderr, "mark %d: fill %.0f puts/s, local tier %.0f puts/s, lookup p50 %.1f ms (registry CPU %.2f ms), "
                 "warm %.2f ms (bare GET %.2f ms), "
                 "after a registry restart %.1f ms (%.2f ms), ls %.2f s %lld requests %.1f MB, "
                 "gc %.2f s %lld requests %.1f MB\n",
                 mark, row.fill_rate, row.local_rate, absl::ToDoubleMilliseconds(row.p50), row.reg_cpu_ms,
                 absl::ToDoubleMilliseconds(row.p50_warm), absl::ToDoubleMilliseconds(row.bare_p50_warm),
                 absl::ToDoubleMilliseconds(row.p50_restart), row.reg_cpu_ms_restart,
                 absl::ToDoubleSeconds(row.ls.wall), static_cast<long long>(row.ls_requests),
                 row.ls.max_rss_kb / 1024.0, absl::ToDoubleSeconds(row.gc.wall),
                 static_cast<long long>(row.gc_requests), row.gc.max_rss_kb / 1024.0);
  }
  ::kill(server_pid, SIGTERM);
  ::kill(local_pid, SIGTERM);
  int status = 0;
  ::waitpid(server_pid, &status, 0);
  ::waitpid(local_pid, &status, 0);

  std::printf("\n%d entries through one ocicached (%d clients), registry on loopback, %u cores\n",
              total, threads, std::thread::hardware_concurrency());
  std::printf("| entries | fill puts/s | lookup p50 | p90 | p50 vs first | registry CPU/lookup "
              "| p50 after restart | vs first | registry CPU/lookup | ls s | ls RSS MB | ls requests "
              "| gc --dry-run s | gc RSS MB | gc requests | local tier puts/s | vs first |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Mark& r : rows) {
    std::printf("| %d | %.0f | %.1f ms | %.1f ms | %.2f | %.2f ms | %.1f ms | %.2f | %.2f ms "
                "| %.2f | %.1f | %lld | %.2f | %.1f | %lld | %.0f | %.2f |\n",
                r.n, r.fill_rate, absl::ToDoubleMilliseconds(r.p50), absl::ToDoubleMilliseconds(r.p90),
                absl::ToDoubleMilliseconds(r.p50) / absl::ToDoubleMilliseconds(rows[0].p50),
                r.reg_cpu_ms, absl::ToDoubleMilliseconds(r.p50_restart),
                absl::ToDoubleMilliseconds(r.p50_restart) / absl::ToDoubleMilliseconds(rows[0].p50_restart),
                r.reg_cpu_ms_restart,
                absl::ToDoubleSeconds(r.ls.wall), r.ls.max_rss_kb / 1024.0,
                static_cast<long long>(r.ls_requests), absl::ToDoubleSeconds(r.gc.wall),
                r.gc.max_rss_kb / 1024.0, static_cast<long long>(r.gc_requests), r.local_rate,
                r.local_rate / rows[0].local_rate);
  }
  std::printf("Requests include the tag list (1) and two per record; entries put since the\n"
              "server's last record push are read from their manifests.\n");
  std::printf("\nSteady state: after %d more lookups at each mark, 500 lookups interleaved with 500 bare\n"
              "GETs of other random manifests (the registry's own cost). Goal at 100k: ours within 10%% of 1k.\n",
              absl::GetFlag(FLAGS_warmup));
  std::printf("| entries | lookup p50 | p90 | p50 vs first | bare GET p50 | vs first | ours / bare |\n"
              "|---|---|---|---|---|---|---|\n");
  for (const Mark& r : rows) {
    const double ours = absl::ToDoubleMilliseconds(r.p50_warm);
    const double bare = absl::ToDoubleMilliseconds(r.bare_p50_warm);
    std::printf("| %d | %.2f ms | %.2f ms | %.2f | %.2f ms | %.2f | %.2f |\n", r.n, ours,
                absl::ToDoubleMilliseconds(r.p90_warm),
                ours / absl::ToDoubleMilliseconds(rows[0].p50_warm), bare,
                bare / absl::ToDoubleMilliseconds(rows[0].bare_p50_warm), ours / bare);
  }
  return 0;
}
