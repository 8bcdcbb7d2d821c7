// Benchmarks for ocicached (issue 4): the real binary, started here as a child
// process, over a real docker-registry on loopback (test/harness). Prints one
// table; every speed is a ratio against a baseline measured in the same run with
// the same client threads, concurrency and channel settings:
//
//   (1) warm lookups: Lookup and BatchLookup answered from the local tier, against
//       an empty unary handler of the same generated methods (this binary,
//       re-executed as a child, serves ocicache.v1.Entries with handlers that do
//       nothing, on a server built with ocicached's defaults);
//   (2) cold lookups: ocicached without a local tier, every lookup a manifest GET
//       at the registry: registry requests per lookup (ocicached's metrics and the
//       registry's own log), and throughput against libcurl (multi interface,
//       same concurrency) GETting the same manifests;
//   (2b) the same cold lookups with the registry behind a link model (one-way
//       delay and a bandwidth cap per direction; --links, default 20 ms RTT at
//       200 Mbit/s and 40 ms at 100), against curl through the same link;
//   (3) a large blob (1 GiB) written and read through ocicached (Blobs.Write and
//       Blobs.Read via pkg/client) against libcurl straight to the registry
//       (POST+PUT upload, GET download): median ratio of --blob_rounds
//       alternating rounds, with the server's peak RSS (VmHWM) above its idle RSS.
//       Reads, registry only and from a warm local tier, also against
//       `curl | openssl dgst -sha256` (download and hash in two processes).
//
// Every load loop stops at a call count or a time limit, whichever comes first;
// a watchdog ends the whole run after --max_seconds.
//
//   bazel run -c opt //bench:server_bench -- [--threads=8] [--seconds=3] [--rounds=3]
//       [--entries=200] [--batch=100] [--cold_lookups=2000] [--blob_mib=1024]
#include <curl/curl.h>
#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "pkg/cache/format.h"
#include "pkg/client/grpc_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "test/harness/link_proxy.h"
#include "test/harness/registry.h"
#include "test/harness/spawn.h"

ABSL_FLAG(int, threads, 8, "client threads (calls in flight) for lookups, ours and baselines");
ABSL_FLAG(double, seconds, 3, "time limit of each load measurement");
ABSL_FLAG(int, rounds, 3, "alternating rounds of each measurement (baseline, ocicache, ...)");
ABSL_FLAG(int, entries, 200, "entries stored before the lookups");
ABSL_FLAG(int, max_calls, 200000, "call limit of each load measurement");
ABSL_FLAG(int, batch, 100, "keys per BatchLookup (0: no BatchLookup measurement)");
ABSL_FLAG(int, cold_lookups, 2000, "cold lookups per round (ours and curl's)");
ABSL_FLAG(int, blob_mib, 1024, "size of the streamed blob in MiB (0: skip part 3)");
ABSL_FLAG(int, blob_rounds, 3, "rounds of part 3 (each figure is their median)");
ABSL_FLAG(int, max_seconds, 1800, "watchdog: the whole run fails after this long");
ABSL_FLAG(std::string, only, "", "run one part only: warm, cold (with the links) or blob");
ABSL_FLAG(std::string, links, "10ms:200 20ms:100",
          "link models for the cold lookups across a network: one-way delay:Mbit/s, "
          "space-separated (empty: none)");
ABSL_FLAG(std::string, server_flags, "",
          "extra flags for every ocicached started, space-separated (e.g. --access_log=false)");
ABSL_FLAG(std::string, ocicached, "", "ocicached binary (default: from the runfiles)");
ABSL_FLAG(std::string, serve_empty_port_file, "",
          "internal: serve the empty Entries handlers and write the port here");

namespace ocicache {
namespace {

// ---------------------------------------------------------------------------
// Small helpers

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A field of /proc/PID/status in KiB ("VmRSS:", "VmHWM:"); -1 if unreadable.
int64_t ProcKiB(pid_t pid, const char* field) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) {
      int64_t v = -1;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(
                               absl::string_view(line).substr(strlen(field)), "kB")),
                           &v)) {
        return v;
      }
    }
  }
  return -1;
}

