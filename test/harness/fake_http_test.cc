// Tests of FakeHttpServer, driven by libcurl through HttpClient.
#include "test/harness/fake_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "test/harness/http_client.h"

namespace ocicache::harness {
namespace {

std::unique_ptr<FakeHttpServer> MustStart(FakeHttpServer::Handler h) {
  auto s = FakeHttpServer::Start(std::move(h));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

FakeResponse Echo(const FakeRequest& r) {
  return FakeResponse::Text(200, r.body).WithHeader("X-Method", r.method).WithHeader("X-Path", r.path());
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST(FakeHttpTest, GetRoundTripWithHeadersAndQuery) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->base_url(), absl::StrCat("http://127.0.0.1:", server->port()));

  HttpCall call;
  call.url = server->base_url() +
             "/token?service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository:c/d:pull";
  call.headers = {"X-Custom-Thing: Hello  "};
  auto reply = HttpDo(call);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->header("x-method"), "GET");
  EXPECT_EQ(reply->header("X-Path"), "/token");

  ASSERT_EQ(server->request_count(), 1);
  FakeRequest got = server->requests()[0];
  EXPECT_EQ(got.method, "GET");
  EXPECT_EQ(got.version, "HTTP/1.1");
  EXPECT_EQ(got.headers.count("x-custom-thing"), 1u);  // Names are lowercased.
  EXPECT_EQ(got.header("X-Custom-Thing"), "Hello");     // Values trimmed.
  EXPECT_EQ(got.query_value("service"), "reg");
  EXPECT_EQ(got.query_values("scope"),
            (std::vector<std::string>{"repository:a/b:pull,push", "repository:c/d:pull"}));
  EXPECT_EQ(got.query_value("missing"), "");
}

TEST(FakeHttpTest, ContentLengthBody) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  const std::string body = Pattern(100 * 1024 + 3);
  HttpCall call;
  call.method = "PUT";
  call.url = server->base_url() + "/v2/a/b/blobs/uploads/x?digest=sha256:00";
  call.body = body;
  auto reply = HttpDo(call);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, body);
  FakeRequest got = server->requests().at(0);
  EXPECT_EQ(got.method, "PUT");
  EXPECT_FALSE(got.chunked);
  EXPECT_EQ(got.header("content-length"), std::to_string(body.size()));
  EXPECT_EQ(got.body, body);
}

TEST(FakeHttpTest, ChunkedBody) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  const std::string body = Pattern(300 * 1024 + 17);  // Several chunks.
  HttpCall call;
  call.method = "PATCH";
  call.url = server->base_url() + "/v2/a/b/blobs/uploads/x";
  call.body = body;
  call.chunked = true;
  auto reply = HttpDo(call);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->header("x-method"), "PATCH");
  FakeRequest got = server->requests().at(0);
  EXPECT_TRUE(got.chunked);
  EXPECT_EQ(got.header("transfer-encoding"), "chunked");
  EXPECT_EQ(got.header("content-length"), "");
  EXPECT_EQ(got.body.size(), body.size());
  EXPECT_EQ(got.body, body);
}

TEST(FakeHttpTest, EmptyChunkedBody) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  HttpCall call;
  call.method = "POST";
  call.url = server->base_url() + "/v2/a/b/blobs/uploads/";
  call.chunked = true;
  auto reply = HttpDo(call);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  FakeRequest got = server->requests().at(0);
  EXPECT_EQ(got.method, "POST");
  EXPECT_TRUE(got.chunked);
  EXPECT_EQ(got.body, "");
}

TEST(FakeHttpTest, AnswersExpectContinue) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  const std::string body = Pattern(2 << 20);
  HttpCall call;
  call.method = "PUT";
  call.url = server->base_url() + "/big";
  call.body = body;
  call.expect_continue = true;
  auto reply = HttpDo(call);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_TRUE(reply->got_100_continue);
  FakeRequest got = server->requests().at(0);
  EXPECT_EQ(got.header("expect"), "100-continue");
  EXPECT_EQ(got.body, body);
}

TEST(FakeHttpTest, KeepAliveReusesOneConnection) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  HttpClient client;
  for (int i = 0; i < 3; ++i) {
    HttpCall call;
    call.method = i == 1 ? "PUT" : "GET";
    call.body = i == 1 ? "payload" : "";
    call.chunked = i == 1;
    call.url = absl::StrCat(server->base_url(), "/r", i);
    auto reply = client.Do(call);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->reused_connection, i > 0) << "request " << i;
  }
  EXPECT_EQ(server->request_count(), 3);
  EXPECT_EQ(server->connection_count(), 1);
  for (const FakeRequest& r : server->requests()) EXPECT_EQ(r.connection, 1);
  EXPECT_EQ(server->requests()[1].body, "payload");
}

TEST(FakeHttpTest, CloseAfterResponseForcesNewConnection) {
  auto server = MustStart([](const FakeRequest& r) {
    FakeResponse resp = FakeResponse::Text(200, "bye");
    resp.close_after_response = true;
    return resp;
  });
  ASSERT_NE(server, nullptr);
  HttpClient client;
  for (int i = 0; i < 2; ++i) {
    auto reply = client.Do({.url = server->base_url() + "/"});
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->body, "bye");
    EXPECT_EQ(reply->header("connection"), "close");
    EXPECT_FALSE(reply->reused_connection);
  }
  EXPECT_EQ(server->connection_count(), 2);
}

