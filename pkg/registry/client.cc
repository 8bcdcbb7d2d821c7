// The registry client: one function per distribution-spec step, over
//   Transport      one HTTP exchange (transport.h)
//   Authenticator  Basic and Bearer tokens (auth.h)
//   Send           auth, retries with backoff, and errors, for every request (below)
#include "pkg/registry/client.h"

#include "pkg/oci/hasher.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "pkg/base/call_scope.h"
#include "pkg/registry/auth.h"
#include "pkg/registry/errors.h"
#include "pkg/registry/retry.h"
#include "pkg/registry/transport.h"

namespace ocicache::registry {

using internal::Annotate;
using internal::HttpError;
using internal::HttpHeaders;
using internal::HttpRequest;
using internal::HttpResponse;
using internal::MakeError;
using internal::PullScope;
using internal::PushScope;
using internal::UrlEncode;

namespace {

constexpr char kManifestAccept[] =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

bool IsLoopback(absl::string_view registry) {
  absl::string_view host = registry;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(0, host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  return host == "localhost" || absl::StartsWith(host, "127.") || host == "[::1]";
}

// Adds "key=value" to a URL that may already have a query.
std::string AddQuery(absl::string_view url, absl::string_view param) {
  return absl::StrCat(url, url.find('?') == absl::string_view::npos ? "?" : "&", param);
}

// "application/json; charset=utf-8" -> "application/json".
std::string MediaTypeOf(absl::string_view content_type) {
  return std::string(absl::StripAsciiWhitespace(content_type.substr(0, content_type.find(';'))));
}

// The "next" target of a Link header: `<url>; rel="next"` (several links may be
// comma-separated).
std::optional<std::string> NextLink(absl::string_view link) {
  for (absl::string_view part : absl::StrSplit(link, ',')) {
    size_t lt = part.find('<'), gt = part.find('>');
    if (lt == absl::string_view::npos || gt == absl::string_view::npos || gt < lt) continue;
    std::string params = absl::AsciiStrToLower(part.substr(gt + 1));
    params.erase(std::remove(params.begin(), params.end(), ' '), params.end());
    if (absl::StrContains(params, "rel=\"next\"") || absl::StrContains(params, "rel=next")) {
      return std::string(part.substr(lt + 1, gt - lt - 1));
    }
  }
  return std::nullopt;
}

absl::Status ValidateRepo(absl::string_view repo) {
  if (IsValidRepositoryName(repo)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("invalid repository name \"", repo, "\""));
}

// "repo:tag" or "repo@sha256:...", for messages.
std::string RefString(absl::string_view repo, absl::string_view reference) {
  return absl::StrCat(repo, absl::StrContains(reference, ":") ? "@" : ":", reference);
}

// A digest header, if present and well formed.
std::optional<oci::Digest> DigestHeader(const HttpHeaders& h) {
  std::optional<std::string> v = h.Get("docker-content-digest");
  if (!v) return std::nullopt;
  absl::StatusOr<oci::Digest> d = oci::Digest::Parse(*v);
  if (!d.ok()) return std::nullopt;
  return *d;
}

std::optional<int64_t> ContentLength(const HttpHeaders& h) {
  std::optional<std::string> v = h.Get("content-length");
  int64_t n;
  if (!v || !absl::SimpleAtoi(*v, &n) || n < 0) return std::nullopt;
  return n;
}

// A server's answer to plain HTTP on its TLS port: Go's net/http (distribution, Harbor,
// Zot) says "Client sent an HTTP request to an HTTPS server.", nginx "The plain HTTP
// request was sent to HTTPS port", both with 400.
bool IsHttpOnHttpsPort(const HttpRequest& req, const HttpResponse& r) {
  return r.status == 400 && absl::StartsWith(req.url, "http://") &&
         (absl::StrContains(r.body, "HTTP request to an HTTPS server") ||
          absl::StrContains(r.body, "plain HTTP request was sent to HTTPS port"));
}

absl::Status WithSuffix(const absl::Status& s, absl::string_view suffix) {
  absl::Status out(s.code(), absl::StrCat(s.message(), suffix));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& p) { out.SetPayload(url, p); });
  return out;
}

// Reads from a ByteSource, counting what passes.
class CountingSource : public oci::ByteSource {
 public:
  explicit CountingSource(oci::ByteSource& src) : src_(src) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    absl::StatusOr<size_t> r = src_.Read(buf, n);
    if (r.ok()) size_ += static_cast<int64_t>(*r);
    return r;
  }
  int64_t size() const { return size_; }

 private:
  oci::ByteSource& src_;
  int64_t size_ = 0;
};

