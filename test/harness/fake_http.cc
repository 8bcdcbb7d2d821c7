#include "test/harness/fake_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace ocicache::harness {
namespace {

// Bounds that keep a misbehaving client from hanging or exhausting a test.
constexpr size_t kMaxLine = 64 * 1024;
constexpr size_t kMaxHeaderBytes = 256 * 1024;
constexpr size_t kMaxBody = size_t{512} << 20;
constexpr int kIdleTimeoutMs = 60 * 1000;  // A silent client is dropped after this.

std::string ErrnoText(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

const char* Reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes and "+" (form encoding); malformed escapes are kept verbatim.
std::string PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Buffered reads from a connection, each wait bounded by the idle timeout.
class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}

  // Reads one line ending in CRLF (or LF), without the terminator. False on EOF,
  // error, timeout or an over-long line.
  bool ReadLine(std::string* line) {
    for (;;) {
      size_t nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        size_t end = (nl > pos_ && buf_[nl - 1] == '\r') ? nl - 1 : nl;
        line->assign(buf_, pos_, end - pos_);
        pos_ = nl + 1;
        return true;
      }
      if (buf_.size() - pos_ > kMaxLine || !Fill()) return false;
    }
  }

  // Appends exactly n bytes to out.
  bool ReadExact(size_t n, std::string* out) {
    while (n > 0) {
      if (pos_ == buf_.size() && !Fill()) return false;
      size_t take = std::min(n, buf_.size() - pos_);
      out->append(buf_, pos_, take);
      pos_ += take;
      n -= take;
    }
    return true;
  }

  // True when no byte is buffered (so an EOF now is a clean close between requests).
  bool empty() const { return pos_ == buf_.size(); }

 private:
  bool Fill() {
    if (pos_ > 0) {  // Drop consumed bytes before reading more.
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    pollfd p{fd_, POLLIN, 0};
    int r;
    do {
      r = poll(&p, 1, kIdleTimeoutMs);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) return false;
    char tmp[16384];
    ssize_t n;
    do {
      n = recv(fd_, tmp, sizeof(tmp), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
  size_t pos_ = 0;
};

enum class ReadResult { kOk, kClosed, kMalformed };

ReadResult ReadChunkedBody(Reader& in, std::string* body) {
  for (;;) {
    std::string line;
    if (!in.ReadLine(&line)) return ReadResult::kMalformed;
    absl::string_view size_text = line;
    size_t semi = size_text.find(';');  // Chunk extensions are ignored.
    if (semi != absl::string_view::npos) size_text = size_text.substr(0, semi);
    size_text = absl::StripAsciiWhitespace(size_text);
    uint64_t size = 0;
    if (size_text.empty() || size_text.size() > 15) return ReadResult::kMalformed;
    for (char c : size_text) {
      int v = HexValue(c);
      if (v < 0) return ReadResult::kMalformed;
      size = size * 16 + static_cast<uint64_t>(v);
    }
    if (size == 0) {  // Last chunk: skip trailers up to the empty line.
      for (;;) {
        if (!in.ReadLine(&line)) return ReadResult::kMalformed;
        if (line.empty()) return ReadResult::kOk;
      }
    }
    if (body->size() + size > kMaxBody) return ReadResult::kMalformed;
    if (!in.ReadExact(size, body)) return ReadResult::kMalformed;
    if (!in.ReadLine(&line) || !line.empty()) return ReadResult::kMalformed;
  }
}

// Reads one request. kClosed means the client closed cleanly before sending anything.
ReadResult ReadRequest(Reader& in, int fd, FakeRequest* req) {
  std::string line;
  // Tolerate stray empty lines between requests (RFC 9112 section 2.2).
  do {
    bool was_empty = in.empty();
    if (!in.ReadLine(&line)) return was_empty ? ReadResult::kClosed : ReadResult::kMalformed;
  } while (line.empty());
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() ||
      !absl::StartsWith(parts[2], "HTTP/1.")) {
    return ReadResult::kMalformed;
  }
  req->method = parts[0];
  req->target = parts[1];
  req->version = parts[2];

  size_t header_bytes = 0;
  for (;;) {
    if (!in.ReadLine(&line)) return ReadResult::kMalformed;
    if (line.empty()) break;
    header_bytes += line.size();
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || header_bytes > kMaxHeaderBytes) {
      return ReadResult::kMalformed;
    }
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(absl::string_view(line).substr(colon + 1)));
    auto [it, inserted] = req->headers.emplace(name, value);
    if (!inserted) absl::StrAppend(&it->second, ", ", value);
  }

  if (absl::AsciiStrToLower(req->header("expect")) == "100-continue") {
    if (!SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return ReadResult::kMalformed;
  }
  if (absl::StrContains(absl::AsciiStrToLower(req->header("transfer-encoding")), "chunked")) {
    req->chunked = true;
    return ReadChunkedBody(in, &req->body);
  }
  std::string length_text = req->header("content-length");
  if (!length_text.empty()) {
    uint64_t length = 0;
    if (!absl::SimpleAtoi(length_text, &length) || length > kMaxBody) {
      return ReadResult::kMalformed;
    }
    if (!in.ReadExact(length, &req->body)) return ReadResult::kMalformed;
  }
  return ReadResult::kOk;
}

bool WantsKeepAlive(const FakeRequest& req) {
  std::string conn = absl::AsciiStrToLower(req.header("connection"));
  if (req.version == "HTTP/1.0") return absl::StrContains(conn, "keep-alive");
  return !absl::StrContains(conn, "close");
}

bool HasHeader(const FakeResponse& resp, absl::string_view name) {
  for (const auto& [n, v] : resp.headers) {
    if (absl::EqualsIgnoreCase(n, name)) return true;
  }
  return false;
}

// Sends the response; false when the connection must be closed afterwards.
bool WriteResponse(int fd, const FakeRequest& req, const FakeResponse& resp, bool keep_alive) {
  bool no_body = req.method == "HEAD" || resp.status == 204 || resp.status == 304 ||
                 (resp.status >= 100 && resp.status < 200);
  std::string head = absl::StrCat("HTTP/1.1 ", resp.status, " ", Reason(resp.status), "\r\n");
  for (const auto& [name, value] : resp.headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  bool framed = HasHeader(resp, "content-length") || HasHeader(resp, "transfer-encoding");
  if (!framed && resp.status != 204 && resp.status != 304 && resp.status >= 200) {
    absl::StrAppend(&head, "Content-Length: ", resp.body.size(), "\r\n");
  }
  if (!keep_alive && !HasHeader(resp, "connection")) absl::StrAppend(&head, "Connection: close\r\n");
  head += "\r\n";
  absl::string_view body = no_body ? absl::string_view() : absl::string_view(resp.body);
  bool truncate = !no_body && resp.body_bytes_to_send >= 0;
  if (truncate) body = body.substr(0, static_cast<size_t>(resp.body_bytes_to_send));
  // One send for small answers; large bodies go out directly, uncopied.
  bool ok;
  if (body.size() <= 64 * 1024) {
    head.append(body.data(), body.size());
    ok = SendAll(fd, head);
  } else {
    ok = SendAll(fd, head) && SendAll(fd, body);
  }
  return ok && !truncate && keep_alive;
}

}  // namespace

std::string FakeRequest::path() const { return target.substr(0, target.find('?')); }

std::string FakeRequest::header(absl::string_view name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::vector<std::string> FakeRequest::query_values(absl::string_view name) const {
  std::vector<std::string> out;
  size_t q = target.find('?');
  if (q == std::string::npos) return out;
  for (absl::string_view pair : absl::StrSplit(absl::string_view(target).substr(q + 1), '&')) {
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq));
    if (key != name) continue;
    out.push_back(eq == absl::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1)));
  }
  return out;
}

