#include "pkg/httpcache/handler.h"


#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"
#include "pkg/oci/zstd_stream.h"

namespace ocicache::httpcache {
namespace {

// Objects as they were sent are "v1". A compressed object's config says "v2",
// which readers before it took for a miss (they would have served the zstd
// bytes as the object): v1 plus "encoding" and "size".
constexpr char kConfigFormat[] = "v1";
constexpr char kConfigFormatEncoded[] = "v2";
// The longest x-artifact-tag kept (turbo's signatures are ~60 bytes).
constexpr size_t kMaxTagBytes = 1024;

// Sets r to send the store's verified file of the blob, if it has one (a
// local tier): the bytes then never pass through this process.
bool SendFile(cache::Store& store, const oci::Digest& digest, Response* r) {
  int64_t size = 0;
  auto fd = store.OpenVerifiedBlob(digest, &size);
  if (!fd.ok()) return false;
  r->file = std::make_shared<base::UniqueFd>(*fd);
  r->size = size;
  return true;
}

// An object's config, its inlined "data" apart. The data is most of the
// config and plain base64, so it is cut out as a slice instead of going
// through the JSON parser character by character (that was a third of the
// CPU of a small GET). Sound for any valid JSON: an unescaped quote cannot
// occur inside a JSON string, so `"data":"` after '{' or ',' is a member, and
// base64 holds no quote or backslash, so the next quote ends its value. (The
// configs this server writes are flat: the first such member is the one.)
nlohmann::json ParseObjectConfig(const std::string& config, std::string* scratch,
                                 absl::string_view* data, bool* inlined) {
  *inlined = false;
  static constexpr char kMember[] = "\"data\":\"";
  constexpr size_t kMemberSize = sizeof(kMember) - 1;
  size_t pos = config.find(kMember);
  if (pos != std::string::npos && pos > 0 && (config[pos - 1] == ',' || config[pos - 1] == '{')) {
    size_t start = pos + kMemberSize;
    size_t end = config.find('"', start);
    if (end != std::string::npos && end + 1 < config.size() &&
        (config[end + 1] == '}' || config[end + 1] == ',') &&
        config.find('\\', start) > end) {
      // The rest, without the member and one comma next to it.
      std::string rest;
      if (config[pos - 1] == ',') {
        rest = config.substr(0, pos - 1) + config.substr(end + 1);
      } else {
        rest = config.substr(0, pos) + config.substr(end + (config[end + 1] == ',' ? 2 : 1));
      }
      nlohmann::json j = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && !j.contains("data")) {
        *data = absl::string_view(config).substr(start, end - start);
        *inlined = true;
        return j;
      }
    }
  }
  nlohmann::json j = nlohmann::json::parse(config, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("data") && j["data"].is_string()) {
    // Not in the form this server writes (another writer's spacing): slower, same answer.
    *scratch = j["data"].get<std::string>();
    *data = *scratch;
    *inlined = true;
  }
  return j;
}

bool IsRead(absl::string_view method) { return method == "GET" || method == "HEAD"; }

// An object's config is one this server reads ("v1", or "v2" with an encoding
// it knows and the object's size).
bool KnownObjectConfig(const nlohmann::json& c) {
  if (!c.is_object()) return false;
  const std::string v = c.value("http", "");
  if (v == kConfigFormat) return true;
  return v == kConfigFormatEncoded && c.value("encoding", "") == "zstd" && c.contains("size") &&
         c["size"].is_number_integer() && c["size"].get<int64_t>() >= 0;
}

bool Compressed(const nlohmann::json& c) { return c.value("encoding", "") == "zstd"; }

// The object's size as its client sent it.
int64_t ObjectSize(const nlohmann::json& c, const cache::Entry& e) {
  if (Compressed(c)) return c["size"].get<int64_t>();
  return e.blobs.empty() ? 0 : e.blobs[0].size;
}

// The HTTP status of a store error on a write.
int WriteStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kDataLoss:
      return 400;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
      return 503;
    default:
      return 500;
  }
}

// The status of a failed object PUT. Nx fails the whole run on a PUT status
// other than 200, 403 or 409, so an object it could not store for want of the
// registry (a registry-only server during an outage) is 403 to it: "not
// stored", which Nx takes quietly, as a build cache must during an outage.
int PutStatus(Protocol p, const absl::Status& s) {
  int code = WriteStatus(s);
  if (p == Protocol::kNx && code == 503) return 403;
  return code;
}