// Receives a blob over one or more attempts (later ones with Range), hands each
// byte to the caller's sink once, and hashes the blob when it saw it from byte 0.
class BlobReceiver : public oci::ByteSink {
 public:
  // `end`: one past the last byte wanted (exact range), or -1 for the blob's end.
  BlobReceiver(oci::ByteSink& out, int64_t offset, int64_t expected_size, int64_t end = -1)
      : out_(out), delivered_(offset), expected_size_(expected_size), end_(end) {
    if (offset == 0 && end < 0 && !out.ChecksEveryByte()) {
      sha_ = std::make_unique<oci::PipelinedSha256>();
    }
  }

  // Returned by Write once an exact range is complete and the registry sends on
  // (it ignored the Range): the transfer stops there, successfully.
  static bool IsRangeDone(const absl::Status& s) {
    return absl::IsCancelled(s) && s.GetPayload(kRangeDonePayload).has_value();
  }
  bool range_complete() const { return end_ >= 0 && delivered_ == end_; }

  // The Range header for the next attempt, if any.
  std::optional<std::string> RangeHeader() const {
    if (end_ >= 0) return absl::StrCat("Range: bytes=", delivered_, "-", end_ - 1);
    if (delivered_ == 0) return std::nullopt;
    return absl::StrCat("Range: bytes=", delivered_, "-");
  }

