// Drives the request fuzz target (request_fuzzer.h) without libFuzzer: the
// seeds first, then inputs made by simple mutations (bit flips, interesting
// bytes and varints, inserts, deletes, duplicated ranges, splices with another
// input), keeping those that parse as their message to mutate further.
// Bounded by a count and by wall time, whichever comes first:
// OCICACHE_FUZZ_ITERATIONS (20000) and OCICACHE_FUZZ_SECONDS (30);
// OCICACHE_FUZZ_SEED picks another deterministic sequence. A broken invariant
// aborts the test with the input printed.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "test/fuzz/mutator.h"
#include "test/fuzz/request_fuzzer.h"

namespace ocicache::fuzz {
namespace {

int RunInput(const std::string& input) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

TEST(RequestFuzzTest, BoundedRun) {
  const int64_t iterations = EnvInt("OCICACHE_FUZZ_ITERATIONS", 20000);
  const absl::Duration budget = absl::Seconds(EnvInt("OCICACHE_FUZZ_SECONDS", 30));
  const uint64_t seed = static_cast<uint64_t>(EnvInt("OCICACHE_FUZZ_SEED", 4));
  absl::Time start = absl::Now();

  // One pool of inputs per message type, so each type gets its share.
  std::vector<std::string> seeds = Seeds();
  std::vector<std::vector<std::string>> pools(kKinds);
  for (const auto& s : seeds) {
    RunInput(s);
    pools[static_cast<uint8_t>(s[0]) % kKinds].push_back(s);
  }
  // Every kind of message was decoded and answered by its seed.
  for (int k = 0; k < kKinds; ++k) {
    EXPECT_GE(Stats().parsed[k], 1) << KindName(k);
    if (k != kSync) EXPECT_GE(Stats().ok[k], 1) << KindName(k) << " answered no seed";
  }

  Mutator m(seed);
  std::mt19937_64 pick(seed + 1);
  int64_t kept = 0;
  while (Stats().inputs < iterations && absl::Now() - start < budget) {
    const auto& pool = pools[pick() % kKinds];
    const std::string& base = pool[pick() % pool.size()];
    std::string input = m.Mutate(base, seeds);
    int kind = static_cast<uint8_t>(input[0]) % kKinds;
    int64_t parsed_before = Stats().parsed[kind];
    RunInput(input);
    if (Stats().parsed[kind] > parsed_before) {
      // Parsed: worth mutating further (at most 300 per type, newest replace).
      auto& into = pools[kind];
      if (into.size() < 300) {
        into.push_back(std::move(input));
      } else {
        into[pick() % into.size()] = std::move(input);
      }
      ++kept;
    }
  }

  const FuzzStats& st = Stats();
  int64_t parsed = 0;
  std::cout << absl::StrFormat("%-16s %8s %8s\n", "message", "parsed", "ok");
  for (int k = 0; k < kKinds; ++k) {
    std::cout << absl::StrFormat("%-16s %8d %8d\n", KindName(k), st.parsed[k], st.ok[k]);
    parsed += st.parsed[k];
  }
  int codes = 0;
  std::cout << "answers by code:";
  for (int c = 0; c < 17; ++c) {
    if (st.codes[c] > 0) {
      ++codes;
      std::cout << " " << c << ":" << st.codes[c];
    }
  }
  std::cout << absl::StrFormat("\n%d inputs (%d parsed, %d kept for mutation) in %s, seed %d\n",
                               st.inputs, parsed, kept,
                               absl::FormatDuration(absl::Now() - start), seed);
  // The mutations must reach the decoders, not only fail to parse.
  EXPECT_GT(parsed * 4, st.inputs) << "fewer than a quarter of the inputs parsed";
  EXPECT_GE(codes, 5) << "the servicers gave fewer than 5 distinct answers";
  EXPECT_GE(st.inputs, std::min<int64_t>(iterations, 1000));
}

}  // namespace
}  // namespace ocicache::fuzz
