#include "pkg/httpcache/server.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/httpcache/uncorked.h"
#include "pkg/oci/pipe.h"

namespace ocicache::httpcache {
namespace {

constexpr size_t kPipeBytes = 4 << 20;
constexpr size_t kSendBlock = 256 << 10;
// libmicrohttpd's per-connection memory pool holds the request header block
// and the send and receive buffers: a small pool means small socket writes
// and reads (16 KiB ones halved large transfers' speed), and a large one costs
// its clearing on every request (512 KiB: 15% of a small GET's CPU; 128 KiB
// gave 16% more small GETs per second than 256 KiB, same PUT speed). The
// header block is bounded separately (HttpServerOptions::max_header_bytes,
// checked on arrival).
constexpr size_t kConnectionMemory = 128 << 10;

// Suspends and resumes connections for work that waits (a store call, a
// body pipe), keeping count so Stop can wait until none is suspended
// (libmicrohttpd must not stop with one suspended).
class Parking {
 public:
  // False, and nothing suspended, once Stop began (BeginStop): the caller then
  // goes on without waiting (the work it waits for is being cancelled).
  bool Suspend(MHD_Connection* c) {
    {
      absl::MutexLock l(&mu_);
      if (stopping.load()) return false;
      ++suspended_;
    }
    MHD_suspend_connection(c);
    return true;
  }
  void Resume(MHD_Connection* c) {
    MHD_resume_connection(c);
    absl::MutexLock l(&mu_);
    --suspended_;
  }
  // From now on nothing is suspended, and work still running ends (its scope
  // check fails), so its connection resumes and closes.
  void BeginStop() {
    absl::MutexLock l(&mu_);
    stopping = true;
  }
  // Waits until no connection is suspended; false at the deadline.
  bool AwaitNone(absl::Time deadline) {
    absl::MutexLock l(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return suspended_ == 0; };
    return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
  }

  // Set by BeginStop (under the mutex, so that a suspension is either
  // counted before it or refused after it); read by work's scope checks.
  std::atomic<bool> stopping{false};

 private:
  absl::Mutex mu_;
  int suspended_ ABSL_GUARDED_BY(mu_) = 0;
};

// The limits of work run apart from the event loop for one request: it ends
// when the request is abandoned or the server stops.
base::CallLimits WorkLimits(std::shared_ptr<std::atomic<bool>> abandoned, Parking* parking) {
  return {.check = [abandoned = std::move(abandoned), parking]() -> absl::Status {
    if (abandoned->load(std::memory_order_relaxed)) {
      return absl::CancelledError("the HTTP request ended");
    }
    if (parking->stopping.load(std::memory_order_relaxed)) {
      return absl::CancelledError("the HTTP server is stopping");
    }
    return absl::OkStatus();
  }};
}

// A response body a producer thread writes while the event loop sends it
// (libmicrohttpd pulls, the stores push).
struct Outgoing {
  Outgoing(std::function<absl::Status(oci::ByteSink&)> f, int64_t n)
      : produce(std::move(f)), size(n), pipe(kPipeBytes) {}
  std::function<absl::Status(oci::ByteSink&)> produce;
  const int64_t size;  // -1: unknown (chunked)
  int64_t delivered = 0;
  oci::BoundedPipe pipe;
  std::thread producer;
  std::shared_ptr<std::atomic<int64_t>> sent;
  std::shared_ptr<std::atomic<bool>> abandoned = std::make_shared<std::atomic<bool>>(false);
  Parking* parking = nullptr;
  MHD_Connection* conn = nullptr;
  // The body's last bytes, held until the producer ended well.
  std::string held;

