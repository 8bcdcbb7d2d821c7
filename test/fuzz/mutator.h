// The mutations (and the environment bounds) of the bounded fuzz drivers (request_fuzz_test, http_fuzz_test):
// bit flips, interesting bytes and varints, inserts, deletes, duplicated
// ranges, splices with another input, truncation. Deterministic per seed.
#ifndef OCICACHE_TEST_FUZZ_MUTATOR_H_
#define OCICACHE_TEST_FUZZ_MUTATOR_H_

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"

namespace ocicache::fuzz {

// The integer in environment variable `name`, or `fallback` (the drivers' bounds).
inline int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  int64_t out;
  return v != nullptr && absl::SimpleAtoi(v, &out) ? out : fallback;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string Mutate(const std::string& in, const std::vector<std::string>& pool) {
    std::string s = in;
    int ops = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < ops; ++i) Once(&s, pool);
    if (s.empty()) s.push_back(static_cast<char>(rng_()));
    return s;
  }

 private:
  size_t Pos(const std::string& s) { return s.empty() ? 0 : rng_() % s.size(); }

  void Once(std::string* s, const std::vector<std::string>& pool) {
    static const char kInteresting[] = {0, 1, 0x7f, static_cast<char>(0x80), static_cast<char>(0xff),
                                        0x0a, 0x12, 0x1a, 0x22, 0x08, 0x10};
    // Varints a length or size field may meet: huge, negative, zero, one past.
    static const std::string kVarints[] = {
        std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10),  // -1 / max uint64
        std::string("\xff\xff\xff\xff\x07", 5),                        // INT32_MAX
        std::string("\x80\x80\x80\x80\x08", 5),                        // 2^31
        std::string("\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 9),        // INT64_MAX
        std::string("\x80\x01", 2), std::string("\x00", 1),
        std::string("\x80\x80\x80", 3),                                // truncated
    };
    switch (rng_() % 9) {
      case 0:
        if (!s->empty()) (*s)[Pos(*s)] ^= static_cast<char>(1u << (rng_() % 8));
        break;
      case 1:
        if (!s->empty()) (*s)[Pos(*s)] = static_cast<char>(rng_());
        break;
      case 2:
        if (!s->empty()) (*s)[Pos(*s)] = kInteresting[rng_() % sizeof kInteresting];
        break;
      case 3: {
        std::string junk(1 + rng_() % 8, '\0');
        for (auto& c : junk) c = static_cast<char>(rng_());
        s->insert(Pos(*s), junk);
        break;
      }
      case 4:
        if (s->size() > 1) {
          size_t at = Pos(*s);
          s->erase(at, 1 + rng_() % std::min<size_t>(16, s->size() - at));
        }
        break;
      case 5:
        if (!s->empty()) {
          size_t at = Pos(*s);
          size_t len = 1 + rng_() % std::min<size_t>(64, s->size() - at);
          s->insert(Pos(*s), s->substr(at, len));
        }
        break;
      case 6:
        if (!pool.empty()) {
          const std::string& other = pool[rng_() % pool.size()];
          *s = s->substr(0, Pos(*s) + 1) + other.substr(Pos(other));
        }
        break;
      case 7:
        s->insert(s->empty() ? 0 : 1 + Pos(*s) % s->size(), kVarints[rng_() % 7]);
        break;
      case 8:
        if (s->size() > 2) s->resize(1 + rng_() % (s->size() - 1));
        break;
    }
  }

  std::mt19937_64 rng_;
};

}  // namespace ocicache::fuzz

#endif  // OCICACHE_TEST_FUZZ_MUTATOR_H_
