// Writes N deterministic pseudo-random bytes (xorshift64*) to stdout.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gen BYTES\n");
    return 2;
  }
  long long left = std::atoll(argv[1]);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  uint64_t buf[8192];
  while (left > 0) {
    for (auto& w : buf) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
      w = x * 0x2545f4914f6cdd1dULL;
    }
    size_t n = left < static_cast<long long>(sizeof(buf)) ? static_cast<size_t>(left) : sizeof(buf);
    if (std::fwrite(buf, 1, n, stdout) != n) return 1;
    left -= static_cast<long long>(n);
  }
  return 0;
}