  absl::Status OnHeaders(long status, const HttpHeaders& h, const oci::Digest& want) {
    if (std::optional<oci::Digest> said = DigestHeader(h); said && *said != want) {
      return absl::DataLossError(absl::StrCat("registry says digest ", said->str()));
    }
    if (status == 206) {
      // "bytes <first>-<last>/<total|*>"
      std::optional<std::string> cr = h.Get("content-range");
      int64_t first = -1;
      if (cr) {
        absl::string_view v = *cr;
        if (absl::ConsumePrefix(&v, "bytes ")) {
          (void)absl::SimpleAtoi(v.substr(0, v.find('-')), &first);
        }
      }
      if (first != delivered_) {
        return absl::DataLossError(absl::StrCat("asked for bytes from ", delivered_,
                                                ", got Content-Range \"", cr.value_or(""), "\""));
      }
      pos_ = first;
      return absl::OkStatus();
    }
    // The whole blob from byte 0 (also when a Range was ignored).
    pos_ = 0;
    if (!sha_ && delivered_ > 0 && !out_.ChecksEveryByte()) {
      sha_ = std::make_unique<oci::PipelinedSha256>();  // can verify after all
    }
    std::optional<int64_t> len = ContentLength(h);
    if (len && expected_size_ >= 0 && *len != expected_size_) {
      return absl::DataLossError(
          absl::StrCat("Content-Length is ", *len, ", expected ", expected_size_, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::Status Write(absl::string_view chunk) override {
    if (range_complete()) {
      absl::Status done = absl::CancelledError("the range is complete");
      done.SetPayload(kRangeDonePayload, absl::Cord("1"));  // kept when annotated
      return done;
    }
    if (end_ >= 0 && pos_ + static_cast<int64_t>(chunk.size()) > end_) {
      // Only up to the range's end (a registry that ignored the Range).
      chunk = chunk.substr(0, static_cast<size_t>(std::max<int64_t>(0, end_ - pos_)));
    }
    const int64_t n = static_cast<int64_t>(chunk.size());
    const int64_t end = pos_ + n;
    if (expected_size_ >= 0 && end > expected_size_) {
      return absl::DataLossError(absl::StrCat("more than the expected ", expected_size_, " bytes"));
    }
    if (sha_ && end > sha_->size() && pos_ <= sha_->size()) {
      sha_->Update(chunk.substr(sha_->size() - pos_));
    }
    if (end > delivered_ && pos_ <= delivered_) {
      absl::Status s = out_.Write(chunk.substr(delivered_ - pos_));
      if (!s.ok()) return s;
      delivered_ = end;
    }
    pos_ = end;
    return absl::OkStatus();
  }

  // After the last attempt succeeded: size and (if hashed from 0) digest.
  absl::Status Verify(const oci::Digest& want) {
    if (end_ >= 0) {
      if (delivered_ == end_) return absl::OkStatus();
      return absl::DataLossError(absl::StrCat("the range ends at ", end_, ", got bytes up to ",
                                              delivered_));
    }
    if (expected_size_ >= 0 && delivered_ != expected_size_) {
      return absl::DataLossError(
          absl::StrCat("got ", delivered_, " bytes, expected ", expected_size_));
    }
    if (sha_ && sha_->size() == delivered_) {
      oci::Digest got = sha_->Finish();
      sha_.reset();
      if (got != want) {
        return absl::DataLossError(absl::StrCat("content has digest ", got.str()));
      }
    }
    return absl::OkStatus();
  }

 private:
  static constexpr char kRangeDonePayload[] = "ocicache.registry/range-done";
  oci::ByteSink& out_;
  int64_t delivered_;     // blob offset up to which `out_` has the bytes
  int64_t pos_ = 0;       // blob offset of the next incoming byte
  const int64_t expected_size_;
  const int64_t end_;     // exact range end (exclusive), or -1
  std::unique_ptr<oci::PipelinedSha256> sha_;  // over [0, sha_->size())
};

// Waits `delay` before a retry, unless the call this works for
// (base::CallScope) would be over by then or is already: then false, at once.
bool SleepBeforeRetry(absl::Duration delay) {
  const base::CallScope* scope = base::CallScope::Current();
  if (scope != nullptr && (absl::Now() + delay >= scope->end() || !scope->Check().ok() ||
                           scope->local_only())) {
    return false;
  }
  absl::SleepFor(delay);
  return true;
}

}  // namespace

struct Client::Impl {
  // How Send treats one request.
  struct SendOptions {
    // Retry temporary failures (the request can be sent again as is).
    bool retry = true;
    // Send again after a 401 with fresh credentials (nothing was consumed).
    bool retry_auth = true;
    // Add an Authorization header (false for the ping and the token realm).
    bool authenticate = true;
    // Statuses that are success; empty = return any response.
    std::vector<long> ok = {200};
    // Extra headers computed before each attempt (e.g. Range).
    std::function<void(std::vector<std::string>*)> prepare;
  };

  Impl(std::string reg, ClientOptions o)
      : registry(std::move(reg)),
        opts(std::move(o)),
        base(absl::StrCat(
            (opts.insecure_http || (IsLoopback(registry) && !opts.force_tls)) ? "http" : "https",
            "://", registry)),
        transport(internal::TransportOptions{opts.ca_file, opts.user_agent,
                                             opts.connect_timeout, opts.stall_timeout,
                                             opts.http2, 16, opts.pacer}),
        auth(
            registry,
            [this](const HttpRequest& req) {
              SendOptions so;
              so.authenticate = false;
              so.ok = {};
              return Send("", req, {}, so);
            },
            [this]() -> absl::StatusOr<Credentials> {
              if (!opts.credentials.empty()) return opts.credentials;
              absl::StatusOr<Credentials> c =
                  LoadDockerCredentials(registry, opts.docker_config_dir);
              if (!c.ok()) return Annotate(c.status(), "docker credentials");
              return c;
            },
            opts.auth_cache_dir) {}

  std::string Prefix(absl::string_view op) const {
    return absl::StrCat("registry ", registry, ": ", op);
  }
  std::string Url(absl::string_view path) const { return absl::StrCat(base, path); }
  // A Location header: absolute, or relative to the registry.
  std::string Resolve(absl::string_view location) const {
    if (absl::StartsWith(location, "http://") || absl::StartsWith(location, "https://")) {
      return std::string(location);
    }
    if (absl::StartsWith(location, "/")) return absl::StrCat(base, location);
    return absl::StrCat(base, "/", location);
  }

  // Pings anonymously once to learn the challenge. Returns the ping's HTTP status,
  // or 0 when the challenge was known already.
  absl::StatusOr<long> EnsureChallenge();
  absl::StatusOr<HttpResponse> Send(absl::string_view op, HttpRequest req,
                                    std::vector<std::string> scopes, const SendOptions& so);
  absl::Duration RetryDelay(int attempt, const absl::StatusOr<HttpResponse>& r) const;

  // Upload steps.
  absl::StatusOr<std::string> StartUpload(absl::string_view op, absl::string_view repo);
  void CancelUpload(absl::string_view repo, const std::string& location);
  // One upload session. *started tells whether the session was opened (a failure
  // before that has been retried already).
  absl::StatusOr<oci::Descriptor> UploadOnce(absl::string_view op, absl::string_view repo,
                                             const oci::Digest& expected, int64_t size,
                                             oci::ByteSource& source, bool* started);

  const std::string registry;
  const ClientOptions opts;
  const std::string base;
  internal::Transport transport;
  internal::Authenticator auth;
  absl::Mutex ping_mu;
};

// Learns how the registry wants to be authenticated from an anonymous GET /v2/.
// Only needed before a request whose body cannot be sent twice (a 401 would waste
// it); every other request goes out directly and learns the challenge from its own
// 401 (see Send). Returns the ping's HTTP status, or 0 when the challenge was known.
absl::StatusOr<long> Client::Impl::EnsureChallenge() {
  if (auth.known()) return 0;
  absl::MutexLock l(&ping_mu);
  if (auth.known()) return 0;
  HttpRequest req;
  req.url = Url("/v2/");
  SendOptions so;
  so.authenticate = false;
  so.ok = {};
  absl::StatusOr<HttpResponse> r = Send("GET /v2/", req, {}, so);
  if (!r.ok()) return r.status();
  if (r->status == 401) {
    auth.SetChallenge(internal::PickChallenge(r->headers.GetAll("www-authenticate")));
  } else {
    auth.SetChallenge(std::nullopt);
  }
  return r->status;
}

absl::Duration Client::Impl::RetryDelay(int attempt, const absl::StatusOr<HttpResponse>& r) const {
  if (r.ok()) {
    std::optional<std::string> ra = r->headers.Get("retry-after");
    if (ra) {
      std::optional<absl::Duration> d = internal::ParseRetryAfter(*ra, absl::Now());
      if (d) return std::min(*d, opts.retry.max_retry_after);
    }
  }
  return internal::FullJitterBackoff(opts.retry.initial_backoff, opts.retry.max_backoff, attempt);
}

// Every request goes through here: credentials, one retry after a 401 with fresh
// ones, retries of temporary failures with backoff, and errors with context.
absl::StatusOr<HttpResponse> Client::Impl::Send(absl::string_view op, HttpRequest req,
                                                std::vector<std::string> scopes,
                                                const SendOptions& so) {
  const std::string prefix = op.empty() ? "" : Prefix(op);
  auto annotate = [&](const absl::Status& s) { return prefix.empty() ? s : Annotate(s, prefix); };
  if (so.authenticate && !so.retry_auth) {
    absl::StatusOr<long> s = EnsureChallenge();
    if (!s.ok()) return s.status();
  }
  const std::vector<std::string> base_headers = req.headers;
  const int max_attempts = std::max(1, opts.retry.max_attempts);
  bool auth_retried = false;
  int attempt = 1;
  for (;;) {
    req.headers = base_headers;
    if (so.prepare) so.prepare(&req.headers);
    std::string authz;
    if (so.authenticate) {
      absl::StatusOr<std::string> a = auth.Authorization(scopes);
      if (!a.ok()) return annotate(a.status());
      authz = *a;
      if (!authz.empty()) req.headers.push_back(absl::StrCat("Authorization: ", authz));
    }

    absl::StatusOr<HttpResponse> r = transport.Do(req);

    if (r.ok() && so.authenticate && authz.empty() && r->status != 401 && r->status < 500 &&
        !auth.known()) {
      // Answered without credentials: no need to ask how to authenticate.
      auth.NoteAnonymousOk();
    }
    if (r.ok() && r->status == 401 && so.authenticate && so.retry_auth && !auth_retried) {
      auth_retried = true;
      if (auth.OnUnauthorized(r->headers, &scopes, authz)) {
        absl::StatusOr<std::string> next = auth.Authorization(scopes);
        if (!next.ok()) return annotate(next.status());
        if (*next != authz) continue;  // not counted as an attempt
      }
    }
    if (r.ok() && r->status == 400 && req.method == "HEAD" && r->body.empty() &&
        absl::StartsWith(req.url, "http://")) {
      // A HEAD's 400 has no body saying why: a GET /v2/ tells whether this is plain
      // HTTP sent to a TLS port (the error path only; it used to be the first ping).
      HttpRequest probe;
      probe.url = Url("/v2/");
      absl::StatusOr<HttpResponse> pr = transport.Do(probe);
      if (pr.ok() && IsHttpOnHttpsPort(probe, *pr)) r = std::move(pr);
    }
    if (r.ok() && IsHttpOnHttpsPort(req, *r)) {
      // Not the registry's verdict on the request: it never read it. Neither a bad
      // request (exit 2 in the CLI) nor worth a retry.
      return MakeError(
          absl::StatusCode::kUnavailable,
          absl::StrCat(prefix.empty() ? Prefix(absl::StrCat(req.method, " ", req.url)) : prefix,
                       ": the server speaks HTTPS on this port, but plain HTTP was used",
                       !absl::StartsWith(req.url, base + "/") ? ""
                       : opts.insecure_http ? " (plain HTTP was asked for: drop --insecure)"
                                            : " (loopback registries default to plain HTTP: "
                                              "use --tls)"),
          "", /*temporary=*/false);
    }
    const bool temporary =
        r.ok() ? internal::IsRetryableHttpStatus(r->status) : IsTemporary(r.status());
    if (so.retry && temporary && attempt < max_attempts) {
      if (SleepBeforeRetry(RetryDelay(attempt, r))) {
        ++attempt;
        continue;
      }
    }
    const std::string after =
        attempt > 1 ? absl::StrCat(" (after ", attempt, " attempts)") : std::string();
    if (!r.ok()) return WithSuffix(annotate(r.status()), after);
    if (so.ok.empty() || std::count(so.ok.begin(), so.ok.end(), r->status) > 0) return r;
    return WithSuffix(HttpError(prefix, r->status, r->body), after);
  }
}

// ---------------------------------------------------------------------------
// Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(std::string registry, ClientOptions opts) {
  if (registry.empty() || registry.find_first_of("/ \t?#@") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("registry \"", registry, "\": want host[:port], without scheme or path"));
  }
  if (opts.insecure_http && opts.force_tls) {
    return absl::InvalidArgumentError(
        "plain HTTP (insecure_http) and forced TLS (force_tls) cannot both be set");
  }
  if (!opts.ca_file.empty() && access(opts.ca_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CA file ", opts.ca_file, ": ",
                                                   std::strerror(errno)));
  }
  if (opts.chunk_size <= 0) {
    return absl::InvalidArgumentError("ClientOptions.chunk_size must be positive");
  }
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(registry), std::move(opts))));
}

