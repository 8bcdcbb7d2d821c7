// The HTTP/1.1 server of the cache endpoint, on GNU libmicrohttpd (Debian's
// libmicrohttpd12): it parses requests (keep-alive, chunked bodies,
// `Expect: 100-continue`, bounded header block) and hands them to a Handler.
//
// Threads: an event loop (libmicrohttpd's epoll thread pool, `event_threads`)
// serves every connection and answers what local state answers (a hit in the
// local tier, an error, a 404 with the registry known down) without waiting
// and without a thread switch: ccache opens a connection per compile, and a
// thread per connection cost it twice nginx's time on a busy machine. A read
// that would wait on the registry, any write, and every body pipe run on a
// thread of their own (the request's worker) while the connection is
// suspended; the event loop tries a read under base::CallLimits::local_only,
// so the stores tell it when the call wanted the registry. Bodies stream both
// ways through bounded pipes: a PUT larger than the handler's buffered limit
// is consumed by the worker as the event loop feeds it, a GET larger than it
// is produced by a worker while the event loop sends it; neither ever holds
// more than the pipe (4 MiB) in memory, and a full or empty pipe suspends the
// connection instead of blocking the loop.
//
// A client that stops sending before its Content-Length ends its connection
// (at EOF, or after idle_timeout without a byte): the handler's source then
// fails, so nothing is stored. HTTP/1.1 offers no status for that; libmicrohttpd
// closes the connection without one.
#ifndef OCICACHE_PKG_HTTPCACHE_SERVER_H_
#define OCICACHE_PKG_HTTPCACHE_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pkg/httpcache/handler.h"

struct MHD_Daemon;

namespace ocicache::httpcache {

struct HttpServerOptions {
  // HOST:PORT ([::1]:PORT for IPv6); port 0 picks a free one.
  std::string listen;
  // When binding `listen` fails because the port is taken, take a free port
  // instead (for a defaulted address; an address given explicitly fails).
  bool free_port_if_taken = false;
  // TLS (PEM): with a certificate the port serves HTTPS only. With a client
  // CA, requests without a certificate it issued are refused (403).
  std::string cert_chain_pem;
  std::string key_pem;
  std::string client_ca_pem;
  // The request line and headers must fit in this (431 beyond).
  size_t max_header_bytes = 32 << 10;
  int max_connections = 512;
  // Threads of the event loop (libmicrohttpd's thread pool, one epoll set
  // each); work that may wait runs on threads of its own.
  int event_threads = 2;
  // Largest request body (413 beyond; a declared larger one is refused before
  // it is read).
  int64_t max_body_bytes = int64_t{16} << 30;
  // Bodies up to this size are read into memory before the handler runs;
  // larger ones (and chunked ones) stream through a pipe.
  int64_t max_buffered_body_bytes = 1 << 20;
  // A connection with no traffic for this long is closed.
  absl::Duration idle_timeout = absl::Seconds(60);
};

class HttpServer {
 public:
  // `handler` is not owned and must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Handler* handler,
                                                           HttpServerOptions opts);
  ~HttpServer();  // Stop(zero)
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // "http://HOST:PORT" or "https://HOST:PORT".
  const std::string& url() const { return url_; }
  // Stops accepting connections, lets requests in flight finish for up to
  // `grace`, then closes every connection and waits for their threads.
  // Idempotent.
  void Stop(absl::Duration grace = absl::ZeroDuration());

  // libmicrohttpd's callbacks (public for the C trampolines only).
  struct Impl;

 private:
  HttpServer() = default;
  std::unique_ptr<Impl> impl_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
  std::string url_;
};

}  // namespace ocicache::httpcache

#endif  // OCICACHE_PKG_HTTPCACHE_SERVER_H_