// CPU time (user + system) of a process so far, in microseconds.
double CpuMicros(pid_t pid) {
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(stat.substr(p + 2));
  std::string field;
  double ticks = 0;
  // Fields after the name: state(3) ... utime(14) stime(15).
  for (int i = 3; i <= 15 && (in >> field); ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string TempDir() {
  const char* t = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(t && *t ? t : "/tmp", "/ocicache-server-bench-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  if (d == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return d;
}

// What a failed run must not leave behind (exit skips destructors): the
// registry with its storage, and the bench's directory with the 1 GiB files.
std::unique_ptr<harness::RegistryProcess> g_registry;
std::string g_dir;

void CleanUp() {
  g_registry.reset();
  const char* keep = getenv("BENCH_KEEP");
  if (!g_dir.empty() && (keep == nullptr || *keep == '\0')) {
    (void)!std::system(absl::StrCat("rm -rf '", g_dir, "'").c_str());
  }
}

[[noreturn]] void Fail(const std::string& what) {
  std::cerr << "server_bench: " << what << "\n";
  CleanUp();
  std::exit(1);
}

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Fail(absl::StrCat(what, ": ", s.ToString()));
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// A child process (ocicached, or this binary serving the empty handlers) that
// dies with us (PR_SET_PDEATHSIG) and reports its port in a file.
class Child {
 public:
  static std::unique_ptr<Child> Start(std::vector<std::string> args, const std::string& dir,
                                      const std::string& name) {
    std::unique_ptr<Child> c(new Child());
    c->dir_ = dir;
    c->name_ = name;
    std::string port_file = absl::StrCat(dir, "/", name, ".port");
    if (absl::StartsWith(name, "ocicached")) {
      for (absl::string_view extra :
           absl::StrSplit(absl::GetFlag(FLAGS_server_flags), ' ', absl::SkipEmpty())) {
        args.emplace_back(extra);
      }
    }
    for (auto& a : args) {
      size_t at = a.find("PORT_FILE");
      if (at != std::string::npos) a.replace(at, strlen("PORT_FILE"), port_file);
    }
    harness::SpawnOptions so;
    so.stdout_path = absl::StrCat(dir, "/", name, ".stdout");
    so.stderr_path = c->stderr_path();
    so.port_timeout = absl::Seconds(30);
    auto port = harness::SpawnReportingPort(args, port_file, so, &c->pid_);
    if (!port.ok()) Fail(std::string(port.status().message()));
    c->port_ = *port;
    std::cerr << "server_bench: " << name << " pid " << c->pid_ << " on " << c->address() << "\n";
    return c;
  }

  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string stderr_path() const { return absl::StrCat(dir_, "/", name_, ".stderr"); }

  // ocicached's metrics port, from its "metrics on http://HOST:PORT/metrics" line.
  int MetricsPort() const {
    std::string err = ReadFile(stderr_path());
    size_t p = err.find("metrics on http://");
    if (p == std::string::npos) return 0;
    size_t colon = err.find(':', p + strlen("metrics on http://"));
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(err.substr(colon + 1, err.find('/', colon) - colon - 1), &port)) {
      return 0;
    }
    return port;
  }

 private:
  Child() = default;
  std::string dir_, name_;
  pid_t pid_ = 0;
  int port_ = 0;
};

std::string OcicachedBinary(const char* argv0) {
  std::vector<std::string> candidates;
  if (!absl::GetFlag(FLAGS_ocicached).empty()) candidates.push_back(absl::GetFlag(FLAGS_ocicached));
  if (const char* r = getenv("RUNFILES_DIR")) {
    candidates.push_back(absl::StrCat(r, "/ocicache/cmd/ocicached/ocicached"));
  }
  candidates.push_back(absl::StrCat(argv0, ".runfiles/ocicache/cmd/ocicached/ocicached"));
  candidates.push_back("cmd/ocicached/ocicached");
  for (const auto& c : candidates) {
    char real[PATH_MAX];
    if (access(c.c_str(), X_OK) == 0 && realpath(c.c_str(), real) != nullptr) return real;
  }
  Fail("ocicached not found; run through bazel or pass --ocicached");
}

// GET http://127.0.0.1:PORT/metrics and return the value of `name`; -1 if absent.
int64_t Metric(int port, const std::string& name) {
  std::string body;
  CURL* h = curl_easy_init();
  std::string url = absl::StrCat("http://127.0.0.1:", port, "/metrics");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(
      h, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* ud) {
        static_cast<std::string*>(ud)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK) return -1;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, name + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return static_cast<int64_t>(v);
    }
  }
  return -1;
}

// Requests for `repo` in the registry's access log ("GET /v2/REPO/..." etc.).
int64_t RegistryLogRequests(const std::string& log_path, const std::string& repo) {
  std::string log = ReadFile(log_path);
  int64_t n = 0;
  for (const char* method : {"\"GET ", "\"HEAD ", "\"PUT ", "\"POST ", "\"PATCH ", "\"DELETE "}) {
    std::string needle = absl::StrCat(method, "/v2/", repo, "/");
    for (size_t p = log.find(needle); p != std::string::npos; p = log.find(needle, p + 1)) ++n;
  }
  return n;
}

// ---------------------------------------------------------------------------
// The baseline server: ocicache.v1.Entries whose handlers do nothing, built with
// the same ServerBuilder settings as ocicached's defaults (pkg/server/server.cc):
// synchronous API, 16 MiB messages, 100 streams per connection, 64 threads,
// 2 to 16 polling threads.

class EmptyEntries final : public v1::Entries::Service {
 public:
  grpc::Status Lookup(grpc::ServerContext*, const v1::LookupRequest*, v1::Entry*) override {
    return grpc::Status::OK;
  }
  grpc::Status BatchLookup(grpc::ServerContext*, const v1::BatchLookupRequest*,
                           v1::BatchLookupResponse*) override {
    return grpc::Status::OK;
  }
};

int ServeEmpty(const std::string& port_file) {
  EmptyEntries service;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  grpc::ResourceQuota quota("empty");
  quota.SetMaxThreads(64);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 16);
  auto server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return 1;
  std::string tmp = port_file + ".tmp";
  {
    std::ofstream f(tmp);
    f << port << "\n";
  }
  rename(tmp.c_str(), port_file.c_str());
  server->Wait();  // until killed
  return 0;
}

// ---------------------------------------------------------------------------
// Load: `threads` threads call fn until `max_calls` calls are made or `limit`
// has passed; every call's latency is kept.

struct Load {
  int64_t calls = 0;
  int64_t failures = 0;
  double seconds = 0;
  std::vector<double> latency_us;
  double server_cpu_us = 0;  // of the server process, while this load ran
  double client_cpu_us = 0;  // of this process

  void Add(const Load& o) {
    server_cpu_us += o.server_cpu_us;
    client_cpu_us += o.client_cpu_us;
    calls += o.calls;
    failures += o.failures;
    seconds += o.seconds;
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
  }
  double per_second() const { return seconds > 0 ? calls / seconds : 0; }
  double Percentile(double p) {
    if (latency_us.empty()) return 0;
    std::sort(latency_us.begin(), latency_us.end());
    size_t i = std::min(latency_us.size() - 1, static_cast<size_t>(p * latency_us.size()));
    return latency_us[i];
  }
};

