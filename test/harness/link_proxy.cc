#include "test/harness/link_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace ocicache::harness {
namespace {

constexpr size_t kReadBytes = 64 << 10;
// The wire is given chunks this far ahead of the one it is sending, so a wake-up
// that comes late does not leave it idle; it bounds how long a chunk of another
// connection can wait behind the ones already given (about 125 KB at 200 Mbit/s).
constexpr absl::Duration kScheduleAhead = absl::Milliseconds(5);

struct Chunk {
  std::string data;
  size_t off = 0;
  absl::Time due;  // when its last byte has crossed the link
};

// One direction of one connection: bytes read from `from`, written to `to`.
struct Direction {
  int from = -1;
  int to = -1;
  std::deque<Chunk> waiting;  // read, not yet given to the wire
  std::deque<Chunk> queue;    // on the wire: due set
  uint64_t turn = 0;          // when the wire last took a chunk of it
  size_t buffered = 0;        // bytes in waiting and queue
  bool eof = false;   // `from` closed its sending side
  bool shut = false;  // ... and that was passed on to `to`
  bool failed = false;
};

struct Conn {
  int client = -1;
  int server = -1;
  Direction up;    // client -> server
  Direction down;  // server -> client
};

// The shared transmitter of one direction of the link.
struct Wire {
  absl::Time free_at = absl::InfinitePast();
  uint64_t turns = 0;
};

void NonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int ConnectTo(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  NonBlocking(fd);
  return fd;
}

}  // namespace

std::string Describe(const LinkOptions& o) {
  std::string rate = o.bits_per_second <= 0 ? "unlimited"
                                            : absl::StrFormat("%gmbit", o.bits_per_second / 1e6);
  return absl::StrCat(absl::ToInt64Milliseconds(2 * o.one_way_delay), "ms RTT/", rate);
}

absl::StatusOr<std::unique_ptr<LinkProxy>> LinkProxy::Start(const std::string& target,
                                                            LinkOptions options) {
  std::unique_ptr<LinkProxy> p(new LinkProxy);
  size_t colon = target.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(target.substr(colon + 1), &p->target_port_)) {
    return absl::InvalidArgumentError(absl::StrCat("link proxy target \"", target, "\": want HOST:PORT"));
  }
  p->target_host_ = target.substr(0, colon);
  if (p->target_host_ == "localhost") p->target_host_ = "127.0.0.1";
  p->opts_ = options;
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (p->listen_fd_ < 0 || bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(p->listen_fd_, 256) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      pipe2(p->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("link proxy: ", strerror(errno)));
  }
  NonBlocking(p->listen_fd_);
  p->port_ = ntohs(a.sin_port);
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

LinkProxy::~LinkProxy() { Stop(); }