const std::string& Client::registry() const { return impl_->registry; }
std::string Client::base_url() const { return impl_->base; }
int64_t Client::request_count() const { return impl_->transport.request_count(); }
int64_t Client::token_count() const { return impl_->auth.tokens_fetched(); }

absl::Status Client::Ping() {
  // Anonymous at first; a 401 teaches the challenge and is answered once.
  HttpRequest req;
  req.url = impl_->Url("/v2/");
  return impl_->Send("GET /v2/", req, {}, {}).status();
}

absl::StatusOr<ManifestResponse> Client::GetManifest(absl::string_view repo,
                                                     absl::string_view reference) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  absl::StatusOr<oci::Digest> want = oci::Digest::Parse(reference);
  if (!want.ok() && !IsValidTag(reference)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid tag or digest \"", reference, "\""));
  }
  const std::string op = absl::StrCat("GET manifest ", RefString(repo, reference));
  HttpRequest req;
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/manifests/", reference));
  req.headers.push_back(kManifestAccept);
  req.follow_redirects = true;
  absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PullScope(repo)}, {});
  if (!r.ok()) return r.status();

  ManifestResponse m;
  m.bytes = std::move(r->body);
  m.digest = oci::Digest::Of(m.bytes);
  std::optional<oci::Digest> said = DigestHeader(r->headers);
  if ((said && *said != m.digest) || (want.ok() && *want != m.digest)) {
    return MakeError(absl::StatusCode::kDataLoss,
                     absl::StrCat(impl_->Prefix(op), ": body has digest ", m.digest.str(),
                                  ", expected ", (want.ok() ? *want : *said).str()),
                     "", false);
  }
  m.media_type = MediaTypeOf(r->headers.Get("content-type").value_or(""));
  if (m.media_type.empty() || m.media_type == "application/json" ||
      m.media_type == "text/plain") {
    nlohmann::json j = nlohmann::json::parse(m.bytes, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) {
      m.media_type = j["mediaType"].get<std::string>();
    }
  }
  return m;
}