// fn(i) makes call number i and says whether it succeeded. With a `server`
// pid, its CPU time is measured too.
Load RunLoad(int threads, int64_t max_calls, absl::Duration limit,
             const std::function<bool(int64_t)>& fn, pid_t server = 0) {
  double server_cpu0 = server ? CpuMicros(server) : 0;
  double client_cpu0 = CpuMicros(getpid());
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> failures{0};
  std::vector<std::vector<double>> lat(threads);
  absl::Time start = absl::Now();
  absl::Time deadline = start + limit;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      lat[t].reserve(static_cast<size_t>(max_calls / threads + 1));
      for (;;) {
        absl::Time t0 = absl::Now();
        if (t0 >= deadline) break;
        int64_t i = next.fetch_add(1);
        if (i >= max_calls) break;
        if (!fn(i)) failures.fetch_add(1);
        lat[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      }
    });
  }
  for (auto& th : pool) th.join();
  Load out;
  out.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  out.failures = failures;
  if (server) out.server_cpu_us = CpuMicros(server) - server_cpu0;
  out.client_cpu_us = CpuMicros(getpid()) - client_cpu0;
  for (auto& v : lat) {
    out.calls += static_cast<int64_t>(v.size());
    out.latency_us.insert(out.latency_us.end(), v.begin(), v.end());
  }
  return out;
}

// ---------------------------------------------------------------------------
// The table

struct Row {
  std::string what, ours, baseline, ratio, goal;
};

std::vector<Row> rows;

std::string Ratio(double x) { return absl::StrFormat("%.2f", x); }

void Print() {
  std::printf("\n%-46s %-26s %-26s %-7s %s\n", "benchmark", "ocicached", "baseline", "ratio",
              "goal");
  std::printf("%s\n", std::string(124, '-').c_str());
  for (const auto& r : rows) {
    std::printf("%-46s %-26s %-26s %-7s %s\n", r.what.c_str(), r.ours.c_str(), r.baseline.c_str(),
                r.ratio.c_str(), r.goal.c_str());
  }
  std::fflush(stdout);
}

std::string Rate(double per_s, const char* unit = "/s") {
  return per_s >= 10000 ? absl::StrFormat("%.1fk%s", per_s / 1000, unit)
                        : absl::StrFormat("%.0f%s", per_s, unit);
}

std::string Lat(Load& l) {
  return absl::StrFormat("p50 %.0fus p99 %.0fus", l.Percentile(0.50), l.Percentile(0.99));
}

std::string Cpu(const Load& l) {
  double n = std::max<double>(1, l.calls);
  return absl::StrFormat("%.0fus, %.0fus", l.server_cpu_us / n, l.client_cpu_us / n);
}

// ---------------------------------------------------------------------------
// Entries used by the lookups: a config, one small stored blob, an annotation.

std::string Key(int i) {
  return absl::StrCat("bench/action/", i, "/0123456789abcdef0123456789abcdef");
}

void PutEntries(client::GrpcStore& store, int n, const std::string& tag) {
  for (int i = 0; i < n; ++i) {
    std::string data = absl::StrCat("output of action ", i, " for ", tag, "\n");
    oci::StringSource src(data);
    auto d = store.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
    Check(d.status(), "write blob");
    cache::Entry e;
    e.key = Key(i);
    e.config = absl::StrCat(R"({"exit_code":0,"action":)", i, R"(,"stdout":"ok"})");
    e.blobs.push_back(*d);
    e.annotations["org.ocicache.tool.go"] = "go1.23.1";
    Check(store.Put(e), "put entry");
  }
}

struct Flags {
  int threads;
  absl::Duration limit;
  int rounds;
  int entries;
  int64_t max_calls;
  int batch;
  int cold_lookups;
};

// ---------------------------------------------------------------------------
// (1) warm lookups