// A keep-alive connection the server drops just as the client reuses it for a
// PUT (an idle timeout firing, say): the client sends the body again on a new
// connection, as curl does for real clients, instead of failing.
TEST(FakeHttpTest, APutOnAConnectionTheServerDroppedIsSentAgain) {
  std::atomic<int> seen{0};
  auto server = MustStart([&seen](const FakeRequest& r) {
    if (++seen == 2) return FakeResponse::CloseWithoutResponse();
    return FakeResponse::Text(200, r.body);
  });
  ASSERT_NE(server, nullptr);
  HttpClient client;
  for (const std::string body : {"first", "second"}) {
    HttpCall call;
    call.method = "PUT";
    call.body = body;
    call.url = server->base_url() + "/obj";
    auto reply = client.Do(call);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->body, body);
  }
  ASSERT_EQ(server->request_count(), 3);
  EXPECT_EQ(server->requests()[1].body, "second");  // the one dropped
  EXPECT_EQ(server->requests()[2].body, "second");  // sent again, whole
  EXPECT_EQ(server->connection_count(), 2);
}

TEST(FakeHttpTest, HeadSendsLengthButNoBody) {
  auto server = MustStart([](const FakeRequest&) { return FakeResponse::Text(200, "0123456789"); });
  ASSERT_NE(server, nullptr);
  HttpClient client;
  auto head = client.Do({.method = "HEAD", .url = server->base_url() + "/blob"});
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->header("content-length"), "10");
  EXPECT_EQ(head->body, "");
  // The connection stays in sync: a GET on it gets the full body.
  auto get = client.Do({.url = server->base_url() + "/blob"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->body, "0123456789");
  EXPECT_TRUE(get->reused_connection);
}

TEST(FakeHttpTest, StatusAndCustomHeadersPassThrough) {
  auto server = MustStart([](const FakeRequest&) {
    return FakeResponse::Json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})")
        .WithHeader("WWW-Authenticate", R"(Bearer realm="http://127.0.0.1:1/token",service="s")");
  });
  ASSERT_NE(server, nullptr);
  auto reply = HttpDo({.url = server->base_url() + "/v2/"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 401);
  EXPECT_EQ(reply->header("content-type"), "application/json");
  EXPECT_EQ(reply->header("www-authenticate"), R"(Bearer realm="http://127.0.0.1:1/token",service="s")");
  EXPECT_EQ(reply->body, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
}

TEST(FakeHttpTest, CloseWithoutResponseIsATransportError) {
  auto server = MustStart([](const FakeRequest&) { return FakeResponse::CloseWithoutResponse(); });
  ASSERT_NE(server, nullptr);
  auto reply = HttpDo({.url = server->base_url() + "/"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_EQ(server->request_count(), 1);  // The request was read before closing.
}

TEST(FakeHttpTest, TruncatedBodyIsATransportError) {
  auto server = MustStart([](const FakeRequest&) {
    FakeResponse resp = FakeResponse::Text(200, std::string(100, 'x'));
    resp.body_bytes_to_send = 10;
    return resp;
  });
  ASSERT_NE(server, nullptr);
  auto reply = HttpDo({.url = server->base_url() + "/"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_NE(reply.status().message().find("curl error 18"), std::string::npos) << reply.status();
}

TEST(FakeHttpTest, StallTimesOutClientAndStopInterruptsIt) {
  auto server = MustStart([](const FakeRequest&) {
    FakeResponse resp = FakeResponse::Text(200, "late");
    resp.stall_ms = 20000;
    return resp;
  });
  ASSERT_NE(server, nullptr);
  HttpCall call{.url = server->base_url() + "/"};
  call.timeout_ms = 300;
  auto reply = HttpDo(call);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();

  // A second client is still waiting on a stalled response when we stop.
  std::thread waiter([&] {
    HttpCall c{.url = server->base_url() + "/"};
    c.timeout_ms = 30000;
    auto r = HttpDo(c);
    EXPECT_FALSE(r.ok());
  });
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (server->request_count() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(server->request_count(), 2);
  absl::Time start = absl::Now();
  server->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // Not the 20 s stall.
  waiter.join();
}

TEST(FakeHttpTest, MalformedRequestGets400) {
  auto server = MustStart(Echo);
  ASSERT_NE(server, nullptr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(server->port());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const char kGarbage[] = "this is not http\r\n\r\n";
  ASSERT_EQ(send(fd, kGarbage, sizeof(kGarbage) - 1, MSG_NOSIGNAL), ssize_t(sizeof(kGarbage) - 1));
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string answer;
  char buf[512];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) answer.append(buf, n);
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
  EXPECT_EQ(server->request_count(), 0);
}

TEST(FakeHttpTest, ConcurrentClientsAndSetHandler) {
  std::atomic<int> calls{0};
  auto server = MustStart([&](const FakeRequest&) {
    calls++;
    return FakeResponse::Text(200, "one");
  });
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      HttpClient client;
      for (int i = 0; i < 10; ++i) {
        auto r = client.Do({.url = server->base_url() + "/"});
        if (r.ok() && r->status == 200 && r->body == "one") ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(calls.load(), 40);
  EXPECT_EQ(server->request_count(), 40);
  EXPECT_EQ(server->connection_count(), 4);

  server->SetHandler([](const FakeRequest&) { return FakeResponse::Text(503, "two"); });
  auto r = HttpDo({.url = server->base_url() + "/"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "two");
}

}  // namespace
}  // namespace ocicache::harness