  // Nothing to send yet: suspends the connection until the producer writes
  // or ends. libmicrohttpd calls again after the resume.
  ssize_t Wait() {
    if (!parking->Suspend(conn)) return MHD_CONTENT_READER_END_WITH_ERROR;  // stopping
    Parking* p = parking;
    MHD_Connection* c = conn;
    if (!pipe.WakeReader([p, c] { p->Resume(c); })) parking->Resume(conn);
    return 0;
  }
};

ssize_t ReadOutgoing(void* cls, uint64_t /*pos*/, char* buf, size_t max) {
  auto* out = static_cast<Outgoing*>(cls);
  if (!out->producer.joinable()) {
    out->producer = std::thread([out, limits = WorkLimits(out->abandoned, out->parking)] {
      base::CallScope scope(limits);
      oci::PipeSink sink(&out->pipe);
      absl::Status s = out->produce(sink);
      out->pipe.CloseWrite(s.ok() ? absl::OkStatus() : s);
    });
  }
  if (out->held.empty()) {
    bool wait = false;
    auto n = out->pipe.TryRead(buf, max, &wait);
    if (!n.ok()) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (wait) return out->Wait();
    if (*n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    out->delivered += static_cast<int64_t>(*n);
    if (out->size < 0 || out->delivered < out->size) {
      out->sent->fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
      return static_cast<ssize_t>(*n);
    }
    // The last bytes go out only once the producer finished well: stores
    // check a blob's digest after its last byte, and a body that completes
    // its Content-Length must never be a wrong one. A failure here cuts the
    // connection short of the declared length instead.
    out->held.assign(buf, *n);
  }
  char extra;
  bool wait = false;
  auto end = out->pipe.TryRead(&extra, 1, &wait);
  if (wait) return out->Wait();
  if (!end.ok() || *end != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
  size_t n = std::min(max, out->held.size());
  std::memcpy(buf, out->held.data(), n);
  out->held.erase(0, n);
  out->sent->fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  return static_cast<ssize_t>(n);
}

void FreeOutgoing(void* cls) {
  auto* out = static_cast<Outgoing*>(cls);
  out->abandoned->store(true);
  out->pipe.CloseRead();
  if (out->producer.joinable()) out->producer.join();
  delete out;
}

// One request's state across libmicrohttpd's calls.
struct RequestState {
  enum class Mode { kNoBody, kBuffer, kStream, kDiscard };
  RequestState(Parking* p, MHD_Connection* c) : parking(p), conn(c) {}
  Parking* const parking;
  MHD_Connection* const conn;
  std::unique_ptr<Exchange> ex;
  Mode mode = Mode::kNoBody;
  std::string buffer;
  int64_t received = 0;
  // kStream: the handler runs on the worker, reading `pipe`.
  std::unique_ptr<oci::BoundedPipe> pipe;
  bool input_closed = false;
  // Whether a read was tried on the event loop (base::CallLimits::local_only).
  bool tried_local = false;
  // The response the worker made.
  std::optional<Response> answer;
  // What was queued, for End.
  bool queued = false;
  int status = 0;
  std::string note;
  std::shared_ptr<std::atomic<int64_t>> sent = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<std::atomic<bool>> abandoned = std::make_shared<std::atomic<bool>>(false);

  // Runs `fn` on a thread of its own (the worker), for work that may wait.
  void StartWork(std::function<void()> fn) {
    {
      absl::MutexLock l(&mu_);
      work_done_ = false;
    }
    worker_ = std::thread([this, fn = std::move(fn), limits = WorkLimits(abandoned, parking)] {
      {
        base::CallScope scope(limits);
        fn();
      }
      bool resume = false;
      {
        absl::MutexLock l(&mu_);
        work_done_ = true;
        resume = parked_;
        parked_ = false;
      }
      if (resume) parking->Resume(conn);
    });
  }
  bool working() const { return worker_.joinable(); }
  // In a libmicrohttpd callback: true when the worker still runs; the
  // connection is then suspended until it ends (and libmicrohttpd calls
  // again). False when it has ended (or never ran): its results are there.
  bool Park() {
    bool done;
    {
      absl::MutexLock l(&mu_);
      done = work_done_;
    }
    if (done || !parking->Suspend(conn)) {
      // Done, or the server is stopping: the work ends soon (cancelled).
      if (worker_.joinable()) worker_.join();
      return false;
    }
    bool resume_now = false;
    {
      absl::MutexLock l(&mu_);
      resume_now = work_done_;
      parked_ = !work_done_;
    }
    if (resume_now) parking->Resume(conn);
    return true;
  }
  // The request ends: stops the worker (its body source fails, its scope
  // check fails) and waits for it.
  void Abandon(absl::Status why) {
    abandoned->store(true);
    if (pipe != nullptr && !input_closed) {
      input_closed = true;
      pipe->CloseWrite(std::move(why));
    }
    if (worker_.joinable()) worker_.join();
  }

 private:
  absl::Mutex mu_;
  bool work_done_ ABSL_GUARDED_BY(mu_) = true;
  bool parked_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

enum MHD_Result CollectValue(void* cls, enum MHD_ValueKind, const char* key, const char* value) {
  auto* m = static_cast<std::map<std::string, std::string>*>(cls);
  if (key != nullptr) (*m)[key] = value == nullptr ? "" : value;
  return MHD_YES;
}

std::string Peer(MHD_Connection* c) {
  const MHD_ConnectionInfo* ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci == nullptr || ci->client_addr == nullptr) return "-";
  char host[INET6_ADDRSTRLEN] = "";
  const sockaddr* sa = ci->client_addr;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return "-";
}

// Whether the TLS peer presented a certificate the configured client CA issued.
bool ClientCertificateOk(MHD_Connection* c) {
  const MHD_ConnectionInfo* ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (ci == nullptr || ci->tls_session == nullptr) return false;
  auto session = static_cast<gnutls_session_t>(ci->tls_session);
  unsigned int n = 0;
  if (gnutls_certificate_get_peers(session, &n) == nullptr || n == 0) return false;
  unsigned int status = 0;
  return gnutls_certificate_verify_peers2(session, &status) == 0 && status == 0;
}

void Log(void*, const char* fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  std::string line = absl::StrCat("ocicached: http: ", absl::StripTrailingAsciiWhitespace(buf), "\n");
  (void)!write(2, line.data(), line.size());
}

}  // namespace

struct HttpServer::Impl {
  Handler* handler = nullptr;
  HttpServerOptions opts;
  std::string cert, key, ca;  // kept alive for libmicrohttpd
  Parking parking;

  enum MHD_Result Queue(MHD_Connection* c, RequestState* st, Response r) {
    MHD_Response* resp;
    if (r.file != nullptr && r.file->valid()) {
      // libmicrohttpd owns the descriptor from here and uses sendfile(2)
      // on plaintext connections.
      int fd = r.file->release();
      resp = MHD_create_response_from_fd64(static_cast<uint64_t>(r.size), fd);
      if (resp == nullptr) close(fd);
      st->sent->store(st->ex->request.method == "HEAD" ? 0 : r.size);
    } else if (r.stream) {
      auto* out = new Outgoing(std::move(r.stream), r.size);
      out->sent = st->sent;
      out->parking = &parking;
      out->conn = c;
      resp = MHD_create_response_from_callback(
          r.size < 0 ? MHD_SIZE_UNKNOWN : static_cast<uint64_t>(r.size), kSendBlock, &ReadOutgoing,
          out, &FreeOutgoing);
      if (resp == nullptr) FreeOutgoing(out);
    } else {
      st->sent->store(st->ex->request.method == "HEAD" ? 0 : static_cast<int64_t>(r.body.size()));
      resp = MHD_create_response_from_buffer(r.body.size(), r.body.data(), MHD_RESPMEM_MUST_COPY);
    }
    if (resp == nullptr) return MHD_NO;
    for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
    st->queued = true;
    st->status = r.status;
    st->note = std::move(r.note);
    enum MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
    MHD_destroy_response(resp);
    return ok;
  }

  // The first call: the request line and headers are in.
  enum MHD_Result Headers(MHD_Connection* c, const char* url, const char* method,
                          RequestState* st) {
    Request rq;
    rq.method = method;
    rq.path = url;
    rq.peer = Peer(c);
    std::map<std::string, std::string> raw;
    MHD_get_connection_values(c, MHD_HEADER_KIND, &CollectValue, &raw);
    size_t header_bytes = std::strlen(url) + std::strlen(method);
    for (auto& [k, v] : raw) {
      header_bytes += k.size() + v.size() + 4;  // ": " and CRLF
      rq.headers[absl::AsciiStrToLower(k)] = std::move(v);
    }
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, &CollectValue, &rq.query);
    std::string cl = rq.Header("content-length");
    int64_t n = -1;
    if (!cl.empty() && absl::SimpleAtoi(cl, &n) && n >= 0) rq.content_length = n;
    rq.chunked = absl::StrContains(absl::AsciiStrToLower(rq.Header("transfer-encoding")), "chunked");
    bool expects_continue = absl::EqualsIgnoreCase(rq.Header("expect"), "100-continue");
    bool has_body = rq.HasBody();
    if (!ca.empty() && !ClientCertificateOk(c)) {
      st->ex = handler->Begin(Request{});  // for End's bookkeeping
      st->ex->request = std::move(rq);
      Response r;
      r.status = 403;
      r.body = "a client certificate from the configured CA is required\n";
      r.note = "no valid client certificate";
      return Queue(c, st, std::move(r));
    }
    if (header_bytes > opts.max_header_bytes) {
      // libmicrohttpd's own bound is its memory pool (kConnectionMemory).
      st->ex = handler->Begin(Request{});
      st->ex->request = std::move(rq);
      Response r;
      r.status = 431;
      r.body = absl::StrCat("the request line and headers exceed ", opts.max_header_bytes,
                            " bytes\n");
      r.note = "headers too large";
      r.headers.emplace_back("Content-Type", "text/plain");
      return Queue(c, st, std::move(r));
    }
    // Begin never waits; Precheck may (a store lookup), so the event loop
    // tries it from local state only and leaves it to Body, on the worker,
    // when it would have needed the registry.
    st->ex = handler->Begin(std::move(rq));
    if (!TryLocal([&] { handler->Precheck(*st->ex); })) st->ex->prechecked = false;
    if (st->ex->early.has_value()) {
      // Answer now when the client waits for "100 Continue", sends no body,
      // or is refused with a large or unbounded one (libmicrohttpd then
      // closes the connection rather than read it). Otherwise read the body
      // first and drop it, so the connection stays usable: a success known
      // early (a CAS blob present) must not look like a broken upload.
      const Request& r = st->ex->request;
      bool large = r.chunked || r.content_length > opts.max_buffered_body_bytes;
      if (!has_body || expects_continue || (st->ex->early->status >= 400 && large)) {
        return Queue(c, st, std::move(*st->ex->early));
      }
      st->mode = RequestState::Mode::kDiscard;
      return MHD_YES;
    }
    const Request& r = st->ex->request;
    bool takes_body = r.method == "PUT" || r.method == "POST";
    if (takes_body && r.content_length == 0) {
      st->mode = RequestState::Mode::kBuffer;  // an empty body is a body
    } else if (!takes_body || !has_body) {
      st->mode = has_body ? RequestState::Mode::kDiscard : RequestState::Mode::kNoBody;
    } else if (r.content_length >= 0 && r.content_length <= opts.max_buffered_body_bytes) {
      st->mode = RequestState::Mode::kBuffer;
      st->buffer.reserve(static_cast<size_t>(r.content_length));
    } else {
      st->mode = RequestState::Mode::kStream;
      st->pipe = std::make_unique<oci::BoundedPipe>(kPipeBytes);
      st->StartWork([this, st] {
        oci::PipeSource source(st->pipe.get());
        st->answer = handler->Body(*st->ex, &source);
        // Whatever the handler left unread is dropped from now on.
        st->pipe->CloseRead();
      });
    }
    return MHD_YES;
  }

  // A piece of the body: takes what it can without waiting.
  enum MHD_Result Upload(MHD_Connection* c, RequestState* st, absl::string_view chunk,
                         size_t* upload_data_size) {
    if (st->received + static_cast<int64_t>(chunk.size()) > opts.max_body_bytes && !st->queued) {
      // A chunked body (or one dropped) past the limit: answer now;
      // libmicrohttpd then closes the connection instead of reading the rest.
      *upload_data_size = 0;
      st->received += static_cast<int64_t>(chunk.size());
      st->Abandon(absl::ResourceExhaustedError("the body is too large"));
      st->mode = RequestState::Mode::kDiscard;
      Response r;
      r.status = 413;
      r.body = absl::StrCat("the body is larger than ", opts.max_body_bytes, " bytes\n");
      r.note = "body too large";
      return Queue(c, st, std::move(r));
    }
    size_t taken = chunk.size();
    switch (st->mode) {
      case RequestState::Mode::kBuffer:
        st->buffer.append(chunk.data(), chunk.size());
        break;
      case RequestState::Mode::kStream: {
        auto n = st->pipe->TryWrite(chunk);
        if (!n.ok()) {
          st->mode = RequestState::Mode::kDiscard;  // the handler stopped reading
        } else {
          taken = *n;
        }
        break;
      }
      case RequestState::Mode::kNoBody:
      case RequestState::Mode::kDiscard:
        break;
    }
    st->received += static_cast<int64_t>(taken);
    *upload_data_size = chunk.size() - taken;
    if (taken < chunk.size()) {
      // The pipe is full: wait for the handler to read (libmicrohttpd hands
      // the rest over again after the resume).
      if (parking.Suspend(c)) {
        Parking* p = &parking;
        if (!st->pipe->WakeWriter([p, c] { p->Resume(c); })) parking.Resume(c);
      } else {
        // The server is stopping: the handler gets a cut body; the rest is dropped.
        st->input_closed = true;
        st->pipe->CloseWrite(absl::CancelledError("the HTTP server is stopping"));
        st->mode = RequestState::Mode::kDiscard;
        *upload_data_size = 0;
      }
    }
    return MHD_YES;
  }

  // The last call: the whole request is in.
  enum MHD_Result Complete(MHD_Connection* c, RequestState* st) {
    if (st->queued) return MHD_YES;
    if (st->mode == RequestState::Mode::kStream && !st->input_closed) {
      st->input_closed = true;
      st->pipe->CloseWrite(absl::OkStatus());
    }
    if (st->working()) {
      if (st->Park()) return MHD_YES;
      if (st->answer.has_value()) return Queue(c, st, *std::move(st->answer));
    }
    if (st->ex->early.has_value()) return Queue(c, st, std::move(*st->ex->early));
    // A read is tried on the event loop first, from local state only; when
    // it would have waited on the registry it runs on the worker instead.
    const std::string& m = st->ex->request.method;
    if ((m == "GET" || m == "HEAD") && !st->tried_local) {
      st->tried_local = true;
      std::optional<Response> r;
      if (TryLocal([&] { r = handler->Body(*st->ex, nullptr); })) return Queue(c, st, *std::move(r));
    }
    st->StartWork([this, st] {
      if (st->mode == RequestState::Mode::kBuffer) {
        oci::StringSource source(st->buffer);
        st->answer = handler->Body(*st->ex, &source);
        std::string().swap(st->buffer);
      } else {
        st->answer = handler->Body(*st->ex, nullptr);
      }
    });
    if (st->Park()) return MHD_YES;
    return Queue(c, st, *std::move(st->answer));
  }

  enum MHD_Result Access(MHD_Connection* c, const char* url, const char* method,
                         const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto* st = static_cast<RequestState*>(*con_cls);
    if (st == nullptr) {
      st = new RequestState(&parking, c);
      *con_cls = st;
      return Headers(c, url, method, st);
    }
    if (*upload_data_size > 0) {
      return Upload(c, st, absl::string_view(upload_data, *upload_data_size), upload_data_size);
    }
    return Complete(c, st);
  }

  void Completed(void** con_cls, enum MHD_RequestTerminationCode toe) {
    auto* st = static_cast<RequestState*>(*con_cls);
    if (st == nullptr) return;
    *con_cls = nullptr;
    // A body cut short: the handler's source fails, so nothing is stored.
    st->Abandon(absl::DataLossError("the client ended the request before its body did"));
    std::string note = st->note;
    int status = st->queued ? st->status : 0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
      const char* why = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timed out"
                        : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT  ? "client went away"
                        : toe == MHD_REQUEST_TERMINATED_READ_ERROR    ? "read error"
                        : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "server shutdown"
                                                                        : "ended with an error";
      note = note.empty() ? absl::StrCat("connection ", why) : absl::StrCat(note, "; connection ", why);
    }
    if (st->ex != nullptr) {
      st->ex->bytes_in = std::max(st->ex->bytes_in, st->received);
      handler->End(*st->ex, status, st->sent->load(), note);
    }
    delete st;
  }

