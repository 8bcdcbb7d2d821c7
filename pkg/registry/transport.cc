#include "pkg/registry/transport.h"

#include <curl/curl.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/registry/errors.h"

namespace ocicache::registry::internal {
namespace {

constexpr size_t kMaxErrorBody = 64 << 10;

// curl_global_init is not thread-safe: run it once. SIGPIPE is ignored process-wide
// (a peer closing a socket must not kill the process); CURLOPT_NOSIGNAL keeps curl
// away from signals otherwise.
void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
}

// Per-request state shared with curl's callbacks.
struct Exchange {
  const HttpRequest* req;
  HttpResponse* resp;
  long status = 0;           // of the response being received
  bool headers_done = false; // the final response's headers were seen
  int64_t body_size = 0;     // request body length
  int64_t sent = 0;          // request body bytes handed to curl
  absl::Status error;        // from the source, sink or on_headers
  // The call this request works for (base::CallScope), if any; and why it ended it.
  const base::CallScope* scope = nullptr;
  absl::Status abort;
  absl::Time next_check;  // the scope is checked at most every kScopeCheckEvery
  bool timeout_from_scope = false;  // CURLOPT_TIMEOUT_MS is the scope's end
};

// curl calls the progress callback on every pass of its transfer loop; checking
// the call (a gRPC cancellation check takes a lock) that often costs more than
// the request. A tenth of a second is soon enough to stop.
constexpr absl::Duration kScopeCheckEvery = absl::Milliseconds(100);

// Called by curl as the transfer runs, and at least once a second while nothing
// moves: ends the request soon after the call it works for is cancelled or out
// of time.
int ProgressCallback(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* ex = static_cast<Exchange*>(user);
  absl::Time now = absl::Now();
  if (now < ex->next_check) return 0;
  ex->next_check = now + kScopeCheckEvery;
  absl::Status s = ex->scope->Check();
  if (s.ok()) return 0;
  ex->abort = std::move(s);
  return 1;  // CURLE_ABORTED_BY_CALLBACK
}

// A call's end as a registry error: the caller's deadline and cancellation are
// its own business (never retried); the server's cap, or a check saying the
// backend is unavailable, is an outage like a timeout (temporary).
absl::Status CallEnded(const absl::Status& why, absl::string_view url) {
  bool outage = absl::IsUnavailable(why);
  return MakeError(why.code(), absl::StrCat(why.message(), " (", url, ")"), "", outage);
}

bool Is2xx(long s) { return s >= 200 && s < 300; }

size_t HeaderCallback(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * n;
  absl::string_view line(data, len);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (1xx, a redirect, then the final one): start over.
    ex->resp->headers.entries.clear();
    ex->resp->body.clear();
    ex->headers_done = false;
    size_t sp = line.find(' ');
    ex->status = sp == absl::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1, 3)).c_str());
    return len;
  }
  absl::string_view trimmed = absl::StripAsciiWhitespace(line);
  if (trimmed.empty()) {
    // End of this response's headers.
    bool redirect = ex->req->follow_redirects && ex->status >= 300 && ex->status < 400 &&
                    ex->resp->headers.Get("location").has_value();
    if (ex->status >= 200 && !redirect) {
      ex->headers_done = true;
      if (Is2xx(ex->status) && ex->req->on_headers) {
        absl::Status s = ex->req->on_headers(ex->status, ex->resp->headers);
        if (!s.ok()) {
          ex->error = s;
          return 0;  // aborts the transfer
        }
      }
    }
    return len;
  }
  size_t colon = trimmed.find(':');
  if (colon != absl::string_view::npos) {
    ex->resp->headers.entries.emplace_back(
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(trimmed.substr(0, colon))),
        std::string(absl::StripAsciiWhitespace(trimmed.substr(colon + 1))));
  }
  return len;
}

size_t WriteCallback(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * n;
  if (ex->headers_done && Is2xx(ex->status)) {
    if (ex->req->sink != nullptr) {
      absl::Status s = ex->req->sink->Write(absl::string_view(data, len));
      if (!s.ok()) {
        ex->error = s;
        return 0;
      }
      ex->resp->sink_bytes += static_cast<int64_t>(len);
      return len;
    }
    if (ex->resp->body.size() + len > ex->req->max_body) {
      ex->error = absl::FailedPreconditionError(
          absl::StrCat("response body larger than ", ex->req->max_body, " bytes"));
      return 0;
    }
    ex->resp->body.append(data, len);
    return len;
  }
  // Error or redirect bodies: keep the start for the error message.
  size_t keep = std::min(len, kMaxErrorBody - std::min(kMaxErrorBody, ex->resp->body.size()));
  ex->resp->body.append(data, keep);
  return len;
}