std::string FakeRequest::query_value(absl::string_view name) const {
  std::vector<std::string> v = query_values(name);
  return v.empty() ? std::string() : v.front();
}

FakeResponse FakeResponse::Text(int status, std::string body) {
  FakeResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  return r;
}

FakeResponse FakeResponse::Json(int status, std::string body) {
  FakeResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("Content-Type", "application/json");
  return r;
}

FakeResponse FakeResponse::CloseWithoutResponse() {
  FakeResponse r;
  r.close_without_response = true;
  return r;
}

absl::StatusOr<std::unique_ptr<FakeHttpServer>> FakeHttpServer::Start(Handler handler) {
  std::unique_ptr<FakeHttpServer> s(new FakeHttpServer);
  s->SetHandler(std::move(handler));
  if (pipe2(s->wake_pipe_, O_CLOEXEC) != 0) return absl::InternalError(ErrnoText("fake_http: pipe2"));
  s->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0) return absl::InternalError(ErrnoText("fake_http: socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // The kernel picks a free port.
  if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::InternalError(ErrnoText("fake_http: bind 127.0.0.1:0"));
  }
  if (listen(s->listen_fd_, 64) != 0) return absl::InternalError(ErrnoText("fake_http: listen"));
  socklen_t len = sizeof(addr);
  if (getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(ErrnoText("fake_http: getsockname"));
  }
  s->port_ = ntohs(addr.sin_port);
  s->accept_thread_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  return s;
}