void WarmLookups(const Flags& f, const std::string& ocicached, const std::string& self,
                 const std::string& dir, harness::RegistryProcess& reg) {
  auto server = Child::Start({ocicached, "--listen=127.0.0.1:0", "--port_file=PORT_FILE",
                              absl::StrCat("--repo=", reg.host(), "/bench/warm"),
                              absl::StrCat("--dir=", dir, "/warm"), "--metrics_listen=127.0.0.1:0"},
                             dir, "ocicached-warm");
  auto empty = Child::Start({self, "--serve_empty_port_file=PORT_FILE"}, dir, "empty-server");

  auto ours_channel = client::Dial(server->address());
  auto base_channel = client::Dial(empty->address());
  client::GrpcStore store(ours_channel, server->address());
  PutEntries(store, f.entries, "warm");
  auto ours_stub = v1::Entries::NewStub(ours_channel);
  auto base_stub = v1::Entries::NewStub(base_channel);
  int metrics = server->MetricsPort();
  const std::string reg_metric = "ocicached_registry_requests_total";
  int64_t reg0 = Metric(metrics, reg_metric);

  auto deadline_ctx = [](grpc::ClientContext* ctx) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
  };
  // Baseline: the same request a GrpcStore::Lookup sends, to the empty handler.
  auto base_lookup = [&](int64_t i) {
    grpc::ClientContext ctx;
    deadline_ctx(&ctx);
    v1::LookupRequest req;
    req.set_key(Key(static_cast<int>(i % f.entries)));
    v1::Entry resp;
    return base_stub->Lookup(&ctx, req, &resp).ok();
  };
  auto ours_lookup = [&](int64_t i) {
    auto e = store.Lookup(Key(static_cast<int>(i % f.entries)), {});
    return e.ok() && e->blobs.size() == 1;
  };
  auto batch_request = [&](int64_t i) {
    v1::BatchLookupRequest req;
    for (int k = 0; k < f.batch; ++k) {
      req.add_keys(Key(static_cast<int>((i * f.batch + k) % f.entries)));
    }
    return req;
  };
  auto base_batch = [&](int64_t i) {
    grpc::ClientContext ctx;
    deadline_ctx(&ctx);
    v1::BatchLookupResponse resp;
    return base_stub->BatchLookup(&ctx, batch_request(i), &resp).ok();
  };
  auto ours_batch = [&](int64_t i) {
    grpc::ClientContext ctx;
    deadline_ctx(&ctx);
    v1::BatchLookupResponse resp;
    if (!ours_stub->BatchLookup(&ctx, batch_request(i), &resp).ok()) return false;
    if (resp.results_size() != f.batch) return false;
    for (const auto& r : resp.results()) {
      if (r.code() != 0 || !r.has_entry()) return false;
    }
    return true;
  };

  // Warm both connections up (first calls resolve, connect, page in).
  RunLoad(f.threads, 200, f.limit, base_lookup);
  RunLoad(f.threads, 200, f.limit, ours_lookup);

  Load bl, ol, bb, ob;
  int64_t batch_calls = std::max<int64_t>(1, f.max_calls / std::max(1, f.batch));
  for (int r = 0; r < f.rounds; ++r) {
    bl.Add(RunLoad(f.threads, f.max_calls, f.limit, base_lookup, empty->pid()));
    ol.Add(RunLoad(f.threads, f.max_calls, f.limit, ours_lookup, server->pid()));
    if (f.batch == 0) continue;
    bb.Add(RunLoad(f.threads, batch_calls, f.limit, base_batch, empty->pid()));
    ob.Add(RunLoad(f.threads, batch_calls, f.limit, ours_batch, server->pid()));
  }
  int64_t reg1 = Metric(metrics, reg_metric);
  if (bl.failures || ol.failures || bb.failures || ob.failures) {
    Fail(absl::StrCat("warm lookups failed: ", bl.failures, " baseline, ", ol.failures, " Lookup, ",
                      bb.failures, " baseline batch, ", ob.failures, " BatchLookup; ",
                      ReadFile(server->stderr_path()).substr(0, 2000)));
  }
  std::string conc = absl::StrFormat("%d threads, 1 channel", f.threads);
  rows.push_back({absl::StrFormat("warm Lookup (%s)", conc), Rate(ol.per_second()),
                  Rate(bl.per_second()) + " empty", Ratio(ol.per_second() / bl.per_second()),
                  ">= 0.7"});
  rows.push_back({"  latency", Lat(ol), Lat(bl), "", ""});
  rows.push_back({"  CPU per call: server, client", Cpu(ol), Cpu(bl), "", ""});
  if (f.batch > 0) {
    rows.push_back({absl::StrFormat("warm BatchLookup, %d keys: calls", f.batch),
                    Rate(ob.per_second()), Rate(bb.per_second()) + " empty",
                    Ratio(ob.per_second() / bb.per_second()), "same request"});
    rows.push_back({"  latency", Lat(ob), Lat(bb), "", ""});
    rows.push_back({"  CPU per call: server, client", Cpu(ob), Cpu(bb), "", ""});
    rows.push_back({"  keys/s vs empty unary calls/s", Rate(ob.per_second() * f.batch, " keys/s"),
                    Rate(bl.per_second()) + " empty",
                    Ratio(ob.per_second() * f.batch / bl.per_second()), ">= 0.7"});
  }
  rows.push_back(
      {"  registry requests during warm lookups", absl::StrCat(reg1 - reg0), "0", "", "0"});
}

// ---------------------------------------------------------------------------
// (2) cold lookups

