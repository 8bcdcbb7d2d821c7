// A model of a network link for benchmarks and tests on loopback (netem is not
// available here): a TCP proxy in front of a target (a registry, an ocicached)
// that delays and paces what crosses it.
//
// What it models, per direction (client->target "up", target->client "down"):
//   - a fixed one-way propagation delay: every byte arrives `one_way_delay`
//     after it finished being sent, so a request/response round trip costs at
//     least 2 x delay (a connection setup too: the proxy connects to the target
//     only when the client connected, but the client's first bytes wait for it);
//   - one bandwidth cap shared by every connection in that direction (the
//     runner's uplink or downlink): bytes are serialized one after another at
//     `bits_per_second`, so parallel transfers share the cap, taking turns chunk
//     by chunk (up to 64 KiB each; fair queuing, as Linux's default qdisc
//     fq_codel does), so a small answer waits for at most a few chunks of the
//     other connections, not for everything they have buffered;
//   - bounded buffering: at most `max_buffered_bytes` per connection and
//     direction wait in the proxy (queued or "in flight"); beyond that it stops
//     reading, and TCP flow control pushes back on the sender.
// What it leaves out: packet loss and retransmission, jitter, TCP slow start and
// congestion control on the modelled path (loopback's TCP runs at both ends of
// the proxy, with loopback's windows), MTU and per-packet overheads, TLS
// handshakes beyond their round trips, and DNS.
//
// One thread runs every connection (poll), so the proxy itself adds microseconds.
#ifndef OCICACHE_TEST_HARNESS_LINK_PROXY_H_
#define OCICACHE_TEST_HARNESS_LINK_PROXY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ocicache::harness {

struct LinkOptions {
  absl::Duration one_way_delay = absl::Milliseconds(10);
  // Per direction, shared by all connections; 0: unlimited.
  int64_t bits_per_second = 200'000'000;
  size_t max_buffered_bytes = 4 << 20;
};

// "20ms/200mbit" style description, for tables.
std::string Describe(const LinkOptions& o);

class LinkProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards each connection to
  // `target` ("HOST:PORT", connected to on each accept).
  static absl::StatusOr<std::unique_ptr<LinkProxy>> Start(const std::string& target,
                                                          LinkOptions options);
  ~LinkProxy();  // Stop()
  LinkProxy(const LinkProxy&) = delete;
  LinkProxy& operator=(const LinkProxy&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  // Closes the listener and every connection.
  void Stop();

  int64_t bytes_up() const { return bytes_up_.load(); }
  int64_t bytes_down() const { return bytes_down_.load(); }
  int64_t connections() const { return connections_.load(); }

 private:
  LinkProxy() = default;
  void Run();

  std::string target_host_;
  int target_port_ = 0;
  LinkOptions opts_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  std::atomic<int64_t> bytes_up_{0};
  std::atomic<int64_t> bytes_down_{0};
  std::atomic<int64_t> connections_{0};
};

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_LINK_PROXY_H_