std::string OneLine(absl::string_view s) {
  std::string out(s.substr(0, 400));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

std::string Request::Header(absl::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  return it == headers.end() ? std::string() : it->second;
}

std::string BearerFromAuthorization(absl::string_view header) {
  header = absl::StripAsciiWhitespace(header);
  size_t space = header.find(' ');
  if (space == absl::string_view::npos) return "";
  absl::string_view scheme = header.substr(0, space);
  absl::string_view value = absl::StripAsciiWhitespace(header.substr(space + 1));
  if (absl::EqualsIgnoreCase(scheme, "Bearer")) return absl::StrCat("Bearer ", value);
  if (!absl::EqualsIgnoreCase(scheme, "Basic")) return "";
  std::string decoded;
  if (!absl::Base64Unescape(value, &decoded) && !absl::WebSafeBase64Unescape(value, &decoded)) {
    return "";
  }
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return "";
  return absl::StrCat("Bearer ", decoded.substr(colon + 1));
}

absl::StatusOr<std::string> ReadBody(oci::ByteSource& body, int64_t max) {
  std::string out;
  char buf[64 << 10];
  for (;;) {
    auto n = body.Read(buf, sizeof buf);
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    if (static_cast<int64_t>(out.size() + *n) > max) {
      return absl::ResourceExhaustedError(absl::StrCat("the body is larger than ", max, " bytes"));
    }
    out.append(buf, *n);
  }
}

Handler::Handler(cache::Store* store, reapi::Instances* instances, const rpc::TokenAuth* auth,
                 std::shared_ptr<cache::Breaker> breaker, HandlerOptions opts)
    : store_(store),
      instances_(instances),
      auth_(auth),
      breaker_(std::move(breaker)),
      opts_(std::move(opts)) {
  if (opts_.recall.max_keys > 0) {
    cache::RecallOptions ro = opts_.recall;
    if (!ro.log && opts_.access_log) ro.log = opts_.access_log;
    // The groups of every object URL space start "http:"; their index lets
    // a server started before its build prefetch them before it asks.
    ro.index = "http";
    recall_ = std::make_unique<cache::Recall>(store_, std::move(ro));
    recall_->Preload();
  }
}

Handler::~Handler() = default;

absl::Status Handler::SaveRecall(absl::Duration timeout) {
  if (recall_ == nullptr) return absl::OkStatus();
  recall_->Stop();
  base::CallScope scope({.cap = absl::Now() + timeout});
  return recall_->Save();
}

Response Handler::Error(const Exchange& ex, int status, absl::string_view message) const {
  Response r;
  r.status = status;
  r.note = OneLine(message);
  Protocol p = ex.routed.error == 0 ? ex.routed.route.protocol : Protocol::kServer;
  if (p == Protocol::kTurbo) {
    // Turborepo (2.x) parses API errors as {"error": {"code", "message"}}; a
    // 403 in that form makes it stop uploading for the run, quietly.
    nlohmann::json j = {{"error",
                         {{"code", status == 403   ? "forbidden"
                                   : status == 401 ? "unauthorized"
                                   : status == 404 ? "not_found"
                                   : status >= 500 ? "unavailable"
                                                   : "bad_request"},
                          {"message", r.note}}}};
    r.body = j.dump();
    r.headers.emplace_back("Content-Type", "application/json");
  } else {
    // Exactly "text/plain": Nx refuses a 401 with any other Content-Type
    // (a charset parameter included).
    r.body = absl::StrCat(r.note, "\n");
    r.headers.emplace_back("Content-Type", "text/plain");
  }
  return r;
}

Response Handler::Miss(const Exchange& ex, const absl::Status& why) const {
  Response r = Error(ex, 404, why.ok() ? "not found" : why.message());
  if (!why.ok() && !absl::IsNotFound(why)) {
    r.note = absl::StrCat("miss because ", absl::StatusCodeToString(why.code()), ": ", r.note);
  }
  return r;
}

std::optional<Response> Handler::Authorize(const Exchange& ex) const {
  if (auth_ == nullptr) return std::nullopt;
  rpc::Access need = ex.routed.route.writes ? rpc::Access::kWrite : rpc::Access::kRead;
  absl::Status s =
      auth_->Check(BearerFromAuthorization(ex.request.Header("authorization")), need);
  if (s.ok()) return std::nullopt;
  if (absl::IsPermissionDenied(s)) return Error(ex, 403, s.message());
  Response r = Error(ex, 401, s.message());
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ocicache\"");
  r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"ocicache\"");
  return r;
}