// `link`: how ocicached and curl reach the registry: "" for loopback, else the
// address of a link model (test/harness/link_proxy.h) in front of it, named
// `link_name` in the rows. The entries are put first on loopback.
void ColdLookups(const Flags& f, const std::string& ocicached, const std::string& dir,
                 harness::RegistryProcess& reg, const std::string& link = "",
                 const std::string& link_name = "") {
  const std::string repo = "bench/cold";
  const std::string host = link.empty() ? reg.host() : link;
  // A name per server: it names the server's port file too.
  static int servers = 0;
  const std::string tag_name =
      link.empty() ? "cold" : absl::StrCat("cold-wan", ++servers);
  auto server = Child::Start(
      {ocicached, "--listen=127.0.0.1:0", "--port_file=PORT_FILE",
       absl::StrCat("--repo=", host, "/", repo), "--no_dir", "--metrics_listen=127.0.0.1:0",
       // A BatchLookup fans out as many registry GETs at once as curl keeps in flight.
       absl::StrCat("--batch_parallelism=", f.threads)},
      dir, absl::StrCat("ocicached-", tag_name));
  client::GrpcStore store(client::Dial(server->address()), server->address());
  if (link.empty()) PutEntries(store, f.entries, "cold");
  int metrics = server->MetricsPort();
  const std::string reg_metric = "ocicached_registry_requests_total";

  std::vector<std::string> urls;
  for (int i = 0; i < f.entries; ++i) {
    auto tag = cache::TagForKey(Key(i));
    Check(tag.status(), "tag");
    urls.push_back(absl::StrCat("http://", host, "/v2/", repo, "/manifests/", *tag));
  }

  // Baseline: libcurl multi, `threads` transfers at a time on reused connections,
  // each GETting a manifest with the Accept header ocicached's client sends.
  curl_slist* hdrs = curl_slist_append(nullptr,
                                       "Accept: application/vnd.oci.image.manifest.v1+json, "
                                       "application/vnd.oci.image.index.v1+json, "
                                       "application/vnd.docker.distribution.manifest.v2+json, "
                                       "application/vnd.docker.distribution.manifest.list.v2+json");
  CURLM* multi = curl_multi_init();
  std::vector<CURL*> handles;
  for (int t = 0; t < f.threads; ++t) {
    CURL* h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    handles.push_back(h);
  }
  auto curl_round = [&](int n, absl::Duration limit) {
    Load out;
    double cpu0 = CpuMicros(getpid());
    absl::Time start = absl::Now(), deadline = start + limit;
    std::vector<absl::Time> began(handles.size());
    int started = 0;
    auto launch = [&](size_t slot) {
      curl_easy_setopt(handles[slot], CURLOPT_URL, urls[started % urls.size()].c_str());
      curl_easy_setopt(handles[slot], CURLOPT_PRIVATE, reinterpret_cast<void*>(slot));
      began[slot] = absl::Now();
      curl_multi_add_handle(multi, handles[slot]);
      ++started;
    };
    for (size_t s = 0; s < handles.size() && started < n; ++s) launch(s);
    int running = 1;
    while (running > 0) {
      curl_multi_perform(multi, &running);
      CURLMsg* msg;
      int left;
      while ((msg = curl_multi_info_read(multi, &left)) != nullptr) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* h = msg->easy_handle;
        void* priv = nullptr;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
        size_t slot = reinterpret_cast<size_t>(priv);
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        ++out.calls;
        if (msg->data.result != CURLE_OK || code != 200) ++out.failures;
        out.latency_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - began[slot]));
        curl_multi_remove_handle(multi, h);
        if (started < n && absl::Now() < deadline) launch(slot);
      }
      curl_multi_perform(multi, &running);
      if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
    out.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    out.client_cpu_us = CpuMicros(getpid()) - cpu0;
    return out;
  };
  auto ours_lookup = [&](int64_t i) {
    auto e = store.Lookup(Key(static_cast<int>(i % f.entries)), {});
    return e.ok() && e->blobs.size() == 1;
  };

  // BatchLookup: one call at a time, each of f.batch keys, which the server
  // looks up f.threads at a time (--batch_parallelism above).
  auto stub = v1::Entries::NewStub(client::Dial(server->address()));
  const int batch = std::max(1, f.batch);
  auto ours_batch = [&](int64_t i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
    v1::BatchLookupRequest req;
    for (int k = 0; k < batch; ++k) {
      req.add_keys(Key(static_cast<int>((i * batch + k) % f.entries)));
    }
    v1::BatchLookupResponse resp;
    if (!stub->BatchLookup(&ctx, req, &resp).ok() || resp.results_size() != batch) return false;
    for (const auto& r : resp.results()) {
      if (r.code() != 0 || !r.has_entry()) return false;
    }
    return true;
  };

  curl_round(f.threads * 4, f.limit);  // connect and warm up
  RunLoad(f.threads, f.threads * 4, f.limit, ours_lookup);
  RunLoad(1, 2, f.limit, ours_batch);
  Load base, ours, ours_b;
  int64_t server_requests = 0, log_requests = 0, batch_requests = 0;
  for (int r = 0; r < f.rounds; ++r) {
    base.Add(curl_round(f.cold_lookups, f.limit));
    int64_t m0 = Metric(metrics, reg_metric);
    int64_t l0 = RegistryLogRequests(reg.log_path(), repo);
    ours.Add(RunLoad(f.threads, f.cold_lookups, f.limit, ours_lookup, server->pid()));
    absl::SleepFor(absl::Milliseconds(200));  // let the registry's log catch up
    server_requests += Metric(metrics, reg_metric) - m0;
    log_requests += RegistryLogRequests(reg.log_path(), repo) - l0;
    int64_t b0 = Metric(metrics, reg_metric);
    ours_b.Add(RunLoad(1, std::max(1, f.cold_lookups / batch), f.limit, ours_batch,
                       server->pid()));
    batch_requests += Metric(metrics, reg_metric) - b0;
  }
  for (CURL* h : handles) curl_easy_cleanup(h);
  curl_multi_cleanup(multi);
  curl_slist_free_all(hdrs);
  if (base.failures || ours.failures || ours_b.failures) {
    Fail(absl::StrCat("cold lookups failed: ", base.failures, " curl, ", ours.failures,
                      " ocicached, ", ours_b.failures, " BatchLookup; the server's log ends: ",
                      [&] {
                        std::string log = ReadFile(server->stderr_path());
                        return log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
                      }()));
  }
  if (!link.empty()) {
    // Across the link: the same measurements, fewer rows.
    rows.push_back({absl::StrFormat("cold Lookup at %s (%d at once)", link_name, f.threads),
                    Rate(ours.per_second()), Rate(base.per_second()) + " curl multi",
                    Ratio(ours.per_second() / base.per_second()), ">= 0.8"});
    rows.push_back({"  latency", Lat(ours), Lat(base), "", ""});
    rows.push_back({absl::StrFormat("cold BatchLookup of %d keys at %s", batch, link_name),
                    Rate(ours_b.per_second() * batch, " keys/s"),
                    Rate(base.per_second()) + " curl multi",
                    Ratio(ours_b.per_second() * batch / base.per_second()), ">= 0.8"});
    rows.push_back({"  registry requests per lookup (metrics)",
                    absl::StrFormat("%.3f", double(server_requests) / ours.calls), "1", "", "1"});
    return;
  }
  rows.push_back({absl::StrFormat("cold Lookup, no local tier (%d at once)", f.threads),
                  Rate(ours.per_second()), Rate(base.per_second()) + " curl multi",
                  Ratio(ours.per_second() / base.per_second()), ">= 0.8"});
  rows.push_back({"  latency", Lat(ours), Lat(base), "", ""});
  rows.push_back(
      {"  CPU per lookup: server, client", Cpu(ours),
       absl::StrFormat("-, %.0fus", base.client_cpu_us / std::max<double>(1, base.calls)), "", ""});
  rows.push_back({"  registry requests per lookup (metrics)",
                  absl::StrFormat("%.3f", double(server_requests) / ours.calls), "1",
                  absl::StrFormat("%.3f", double(server_requests) / ours.calls), "1"});
  rows.push_back({"  registry requests per lookup (registry log)",
                  absl::StrFormat("%.3f", double(log_requests) / ours.calls), "1",
                  absl::StrFormat("%.3f", double(log_requests) / ours.calls), "1"});
  const double keys_b = ours_b.per_second() * batch;
  rows.push_back({absl::StrFormat("cold BatchLookup of %d keys, %d at once", batch, f.threads),
                  Rate(keys_b, " keys/s"), Rate(base.per_second()) + " curl multi",
                  Ratio(keys_b / base.per_second()), ">= 0.8"});
  rows.push_back({"  CPU per key: server, client",
                  absl::StrFormat("%.0fus, %.0fus",
                                  ours_b.server_cpu_us / std::max<double>(1, ours_b.calls * batch),
                                  ours_b.client_cpu_us / std::max<double>(1, ours_b.calls * batch)),
                  "", "", ""});
  rows.push_back({"  registry requests per key (metrics)",
                  absl::StrFormat("%.3f", double(batch_requests) / std::max<double>(1, ours_b.calls * batch)),
                  "1", "", "1"});
}

