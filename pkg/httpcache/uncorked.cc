#include "pkg/httpcache/uncorked.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace ocicache::httpcache {
namespace {

// One bit per fd below kMaxFd (8 KiB).
std::atomic<uint64_t> bits[kMaxFd / 64];

}  // namespace

void NeverCork(int fd) {
  if (fd < 0 || fd >= kMaxFd) return;
  bits[fd / 64].fetch_or(uint64_t{1} << (fd % 64), std::memory_order_relaxed);
}

void Forget(int fd) {
  if (fd < 0 || fd >= kMaxFd) return;
  bits[fd / 64].fetch_and(~(uint64_t{1} << (fd % 64)), std::memory_order_relaxed);
}

bool IsNeverCorked(int fd) {
  if (fd < 0 || fd >= kMaxFd) return false;
  return (bits[fd / 64].load(std::memory_order_relaxed) >> (fd % 64)) & 1;
}

size_t NeverCorkedCount() {
  size_t n = 0;
  for (const auto& w : bits) n += __builtin_popcountll(w.load(std::memory_order_relaxed));
  return n;
}

}  // namespace ocicache::httpcache

// The process's setsockopt: the dynamic linker binds libmicrohttpd's (and
// every other library's) calls to this definition, which precedes libc's in
// the lookup order. The kernel call itself is made directly, as libc's does.
extern "C" int setsockopt(int fd, int level, int name, const void* value,
                          socklen_t len) noexcept {
  if (level == IPPROTO_TCP && name == TCP_CORK && value != nullptr && len == sizeof(int) &&
      *static_cast<const int*>(value) != 0 && ocicache::httpcache::IsNeverCorked(fd)) {
    return 0;
  }
  return static_cast<int>(syscall(SYS_setsockopt, fd, level, name, value, len));
}