FakeHttpServer::~FakeHttpServer() {
  Stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
}

void FakeHttpServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stopping_.Notify();
  if (wake_pipe_[1] >= 0) {
    char c = 1;
    (void)!write(wake_pipe_[1], &c, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  // Wake connection threads blocked in poll/recv; they exit and we join them.
  std::list<std::unique_ptr<Connection>> conns;
  {
    absl::MutexLock lock(&mu_);
    for (auto& c : connections_) shutdown(c->fd, SHUT_RDWR);
    conns.swap(connections_);
  }
  for (auto& c : conns) {
    c->thread.join();
    close(c->fd);
  }
}

std::string FakeHttpServer::host() const { return absl::StrCat("127.0.0.1:", port_); }
std::string FakeHttpServer::base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }

void FakeHttpServer::SetHandler(Handler handler) {
  absl::MutexLock lock(&mu_);
  handler_ = std::move(handler);
}

int FakeHttpServer::request_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(requests_.size());
}

int FakeHttpServer::connection_count() const {
  absl::MutexLock lock(&mu_);
  return connections_accepted_;
}

std::vector<FakeRequest> FakeHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void FakeHttpServer::AcceptLoop() {
  while (!stopping_.HasBeenNotified()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int r = poll(fds, 2, 1000);
    ReapFinished();
    if (r < 0 && errno != EINTR) return;
    if (r <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // Without this, Nagle's algorithm plus delayed ACKs add ~40 ms to small answers.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      close(fd);
      return;
    }
    auto conn = std::make_unique<Connection>();
    conn->fd = fd;
    conn->id = ++connections_accepted_;
    Connection* raw = conn.get();
    connections_.push_back(std::move(conn));
    raw->thread = std::thread([this, raw] { Serve(raw); });
  }
}

void FakeHttpServer::ReapFinished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if ((*it)->done.load()) finished.splice(finished.end(), connections_, it);
      it = next;
    }
  }
  for (auto& c : finished) {
    c->thread.join();
    close(c->fd);
  }
}

void FakeHttpServer::Serve(Connection* conn) {
  Reader in(conn->fd);
  while (!stopping_.HasBeenNotified()) {
    FakeRequest req;
    ReadResult rr = ReadRequest(in, conn->fd, &req);
    if (rr == ReadResult::kClosed) break;
    if (rr == ReadResult::kMalformed) {
      // Best effort: the peer may already be gone.
      FakeResponse bad = FakeResponse::Text(400, "fake_http: malformed or truncated request\n");
      WriteResponse(conn->fd, req, bad, /*keep_alive=*/false);
      break;
    }
    req.connection = conn->id;
    Handler handler;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(req);
      handler = handler_;
    }
    FakeResponse resp = handler ? handler(req) : FakeResponse::Text(500, "fake_http: no handler\n");
    // Stall first, so stall_ms plus close_without_response is "hang, then drop".
    if (resp.stall_ms > 0 &&
        stopping_.WaitForNotificationWithTimeout(absl::Milliseconds(resp.stall_ms))) {
      break;
    }
    if (resp.close_without_response) break;
    bool keep_alive = WantsKeepAlive(req) && !resp.close_after_response &&
                      resp.body_bytes_to_send < 0;
    if (!WriteResponse(conn->fd, req, resp, keep_alive)) break;
  }
  // Shut down (not close) so the peer sees EOF now; the fd is closed after join, which
  // keeps Stop() from ever touching a reused descriptor number.
  shutdown(conn->fd, SHUT_RDWR);
  conn->done.store(true);
}

}  // namespace ocicache::harness