// ---------------------------------------------------------------------------
// (3) a large blob through the server

struct FileReader {
  int fd;
};

size_t ReadFd(char* buf, size_t size, size_t n, void* ud) {
  ssize_t r = read(static_cast<FileReader*>(ud)->fd, buf, size * n);
  return r < 0 ? CURL_READFUNC_ABORT : static_cast<size_t>(r);
}

size_t KeepLocation(char* p, size_t size, size_t n, void* ud) {
  absl::string_view line(p, size * n);
  if (absl::StartsWithIgnoreCase(line, "location:")) {
    *static_cast<std::string*>(ud) =
        std::string(absl::StripAsciiWhitespace(line.substr(strlen("location:"))));
  }
  return size * n;
}

// libcurl straight to the registry: POST an upload, PUT the whole file with the digest.
absl::Status CurlPush(const std::string& base, const std::string& repo, const std::string& path,
                      const oci::Digest& digest, int64_t size) {
  CURL* h = curl_easy_init();
  std::string loc;
  std::string url = absl::StrCat(base, "/v2/", repo, "/blobs/uploads/");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, KeepLocation);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &loc);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  long code = 0;
  if (curl_easy_perform(h) != CURLE_OK) return absl::UnavailableError("curl POST failed");
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (code != 202 || loc.empty()) return absl::InternalError(absl::StrCat("POST: ", code));
  curl_easy_reset(h);
  if (!absl::StartsWith(loc, "http")) loc = base + loc;
  std::string put =
      absl::StrCat(loc, loc.find('?') == std::string::npos ? "?" : "&", "digest=", digest.str());
  int fd = open(path.c_str(), O_RDONLY);
  FileReader reader{fd};
  curl_slist* hdrs = curl_slist_append(nullptr, "Content-Type: application/octet-stream");
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, put.c_str());
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, ReadFd);
  curl_easy_setopt(h, CURLOPT_READDATA, &reader);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  close(fd);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK || code != 201) {
    return absl::InternalError(absl::StrCat("PUT: ", curl_easy_strerror(rc), " ", code));
  }
  return absl::OkStatus();
}

// libcurl GET of a blob, discarded (the unverified baseline).
absl::Status CurlPull(const std::string& base, const std::string& repo, const oci::Digest& digest,
                      int64_t size) {
  CURL* h = curl_easy_init();
  std::string url = absl::StrCat(base, "/v2/", repo, "/blobs/", digest.str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
  CURLcode rc = curl_easy_perform(h);
  long code = 0;
  curl_off_t got = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &got);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK || code != 200 || got != size) {
    return absl::InternalError(
        absl::StrCat("GET: ", curl_easy_strerror(rc), " ", code, " ", got, " bytes"));
  }
  return absl::OkStatus();
}

// The issue's baseline for a verified download: curl piped into openssl, the
// download and the hash in two processes at once.
absl::Status CurlPipePull(const std::string& base, const std::string& repo,
                          const oci::Digest& digest) {
  std::string cmd = absl::StrCat("curl -sfL ", base, "/v2/", repo, "/blobs/", digest.str(),
                                 " | openssl dgst -sha256 -r");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen curl | openssl");
  char buf[256] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  pclose(p);
  if (n < 64 || absl::string_view(buf, 64) != digest.hex()) {
    return absl::DataLossError(absl::StrCat("curl | openssl: another digest: ", buf));
  }
  return absl::OkStatus();
}

// Fills `path` with `size` pseudo-random bytes from `seed`; returns the digest.
oci::Digest MakeBlob(const std::string& path, int64_t size, uint64_t seed) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) Fail("create " + path);
  oci::Sha256 sha;
  std::string chunk(1 << 20, '\0');
  uint64_t x = seed;
  for (int64_t done = 0; done < size; done += static_cast<int64_t>(chunk.size())) {
    size_t n = static_cast<size_t>(std::min<int64_t>(chunk.size(), size - done));
    for (size_t i = 0; i + 8 <= n; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      memcpy(&chunk[i], &x, 8);
    }
    sha.Update(absl::string_view(chunk.data(), n));
    if (write(fd, chunk.data(), n) != static_cast<ssize_t>(n)) Fail("write " + path);
  }
  close(fd);
  return sha.Finish();
}