size_t ReadCallback(char* buf, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const HttpRequest& req = *ex->req;
  size_t want = std::min<int64_t>(size * n, ex->body_size - ex->sent);
  if (want == 0) return 0;
  if (req.body_source == nullptr) {
    std::memcpy(buf, req.body.data() + ex->sent, want);
    ex->sent += static_cast<int64_t>(want);
    return want;
  }
  absl::StatusOr<size_t> got = req.body_source->Read(buf, want);
  if (!got.ok()) {
    ex->error = got.status();
    return CURL_READFUNC_ABORT;
  }
  if (*got == 0) {
    ex->error = absl::InvalidArgumentError(absl::StrCat(
        "request body ended after ", ex->sent, " of ", ex->body_size, " bytes"));
    return CURL_READFUNC_ABORT;
  }
  ex->sent += static_cast<int64_t>(*got);
  return *got;
}

// Rewinds the request body when curl must send it again: a request on a reused
// keep-alive connection that the server closed just then is resent on a new
// connection by curl itself, which needs the body from the start. An in-memory
// body can be; a stream only if nothing was read from it yet (else the request
// fails, CURLE_SEND_FAIL_REWIND, and the caller's retry decides).
int SeekCallback(void* user, curl_off_t offset, int origin) {
  auto* ex = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0 || offset > ex->body_size) return CURL_SEEKFUNC_CANTSEEK;
  if (ex->req->body_source != nullptr && offset != ex->sent) return CURL_SEEKFUNC_CANTSEEK;
  ex->sent = offset;
  return CURL_SEEKFUNC_OK;
}

// A TLS handshake that failed because the server does not speak TLS on that port
// (OpenSSL read an HTTP answer, or garbage, where a TLS record belongs). Retrying
// cannot help.
bool IsNotTlsServer(absl::string_view msg) {
  return absl::StrContains(msg, "wrong version number") ||
         absl::StrContains(msg, "packet length too long") ||
         absl::StrContains(msg, "record layer failure");
}

// A transfer error that is not ours to a status. Temporary: the failures a retry
// can cure (refused or reset connections, timeouts, truncated responses).
// `ca_file` is the extra CA bundle in use ("" for none), named in TLS errors.
absl::Status CurlError(CURLcode code, const char* errbuf, const std::string& ca_file) {
  std::string msg = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(code);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  for (char& ch : msg) {
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';  // One line, always.
  }
  switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
      return MakeError(
          absl::StatusCode::kUnavailable,
          absl::StrCat("TLS: the server's certificate was rejected (", msg, "); ",
                       ca_file.empty()
                           ? "if it comes from a private CA, pass that CA's certificate as the "
                             "CA file (--ca-file)"
                           : absl::StrCat("it is not signed by a CA in ", ca_file,
                                          " or the system's store, or names another host")),
          "", /*temporary=*/false);
    case CURLE_SSL_CACERT_BADFILE:
      return MakeError(absl::StatusCode::kUnavailable,
                       absl::StrCat("TLS: cannot use the CA file ", ca_file, " (", msg, ")"), "",
                       false);
    case CURLE_SSL_CONNECT_ERROR:
      if (IsNotTlsServer(msg)) {
        return MakeError(absl::StatusCode::kUnavailable,
                         absl::StrCat("TLS handshake failed (", msg,
                                      "): the server does not seem to speak TLS on this port "
                                      "(a plain HTTP registry?)"),
                         "", false);
      }
      return MakeError(absl::StatusCode::kUnavailable, absl::StrCat("TLS handshake failed: ", msg),
                       "", /*temporary=*/true);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
      return MakeError(absl::StatusCode::kUnavailable, msg, "", /*temporary=*/true);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return MakeError(absl::StatusCode::kInvalidArgument, msg, "", false);
    default:
      // TLS verification failures, protocol violations, ...: retrying will not help.
      return MakeError(absl::StatusCode::kUnavailable, msg, "", false);
  }
}

}  // namespace

std::optional<std::string> HttpHeaders::Get(absl::string_view lower_name) const {
  for (const auto& [k, v] : entries) {
    if (k == lower_name) return v;
  }
  return std::nullopt;
}

std::vector<std::string> HttpHeaders::GetAll(absl::string_view lower_name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : entries) {
    if (k == lower_name) out.push_back(v);
  }
  return out;
}

// DNS cache and TLS sessions shared by the pool's handles.
struct Transport::Share {
  CURLSH* sh = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  Share() {
    sh = curl_share_init();
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, &Lock);
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, &Unlock);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, this);
  }
  ~Share() { curl_share_cleanup(sh); }
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Share*>(user)->locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Share*>(user)->locks[data].unlock();
  }
};

Transport::Transport(TransportOptions opts) : opts_(std::move(opts)) {
  GlobalInit();
  share_ = std::make_unique<Share>();
}