std::unique_ptr<Exchange> Handler::Begin(Request request) {
  auto ex = std::make_unique<Exchange>();
  ex->start = absl::Now();
  ex->request = std::move(request);
  const Request& rq = ex->request;
  ex->routed = RouteRequest(rq.method, rq.path, rq.query);
  if (ex->routed.error != 0) {
    Response r = Error(*ex, ex->routed.error, ex->routed.message);
    if (!ex->routed.allow.empty()) r.headers.emplace_back("Allow", ex->routed.allow);
    ex->early = std::move(r);
    return ex;
  }
  const Route& route = ex->routed.route;
  if (route.target != Target::kStatus) {
    if (auto denied = Authorize(*ex)) {
      ex->early = std::move(*denied);
      return ex;
    }
  }
  // The first object request of a namespace fetches what the last server
  // saw used there (cache/recall.h).
  if (recall_ != nullptr && route.target == Target::kObject) recall_->Begin(route.group);
  // A body on a GET or DELETE is odd, not wrong: the server drops it.
  bool takes_body = rq.method == "PUT" || rq.method == "POST";
  if (takes_body) {
    if (rq.content_length < 0 && !rq.chunked) {
      ex->early = Error(*ex, 411, "a body needs Content-Length or chunked transfer encoding");
      return ex;
    }
    int64_t max = (route.target == Target::kObject || route.target == Target::kCasBlob)
                      ? opts_.max_body_bytes
                      : opts_.max_message_bytes;
    if (rq.content_length > max) {
      ex->early = Error(*ex, 413, absl::StrCat("the body (", rq.content_length,
                                               " bytes) is larger than the limit of ", max));
      return ex;
    }
  }
  return ex;
}

void Handler::Precheck(Exchange& ex) {
  ex.prechecked = true;
  if (ex.early.has_value()) return;
  const Request& rq = ex.request;
  const Route& route = ex.routed.route;
  base::CallLimits limits;
  limits.cap = absl::Now() + opts_.read_timeout;
  base::CallScope scope(std::move(limits));
  // Answers known before the body: a blob the CAS has (bazel PUTs every
  // output again on each build; draining the body is all it costs), and an
  // Nx hash stored already (Nx never overwrites).
  if (rq.method == "PUT" && route.target == Target::kCasBlob && rq.content_length >= 0) {
    auto inst = instances_->Get(route.instance);
    auto digest = oci::Digest::FromHex(route.hash);
    if (inst.ok() && digest.ok()) {
      auto have = (*inst)->Exists(reapi::BlobId{*digest, rq.content_length});
      if (have.ok() && *have) {
        Response r;
        r.note = "present";
        ex.early = std::move(r);
        return;
      }
    }
  }
  if (rq.method == "PUT" && route.protocol == Protocol::kNx) {
    cache::LookupOptions lo;
    lo.touch = false;
    auto e = store_->Lookup(route.key, lo);
    if (e.ok()) {
      ex.early = Error(ex, 409, "this hash is stored already (Nx entries are never overwritten)");
      return;
    }
  }
}

Response Handler::Body(Exchange& ex, oci::ByteSource* body) {
  if (!ex.prechecked) {
    Precheck(ex);
    // The rest of the body, if any, is the server's to drop.
    if (ex.early.has_value()) return *std::move(ex.early);
  }
  base::CallLimits limits;
  limits.cap = absl::Now() + (IsRead(ex.request.method) ? opts_.read_timeout : opts_.write_timeout);
  base::CallScope scope(std::move(limits));
  return Serve(ex, body);
}

