#include "test/harness/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ocicache::harness {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Upload {
  absl::string_view data;
  size_t pos = 0;
};

size_t ReadBody(char* buf, size_t size, size_t n, void* user) {
  auto* up = static_cast<Upload*>(user);
  size_t take = std::min(size * n, up->data.size() - up->pos);
  std::memcpy(buf, up->data.data() + up->pos, take);
  up->pos += take;
  return take;
}

// Lets curl rewind the body: a request on a reused keep-alive connection that
// the server closed meanwhile is sent again on a new one, as every real client
// does (without this, curl fails with CURLE_SEND_FAIL_REWIND).
int SeekBody(void* user, curl_off_t offset, int origin) {
  auto* up = static_cast<Upload*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > up->data.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  up->pos = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t WriteBody(char* buf, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(buf, size * n);
  return size * n;
}

size_t WriteHeader(char* buf, size_t size, size_t n, void* user) {
  auto* reply = static_cast<HttpReply*>(user);
  auto* headers = &reply->headers;
  absl::string_view line(buf, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    headers->clear();  // A new (possibly final, after 100 Continue) response starts.
    if (absl::StrContains(line, " 100 ")) reply->got_100_continue = true;
  } else if (size_t colon = line.find(':'); colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    auto [it, inserted] = headers->emplace(name, value);
    if (!inserted) absl::StrAppend(&it->second, ", ", value);
  }
  return size * n;
}

}  // namespace

std::string HttpReply::header(absl::string_view name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? std::string() : it->second;
}

HttpClient::HttpClient() {
  GlobalInit();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

absl::StatusOr<HttpReply> HttpClient::Do(const HttpCall& call) {
  CURL* c = static_cast<CURL*>(curl_);
  if (c == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_easy_reset(c);  // Keeps the connection cache.
  HttpReply reply;
  Upload upload{call.body};
  curl_slist* headers = nullptr;
  for (const std::string& h : call.headers) headers = curl_slist_append(headers, h.c_str());
  if (!call.expect_continue) headers = curl_slist_append(headers, "Expect:");

  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(call.timeout_ms));
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");  // Loopback only: never a proxy from the env.
  if (!call.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, call.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &reply);
  if (!call.user.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, call.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, call.password.c_str());
  }
  if (call.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (call.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (call.method == "DELETE") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
  } else {
    // An "upload" with the method name replaced: one code path for PUT/POST/PATCH,
    // with or without chunked framing.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &upload);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, SeekBody);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &upload);
    if (!call.chunked) {
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
    }
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    std::string msg = absl::StrCat(call.method, " ", call.url, ": ", curl_easy_strerror(rc),
                                   " (curl error ", static_cast<int>(rc), ")");
    if (rc == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(msg);
    return absl::UnavailableError(msg);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  long connects = 0;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
  reply.reused_connection = connects == 0;
  return reply;
}

absl::StatusOr<HttpReply> HttpDo(const HttpCall& call) {
  HttpClient client;
  return client.Do(call);
}

}  // namespace ocicache::harness