absl::StatusOr<oci::Descriptor> Client::HeadManifest(absl::string_view repo,
                                                     absl::string_view reference) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  absl::StatusOr<oci::Digest> want = oci::Digest::Parse(reference);
  if (!want.ok() && !IsValidTag(reference)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid tag or digest \"", reference, "\""));
  }
  const std::string op = absl::StrCat("HEAD manifest ", RefString(repo, reference));
  HttpRequest req;
  req.method = "HEAD";
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/manifests/", reference));
  req.headers.push_back(kManifestAccept);
  req.follow_redirects = true;
  absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PullScope(repo)}, {});
  if (!r.ok()) return r.status();

  oci::Descriptor d;
  std::optional<oci::Digest> said = DigestHeader(r->headers);
  std::optional<int64_t> len = ContentLength(r->headers);
  if (said && want.ok() && *said != *want) {
    return MakeError(absl::StatusCode::kDataLoss,
                     absl::StrCat(impl_->Prefix(op), ": registry says digest ", said->str()), "",
                     false);
  }
  if (!len || (!said && !want.ok())) {
    // Not enough in the headers: fetch the manifest instead.
    absl::StatusOr<ManifestResponse> m = GetManifest(repo, reference);
    if (!m.ok()) return m.status();
    d.media_type = m->media_type;
    d.digest = m->digest;
    d.size = static_cast<int64_t>(m->bytes.size());
    return d;
  }
  d.media_type = MediaTypeOf(r->headers.Get("content-type").value_or(""));
  d.digest = said ? *said : *want;
  d.size = *len;
  return d;
}

absl::StatusOr<oci::Digest> Client::PutManifest(absl::string_view repo,
                                                absl::string_view reference,
                                                absl::string_view bytes,
                                                absl::string_view media_type) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  const oci::Digest digest = oci::Digest::Of(bytes);
  absl::StatusOr<oci::Digest> ref_digest = oci::Digest::Parse(reference);
  if (ref_digest.ok() ? *ref_digest != digest : !IsValidTag(reference)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "manifest reference \"", reference, "\" is neither a tag nor the digest ", digest.str()));
  }
  if (media_type.empty()) return absl::InvalidArgumentError("manifest media type is empty");
  const std::string op = absl::StrCat("PUT manifest ", RefString(repo, reference));
  HttpRequest req;
  req.method = "PUT";
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/manifests/", reference));
  req.headers.push_back(absl::StrCat("Content-Type: ", media_type));
  req.body = std::string(bytes);
  Impl::SendOptions so;
  so.ok = {200, 201, 204};
  absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PushScope(repo)}, so);
  if (!r.ok()) return r.status();
  std::optional<oci::Digest> said = DigestHeader(r->headers);
  if (said && *said != digest) {
    return MakeError(absl::StatusCode::kDataLoss,
                     absl::StrCat(impl_->Prefix(op), ": registry stored digest ", said->str(),
                                  ", sent ", digest.str()),
                     "", false);
  }
  return digest;
}