Response Handler::Serve(Exchange& ex, oci::ByteSource* body) {
  const Route& route = ex.routed.route;
  const std::string& m = ex.request.method;
  switch (route.target) {
    case Target::kStatus: {
      Response r;
      r.body = StatusJson();
      r.headers.emplace_back("Content-Type", "application/json");
      return r;
    }
    case Target::kTurboStatus: {
      Response r;
      r.body = R"({"status":"enabled"})";
      r.headers.emplace_back("Content-Type", "application/json");
      return r;
    }
    case Target::kTurboEvents: {
      // Usage events: read (so the connection stays usable) and dropped.
      if (body != nullptr) {
        auto b = ReadBody(*body, opts_.max_message_bytes);
        if (!b.ok()) return Error(ex, 413, b.status().message());
      }
      return Response{};
    }
    case Target::kTurboQuery:
      return TurboQuery(ex, body);
    case Target::kActionResult:
    case Target::kCasBlob: {
      // The REAPI instance and the digest the URL names.
      auto inst = instances_->Get(route.instance);
      if (!inst.ok()) {
        return Error(ex, absl::IsPermissionDenied(inst.status()) ? 403 : 400,
                     inst.status().message());
      }
      auto digest = oci::Digest::FromHex(route.hash);
      if (!digest.ok()) return Error(ex, 400, digest.status().message());
      if (route.target == Target::kActionResult) {
        return m == "PUT" ? PutActionResult(ex, **inst, *digest, body)
                          : GetActionResult(ex, **inst, *digest);
      }
      return m == "PUT" ? PutCasBlob(ex, **inst, *digest, body) : GetCasBlob(ex, *inst, *digest);
    }
    case Target::kObject:
      if (m == "PUT") return PutObject(ex, body);
      if (m == "DELETE") return DeleteObject(ex);
      return GetObject(ex);
  }
  return Error(ex, 500, "unrouted request");
}

Response Handler::GetObject(Exchange& ex) {
  const Route& route = ex.routed.route;
  if (recall_ != nullptr) recall_->AwaitPrefetch(route.key, absl::Now() + opts_.read_timeout);
  auto entry = store_->Lookup(route.key, cache::LookupOptions{});
  if (!entry.ok()) return Miss(ex, entry.status());
  std::string scratch;
  absl::string_view data;
  bool inlined = false;
  nlohmann::json c = ParseObjectConfig(entry->config, &scratch, &data, &inlined);
  if (!KnownObjectConfig(c)) {
    return Miss(ex, absl::DataLossError(absl::StrCat("entry ", route.key,
                                                     " is not an HTTP cache object")));
  }
  Response r;
  r.headers.emplace_back("Content-Type", oci::media::kOctetStream);
  if (route.protocol == Protocol::kTurbo) {
    if (c.contains("duration") && c["duration"].is_number_integer()) {
      r.headers.emplace_back("x-artifact-duration", std::to_string(c["duration"].get<int64_t>()));
    }
    if (c.contains("tag") && c["tag"].is_string()) {
      r.headers.emplace_back("x-artifact-tag", c["tag"].get<std::string>());
    }
  }
  if (inlined) {
    if (!absl::Base64Unescape(data, &r.body)) {
      return Miss(ex, absl::DataLossError("the inlined object is not base64"));
    }
    return r;
  }
  if (entry->blobs.empty()) return Miss(ex, absl::DataLossError("the entry names no object"));
  const oci::Descriptor blob = entry->blobs[0];
  const bool zstd = Compressed(c);
  const int64_t size = ObjectSize(c, *entry);
  if (ex.request.method == "GET" && size <= opts_.max_buffered_bytes &&
      blob.size <= opts_.max_buffered_bytes) {
    std::string stored;
    oci::StringSink sink(zstd ? &stored : &r.body);
    absl::Status s = store_->ReadBlob(blob.digest, 0, sink);
    if (s.ok() && zstd) s = oci::ZstdDecompress(stored, size, &r.body);
    if (!s.ok()) return Miss(ex, s);
    return r;
  }
  if (ex.request.method == "GET" && !zstd && SendFile(*store_, blob.digest, &r)) return r;
  cache::Store* store = store_;
  r.size = size;
  r.stream = [store, blob, zstd, size](oci::ByteSink& sink) {
    if (!zstd) return store->ReadBlob(blob.digest, 0, sink);
    oci::ZstdSink decoded(sink);
    absl::Status s = store->ReadBlob(blob.digest, 0, decoded);
    return s.ok() ? decoded.Finish(size) : s;
  };
  return r;
}

