// The local tier at scale (issue 15): how put rate and lookup latency of a
// LayoutStore change as it grows to --entries (default 100,000) entries.
//
// Two modes, each filled from empty in its own directory, one writer thread,
// each entry a unique 256-byte blob plus its config (what a server's Put does):
//   batched    index.json rewritten by the background writer at most every 2 s
//              (ocicached's setting)
//   per put    index.json rewritten after every put (what ocicached did before;
//              O(entries) per put, so this mode stops at --per_put_entries)
// At each size mark it prints the put rate over the last min(N, 10,000) puts and
// the p50/p90 of 1,000 lookups of random existing keys; ratios are against the
// same mode's figures at the first mark (1,000 entries). The layouts are removed
// at the end.
//
//   bazel run -c opt //bench:local_tier_bench -- [--entries=100000] [--per_put_entries=10000]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pkg/cache/entry.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"

ABSL_FLAG(int, entries, 100000, "entries to fill in batched mode");
ABSL_FLAG(int, per_put_entries, 10000, "entries to fill in per-put mode (O(N^2) in total)");
ABSL_FLAG(std::string, dir, "", "where to make the layouts (default $TMPDIR or /tmp)");

namespace {

using ocicache::cache::Entry;
using ocicache::cache::LookupOptions;
using ocicache::layout::LayoutStore;

struct Row {
  int n = 0;
  double puts_per_s = 0;
  absl::Duration p50, p90;
};

std::string Base() {
  std::string d = absl::GetFlag(FLAGS_dir);
  if (!d.empty()) return d;
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t ? t : "/tmp";
}

std::vector<Row> Fill(const std::string& dir, absl::Duration interval, int total) {
  std::vector<Row> rows;
  LayoutStore::Options opts;
  opts.index_interval = interval;
  auto store = LayoutStore::Open(dir, opts);
  if (!store.ok()) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(), store.status().ToString().c_str());
    std::exit(1);
  }
  std::mt19937_64 rng(42);
  std::vector<absl::Time> put_done;
  put_done.reserve(total);
  const absl::Time start = absl::Now();
  for (int i = 1; i <= total; ++i) {
    std::string bytes = absl::StrFormat("%0256d", i);
    ocicache::oci::StringSource src(bytes);
    auto d = (*store)->WriteBlob(ocicache::oci::Digest::Of(bytes), bytes.size(), src);
    Entry e;
    e.key = absl::StrCat("scale/", i);
    e.config = absl::StrCat(R"({"n":)", i, "}");
    if (d.ok()) e.blobs.push_back(*d);
    absl::Status s = d.ok() ? (*store)->Put(e) : d.status();
    if (!s.ok()) {
      std::fprintf(stderr, "put %d: %s\n", i, s.ToString().c_str());
      std::exit(1);
    }
    put_done.push_back(absl::Now());
    if (i == 1000 || i == 10000 || i == 100000 || i == total) {
      if (!rows.empty() && rows.back().n == i) continue;
      Row r;
      r.n = i;
      // Since the previous mark (whose lookups are not counted), at most 10,000.
      const int prev = rows.empty() ? 0 : rows.back().n;
      const int window = std::min(i - prev, 10000);
      absl::Time from = window == i ? start : put_done[i - window - 1];
      r.puts_per_s = window / absl::ToDoubleSeconds(put_done[i - 1] - from);
      std::vector<absl::Duration> lat;
      for (int k = 0; k < 1000; ++k) {
        std::string key = absl::StrCat("scale/", 1 + rng() % i);
        absl::Time t = absl::Now();
        auto got = (*store)->Lookup(key, LookupOptions{});
        lat.push_back(absl::Now() - t);
        if (!got.ok()) {
          std::fprintf(stderr, "lookup %s: %s\n", key.c_str(), got.status().ToString().c_str());
          std::exit(1);
        }
      }
      std::sort(lat.begin(), lat.end());
      r.p50 = lat[lat.size() / 2];
      r.p90 = lat[lat.size() * 9 / 10];
      rows.push_back(r);
      // The lookups are not part of the next window.
      put_done.back() = absl::Now();
    }
  }
  return rows;
}

void Print(const char* mode, const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    const Row& first = rows.front();
    std::printf("| %-8s | %7d | %8.0f | %5.2f | %7.1f us | %7.1f us | %5.2f |\n", mode, r.n,
                r.puts_per_s, r.puts_per_s / first.puts_per_s,
                absl::ToDoubleMicroseconds(r.p50), absl::ToDoubleMicroseconds(r.p90),
                absl::ToDoubleMicroseconds(r.p50) / absl::ToDoubleMicroseconds(first.p50));
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string root = absl::StrCat(Base(), "/local-tier-bench-", getpid());
  auto batched = Fill(root + "/batched", absl::Seconds(2), absl::GetFlag(FLAGS_entries));
  auto per_put = Fill(root + "/per-put", absl::ZeroDuration(), absl::GetFlag(FLAGS_per_put_entries));
  std::printf("\n| mode     | entries | puts/s   | vs 1k | lookup p50 | lookup p90 | p50 vs 1k |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  Print("batched", batched);
  Print("per put", per_put);
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return 0;
}
