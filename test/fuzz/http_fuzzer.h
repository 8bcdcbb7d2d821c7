// A fuzz target for the HTTP cache endpoint (pkg/httpcache). The first byte
// picks what the rest is:
//   even: "METHOD\nPATH\nQUERY" for the router alone (httpcache::RouteRequest),
//         QUERY as k=v pairs joined by '&';
//   odd:  raw bytes sent on a new connection to a real HttpServer (libmicrohttpd
//         parsing, the router and the handler) over a LayoutStore and REAPI
//         instances in a temporary directory.
//
// Invariants (a violation prints the input and aborts):
//   - the router answers 0 or one of 400, 404, 405, 411, 413, 414; a routed
//     object's key is "http:<protocol>:..." without a "." or ".." segment, a
//     routed bazel hash is 64 lowercase hex, and 405 names the allowed methods;
//   - the server answers a status line (or closes the connection) and never a
//     5xx but 503 and 505 (an HTTP version other than 1.x), and keeps serving: a GET /status after every 64 raw inputs is 200.
#ifndef OCICACHE_TEST_FUZZ_HTTP_FUZZER_H_
#define OCICACHE_TEST_FUZZ_HTTP_FUZZER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ocicache::fuzz {

struct HttpFuzzStats {
  int64_t inputs = 0;
  int64_t routed = 0;        // router inputs that routed (error 0)
  int64_t route_errors = 0;  // ... that got an error status
  int64_t raw = 0;           // raw inputs sent to the server
  int64_t answered = 0;      // ... answered with a status line
  int64_t status[6] = {};    // answers by class: [1] 1xx ... [5] 5xx
};
const HttpFuzzStats& HttpStats();

// Valid inputs of both kinds (kind byte included): the driver's seeds.
std::vector<std::string> HttpSeeds();

// Raw inputs are sent and the write side closed, so the server sees their
// end. libmicrohttpd takes a half-close as the client going away, so a request
// answered after work on another thread (a write, a registry read) gets no
// answer then, as from nginx. With `open`, raw inputs keep the write side open
// instead (they must ask for "Connection: close" to end): for the seeds,
// each of which must be answered.
void KeepWriteSideOpen(bool open);

// Checks that the server still answers GET /status (aborts otherwise).
void CheckServerAlive();

}  // namespace ocicache::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#endif  // OCICACHE_TEST_FUZZ_HTTP_FUZZER_H_