std::string LinkProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void LinkProxy::Stop() {
  if (thread_.joinable()) {
    (void)!write(wake_[1], "x", 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_[0], &wake_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void LinkProxy::Run() {
  std::list<Conn> conns;
  Wire up_wire, down_wire;
  std::vector<char> buf(kReadBytes);
  auto transmit = [&](Wire& wire, size_t n, absl::Time now) {
    absl::Time start = std::max(now, wire.free_at);
    absl::Duration tx = opts_.bits_per_second > 0
                            ? absl::Seconds(static_cast<double>(n) * 8 / opts_.bits_per_second)
                            : absl::ZeroDuration();
    wire.free_at = start + tx;
    return wire.free_at + opts_.one_way_delay;
  };
  // The wire takes one chunk at a time, from the connections in turn (the one
  // it served longest ago first: fair queuing, as Linux's default fq_codel does,
  // rather than one FIFO where a small answer waits behind every byte the other
  // connections have buffered).
  auto schedule = [&](Wire& wire, Direction Conn::*side, absl::Time now) {
    while (wire.free_at < now + kScheduleAhead) {
      Direction* next = nullptr;
      for (Conn& c : conns) {
        Direction& d = c.*side;
        if (!d.waiting.empty() && (next == nullptr || d.turn < next->turn)) next = &d;
      }
      if (next == nullptr) return;
      Chunk c = std::move(next->waiting.front());
      next->waiting.pop_front();
      c.due = transmit(wire, c.data.size(), now);
      next->turn = ++wire.turns;
      next->queue.push_back(std::move(c));
    }
  };
  auto pump_in = [&](Direction& d, std::atomic<int64_t>& counter) {
    while (!d.eof && !d.failed && d.buffered < opts_.max_buffered_bytes) {
      size_t want = std::min(buf.size(), opts_.max_buffered_bytes - d.buffered);
      ssize_t n = read(d.from, buf.data(), want);
      if (n > 0) {
        Chunk c;
        c.data.assign(buf.data(), static_cast<size_t>(n));
        d.buffered += static_cast<size_t>(n);
        counter.fetch_add(n);
        d.waiting.push_back(std::move(c));
        continue;
      }
      if (n == 0) {
        d.eof = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        d.failed = true;
      }
      break;
    }
  };
  auto pump_out = [&](Direction& d, absl::Time now) {
    while (!d.failed && !d.queue.empty() && d.queue.front().due <= now) {
      Chunk& c = d.queue.front();
      ssize_t n = send(d.to, c.data.data() + c.off, c.data.size() - c.off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) d.failed = true;
        return;
      }
      c.off += static_cast<size_t>(n);
      if (c.off < c.data.size()) return;
      d.buffered -= c.data.size();
      d.queue.pop_front();
    }
    if (d.eof && d.waiting.empty() && d.queue.empty() && !d.shut) {
      shutdown(d.to, SHUT_WR);
      d.shut = true;
    }
  };

  auto close_all = [&] {
    for (Conn& c : conns) {
      close(c.client);
      close(c.server);
    }
    conns.clear();
  };
  for (;;) {
    absl::Time now = absl::Now();
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    absl::Duration wait = absl::Milliseconds(100);
    for (auto [wire, side] : {std::make_pair(&up_wire, &Conn::up),
                              std::make_pair(&down_wire, &Conn::down)}) {
      bool waiting = false;
      for (Conn& c : conns) waiting = waiting || !(c.*side).waiting.empty();
      if (waiting) wait = std::min(wait, std::max(absl::ZeroDuration(),
                                                  wire->free_at - kScheduleAhead - now));
    }
    for (Conn& c : conns) {
      short client_ev = 0, server_ev = 0;
      if (!c.up.eof && c.up.buffered < opts_.max_buffered_bytes) client_ev |= POLLIN;
      if (!c.down.eof && c.down.buffered < opts_.max_buffered_bytes) server_ev |= POLLIN;
      for (Direction* d : {&c.up, &c.down}) {
        if (d->queue.empty()) continue;
        absl::Time due = d->queue.front().due;
        if (due <= now) {
          (d == &c.up ? server_ev : client_ev) |= POLLOUT;
        } else {
          wait = std::min(wait, due - now);
        }
      }
      fds.push_back({c.client, client_ev, 0});
      fds.push_back({c.server, server_ev, 0});
    }
    int timeout_ms = static_cast<int>(std::max<int64_t>(
        0, absl::ToInt64Microseconds(wait + absl::Microseconds(999)) / 1000));
    if ((poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) || fds[0].revents != 0) {
      close_all();  // Stop(), or poll failed
      return;
    }
    now = absl::Now();
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int cfd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (cfd < 0) break;
        int sfd = ConnectTo(target_host_, target_port_);
        if (sfd < 0) {
          close(cfd);
          continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        NonBlocking(cfd);
        Conn c;
        c.client = cfd;
        c.server = sfd;
        c.up.from = cfd;
        c.up.to = sfd;
        c.down.from = sfd;
        c.down.to = cfd;
        conns.push_back(std::move(c));
        connections_.fetch_add(1);
      }
    }
    for (Conn& c : conns) {
      pump_in(c.up, bytes_up_);
      pump_in(c.down, bytes_down_);
    }
    schedule(up_wire, &Conn::up, now);
    schedule(down_wire, &Conn::down, now);
    for (auto it = conns.begin(); it != conns.end();) {
      Conn& c = *it;
      pump_out(c.up, now);
      pump_out(c.down, now);
      bool done = (c.up.shut || c.up.failed) && (c.down.shut || c.down.failed);
      if (c.up.failed || c.down.failed) done = true;  // a reset ends both sides
      if (done) {
        close(c.client);
        close(c.server);
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace ocicache::harness