Response Handler::PutObject(Exchange& ex, oci::ByteSource* body) {
  const Route& route = ex.routed.route;
  const Request& rq = ex.request;
  nlohmann::ordered_json config = {{"http", kConfigFormat},
                                   {"protocol", ProtocolName(route.protocol)}};
  if (route.protocol == Protocol::kTurbo) {
    int64_t duration = 0;
    std::string d = rq.Header("x-artifact-duration");
    if (!d.empty()) {
      if (!absl::SimpleAtoi(d, &duration) || duration < 0) {
        return Error(ex, 400, "x-artifact-duration must be a number of milliseconds");
      }
      config["duration"] = duration;
    }
    std::string tag = rq.Header("x-artifact-tag");
    if (!tag.empty()) {
      if (tag.size() > kMaxTagBytes) return Error(ex, 400, "x-artifact-tag is too long");
      for (char c : tag) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
          return Error(ex, 400, "x-artifact-tag must be printable ASCII");
        }
      }
      config["tag"] = tag;
    }
  }
  if (body == nullptr) return Error(ex, 411, "a PUT needs a body");
  // Small objects live inside the entry: read up to the inline limit first.
  auto first = oci::ReadUpTo(*body, opts_.max_inline_bytes + 1);
  if (!first.ok()) {
    return Error(ex, 400, absl::StrCat("reading the body: ", first.status().message()));
  }
  std::string head = *std::move(first);
  const bool fits = static_cast<int64_t>(head.size()) <= opts_.max_inline_bytes;
  ex.bytes_in = static_cast<int64_t>(head.size());
  cache::Entry e;
  e.key = route.key;
  if (fits) {
    if (rq.content_length >= 0 && static_cast<int64_t>(head.size()) != rq.content_length) {
      return Error(ex, 400, "the body is shorter than its Content-Length");
    }
    config["data"] = absl::Base64Escape(head);
  } else if (opts_.zstd_level > 0 && oci::ZstdPays(head, opts_.zstd_level)) {
    oci::PrefixedSource all(std::move(head), body);
    oci::ZstdSource zstd(all, opts_.zstd_level, rq.content_length);
    auto d = store_->WriteBlob(oci::Digest(), -1, zstd);
    // The source also refuses a body that breaks its Content-Length (InvalidArgument: 400).
    if (!d.ok()) return Error(ex, PutStatus(route.protocol, d.status()), d.status().message());
    ex.bytes_in = zstd.consumed();
    ex.bytes_stored = d->size;
    config["http"] = kConfigFormatEncoded;
    config["encoding"] = "zstd";
    config["size"] = zstd.consumed();
    oci::Descriptor desc = *d;
    desc.media_type = oci::media::kZstd;
    e.blobs.push_back(std::move(desc));
  } else {
    oci::PrefixedSource all(std::move(head), body);
    auto d = store_->WriteBlob(oci::Digest(), rq.content_length, all);
    if (!d.ok()) return Error(ex, PutStatus(route.protocol, d.status()), d.status().message());
    ex.bytes_in = d->size;
    oci::Descriptor desc = *d;
    desc.media_type = oci::media::kOctetStream;
    e.blobs.push_back(std::move(desc));
  }
  e.config = config.dump();
  e.annotations["org.ocicache.http.protocol"] = ProtocolName(route.protocol);
  absl::Status s = store_->Put(e);
  if (!s.ok()) return Error(ex, PutStatus(route.protocol, s), s.message());
  Response r;
  if (route.protocol == Protocol::kTurbo) {
    r.body = R"({"urls":[]})";
    r.headers.emplace_back("Content-Type", "application/json");
  }
  return r;
}

Response Handler::DeleteObject(Exchange& ex) {
  absl::Status s = store_->Delete(ex.routed.route.key);
  if (absl::IsNotFound(s)) return Error(ex, 404, "no such object");
  if (!s.ok()) return Error(ex, WriteStatus(s), s.message());
  return Response{};
}

Response Handler::GetActionResult(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest) {
  // HTTP names an action by its hash alone: the size is unknown (-1).
  auto result = inst.GetActionResult(reapi::BlobId{digest, -1});
  if (!result.ok()) return Miss(ex, result.status());
  Response r;
  if (!result->SerializeToString(&r.body)) return Error(ex, 500, "cannot encode the ActionResult");
  r.headers.emplace_back("Content-Type", oci::media::kOctetStream);
  return r;
}

