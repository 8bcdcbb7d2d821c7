// Drives the HTTP fuzz target (http_fuzzer.h) without libFuzzer: the seeds,
// then mutations of them (mutator.h), bounded by OCICACHE_FUZZ_ITERATIONS
// (20000) and OCICACHE_FUZZ_SECONDS (25), whichever comes first;
// OCICACHE_FUZZ_SEED picks another sequence. A broken invariant aborts the
// test with the input printed.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "test/fuzz/http_fuzzer.h"
#include "test/fuzz/mutator.h"

namespace ocicache::fuzz {
namespace {

void RunInput(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

TEST(HttpFuzzTest, BoundedRun) {
  const int64_t iterations = EnvInt("OCICACHE_FUZZ_ITERATIONS", 20000);
  const absl::Duration budget = absl::Seconds(EnvInt("OCICACHE_FUZZ_SECONDS", 25));
  const uint64_t seed = static_cast<uint64_t>(EnvInt("OCICACHE_FUZZ_SEED", 7));
  absl::Time start = absl::Now();
  std::vector<std::string> seeds = HttpSeeds();
  KeepWriteSideOpen(true);
  for (const auto& s : seeds) RunInput(s);
  KeepWriteSideOpen(false);
  // Every seed routed or was answered.
  EXPECT_GE(HttpStats().routed, 7);
  EXPECT_EQ(HttpStats().answered, HttpStats().raw);
  Mutator m(seed);
  std::mt19937_64 pick(seed + 1);
  while (HttpStats().inputs < iterations && absl::Now() - start < budget) {
    std::string input = m.Mutate(seeds[pick() % seeds.size()], seeds);
    RunInput(input);
  }
  CheckServerAlive();
  const HttpFuzzStats& st = HttpStats();
  std::cout << absl::StrFormat(
      "%d inputs in %s: router %d routed, %d refused; server %d raw, %d answered "
      "(1xx %d, 2xx %d, 3xx %d, 4xx %d, 5xx %d)\n",
      st.inputs, absl::FormatDuration(absl::Now() - start), st.routed, st.route_errors, st.raw,
      st.answered, st.status[1], st.status[2], st.status[3], st.status[4], st.status[5]);
  // The mutations reach both the router's accept and refuse paths, and the
  // server's success and error answers.
  EXPECT_GT(st.routed, 10);
  EXPECT_GT(st.route_errors, 10);
  EXPECT_GT(st.status[2], 10);
  EXPECT_GT(st.status[4], 10);
  EXPECT_GE(st.inputs, std::min<int64_t>(iterations, 500));
}

}  // namespace
}  // namespace ocicache::fuzz