void LargeBlob(int64_t size, int rounds, const std::string& ocicached, const std::string& dir,
               harness::RegistryProcess& reg) {
  auto server = Child::Start({ocicached, "--listen=127.0.0.1:0", "--port_file=PORT_FILE",
                              absl::StrCat("--repo=", reg.host(), "/bench/blobs"), "--no_dir"},
                             dir, "ocicached-blobs");
  client::GrpcStore store(client::Dial(server->address()), server->address());
  // A second server with a local tier: its reads come from a warm tier.
  auto tier_server = Child::Start({ocicached, "--listen=127.0.0.1:0", "--port_file=PORT_FILE",
                                   absl::StrCat("--repo=", reg.host(), "/bench/blobs-tier"),
                                   absl::StrCat("--dir=", dir, "/blob-tier")},
                                  dir, "ocicached-blob-tier");
  client::GrpcStore tier_store(client::Dial(tier_server->address()), tier_server->address());
  const std::string tier_path = dir + "/blob-tier-src";
  const oci::Digest tier_digest = MakeBlob(tier_path, size, 1181783497276652981ull);
  {
    int fd = open(tier_path.c_str(), O_RDONLY);
    oci::FdSource src(fd);
    auto w = tier_store.WriteBlob(tier_digest, size, src);
    close(fd);
    Check(w.status(), "Blobs.Write to the tiered server");
    unlink(tier_path.c_str());
    // The server checks a file version of its tier once, on its first read
    // (at least a second after the file was written); the rounds measure the
    // reads after that one, a warm tier's steady state.
    absl::SleepFor(absl::Milliseconds(1200));
    oci::NullSink warmup;
    Check(tier_store.ReadBlob(tier_digest, 0, warmup), "Blobs.Read (first, checks the file)");
  }
  // One call so the connection and the call path exist, then the idle figure.
  Check(store.StatBlob(oci::Digest::Of("absent")).status().code() == absl::StatusCode::kNotFound
            ? absl::OkStatus()
            : absl::InternalError("Stat of an absent blob did not say NOT_FOUND"),
        "stat");
  absl::SleepFor(absl::Milliseconds(300));
  int64_t idle_kib = ProcKiB(server->pid(), "VmRSS:");

  // One 1 GiB transfer on this VM varies by +-20% from run to run, so each
  // figure is the median of `rounds`, ours and the baseline alternating which
  // goes first. Each timed transfer starts with no dirty pages (sync), so none
  // pays for the writeback of the files made for it or of the one before it.
  std::vector<double> curl_push, our_push, curl_pull, curl_sha_pull, our_pull, tier_pull;
  double write_srv_s = 0, write_cli_s = 0, read_srv_s = 0, read_cli_s = 0;
  int64_t push_hwm = 0, pull_hwm = 0;
  auto timed = [](const std::function<void()>& fn) {
    ::sync();
    absl::Time t0 = absl::Now();
    fn();
    return absl::ToDoubleSeconds(absl::Now() - t0);
  };
  for (int r = 0; r < rounds; ++r) {
    std::cerr << "server_bench: blob round " << r + 1 << " of " << rounds << "\n";
    // New blobs each round, so neither side finds its upload present.
    std::string curl_path = dir + "/blob-curl", ours_path = dir + "/blob-ours";
    oci::Digest curl_digest = MakeBlob(curl_path, size, 88172645463325252ull + r);
    oci::Digest ours_digest = MakeBlob(ours_path, size, 2463534242ull + 7919 * r);

    auto curl_write = [&] {
      curl_push.push_back(timed([&] {
        Check(CurlPush(reg.base_url(), "bench/curl", curl_path, curl_digest, size), "curl push");
      }));
    };
    auto our_write = [&] {
      int fd = open(ours_path.c_str(), O_RDONLY);
      oci::FdSource src(fd);
      double srv0 = CpuMicros(server->pid()), cli0 = CpuMicros(getpid());
      absl::StatusOr<oci::Descriptor> written;
      our_push.push_back(timed([&] { written = store.WriteBlob(ours_digest, size, src); }));
      write_srv_s += (CpuMicros(server->pid()) - srv0) / 1e6 / rounds;
      write_cli_s += (CpuMicros(getpid()) - cli0) / 1e6 / rounds;
      close(fd);
      Check(written.status(), "Blobs.Write");
      if (written->digest != ours_digest || written->size != size) {
        Fail("Blobs.Write stored another blob");
      }
      push_hwm = std::max(push_hwm, ProcKiB(server->pid(), "VmHWM:"));
    };
    auto curl_read = [&] {
      curl_pull.push_back(timed([&] {
        Check(CurlPull(reg.base_url(), "bench/curl", curl_digest, size), "curl pull");
      }));
      curl_sha_pull.push_back(timed([&] {
        Check(CurlPipePull(reg.base_url(), "bench/curl", curl_digest), "curl | openssl dgst");
      }));
    };
    auto our_read = [&] {
      oci::NullSink sink;
      double srv0 = CpuMicros(server->pid()), cli0 = CpuMicros(getpid());
      our_pull.push_back(timed([&] {
        // The client verifies the digest, as the server did.
        Check(store.ReadBlob(ours_digest, 0, sink), "Blobs.Read");
      }));
      read_srv_s += (CpuMicros(server->pid()) - srv0) / 1e6 / rounds;
      read_cli_s += (CpuMicros(getpid()) - cli0) / 1e6 / rounds;
      pull_hwm = std::max(pull_hwm, ProcKiB(server->pid(), "VmHWM:"));
      tier_pull.push_back(timed([&] {
        oci::NullSink tier_sink;
        Check(tier_store.ReadBlob(tier_digest, 0, tier_sink), "Blobs.Read from the warm tier");
      }));
    };
    if (r % 2 == 0) {
      curl_write();
      our_write();
      curl_read();
      our_read();
    } else {
      our_write();
      curl_write();
      our_read();
      curl_read();
    }
    unlink(curl_path.c_str());
    unlink(ours_path.c_str());
  }

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  auto mibs = [&](double secs) {
    return absl::StrFormat("%.0f MiB/s", (size >> 20) / secs);
  };
  const double cw = median(curl_push), ow = median(our_push), cr = median(curl_pull),
               cs = median(curl_sha_pull), orr = median(our_pull);
  // The ratio is the median of the rounds' ratios: each pairs two transfers
  // made one after the other, so it is less moved by the VM's drift.
  auto per_round = [](const std::vector<double>& base, const std::vector<double>& ours) {
    std::vector<double> r;
    for (size_t i = 0; i < ours.size(); ++i) r.push_back(base[i] / ours[i]);
    return r;
  };
  auto ratio = [&](const std::vector<double>& base, const std::vector<double>& ours) {
    return Ratio(median(per_round(base, ours)));
  };
  auto each = [&](const std::vector<double>& base, const std::vector<double>& ours) {
    std::string out = "ratio per round:";
    for (double r : per_round(base, ours)) absl::StrAppend(&out, absl::StrFormat(" %.2f", r));
    return out;
  };
  rows.push_back({absl::StrFormat("Blobs.Write %d MiB, to registry (median)", size >> 20),
                  mibs(ow), mibs(cw) + " curl POST+PUT", ratio(curl_push, our_push), ">= 0.8"});
  rows.push_back({"  " + each(curl_push, our_push), "", "", "", ""});
  rows.push_back({"  CPU seconds: server, client",
                  absl::StrFormat("%.1fs, %.1fs", write_srv_s, write_cli_s), "", "", ""});
  rows.push_back({absl::StrFormat("Blobs.Read %d MiB, registry only (median)", size >> 20),
                  mibs(orr), mibs(cr) + " curl GET", ratio(curl_pull, our_pull), ">= 0.8"});
  rows.push_back({"  " + each(curl_pull, our_pull), "", "", "", ""});
  rows.push_back({"  CPU seconds: server, client",
                  absl::StrFormat("%.1fs, %.1fs", read_srv_s, read_cli_s), "", "", ""});
  rows.push_back({"  same, baseline curl | openssl dgst (issue 14)", mibs(orr),
                  mibs(cs) + " curl|openssl", ratio(curl_sha_pull, our_pull), ">= 0.8"});
  rows.push_back({"  " + each(curl_sha_pull, our_pull), "", "", "", ""});
  rows.push_back({absl::StrFormat("Blobs.Read %d MiB from a warm tier (median)", size >> 20),
                  mibs(median(tier_pull)), mibs(cs) + " curl|openssl",
                  ratio(curl_sha_pull, tier_pull), ">= 0.8"});
  rows.push_back({"  " + each(curl_sha_pull, tier_pull), "", "", "", ""});
  rows.push_back({"  server peak RSS above idle, after Write",
                  absl::StrFormat("%.1f MiB", (push_hwm - idle_kib) / 1024.0),
                  absl::StrFormat("idle %.1f MiB", idle_kib / 1024.0), "", "<= 64 MiB"});
  rows.push_back({"  server peak RSS above idle, after Read",
                  absl::StrFormat("%.1f MiB", (pull_hwm - idle_kib) / 1024.0),
                  absl::StrFormat("idle %.1f MiB", idle_kib / 1024.0), "", "<= 64 MiB"});
}