absl::Status Client::DeleteManifest(absl::string_view repo, const oci::Digest& digest) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  if (!digest.valid()) return absl::InvalidArgumentError("DeleteManifest: invalid digest");
  const std::string op = absl::StrCat("DELETE manifest ", repo, "@", digest.str());
  HttpRequest req;
  req.method = "DELETE";
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/manifests/", digest.str()));
  Impl::SendOptions so;
  so.ok = {200, 202, 204};
  // distribution grants DELETE to the "delete" action.
  return impl_->Send(op, std::move(req), {absl::StrCat("repository:", repo, ":delete")}, so)
      .status();
}

absl::StatusOr<std::vector<std::string>> Client::ListTags(absl::string_view repo) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  const std::string op = absl::StrCat("GET tags ", repo);
  std::vector<std::string> tags;
  std::string url = impl_->Url(absl::StrCat("/v2/", repo, "/tags/list"));
  std::vector<std::string> seen;
  for (;;) {
    HttpRequest req;
    req.url = url;
    req.headers.push_back("Accept: application/json");
    req.follow_redirects = true;
    absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PullScope(repo)}, {});
    if (!r.ok()) return r.status();
    nlohmann::json j = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return MakeError(absl::StatusCode::kUnknown,
                       absl::StrCat(impl_->Prefix(op), ": tag list is not a JSON object"), "",
                       false);
    }
    auto t = j.find("tags");
    if (t != j.end() && t->is_array()) {  // "tags": null when there are none
      for (const auto& tag : *t) {
        if (tag.is_string()) tags.push_back(tag.get<std::string>());
      }
    }
    std::optional<std::string> link = r->headers.Get("link");
    std::optional<std::string> next = link ? NextLink(*link) : std::nullopt;
    if (!next) return tags;
    url = impl_->Resolve(*next);
    if (std::find(seen.begin(), seen.end(), url) != seen.end()) {
      return MakeError(absl::StatusCode::kUnknown,
                       absl::StrCat(impl_->Prefix(op), ": Link rel=\"next\" loops"), "", false);
    }
    seen.push_back(url);
  }
}

absl::StatusOr<int64_t> Client::StatBlob(absl::string_view repo, const oci::Digest& digest) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  if (!digest.valid()) return absl::InvalidArgumentError("StatBlob: invalid digest");
  const std::string op = absl::StrCat("HEAD blob ", repo, "@", digest.str());
  HttpRequest req;
  req.method = "HEAD";
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/blobs/", digest.str()));
  req.follow_redirects = true;
  absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PullScope(repo)}, {});
  if (!r.ok()) return r.status();
  std::optional<oci::Digest> said = DigestHeader(r->headers);
  if (said && *said != digest) {
    return MakeError(absl::StatusCode::kDataLoss,
                     absl::StrCat(impl_->Prefix(op), ": registry says digest ", said->str()), "",
                     false);
  }
  std::optional<int64_t> len = ContentLength(r->headers);
  if (!len) {
    return MakeError(absl::StatusCode::kUnknown,
                     absl::StrCat(impl_->Prefix(op), ": no Content-Length"), "", false);
  }
  return *len;
}

absl::Status Client::GetBlob(absl::string_view repo, const oci::Digest& digest,
                             int64_t expected_size, oci::ByteSink& sink, int64_t offset,
                             int64_t length) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  if (!digest.valid()) return absl::InvalidArgumentError("GetBlob: invalid digest");
  if (offset < 0 || (expected_size >= 0 && offset > expected_size)) {
    return absl::InvalidArgumentError(absl::StrCat("GetBlob: bad offset ", offset));
  }
  if (length >= 0 && expected_size >= 0 && offset + length > expected_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("GetBlob: ", length, " bytes from ", offset, " pass the blob's end"));
  }
  const std::string op = absl::StrCat("GET blob ", repo, "@", digest.str());
  if (length == 0) return absl::OkStatus();
  if (expected_size >= 0 && offset == expected_size && offset > 0) return absl::OkStatus();

  BlobReceiver recv(sink, offset, expected_size, length >= 0 ? offset + length : -1);
  HttpRequest req;
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/blobs/", digest.str()));
  req.follow_redirects = true;
  req.sink = &recv;
  req.on_headers = [&recv, &digest](long status, const HttpHeaders& h) {
    return recv.OnHeaders(status, h, digest);
  };
  Impl::SendOptions so;
  so.ok = {200, 206};
  so.prepare = [&recv](std::vector<std::string>* headers) {
    // Interrupted transfers resume where they stopped.
    if (auto range = recv.RangeHeader()) headers->push_back(*range);
  };
  absl::StatusOr<HttpResponse> r = impl_->Send(op, std::move(req), {PullScope(repo)}, so);
  if (!r.ok() && !(BlobReceiver::IsRangeDone(r.status()) && recv.range_complete())) {
    return r.status();
  }
  absl::Status v = recv.Verify(digest);
  if (!v.ok()) {
    return MakeError(absl::StatusCode::kDataLoss, absl::StrCat(impl_->Prefix(op), ": ", v.message()),
                     "", false);
  }
  return absl::OkStatus();
}

