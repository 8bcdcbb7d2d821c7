// Test helper: a TCP proxy on 127.0.0.1 in front of a server, which a test can
// tell to break every connection once a number of client bytes went through,
// so a client sees its connection reset in the middle of a stream.
#ifndef OCICACHE_TEST_INTEGRATION_TCP_PROXY_H_
#define OCICACHE_TEST_INTEGRATION_TCP_PROXY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ocicache::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1:0 and forwards each connection to 127.0.0.1:upstream_port.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int upstream_port);
  ~TcpProxy();  // Closes everything and joins the threads.

  std::string address() const;
  // Once `bytes` more client-to-server bytes went through, every open
  // connection is closed (one cut per call).
  void CutAfter(int64_t bytes);
  // The same for server-to-client bytes.
  void CutAfterDown(int64_t bytes);
  int64_t cuts() const { return cuts_.load(); }
  int64_t connections() const { return connections_.load(); }
  int64_t bytes_up() const { return bytes_up_.load(); }
  int64_t bytes_down() const { return bytes_down_.load(); }

 private:
  TcpProxy() = default;
  void AcceptLoop();
  void Pump(int client, int server);

  int listen_fd_ = -1;
  int port_ = 0;
  int upstream_port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> cut_at_{-1};       // bytes_up_ at which to cut; -1: never
  std::atomic<int64_t> cut_down_at_{-1};  // bytes_down_ at which to cut; -1: never
  std::atomic<int64_t> cuts_{0};
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> bytes_up_{0};
  std::atomic<int64_t> bytes_down_{0};
  std::atomic<int64_t> generation_{0};  // bumped by each cut; pumps of older ones close
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::testing

#endif  // OCICACHE_TEST_INTEGRATION_TCP_PROXY_H_
