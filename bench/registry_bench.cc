// Benchmarks for the foundation (issue 2), against a real docker-registry on
// loopback started here. Prints one table; speeds are ratios against a baseline
// measured in the same run on the same registry:
//   - lookups: RegistryStore hits and misses, registry requests per lookup, and
//     throughput against raw libcurl manifest GETs on one reused connection;
//   - a 256 MiB blob pushed and pulled by our client against the curl command line
//     (curl -T / curl -o /dev/null), with peak RSS growth while streaming;
//   - the CLI pulling that blob to a file (`ocicache --no-dir get KEY -o FILE`)
//     against `curl | tee FILE | openssl dgst -sha256` (issue 14: >= 0.9).
//
//   bazel run -c opt //bench:registry_bench -- [--blob_mib=256] [--lookups=500]
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "pkg/cache/format.h"
#include "pkg/cache/registry_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "test/harness/registry.h"

ABSL_FLAG(int, blob_mib, 256, "size of the streamed blob in MiB");
ABSL_FLAG(int, lookups, 500, "lookups of each kind (hit, miss)");
ABSL_FLAG(int, entries, 100, "entries stored before the lookups");
ABSL_FLAG(int, cli_rounds, 5, "rounds of the CLI pull to a file (the figure is their median)");
ABSL_FLAG(std::string, ocicache, "", "ocicache CLI binary (default: from the runfiles)");

namespace ocicache {
namespace {

int64_t RssKiB(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(strlen(field)));
  }
  return -1;
}