  // Runs `fn` as a call that must not wait on a remote
  // (base::CallLimits::local_only); false when it wanted one: its result is
  // then to be dropped and the call made again where it may wait.
  template <typename F>
  static bool TryLocal(F&& fn) {
    auto wanted = std::make_shared<std::atomic<bool>>(false);
    {
      base::CallScope scope({.local_only = wanted});
      fn();
    }
    return !wanted->load();
  }
};

namespace {

enum MHD_Result AccessTrampoline(void* cls, MHD_Connection* c, const char* url, const char* method,
                                 const char* /*version*/, const char* upload_data,
                                 size_t* upload_data_size, void** con_cls) {
  return static_cast<HttpServer::Impl*>(cls)->Access(c, url, method, upload_data,
                                                     upload_data_size, con_cls);
}

// Plain connections are never corked (uncorked.h): a large body sent with
// sendfile(2) goes out as nginx sends it by default. TLS connections keep
// libmicrohttpd's corking (encryption bounds them; measured the same either
// way). The fd is registered before libmicrohttpd sends anything on it and
// forgotten before it is closed.
void ConnectionTrampoline(void*, MHD_Connection* connection, void**,
                          enum MHD_ConnectionNotificationCode code) {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (info == nullptr) return;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) NeverCork(info->connect_fd);
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) Forget(info->connect_fd);
}