void OnAlarm(int) {
  const char msg[] = "server_bench: --max_seconds passed, giving up\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

int Main(const char* argv0) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, OnAlarm);
  alarm(static_cast<unsigned>(absl::GetFlag(FLAGS_max_seconds)));
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Flags f;
  f.threads = std::max(1, absl::GetFlag(FLAGS_threads));
  f.limit = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  f.rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  f.entries = std::max(1, absl::GetFlag(FLAGS_entries));
  f.max_calls = std::max(1, absl::GetFlag(FLAGS_max_calls));
  f.batch = std::clamp(absl::GetFlag(FLAGS_batch), 0, 1000);
  f.cold_lookups = std::max(1, absl::GetFlag(FLAGS_cold_lookups));
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) Fail("readlink /proc/self/exe");
  self[n] = '\0';
  std::string ocicached = OcicachedBinary(argv0);
  std::string dir = TempDir();
  g_dir = dir;

  harness::RegistryProcess::Options ro;
  ro.access_log = true;  // registry requests are counted in its log
  auto reg = harness::RegistryProcess::Start(ro);
  Check(reg.status(), "start docker-registry");
  g_registry = *std::move(reg);
  harness::RegistryProcess* registry = g_registry.get();
  const std::string only = absl::GetFlag(FLAGS_only);
  if (only.empty() || only == "warm") {
    std::cerr << "server_bench: (1) warm lookups\n";
    WarmLookups(f, ocicached, self, dir, *registry);
  }
  if (only.empty() || only == "cold") {
    std::cerr << "server_bench: (2) cold lookups\n";
    ColdLookups(f, ocicached, dir, *registry);
  }
  if (only.empty() || only == "cold") {
    // Cold lookups across the link models, of the entries part 2 put.
    const std::string links = absl::GetFlag(FLAGS_links);
    for (absl::string_view spec : absl::StrSplit(links, ' ', absl::SkipEmpty())) {
      std::vector<std::string> parts = absl::StrSplit(spec, ':');
      absl::Duration delay;
      double mbit = 0;
      if (parts.size() != 2 || !absl::ParseDuration(parts[0], &delay) ||
          !absl::SimpleAtod(parts[1], &mbit)) {
        Fail(absl::StrCat("--links: \"", spec, "\" is not DELAY:MBIT (one-way delay, e.g. 10ms:200)"));
      }
      harness::LinkOptions lo;
      lo.one_way_delay = delay;
      lo.bits_per_second = static_cast<int64_t>(mbit * 1e6);
      auto proxy = harness::LinkProxy::Start(registry->host(), lo);
      Check(proxy.status(), "link proxy");
      const std::string name = absl::StrFormat(
          "%d ms RTT, %g Mbit/s", static_cast<int>(2 * absl::ToDoubleMilliseconds(delay)), mbit);
      std::cerr << "server_bench: (2b) cold lookups at " << name << "\n";
      ColdLookups(f, ocicached, dir, *registry, (*proxy)->address(), name);
    }
  }
  int64_t blob = int64_t{absl::GetFlag(FLAGS_blob_mib)} << 20;
  if (blob > 0 && (only.empty() || only == "blob")) {
    std::cerr << "server_bench: (3) " << (blob >> 20) << " MiB blob\n";
    LargeBlob(blob, std::max(1, absl::GetFlag(FLAGS_blob_rounds)), ocicached, dir, *registry);
  }
  Print();
  std::printf(
      "\nratio: ocicached throughput / baseline throughput (time for blobs); above 1: ocicached "
      "faster.\nocicached: %s, access log on (to a file). Registry: docker-registry on %s. "
      "%d cores, load average at the end: %s",
      ocicached.c_str(), registry->host().c_str(),
      static_cast<int>(std::thread::hardware_concurrency()), ReadFile("/proc/loadavg").c_str());
  CleanUp();
  return 0;
}

}  // namespace
}  // namespace ocicache

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string port_file = absl::GetFlag(FLAGS_serve_empty_port_file);
  if (!port_file.empty()) return ocicache::ServeEmpty(port_file);
  return ocicache::Main(argv[0]);
}