// POST an empty upload session (a body on this POST is dropped by distribution).
absl::StatusOr<std::string> Client::Impl::StartUpload(absl::string_view op,
                                                      absl::string_view repo) {
  HttpRequest req;
  req.method = "POST";
  req.url = Url(absl::StrCat("/v2/", repo, "/blobs/uploads/"));
  SendOptions so;
  so.ok = {202};
  absl::StatusOr<HttpResponse> r = Send(op, std::move(req), {PushScope(repo)}, so);
  if (!r.ok()) return r.status();
  std::optional<std::string> loc = r->headers.Get("location");
  if (!loc || loc->empty()) {
    return MakeError(absl::StatusCode::kUnknown,
                     absl::StrCat(Prefix(op), ": upload session without a Location"), "", false);
  }
  return Resolve(*loc);
}

// Best effort: one DELETE of an upload session, no retries, errors ignored.
void Client::Impl::CancelUpload(absl::string_view repo, const std::string& location) {
  HttpRequest req;
  req.method = "DELETE";
  req.url = location;
  SendOptions so;
  so.retry = false;
  so.ok = {};
  (void)Send("DELETE upload", std::move(req), {PushScope(repo)}, so);
}

absl::StatusOr<oci::Descriptor> Client::Impl::UploadOnce(absl::string_view op,
                                                         absl::string_view repo,
                                                         const oci::Digest& expected,
                                                         int64_t size, oci::ByteSource& source,
                                                         bool* started) {
  absl::StatusOr<std::string> loc = StartUpload(op, repo);
  if (!loc.ok()) return loc.status();
  *started = true;
  auto fail = [&](absl::StatusCode code, absl::string_view msg) {
    CancelUpload(repo, *loc);
    return MakeError(code, absl::StrCat(Prefix(op), ": ", msg), "", false);
  };
  auto check_said = [&](const HttpHeaders& h, const oci::Digest& d) -> absl::Status {
    std::optional<oci::Digest> said = DigestHeader(h);
    if (said && *said != d) {
      return MakeError(absl::StatusCode::kDataLoss,
                       absl::StrCat(Prefix(op), ": registry stored ", said->str()), "", false);
    }
    return absl::OkStatus();
  };

  if (expected.valid() && size >= 0) {
    // Size and digest known: one PUT streaming the source. The registry hashes
    // what it receives and commits nothing unless that matches ?digest= (the
    // distribution spec's DIGEST_INVALID); hashing here as well would only
    // double the CPU of every upload, as go-containerregistry does not. What
    // the registry says it stored is still checked against the digest.
    CountingSource counted(source);
    HttpRequest req;
    req.method = "PUT";
    req.url = AddQuery(*loc, absl::StrCat("digest=", UrlEncode(expected.str())));
    req.headers.push_back("Content-Type: application/octet-stream");
    req.body_source = &counted;
    req.body_size = size;
    SendOptions so;
    so.retry = false;       // the source has been consumed
    so.retry_auth = false;
    so.ok = {201, 204};
    absl::StatusOr<HttpResponse> r = Send(op, std::move(req), {PushScope(repo)}, so);
    if (!r.ok()) {
      if (r.status().code() != absl::StatusCode::kNotFound) CancelUpload(repo, *loc);
      return r.status();
    }
    if (counted.size() != size) {
      return MakeError(absl::StatusCode::kDataLoss,
                       absl::StrCat(Prefix(op), ": the registry accepted ", counted.size(),
                                    " bytes of ", size),
                       "", false);
    }
    if (absl::Status s = check_said(r->headers, expected); !s.ok()) return s;
    return oci::Descriptor{oci::media::kOctetStream, expected, size};
  }

  // Otherwise: PATCH chunk by chunk from a bounded buffer, hashing as we go; the
  // last piece travels with the closing PUT once the digest is known.
  const size_t chunk = static_cast<size_t>(opts.chunk_size);
  oci::Sha256 sha;
  std::string buf;
  int64_t sent = 0;  // bytes accepted by PATCHes
  for (;;) {
    buf.resize(chunk);
    size_t filled = 0;
    bool eof = false;
    while (filled < chunk) {
      absl::StatusOr<size_t> n = source.Read(buf.data() + filled, chunk - filled);
      if (!n.ok()) {
        CancelUpload(repo, *loc);
        return Annotate(n.status(), Prefix(op));
      }
      if (*n == 0) {
        eof = true;
        break;
      }
      filled += *n;
    }
    buf.resize(filled);
    sha.Update(buf);
    if (size >= 0 && sha.size() > size) {
      return fail(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("source has more than the declared ", size, " bytes"));
    }
    if (eof) break;
    HttpRequest req;
    req.method = "PATCH";
    req.url = *loc;
    req.headers.push_back("Content-Type: application/octet-stream");
    req.headers.push_back(
        absl::StrCat("Content-Range: ", sent, "-", sent + static_cast<int64_t>(filled) - 1));
    req.body = std::move(buf);
    buf = std::string();
    SendOptions so;
    so.retry = false;  // the session's state after a failed PATCH is unknown
    so.ok = {202, 204};
    absl::StatusOr<HttpResponse> r = Send(op, std::move(req), {PushScope(repo)}, so);
    if (!r.ok()) {
      CancelUpload(repo, *loc);
      return r.status();
    }
    sent += static_cast<int64_t>(filled);
    // Each PATCH answers with the session's new Location; the old one is stale.
    if (std::optional<std::string> next = r->headers.Get("location"); next && !next->empty()) {
      *loc = Resolve(*next);
    }
  }
  const int64_t total = sha.size();
  const oci::Digest digest = sha.Finish();
  if (size >= 0 && total != size) {
    return fail(absl::StatusCode::kInvalidArgument,
                absl::StrCat("source has ", total, " bytes, declared ", size));
  }
  if (expected.valid() && digest != expected) {
    return fail(absl::StatusCode::kInvalidArgument,
                absl::StrCat("content has digest ", digest.str(), ", expected ", expected.str()));
  }
  HttpRequest req;
  req.method = "PUT";
  req.url = AddQuery(*loc, absl::StrCat("digest=", UrlEncode(digest.str())));
  req.headers.push_back("Content-Type: application/octet-stream");
  req.body = std::move(buf);
  SendOptions so;
  so.retry = false;
  so.ok = {201, 204};
  absl::StatusOr<HttpResponse> r = Send(op, std::move(req), {PushScope(repo)}, so);
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kNotFound) CancelUpload(repo, *loc);
    return r.status();
  }
  if (absl::Status s = check_said(r->headers, digest); !s.ok()) return s;
  return oci::Descriptor{oci::media::kOctetStream, digest, total};
}

