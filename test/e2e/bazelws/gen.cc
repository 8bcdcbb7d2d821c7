// Writes N deterministic bytes to stdout: pseudo-random ones (xorshift64*),
// which no compressor shrinks, or with "text" lines like a disassembly
// listing, which compress about as well as object files and binaries do.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

uint64_t Next(uint64_t& x) {
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  return x * 0x2545f4914f6cdd1dULL;
}

}  // namespace

int main(int argc, char** argv) {
  const bool text = argc == 3 && std::strcmp(argv[2], "text") == 0;
  if (argc != 2 && !text) {
    std::fprintf(stderr, "usage: gen BYTES [text]\n");
    return 2;
  }
  long long left = std::atoll(argv[1]);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  static const char* const kOps[] = {"movq", "addq", "leaq", "callq", "cmpq", "jne", "pushq"};
  char buf[65536];
  uint64_t addr = 0x401000;
  while (left > 0) {
    size_t n = 0;
    if (text) {
      while (n < sizeof(buf) - 128) {
        uint64_t r = Next(x);
        n += static_cast<size_t>(std::snprintf(buf + n, sizeof(buf) - n,
                                               "%8llx:\t%-6s %%r%cx, sym_%llu+0x%llx(%%rip)\n",
                                               static_cast<unsigned long long>(addr),
                                               kOps[r % 7], "abcd"[(r >> 8) % 4],
                                               static_cast<unsigned long long>((r >> 16) % 900),
                                               static_cast<unsigned long long>((r >> 32) % 64)));
        addr += 4 + (r >> 40) % 5;
      }
    } else {
      for (size_t i = 0; i < sizeof(buf); i += 8) {
        uint64_t w = Next(x);
        std::memcpy(buf + i, &w, 8);
      }
      n = sizeof(buf);
    }
    if (left < static_cast<long long>(n)) n = static_cast<size_t>(left);
    if (std::fwrite(buf, 1, n, stdout) != n) return 1;
    left -= static_cast<long long>(n);
  }
  return 0;
}
