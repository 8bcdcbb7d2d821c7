#include "pkg/registry/errors.h"

#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ocicache::registry {
namespace {

constexpr char kCodePayload[] = "ocicache.registry/code";
constexpr char kTemporaryPayload[] = "ocicache.registry/temporary";

// Text shortened to one line of at most `max` characters, with control characters
// (including any CR/LF) replaced, so a message never spans lines.
std::string Shorten(absl::string_view s, size_t max = 300) {
  s = absl::StripAsciiWhitespace(s);
  size_t nl = s.find_first_of("\r\n");
  bool cut = nl != absl::string_view::npos;
  s = s.substr(0, nl);
  if (s.size() > max) {
    s = s.substr(0, max);
    cut = true;
  }
  std::string out(s);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  if (cut) out += "...";
  return out;
}

std::string JsonString(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

std::string RegistryErrorCode(const absl::Status& s) {
  auto p = s.GetPayload(kCodePayload);
  return p ? std::string(*p) : std::string();
}

bool IsTemporary(const absl::Status& s) {
  if (s.ok()) return false;
  auto p = s.GetPayload(kTemporaryPayload);
  if (p) return *p == "1";
  // Statuses not made by this client: judge by code.
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

namespace internal {

absl::Status MakeError(absl::StatusCode code, absl::string_view message,
                       absl::string_view registry_code, bool temporary) {
  absl::Status s(code, message);
  if (!registry_code.empty()) s.SetPayload(kCodePayload, absl::Cord(registry_code));
  s.SetPayload(kTemporaryPayload, absl::Cord(temporary ? "1" : "0"));
  return s;
}

absl::Status Annotate(const absl::Status& s, absl::string_view prefix) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(prefix, ": ", s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

ErrorBody ParseErrorBody(absl::string_view body) {
  ErrorBody e;
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object()) {
    auto errs = j.find("errors");
    if (errs != j.end() && errs->is_array() && !errs->empty() && (*errs)[0].is_object()) {
      const nlohmann::json& first = (*errs)[0];
      e.code = Shorten(JsonString(first, "code"), 64);
      e.message = Shorten(JsonString(first, "message"));
      auto d = first.find("detail");
      if (d != first.end() && !d->is_null()) {
        e.detail = Shorten(d->is_string() ? d->get<std::string>() : d->dump(), 200);
      }
      e.more = static_cast<int>(errs->size()) - 1;
      return e;
    }
    // Token servers and some proxies: {"error": ..., "error_description": ...} or
    // {"message": ...}.
    std::string msg = JsonString(j, "error_description");
    if (msg.empty()) msg = JsonString(j, "message");
    if (msg.empty()) msg = JsonString(j, "error");
    if (!msg.empty()) {
      e.message = Shorten(msg);
      return e;
    }
  }
  e.message = Shorten(body);
  return e;
}

bool IsRetryableHttpStatus(long s) {
  return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

absl::StatusCode CodeForHttpStatus(long s) {
  switch (s) {
    case 400:
    case 413:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
    case 501:
      return absl::StatusCode::kUnimplemented;
    case 408:
      return absl::StatusCode::kUnavailable;
    case 409:
      return absl::StatusCode::kFailedPrecondition;
    case 416:
      return absl::StatusCode::kOutOfRange;
    case 429:
      return absl::StatusCode::kResourceExhausted;
  }
  if (s >= 500) return absl::StatusCode::kUnavailable;
  if (s >= 400) return absl::StatusCode::kFailedPrecondition;
  return absl::StatusCode::kUnknown;  // 1xx/2xx/3xx where an error was expected
}

absl::string_view ReasonPhrase(long s) {
  switch (s) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
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
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  return "";
}

absl::Status HttpError(absl::string_view prefix, long http_status, absl::string_view body) {
  ErrorBody e = ParseErrorBody(body);
  std::string msg = absl::StrCat(prefix, ": ", http_status);
  if (!e.code.empty()) {
    absl::StrAppend(&msg, " ", e.code);
  } else if (!ReasonPhrase(http_status).empty()) {
    absl::StrAppend(&msg, " ", ReasonPhrase(http_status));
  }
  if (!e.message.empty()) absl::StrAppend(&msg, ": ", e.message);
  if (!e.detail.empty()) absl::StrAppend(&msg, " (", e.detail, ")");
  if (e.more > 0) absl::StrAppend(&msg, " (and ", e.more, " more)");
  return MakeError(CodeForHttpStatus(http_status), msg, e.code,
                   IsRetryableHttpStatus(http_status));
}

}  // namespace internal
}  // namespace ocicache::registry