absl::StatusOr<oci::Descriptor> Client::PutBlob(absl::string_view repo,
                                                const oci::Digest& expected, int64_t size,
                                                oci::ByteSource& source) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  if (size < -1) return absl::InvalidArgumentError(absl::StrCat("PutBlob: size ", size));
  const std::string op = expected.valid() ? absl::StrCat("PUT blob ", repo, "@", expected.str())
                                          : absl::StrCat("PUT blob ", repo);
  const int max_attempts = std::max(1, impl_->opts.retry.max_attempts);
  for (int attempt = 1;; ++attempt) {
    bool started = false;
    absl::StatusOr<oci::Descriptor> d =
        impl_->UploadOnce(op, repo, expected, size, source, &started);
    if (d.ok() || !started || !IsTemporary(d.status()) || attempt >= max_attempts) return d;
    // Start a new session from the first byte, if the source allows.
    if (!source.Rewind().ok()) return d;
    if (!SleepBeforeRetry(internal::FullJitterBackoff(impl_->opts.retry.initial_backoff,
                                                      impl_->opts.retry.max_backoff, attempt))) {
      return d;
    }
  }
}

absl::StatusOr<bool> Client::MountBlob(absl::string_view repo, const oci::Digest& digest,
                                       absl::string_view from_repo) {
  if (absl::Status s = ValidateRepo(repo); !s.ok()) return s;
  if (absl::Status s = ValidateRepo(from_repo); !s.ok()) return s;
  if (!digest.valid()) return absl::InvalidArgumentError("MountBlob: invalid digest");
  const std::string op =
      absl::StrCat("mount blob ", repo, "@", digest.str(), " from ", from_repo);
  HttpRequest req;
  req.method = "POST";
  req.url = impl_->Url(absl::StrCat("/v2/", repo, "/blobs/uploads/?mount=",
                                    UrlEncode(digest.str()), "&from=", from_repo));
  Impl::SendOptions so;
  so.ok = {201, 202};
  absl::StatusOr<HttpResponse> r =
      impl_->Send(op, std::move(req), {PushScope(repo), PullScope(from_repo)}, so);
  if (!r.ok()) return r.status();
  if (r->status == 201) return true;
  // 202: not mounted, a plain upload session was opened instead: close it.
  if (std::optional<std::string> loc = r->headers.Get("location"); loc && !loc->empty()) {
    impl_->CancelUpload(repo, impl_->Resolve(*loc));
  }
  return false;
}

}  // namespace ocicache::registry