Response Handler::PutActionResult(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest,
                                  oci::ByteSource* body) {
  if (body == nullptr) return Error(ex, 411, "a PUT needs a body");
  auto bytes = ReadBody(*body, opts_.max_message_bytes);
  if (!bytes.ok()) {
    return Error(ex, absl::IsResourceExhausted(bytes.status()) ? 413 : 400,
                 bytes.status().message());
  }
  ex.bytes_in = static_cast<int64_t>(bytes->size());
  if (ex.request.content_length >= 0 &&
      static_cast<int64_t>(bytes->size()) != ex.request.content_length) {
    return Error(ex, 400, "the body is shorter than its Content-Length");
  }
  reapi::v2::ActionResult result;
  if (!result.ParseFromString(*bytes)) {
    return Error(ex, 400, "the body is not an ActionResult (a serialized "
                          "build.bazel.remote.execution.v2.ActionResult)");
  }
  auto stored = inst.UpdateActionResult(reapi::BlobId{digest, -1}, std::move(result));
  if (!stored.ok()) return Error(ex, WriteStatus(stored.status()), stored.status().message());
  return Response{};
}

Response Handler::GetCasBlob(Exchange& ex, std::shared_ptr<reapi::Instance> instance,
                             const oci::Digest& digest) {
  auto size = instance->Size(digest);  // also a blob stored packed
  if (!size.ok()) return Miss(ex, size.status());
  reapi::BlobId id{digest, *size};
  Response r;
  r.headers.emplace_back("Content-Type", oci::media::kOctetStream);
  if (ex.request.method == "GET" && *size <= opts_.max_buffered_bytes) {
    oci::StringSink sink(&r.body);
    absl::Status s = instance->Read(id, 0, sink);
    if (!s.ok()) return Miss(ex, s);
    return r;
  }
  if (ex.request.method == "GET" && SendFile(instance->store(), digest, &r)) return r;
  r.size = *size;
  r.stream = [instance, id](oci::ByteSink& sink) { return instance->Read(id, 0, sink); };
  return r;
}

Response Handler::PutCasBlob(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest,
                             oci::ByteSource* body) {
  if (body == nullptr) return Error(ex, 411, "a PUT needs a body");
  int64_t size = ex.request.content_length;
  if (size >= 0) {
    absl::Status s = inst.Write(reapi::BlobId{digest, size}, *body);
    if (!s.ok()) return Error(ex, WriteStatus(s), s.message());
    ex.bytes_in = size;
  } else {
    // Chunked: the size shows at the end.
    auto d = inst.store().WriteBlob(digest, -1, *body);
    if (!d.ok()) return Error(ex, WriteStatus(d.status()), d.status().message());
    inst.NoteExists(reapi::BlobId{digest, d->size});
    ex.bytes_in = d->size;
  }
  return Response{};
}

Response Handler::TurboQuery(Exchange& ex, oci::ByteSource* body) {
  if (body == nullptr) return Error(ex, 411, "a POST needs a body");
  auto bytes = ReadBody(*body, opts_.max_message_bytes);
  if (!bytes.ok()) return Error(ex, 413, bytes.status().message());
  nlohmann::json j = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("hashes") || !j["hashes"].is_array()) {
    return Error(ex, 400, "the body must be {\"hashes\": [...]}");
  }
  if (j["hashes"].size() > 1000) return Error(ex, 400, "at most 1000 hashes per query");
  std::string team;
  for (const char* q : {"teamId", "slug"}) {
    auto it = ex.request.query.find(q);
    if (it != ex.request.query.end() && !it->second.empty()) {
      team = it->second;
      break;
    }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& h : j["hashes"]) {
    if (!h.is_string()) return Error(ex, 400, "hashes must be strings");
    std::string hash = h.get<std::string>();
    Routed one = RouteRequest("GET", absl::StrCat("/v8/artifacts/", hash),
                              team.empty() ? std::map<std::string, std::string>{}
                                           : std::map<std::string, std::string>{{"teamId", team}});
    if (one.error != 0) return Error(ex, 400, one.message);
    cache::LookupOptions lo;
    lo.touch = false;
    auto e = store_->Lookup(one.route.key, lo);
    if (!e.ok()) {
      out[hash] = nullptr;
      continue;
    }
    nlohmann::json c = nlohmann::json::parse(e->config, nullptr, false);
    if (!KnownObjectConfig(c)) {
      out[hash] = nullptr;
      continue;
    }
    int64_t size = 0;
    if (c.contains("data") && c["data"].is_string()) {
      std::string d;
      if (absl::Base64Unescape(c["data"].get<std::string>(), &d)) size = d.size();
    } else {
      size = ObjectSize(c, *e);
    }
    nlohmann::json item = {{"size", size}};
    if (c.is_object() && c.contains("duration")) item["taskDurationMs"] = c["duration"];
    if (c.is_object() && c.contains("tag")) item["tag"] = c["tag"];
    out[hash] = item;
  }
  Response r;
  r.body = out.dump();
  r.headers.emplace_back("Content-Type", "application/json");
  return r;
}

