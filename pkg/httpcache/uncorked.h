// Sockets that are never corked, whatever libmicrohttpd asks.
//
// libmicrohttpd 0.9.75 sets TCP_CORK on a connection before each piece of a
// body it sends with sendfile(2) but the last, and has no option to leave it
// off. On loopback (64 KiB segments) that costs about a third of a large GET's
// throughput (docs/HTTP.md, "Large bodies"). This library defines setsockopt(2)
// for the process: a request to cork a socket registered here succeeds without
// doing anything; every other call goes to the kernel unchanged. libmicrohttpd
// remembers the cork state it set and only asks again after it uncorked, so
// its own bookkeeping stays consistent. Nothing else in ocicached corks
// sockets (gRPC and libcurl use TCP_NODELAY), and only registered ones are
// affected.
#ifndef OCICACHE_PKG_HTTPCACHE_UNCORKED_H_
#define OCICACHE_PKG_HTTPCACHE_UNCORKED_H_

#include <cstddef>

namespace ocicache::httpcache {

// Marks `fd` as never corked until Forget(fd); fds at or above kMaxFd are not
// tracked (corking them works as usual). Lock-free and async-signal-safe.
void NeverCork(int fd);
void Forget(int fd);
bool IsNeverCorked(int fd);
// How many fds are registered now (for tests).
size_t NeverCorkedCount();

inline constexpr int kMaxFd = 1 << 16;

}  // namespace ocicache::httpcache

#endif  // OCICACHE_PKG_HTTPCACHE_UNCORKED_H_