// Samples VmRSS every 5 ms while alive; peak() is the highest seen.
class RssSampler {
 public:
  RssSampler() : t_([this] {
      while (!stop_) {
        peak_ = std::max<int64_t>(peak_, RssKiB("VmRSS:"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }) {}
  ~RssSampler() { Stop(); }
  int64_t Stop() {
    if (!stop_.exchange(true)) t_.join();
    return peak_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{0};
  std::thread t_;
};

int RunShell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// The ocicache CLI: --ocicache, else from this binary's runfiles.
std::string CliBinary() {
  std::vector<std::string> candidates;
  if (!absl::GetFlag(FLAGS_ocicache).empty()) candidates.push_back(absl::GetFlag(FLAGS_ocicache));
  if (const char* r = getenv("RUNFILES_DIR")) candidates.push_back(absl::StrCat(r, "/ocicache/cmd/ocicache/ocicache"));
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) candidates.push_back(absl::StrCat(std::string(self, n), ".runfiles/ocicache/cmd/ocicache/ocicache"));
  for (const auto& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Row {
  std::string what, ours, baseline, ratio, goal;
};

void Print(const std::vector<Row>& rows) {
  std::printf("\n%-44s %-22s %-22s %-8s %s\n", "benchmark", "ocicache", "baseline", "ratio", "goal");
  std::printf("%s\n", std::string(112, '-').c_str());
  for (const auto& r : rows) {
    std::printf("%-44s %-22s %-22s %-8s %s\n", r.what.c_str(), r.ours.c_str(), r.baseline.c_str(),
                r.ratio.c_str(), r.goal.c_str());
  }
}

int Main() {
  auto reg = harness::RegistryProcess::Start({});
  if (!reg.ok()) {
    std::cerr << reg.status() << "\n";
    return 1;
  }
  const std::string host = (*reg)->host();
  auto client_or = registry::Client::Create(host);
  if (!client_or.ok()) return 1;
  std::shared_ptr<registry::Client> client(std::move(*client_or));
  auto store = cache::RegistryStore::Create(client, "bench/lookups");
  if (!store.ok()) return 1;
  std::vector<Row> rows;

  // ---- lookups ----
  const int entries = absl::GetFlag(FLAGS_entries), lookups = absl::GetFlag(FLAGS_lookups);
  for (int i = 0; i < entries; ++i) {
    cache::Entry e;
    e.key = absl::StrCat("bench/key/", i);
    e.config = absl::StrCat(R"({"i":)", i, "}");
    if (absl::Status s = (*store)->Put(e); !s.ok()) {
      std::cerr << "put: " << s << "\n";
      return 1;
    }
  }
  int64_t r0 = client->request_count();
  absl::Time t0 = absl::Now();
  int hits = 0;
  for (int i = 0; i < lookups; ++i) hits += (*store)->Lookup(absl::StrCat("bench/key/", i % entries), {}).ok();
  absl::Duration hit_time = absl::Now() - t0;
  int64_t hit_requests = client->request_count() - r0;
  r0 = client->request_count();
  t0 = absl::Now();
  int misses = 0;
  for (int i = 0; i < lookups; ++i) {
    misses += absl::IsNotFound((*store)->Lookup(absl::StrCat("bench/absent/", i), {}).status());
  }
  absl::Duration miss_time = absl::Now() - t0;
  int64_t miss_requests = client->request_count() - r0;

  // Baseline: raw manifest GETs with one reused libcurl handle, no parsing.
  CURL* h = curl_easy_init();
  curl_slist* hdrs = curl_slist_append(nullptr, "Accept: application/vnd.oci.image.manifest.v1+json");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Discard);
  t0 = absl::Now();
  int raw_ok = 0;
  for (int i = 0; i < lookups; ++i) {
    auto tag = cache::TagForKey(absl::StrCat("bench/key/", i % entries));
    std::string url = absl::StrCat("http://", host, "/v2/bench/lookups/manifests/", *tag);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    raw_ok += code == 200;
  }
  absl::Duration raw_time = absl::Now() - t0;
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);

  auto per_s = [](int n, absl::Duration d) { return n / absl::ToDoubleSeconds(d); };
  rows.push_back({absl::StrFormat("lookup hit (%d, %d hit)", lookups, hits),
                  absl::StrFormat("%.0f/s", per_s(lookups, hit_time)),
                  absl::StrFormat("%.0f/s raw GET", per_s(lookups, raw_time)),
                  absl::StrFormat("%.2f", absl::ToDoubleSeconds(raw_time) / absl::ToDoubleSeconds(hit_time)), ""});
  rows.push_back({"  registry requests per hit", absl::StrFormat("%.2f", double(hit_requests) / lookups), "1",
                  absl::StrFormat("%.2f", double(hit_requests) / lookups), "1 per hit"});
  rows.push_back({absl::StrFormat("lookup miss (%d, %d missed)", lookups, misses),
                  absl::StrFormat("%.0f/s", per_s(lookups, miss_time)), "", "", ""});
  rows.push_back({"  registry requests per miss", absl::StrFormat("%.2f", double(miss_requests) / lookups), "1",
                  absl::StrFormat("%.2f", double(miss_requests) / lookups), ""});
  if (hits != lookups || misses != lookups || raw_ok != lookups) {
    std::cerr << "lookup results wrong: " << hits << " hits, " << misses << " misses, " << raw_ok << " raw\n";
    return 1;
  }

  // ---- 256 MiB push and pull ----
  const int64_t size = int64_t{absl::GetFlag(FLAGS_blob_mib)} << 20;
  std::string path = absl::StrCat(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", "/ocicache-bench-", getpid());
  {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::string chunk(1 << 20, '\0');
    uint64_t x = 88172645463325252ull;
    for (int64_t done = 0; done < size; done += chunk.size()) {
      for (size_t i = 0; i < chunk.size(); i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(&chunk[i], &x, 8);
      }
      if (write(fd, chunk.data(), chunk.size()) != (ssize_t)chunk.size()) return 1;
    }
    close(fd);
  }
  std::string hex = Capture("sha256sum " + path + " | cut -d' ' -f1");
  hex.resize(64);
  auto digest = oci::Digest::FromHex(hex);
  if (!digest.ok()) return 1;

  // Baseline push: curl POST then PUT -T file, into a fresh repository.
  t0 = absl::Now();
  std::string loc = Capture(absl::StrCat("curl -s -D - -o /dev/null -X POST http://", host,
                                         "/v2/bench/curl/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'"));
  while (!loc.empty() && loc.back() == '\n') loc.pop_back();
  if (loc.rfind("http", 0) != 0) loc = absl::StrCat("http://", host, loc);
  int rc = RunShell(absl::StrCat("curl -sf -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' -T ", path,
                                 " '", loc, "&digest=", digest->str(), "'"));
  absl::Duration curl_push = absl::Now() - t0;
  if (rc != 0) {
    std::cerr << "curl push failed\n";
    return 1;
  }
  int64_t idle = RssKiB("VmRSS:");
  absl::Duration our_push;
  int64_t push_peak;
  {
    RssSampler sampler;
    int fd = open(path.c_str(), O_RDONLY);
    oci::FdSource src(fd);
    t0 = absl::Now();
    auto d = client->PutBlob("bench/ours", *digest, size, src);
    our_push = absl::Now() - t0;
    close(fd);
    push_peak = sampler.Stop();
    if (!d.ok()) {
      std::cerr << "push: " << d.status() << "\n";
      return 1;
    }
  }
  t0 = absl::Now();
  rc = RunShell(absl::StrCat("curl -sf -o /dev/null http://", host, "/v2/bench/curl/blobs/", digest->str()));
  absl::Duration curl_pull = absl::Now() - t0;
  // The same work as ours: download and verify the SHA-256 (OpenSSL, as we use).
  t0 = absl::Now();
  std::string verified = Capture(absl::StrCat("curl -sf http://", host, "/v2/bench/curl/blobs/", digest->str(),
                                              " | openssl dgst -sha256 -r | cut -c1-64"));
  absl::Duration curl_verify_pull = absl::Now() - t0;
  if (verified.substr(0, 64) != digest->hex()) {
    std::cerr << "curl | openssl got another digest\n";
    return 1;
  }
  absl::Duration our_pull;
  int64_t pull_peak;
  {
    RssSampler sampler;
    oci::NullSink sink;
    t0 = absl::Now();
    absl::Status s = client->GetBlob("bench/ours", *digest, size, sink);  // verifies the digest
    our_pull = absl::Now() - t0;
    pull_peak = sampler.Stop();
    if (!s.ok() || rc != 0) {
      std::cerr << "pull: " << s << "\n";
      return 1;
    }
  }
  // CLI pull to a file: `ocicache --no-dir get KEY -o FILE` (a manifest GET,
  // then the blob streamed to the file while a second thread hashes it)
  // against curl writing the file while openssl hashes the same stream in
  // another process (curl | tee FILE | openssl dgst). Rounds alternate which
  // goes first; each starts with no dirty pages.
  const std::string cli = CliBinary();
  if (cli.empty()) {
    std::cerr << "ocicache CLI not found; run through bazel or pass --ocicache\n";
    return 1;
  }
  const std::string cli_flags = absl::StrCat(" --no-dir --repo ", host, "/bench/cli ");
  if (RunShell(absl::StrCat(cli, cli_flags, "put bench-pull --blob ", path, " >/dev/null")) != 0) {
    std::cerr << "ocicache put failed\n";
    return 1;
  }
  const std::string out_ours = path + ".ours", out_curl = path + ".curl";
  std::vector<double> cli_pull, pipe_pull, cli_ratio;
  for (int r = 0; r < std::max(1, absl::GetFlag(FLAGS_cli_rounds)); ++r) {
    double ours_s = 0, pipe_s = 0;
    auto run_ours = [&] {
      ::sync();
      absl::Time t = absl::Now();
      int rc2 = RunShell(absl::StrCat(cli, cli_flags, "get bench-pull -o ", out_ours, " >/dev/null"));
      ours_s = absl::ToDoubleSeconds(absl::Now() - t);
      if (rc2 != 0) ours_s = -1;
    };
    auto run_pipe = [&] {
      ::sync();
      absl::Time t = absl::Now();
      std::string got = Capture(absl::StrCat("curl -sf http://", host, "/v2/bench/cli/blobs/", digest->str(),
                                             " | tee ", out_curl, " | openssl dgst -sha256 -r | cut -c1-64"));
      pipe_s = absl::ToDoubleSeconds(absl::Now() - t);
      if (got.substr(0, 64) != digest->hex()) pipe_s = -1;
    };
    if (r % 2 == 0) {
      run_ours();
      run_pipe();
    } else {
      run_pipe();
      run_ours();
    }
    if (ours_s < 0 || pipe_s < 0) {
      std::cerr << "CLI pull round " << r + 1 << " failed (ocicache " << ours_s << ", curl " << pipe_s << ")\n";
      return 1;
    }
    cli_pull.push_back(ours_s);
    pipe_pull.push_back(pipe_s);
    cli_ratio.push_back(pipe_s / ours_s);
  }
  std::string ours_hex = Capture("sha256sum " + out_ours + " | cut -d' ' -f1");
  unlink(out_ours.c_str());
  unlink(out_curl.c_str());
  if (ours_hex.substr(0, 64) != digest->hex()) {
    std::cerr << "ocicache get -o wrote another file\n";
    return 1;
  }
  unlink(path.c_str());
  auto mibs = [&](absl::Duration d) { return absl::StrFormat("%.0f MiB/s", (size >> 20) / absl::ToDoubleSeconds(d)); };
  rows.push_back({absl::StrFormat("push %d MiB blob (streamed, verified)", size >> 20), mibs(our_push),
                  mibs(curl_push) + " curl",
                  absl::StrFormat("%.2f", absl::ToDoubleSeconds(curl_push) / absl::ToDoubleSeconds(our_push)), ">= 0.9"});
  rows.push_back({absl::StrFormat("pull %d MiB blob (digest checked)", size >> 20), mibs(our_pull),
                  mibs(curl_pull) + " curl",
                  absl::StrFormat("%.2f", absl::ToDoubleSeconds(curl_pull) / absl::ToDoubleSeconds(our_pull)), ">= 0.9"});
  rows.push_back({"  same, baseline curl | openssl dgst", mibs(our_pull), mibs(curl_verify_pull) + " curl+sha",
                  absl::StrFormat("%.2f", absl::ToDoubleSeconds(curl_verify_pull) / absl::ToDoubleSeconds(our_pull)),
                  "like for like"});
  std::string each = "  ratio per round:";
  for (double x : cli_ratio) absl::StrAppend(&each, absl::StrFormat(" %.2f", x));
  rows.push_back({absl::StrFormat("CLI get -o FILE, %d MiB (median)", size >> 20),
                  mibs(absl::Seconds(Median(cli_pull))),
                  mibs(absl::Seconds(Median(pipe_pull))) + " curl|tee|openssl",
                  absl::StrFormat("%.2f", Median(cli_ratio)), ">= 0.9"});
  rows.push_back({each, "", "", "", ""});
  rows.push_back({"peak RSS above idle while pushing", absl::StrFormat("%.1f MiB", (push_peak - idle) / 1024.0),
                  absl::StrFormat("idle %.1f MiB", idle / 1024.0), "", "<= 64 MiB"});
  rows.push_back({"peak RSS above idle while pulling", absl::StrFormat("%.1f MiB", (pull_peak - idle) / 1024.0),
                  absl::StrFormat("idle %.1f MiB", idle / 1024.0), "", "<= 64 MiB"});
  Print(rows);
  std::printf("\nratio: baseline time / ocicache time (above 1: ocicache faster). Registry: docker-registry 2.8.2 on %s.\n",
              host.c_str());
  return 0;
}

}  // namespace
}  // namespace ocicache

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ocicache::Main();
}