void Handler::End(const Exchange& ex, int status, int64_t bytes_out, absl::string_view note) {
  absl::Duration took = absl::Now() - ex.start;
  Protocol p = ex.routed.error == 0 ? ex.routed.route.protocol : Protocol::kServer;
  Outcome outcome = Outcome::kNone;
  bool lookup = ex.routed.error == 0 && IsRead(ex.request.method) &&
                (ex.routed.route.target == Target::kObject ||
                 ex.routed.route.target == Target::kActionResult ||
                 ex.routed.route.target == Target::kCasBlob);
  if (lookup && status == 200) outcome = Outcome::kHit;
  if (lookup && status == 404) outcome = Outcome::kMiss;
  const int64_t stored = ex.request.method == "PUT" && status / 100 == 2
                             ? (ex.bytes_stored >= 0 ? ex.bytes_stored : ex.bytes_in)
                             : 0;
  stats_.Count(p, ex.request.method, status, outcome, ex.bytes_in, bytes_out, stored, took);
  if (recall_ != nullptr && ex.routed.error == 0 && ex.routed.route.target == Target::kObject &&
      ((outcome == Outcome::kHit) || (ex.request.method == "PUT" && status / 100 == 2))) {
    recall_->Note(ex.routed.route.group, ex.routed.route.key, ex.request.method == "PUT");
  }
  if (opts_.access_log) {
    std::string line = absl::StrCat(
        ex.request.peer.empty() ? "-" : ex.request.peer, " HTTP ", ProtocolName(p), " ",
        absl::CHexEscape(ex.request.method.substr(0, 16)), " \"",
        absl::CHexEscape(absl::string_view(ex.request.path).substr(0, 300)), "\" ", status, " ",
        absl::ToInt64Milliseconds(took), "ms ", ex.bytes_in, "B/", bytes_out, "B");
    if (!note.empty()) absl::StrAppend(&line, " ", OneLine(note));
    opts_.access_log(line);
  }
}

std::string Handler::StatusJson() const {
  nlohmann::ordered_json j;
  j["store"] = opts_.store_description;
  j["uptime_seconds"] = static_cast<int64_t>(absl::ToDoubleSeconds(absl::Now() - opts_.started));
  if (breaker_ != nullptr) j["registry_usable"] = breaker_->Usable();
  nlohmann::ordered_json protocols = nlohmann::ordered_json::object();
  for (Protocol p : {Protocol::kBazel, Protocol::kKv, Protocol::kTurbo, Protocol::kNx}) {
    Stats::Protocol c = stats_.Get(p);
    int64_t requests = 0;
    for (const auto& [k, n] : c.requests) requests += n;
    int64_t lookups = c.hits + c.misses;
    protocols[ProtocolName(p)] = {
        {"requests", requests},
        {"hits", c.hits},
        {"misses", c.misses},
        {"hit_ratio", lookups == 0 ? 0.0 : static_cast<double>(c.hits) / lookups},
        {"bytes_in", c.bytes_in},
        {"bytes_out", c.bytes_out},
        {"bytes_stored", c.bytes_stored},
    };
  }
  j["protocols"] = protocols;
  // Recall lists: this endpoint's object namespaces, and the action results
  // of the default REAPI instance (group "ac").
  std::vector<cache::Recall::GroupStats> recalled;
  if (recall_ != nullptr) recalled = recall_->Stats();
  if (auto inst = instances_ != nullptr ? instances_->Get("") : absl::NotFoundError("");
      inst.ok() && (*inst)->recall() != nullptr) {
    for (auto& g : (*inst)->recall()->Stats()) recalled.push_back(std::move(g));
  }
  if (!recalled.empty() || recall_ != nullptr) {
    nlohmann::ordered_json groups = nlohmann::ordered_json::object();
    for (const auto& g : recalled) {
      groups[g.group] = {{"listed", g.listed}, {"packed", g.packed},
                         {"prefetched", g.prefetched}, {"failed", g.failed},
                         {"done", g.done}, {"noted", g.noted}};
    }
    j["recall"] = groups;
  }
  return j.dump();
}

}  // namespace ocicache::httpcache