Transport::~Transport() {
  absl::MutexLock l(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
  idle_.clear();
}

void* Transport::Acquire() {
  {
    absl::MutexLock l(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void Transport::Release(void* h) {
  // Reset options but keep the handle's live connections.
  curl_easy_reset(static_cast<CURL*>(h));
  absl::MutexLock l(&mu_);
  if (idle_.size() < opts_.max_idle_handles) {
    idle_.push_back(h);
    return;
  }
  curl_easy_cleanup(static_cast<CURL*>(h));
}

absl::StatusOr<HttpResponse> Transport::Do(const HttpRequest& req) {
  // The backstop of base::CallLimits::local_only: the stores keep such calls
  // off the registry themselves; anything that still gets here is refused.
  if (base::LocalOnly()) {
    return absl::UnavailableError(absl::StrCat("not asked (a call that must not wait): ", req.url));
  }
  if (opts_.pacer != nullptr) {
    const base::CallScope* scope = base::CallScope::Current();
    absl::Status turn =
        opts_.pacer->Admit(scope != nullptr ? scope->end() : absl::InfiniteFuture());
    if (absl::IsDeadlineExceeded(turn) && scope != nullptr) {
      return CallEnded(scope->TimeUp(), req.url);
    }
    if (!turn.ok()) return turn;
  }
  CURL* c = static_cast<CURL*>(Acquire());
  if (c == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  struct Releaser {
    Transport* t;
    CURL* c;
    curl_slist* headers = nullptr;
    ~Releaser() {
      curl_slist_free_all(headers);
      t->Release(c);
    }
  } releaser{this, c};

  HttpResponse resp;
  Exchange ex{&req, &resp};
  ex.scope = base::CallScope::Current();
  if (ex.scope != nullptr) {
    // Only the time here: the call's checks (cancellation, the breaker) run from
    // the progress callback, kScopeCheckEvery into the request, and a cancelled
    // caller's short request is not worth a check of its own.
    absl::Time now = absl::Now();
    if (now >= ex.scope->end()) return CallEnded(ex.scope->TimeUp(), req.url);
    ex.next_check = now + kScopeCheckEvery;
  }
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(c, CURLOPT_SHARE, share_->sh);
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_USERAGENT, opts_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(opts_.connect_timeout)));
  // Stall detection, never a total timeout: a large blob may take long.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                   std::max(1L, static_cast<long>(absl::ToInt64Seconds(opts_.stall_timeout))));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  if (ex.scope != nullptr) {
    // The call's limits: its end as a total timeout, its checks once a second.
    if (ex.scope->end() != absl::InfiniteFuture()) {
      // Rounded up, and a little past: curl's timer (its own clock, millisecond
      // steps) must not fire before the call's end, or the end of the call
      // would look like a registry that timed out (an outage).
      int64_t ms = absl::ToInt64Milliseconds(
          absl::Ceil(ex.scope->end() - absl::Now(), absl::Milliseconds(1)));
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(ms, 0) + 2));
      ex.timeout_from_scope = true;
    }
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &ProgressCallback);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &ex);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  }
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                   opts_.http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
  if (!opts_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, opts_.ca_file.c_str());
  // Loopback never goes through a proxy from the environment.
  static const std::string no_proxy = [] {
    std::string np = "localhost,127.0.0.0/8,::1";
    for (const char* v : {"no_proxy", "NO_PROXY"}) {
      const char* e = std::getenv(v);
      if (e != nullptr && *e != '\0') return absl::StrCat(e, ",", np);
    }
    return np;
  }();
  curl_easy_setopt(c, CURLOPT_NOPROXY, no_proxy.c_str());
  // A proxy's CONNECT answer is not the registry's response.
  curl_easy_setopt(c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);

  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ex);
  // Larger receive buffers: fewer callbacks and hash batches on big blobs.
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L << 10);

  const bool has_body = req.method == "PUT" || req.method == "POST" || req.method == "PATCH";
  if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (has_body) {
    // Every body, even an empty one, goes through the read callback with a known
    // Content-Length; CUSTOMREQUEST turns the upload's PUT into POST or PATCH.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(c, CURLOPT_READFUNCTION, &ReadCallback);
    curl_easy_setopt(c, CURLOPT_READDATA, &ex);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, &SeekCallback);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &ex);
    ex.body_size = req.body_source != nullptr ? req.body_size
                                              : static_cast<int64_t>(req.body.size());
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(ex.body_size));
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  if (req.follow_redirects && (req.method == "GET" || req.method == "HEAD")) {
    // curl drops our Authorization header when a redirect changes host.
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  }

  for (const std::string& h : req.headers) {
    releaser.headers = curl_slist_append(releaser.headers, h.c_str());
  }
  // No "Expect: 100-continue": it stalls a second when the server does not answer it.
  releaser.headers = curl_slist_append(releaser.headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, releaser.headers);

  CURLcode rc = curl_easy_perform(c);
  long redirects = 0;
  curl_easy_getinfo(c, CURLINFO_REDIRECT_COUNT, &redirects);
  requests_.fetch_add(1 + redirects);

  if (!ex.error.ok()) return ex.error;
  if (rc == CURLE_ABORTED_BY_CALLBACK && !ex.abort.ok()) return CallEnded(ex.abort, req.url);
  // The total timeout came from the call's end; a stall (LOW_SPEED) long
  // before it is the registry's fault.
  if (rc == CURLE_OPERATION_TIMEDOUT && ex.timeout_from_scope &&
      absl::Now() >= ex.scope->end() - absl::Milliseconds(50)) {
    return CallEnded(ex.scope->TimeUp(), req.url);
  }
  if (rc != CURLE_OK) return CurlError(rc, errbuf, opts_.ca_file);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  return resp;
}

}  // namespace ocicache::registry::internal
