// A tiny programmable HTTP/1.1 server on 127.0.0.1 for unit tests of HTTP clients,
// above all their error paths: every response comes from a test-supplied handler, which
// can also inject faults (close without answering, stall, truncate the body).
//
// Supports keep-alive, request bodies framed by Content-Length or chunked
// transfer-encoding (what libcurl sends for uploads of unknown size), and
// "Expect: 100-continue" (answered at once). One thread per connection.
//
//   auto server = FakeHttpServer::Start([](const FakeRequest& r) {
//     if (r.method == "HEAD") return FakeResponse::Text(404, "");
//     return FakeResponse::Text(200, "hello");
//   });
//   ASSERT_TRUE(server.ok()) << server.status();
//   Fetch((*server)->base_url() + "/v2/");
#ifndef OCICACHE_TEST_HARNESS_FAKE_HTTP_H_
#define OCICACHE_TEST_HARNESS_FAKE_HTTP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace ocicache::harness {

struct FakeRequest {
  std::string method;   // "GET", "PUT", ...
  std::string target;   // As sent: path plus query, e.g. "/v2/a/b/blobs/uploads/?digest=..".
  std::string version;  // "HTTP/1.1"
  // Header names lowercased; values trimmed; repeated headers joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;      // With any chunked framing removed.
  bool chunked = false;  // The body arrived with Transfer-Encoding: chunked.
  int connection = 0;    // 1-based number of the connection it arrived on.

  // The target without its query string.
  std::string path() const;
  // The value of a header (name in any case), or "" when absent.
  std::string header(absl::string_view name) const;
  // Every value of a query parameter, percent-decoded ("+" is a space), in order.
  std::vector<std::string> query_values(absl::string_view name) const;
  // The first value of a query parameter, or "" when absent.
  std::string query_value(absl::string_view name) const;
};

struct FakeResponse {
  int status = 200;
  // Sent in order. Content-Length is added from body.size() unless set here.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // Not sent for HEAD requests and 204/304 answers.

  // Fault injection.
  int stall_ms = 0;                     // Wait this long before answering (cut short by Stop()).
  bool close_without_response = false;  // Close the connection instead of answering
                                        // (after the stall, if any).
  int64_t body_bytes_to_send = -1;      // >= 0: announce the full length, send only this many
                                        // body bytes, then close.
  bool close_after_response = false;    // Send "Connection: close" and close afterwards.

  static FakeResponse Text(int status, std::string body);  // text/plain
  static FakeResponse Json(int status, std::string body);  // application/json
  static FakeResponse CloseWithoutResponse();
  FakeResponse& WithHeader(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

class FakeHttpServer {
 public:
  // Called on the connection's thread, possibly concurrently for several connections:
  // a handler that keeps state must lock it.
  using Handler = std::function<FakeResponse(const FakeRequest&)>;

  // Binds 127.0.0.1 on a free port and starts serving.
  static absl::StatusOr<std::unique_ptr<FakeHttpServer>> Start(Handler handler);
  ~FakeHttpServer();  // Stop()s.
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  // Closes the listener and every connection, interrupts stalls and joins all threads.
  // Idempotent. A handler call in progress is waited for.
  void Stop();

  int port() const { return port_; }
  std::string host() const;      // "127.0.0.1:PORT"
  std::string base_url() const;  // "http://127.0.0.1:PORT"

  // Replaces the handler for requests that arrive from now on.
  void SetHandler(Handler handler);

  // Complete requests read so far (counted before the handler runs).
  int request_count() const;
  // Connections accepted so far (a keep-alive client reuses one).
  int connection_count() const;
  // Copies of every request read so far, in arrival order.
  std::vector<FakeRequest> requests() const;

 private:
  struct Connection {
    int fd = -1;
    int id = 0;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  FakeHttpServer() = default;
  void AcceptLoop();
  void Serve(Connection* conn);
  void ReapFinished();  // Joins finished connection threads.

  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // Written by Stop() to wake the accept loop.
  int port_ = 0;
  std::thread accept_thread_;
  absl::Notification stopping_;

  mutable absl::Mutex mu_;
  Handler handler_ ABSL_GUARDED_BY(mu_);
  std::vector<FakeRequest> requests_ ABSL_GUARDED_BY(mu_);
  int connections_accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_FAKE_HTTP_H_