void CompletedTrampoline(void* cls, MHD_Connection*, void** con_cls,
                         enum MHD_RequestTerminationCode toe) {
  static_cast<HttpServer::Impl*>(cls)->Completed(con_cls, toe);
}

// A listening socket on HOST:PORT.
absl::StatusOr<int> Listen(const std::string& addr, bool free_port_if_taken, int* port_out,
                           std::string* host_out) {
  std::string host, port;
  if (!addr.empty() && addr[0] == '[') {
    size_t end = addr.find("]:");
    if (end == std::string::npos) return absl::InvalidArgumentError("--http_listen: want [HOST]:PORT");
    host = addr.substr(1, end - 1);
    port = addr.substr(end + 2);
  } else {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) return absl::InvalidArgumentError("--http_listen: want HOST:PORT");
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http_listen ", addr, ": ", gai_strerror(rc)));
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int err = 0;
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    err = errno;
    if (err == EADDRINUSE && free_port_if_taken) {
      if (res->ai_family == AF_INET) reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_port = 0;
      if (res->ai_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_port = 0;
      err = bind(fd, res->ai_addr, res->ai_addrlen) == 0 ? 0 : errno;
    }
  }
  freeaddrinfo(res);
  if (err == 0 && ::listen(fd, 1024) != 0) err = errno;
  if (err != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", addr, ": ", strerror(err)));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *port_out = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  *host_out = host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Handler* handler,
                                                              HttpServerOptions opts) {
  bool tls = !opts.cert_chain_pem.empty();
  if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
    return absl::FailedPreconditionError("this libmicrohttpd has no TLS support");
  }
  std::unique_ptr<HttpServer> s(new HttpServer);
  s->impl_ = std::make_unique<Impl>();
  Impl& impl = *s->impl_;
  impl.handler = handler;
  impl.opts = opts;
  impl.cert = opts.cert_chain_pem;
  impl.key = opts.key_pem;
  impl.ca = opts.client_ca_pem;
  std::string host;
  auto fd = Listen(opts.listen, opts.free_port_if_taken, &s->port_, &host);
  if (!fd.ok()) return fd.status();
  unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                       MHD_USE_ERROR_LOG | MHD_USE_ITC;
  if (tls) flags |= MHD_USE_TLS;
  unsigned int timeout = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(opts.idle_timeout)));
  MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(impl.cert.c_str())},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(impl.key.c_str())},
      {impl.ca.empty() ? MHD_OPTION_END : MHD_OPTION_HTTPS_MEM_TRUST, 0,
       const_cast<char*>(impl.ca.c_str())},
      {MHD_OPTION_END, 0, nullptr},
  };
  MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, nullptr}};
  MHD_OptionItem uncork_opts[] = {
      {tls ? MHD_OPTION_END : MHD_OPTION_NOTIFY_CONNECTION,
       reinterpret_cast<intptr_t>(&ConnectionTrampoline), nullptr},
      {MHD_OPTION_END, 0, nullptr},
  };
  // One event thread is the daemon's own (libmicrohttpd warns of a pool of 1).
  MHD_OptionItem pool_opts[] = {
      {opts.event_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
       static_cast<intptr_t>(opts.event_threads), nullptr},
      {MHD_OPTION_END, 0, nullptr},
  };
  s->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &AccessTrampoline, &impl, MHD_OPTION_EXTERNAL_LOGGER, &Log,
      nullptr, MHD_OPTION_LISTEN_SOCKET, *fd,
      MHD_OPTION_NOTIFY_COMPLETED, &CompletedTrampoline, &impl, MHD_OPTION_ARRAY, uncork_opts,
      MHD_OPTION_ARRAY, pool_opts,
      MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned int>(opts.max_connections), MHD_OPTION_CONNECTION_TIMEOUT, timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_ARRAY, tls ? tls_opts : no_opts, MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    close(*fd);
    return absl::InternalError(absl::StrCat("cannot start the HTTP server on ", opts.listen,
                                            tls ? " (check the TLS certificate and key)" : ""));
  }
  s->url_ = absl::StrCat(tls ? "https://" : "http://", host.empty() ? "0.0.0.0" : host, ":",
                         s->port_);
  return s;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop(absl::Duration grace) {
  if (daemon_ == nullptr) return;
  MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  absl::Time until = absl::Now() + grace;
  while (absl::Now() < until) {
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    if (info == nullptr || info->num_connections == 0) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  // Work still running ends now (its scope check fails); libmicrohttpd must
  // not stop while a connection waits for it, suspended.
  impl_->parking.BeginStop();
  while (!impl_->parking.AwaitNone(absl::Now() + absl::Seconds(10))) {
    std::string line = "ocicached: http: stopping: waiting for requests still at work\n";
    (void)!write(2, line.data(), line.size());
  }
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace ocicache::httpcache
