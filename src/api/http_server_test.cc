// HttpServer through a real socket, with a tiny blocking POSIX client.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <thread>

#include "api/api.h"
#include "core/json.h"
#include "core/thread_pool.h"

namespace lakeloop::api {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Client

struct HttpReply {
  bool ok = false;  // a whole response was read
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::string ErrorCode() const {
    auto obj = ParseJsonObject(body);
    if (!obj.ok() || !obj->contains("error")) return "";
    return std::string(obj->at("error").at("code").as_string());
  }
};

class Conn {
 public:
  // `source`: the client's own address ("127.0.0.2": every 127/8 address is loopback on Linux).
  explicit Conn(uint16_t port, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (source) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &local.sin_addr);
      ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Conn() { Close(); }
  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  HttpReply Read() {
    HttpReply r;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return r;
    }
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return r;
    r.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(c));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
      pos = e + 2;
    }
    size_t len = std::stoul(r.Header("content-length").empty() ? "0" : r.Header("content-length"));
    while (buf_.size() < len) {
      if (!Fill()) return r;
    }
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    r.ok = true;
    return r;
  }

  // True when the server closed the connection (after any buffered bytes).
  bool ReadsEof() {
    if (!buf_.empty()) return false;
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool Fill() {
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

std::string Req(std::string_view method, std::string_view target, std::string_view body = "",
                std::string_view extra_headers = "") {
  std::string s = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n";
  if (extra_headers.find("Host:") == std::string_view::npos) s += "Host: localhost:8080\r\n";
  if (!body.empty() && extra_headers.find("Content-Type:") == std::string_view::npos) {
    s += "Content-Type: application/json\r\n";
  }
  s += extra_headers;
  if (!body.empty() || method == "POST")
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  s += "\r\n";
  s += body;
  return s;
}

HttpReply Call(uint16_t port, std::string_view method, std::string_view target,
               std::string_view body = "", std::string_view extra_headers = "") {
  Conn c(port);
  if (!c.connected() || !c.Send(Req(method, target, body, extra_headers))) return {};
  return c.Read();
}

std::string Bearer(std::string_view token) {
  return "Authorization: Bearer " + std::string(token) + "\r\n";
}

// ---------------------------------------------------------------------------------------------
// Server under test

class FakeVerifier : public TokenVerifier {
 public:
  Result<Role> Verify(std::string_view token) override {
    if (token == "reader-token") return Role::kReader;
    if (token == "writer-token") return Role::kWriter;
    if (token == "admin-token") return Role::kAdmin;
    return Unauthenticated("unknown token");
  }
};

// Lets a test hold a handler until it says so.
struct Gate {
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
};

RouteSpec Spec(std::string method, std::string pattern, Role role, Execution exec) {
  RouteSpec s;
  s.method = std::move(method);
  s.pattern = std::move(pattern);
  s.min_role = role;
  s.execution = exec;
  s.summary = "test route";
  return s;
}

std::string Echo(const Request& req) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("method").String(req.method).Key("path").String(req.path);
  w.Key("role").String(RoleName(req.role));
  w.Key("body_size").Uint(req.body.size());
  w.Key("remote").String(req.remote_address);
  w.Key("params").BeginObject();
  for (const auto& [k, v] : req.path_params) w.Key(k).String(v);
  w.EndObject().Key("query").BeginObject();
  for (const auto& [k, v] : req.query) w.Key(k).String(v);
  w.EndObject();
  w.Key("x_test").String(req.GetHeader("x-TEST").value_or(""));
  w.EndObject();
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions options = {}, ThreadPool* workers = nullptr) {
    Router router;
    auto add = [&](RouteSpec spec, SyncHandler h) { ASSERT_TRUE(router.AddSync(spec, h).ok()); };
    add(Spec("GET", "/api/v1/health", Role::kNone, Execution::kInline),
        [](const Request&) { return Response::Json(R"({"status":"ok"})"); });
    add(Spec("GET", "/api/v1/tables/{zone}.{table}", Role::kReader, Execution::kWorker),
        [](const Request& r) { return Response::Json(Echo(r)); });
    add(Spec("POST", "/api/v1/tables/{zone}.{table}", Role::kWriter, Execution::kWorker),
        [this](const Request& r) {
          writes_.fetch_add(1);
          return Response::Json(Echo(r));
        });
    {
      RouteSpec upload = Spec("POST", "/api/v1/upload", Role::kWriter, Execution::kWorker);
      upload.request_content_types = {"text/csv", "application/vnd.apache.parquet"};
      upload.request_schema = R"({"type":"string","format":"binary"})";
      add(upload, [this](const Request& r) {
        writes_.fetch_add(1);
        return Response::Json(Echo(r));
      });
    }
    add(Spec("POST", "/api/v1/sql", Role::kReader, Execution::kInline),
        [](const Request& r) { return Response::Json(Echo(r)); });
    add(Spec("GET", "/api/v1/throws", Role::kReader, Execution::kWorker),
        [](const Request&) -> Response { throw std::runtime_error("boom"); });
    ASSERT_TRUE(router
                    .Add(Spec("GET", "/api/v1/async", Role::kReader, Execution::kInline),
                         [this](const Request& r, Responder respond) {
                           // Completes later on another pool's thread.
                           bool ok = side_pool_.Submit(
                               [respond, &r] { respond.Send(Response::Json(Echo(r))); });
                           if (!ok) respond.SendError(Unavailable("side pool down"));
                         })
                    .ok());
    ASSERT_TRUE(router
                    .Add(Spec("GET", "/api/v1/dropped", Role::kReader, Execution::kWorker),
                         [](const Request&, Responder) {})
                    .ok());
    add(Spec("POST", "/api/v1/slow", Role::kReader, Execution::kWorker), [this](const Request&) {
      gate_.started.set_value();
      gate_.released.wait_for(10s);
      return Response::Json(R"({"slow":true})");
    });
    add(Spec("GET", "/api/v1/slow", Role::kReader, Execution::kWorker), [this](const Request&) {
      gate_.started.set_value();
      gate_.released.wait_for(10s);
      return Response::Json(R"({"slow":true})");
    });
    add(Spec("GET", "/api/v1/wait_cancel", Role::kReader, Execution::kWorker),
        [this](const Request& r) {
          cancel_started_.set_value();
          auto deadline = std::chrono::steady_clock::now() + 5s;
          // Polls the flag (what the SQL layer does) with a bound.
          while (!r.IsCancelled() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::yield();
          }
          cancel_seen_.set_value(r.IsCancelled());
          return Response::Error(Status(Code::kCancelled, "client went away"));
        });
    ASSERT_TRUE(AddOpenApiRoute(router).ok());
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(options, std::move(router), &verifier_, workers);
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (server_) server_->Stop(2s);
  }

  FakeVerifier verifier_;
  std::atomic<int> writes_{0};  // state-changing handlers that ran
  ThreadPool side_pool_{"side", 1};
  Gate gate_;
  std::promise<void> cancel_started_;
  std::promise<bool> cancel_seen_;
  std::unique_ptr<ThreadPool> test_workers_;  // outlives server_
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

TEST_F(HttpServerTest, RoutesWithPathAndQueryParams) {
  StartServer();
  HttpReply r =
      Call(port_, "GET", "/api/v1/tables/sales.orders?limit=10&q=a%20b+c", "", "X-Test: yes\r\n");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  auto body = ParseJsonObject(r.body);
  ASSERT_TRUE(body.ok()) << r.body;
  EXPECT_EQ(body->at("params").at("zone").as_string(), "sales");
  EXPECT_EQ(body->at("params").at("table").as_string(), "orders");
  EXPECT_EQ(body->at("query").at("limit").as_string(), "10");
  EXPECT_EQ(body->at("query").at("q").as_string(), "a b c");
  EXPECT_EQ(body->at("x_test").as_string(), "yes");
  EXPECT_EQ(body->at("path").as_string(), "/api/v1/tables/sales.orders");
  EXPECT_EQ(std::string(body->at("remote").as_string()).substr(0, 10), "127.0.0.1:");

  HttpReply h = Call(port_, "GET", "/api/v1/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, R"({"status":"ok"})");
}

TEST_F(HttpServerTest, NotFoundAndMethodNotAllowed) {
  StartServer();
  HttpReply nf = Call(port_, "GET", "/api/v1/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.ErrorCode(), "not_found");
  HttpReply na = Call(port_, "DELETE", "/api/v1/tables/a.b");
  EXPECT_EQ(na.status, 405);
  EXPECT_EQ(na.Header("allow"), "GET, POST");
  EXPECT_FALSE(na.ErrorCode().empty());
  HttpReply bad_query = Call(port_, "GET", "/api/v1/tables/a.b?x=%zz");
  EXPECT_EQ(bad_query.status, 400);
  EXPECT_EQ(bad_query.ErrorCode(), "malformed_request");
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  HttpServerOptions o;
  o.max_body_bytes = 1024;
  StartServer(o);
  // Announces 1 MB, sends only the first 2 KB: the reply must not wait for the rest.
  Conn c(port_);
  ASSERT_TRUE(
      c.Send("POST /api/v1/sql HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n" +
             std::string(2048, 'x')));
  HttpReply r = c.Read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.ErrorCode(), "payload_too_large");
  // Chunked, no length up front: the limit trips while reading.
  Conn c2(port_);
  std::string chunk(2000, 'y');
  ASSERT_TRUE(
      c2.Send("POST /api/v1/sql HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
              "7d0\r\n" +
              chunk + "\r\n"));
  HttpReply r2 = c2.Read();
  EXPECT_EQ(r2.status, 413);
  // Under the limit is fine.
  HttpReply ok = Call(port_, "POST", "/api/v1/sql", std::string(1000, 'z'));
  EXPECT_EQ(ok.status, 200);
}

TEST_F(HttpServerTest, MalformedRequestIs400AndServerLives) {
  StartServer();
  {
    Conn c(port_);
    ASSERT_TRUE(c.Send("GARBAGE\r\n\r\n"));
    HttpReply r = c.Read();
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.ErrorCode(), "malformed_request");
    EXPECT_TRUE(c.ReadsEof());
  }
  {
    Conn c(port_);
    ASSERT_TRUE(c.Send("GET /x HTTP/1.1\r\nBad Header\r\n\r\n"));
    EXPECT_EQ(c.Read().status, 400);
  }
  {
    Conn c(port_);  // closes mid-header: no reply, no crash
    ASSERT_TRUE(c.Send("GET /api/v1/he"));
  }
  EXPECT_EQ(Call(port_, "GET", "/api/v1/health").status, 200);
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  StartServer();
  Conn c(port_);
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/health")));
  HttpReply a = c.Read();
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/tables/z.t")));
  HttpReply b = c.Read();
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(b.status, 200);
  EXPECT_NE(b.body.find("\"table\":\"t\""), std::string::npos);
  // Connection: close is honoured.
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/health", "", "Connection: close\r\n")));
  HttpReply last = c.Read();
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.Header("connection"), "close");
  EXPECT_TRUE(c.ReadsEof());
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  Conn c(port_);
  std::string batch;
  // A worker route in the middle: the inline ones after it must still wait their turn.
  batch += Req("GET", "/api/v1/tables/a.one");
  batch += Req("GET", "/api/v1/health");
  batch += Req("POST", "/api/v1/sql", "select 1");
  batch += Req("GET", "/api/v1/tables/b.two");
  ASSERT_TRUE(c.Send(batch));
  HttpReply r1 = c.Read(), r2 = c.Read(), r3 = c.Read(), r4 = c.Read();
  ASSERT_TRUE(r1.ok && r2.ok && r3.ok && r4.ok);
  EXPECT_NE(r1.body.find("\"one\""), std::string::npos);
  EXPECT_EQ(r2.body, R"({"status":"ok"})");
  EXPECT_NE(r3.body.find("\"body_size\":8"), std::string::npos);
  EXPECT_NE(r4.body.find("\"two\""), std::string::npos);
}

TEST_F(HttpServerTest, HandlersMayCompleteFromAnyThread) {
  StartServer();
  HttpReply r = Call(port_, "GET", "/api/v1/async?x=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"x\":\"1\""), std::string::npos);
  HttpReply t = Call(port_, "GET", "/api/v1/throws");
  EXPECT_EQ(t.status, 500);
  EXPECT_EQ(t.ErrorCode(), "internal");
  HttpReply d = Call(port_, "GET", "/api/v1/dropped");
  EXPECT_EQ(d.status, 500);
  EXPECT_EQ(d.ErrorCode(), "internal");
}

TEST_F(HttpServerTest, LoopbackAuthWithoutAndWithTokens) {
  StartServer();
  EXPECT_FALSE(server_->auth_required());
  HttpReply anon = Call(port_, "POST", "/api/v1/tables/a.b", "{}");
  EXPECT_EQ(anon.status, 200);
  EXPECT_NE(anon.body.find("\"role\":\"admin\""), std::string::npos);

  HttpReply reader = Call(port_, "GET", "/api/v1/tables/a.b", "", Bearer("reader-token"));
  EXPECT_EQ(reader.status, 200);
  EXPECT_NE(reader.body.find("\"role\":\"reader\""), std::string::npos);

  HttpReply weak = Call(port_, "POST", "/api/v1/tables/a.b", "{}", Bearer("reader-token"));
  EXPECT_EQ(weak.status, 403);
  EXPECT_EQ(weak.ErrorCode(), "permission_denied");

  HttpReply writer = Call(port_, "POST", "/api/v1/tables/a.b", "{}", Bearer("writer-token"));
  EXPECT_EQ(writer.status, 200);

  HttpReply unknown = Call(port_, "GET", "/api/v1/tables/a.b", "", Bearer("nope"));
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.ErrorCode(), "unauthenticated");
  EXPECT_EQ(unknown.Header("www-authenticate"), "Bearer");

  HttpReply inline_weak = Call(port_, "POST", "/api/v1/sql", "x", Bearer("nope"));
  EXPECT_EQ(inline_weak.status, 401);
}

TEST_F(HttpServerTest, RequireAuthRejectsMissingTokens) {
  HttpServerOptions o;
  o.require_auth = true;
  StartServer(o);
  EXPECT_TRUE(server_->auth_required());
  HttpReply none = Call(port_, "GET", "/api/v1/tables/a.b");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.ErrorCode(), "unauthenticated");
  EXPECT_EQ(none.Header("www-authenticate"), "Bearer");
  HttpReply basic = Call(port_, "GET", "/api/v1/tables/a.b", "", "Authorization: Basic eDp5\r\n");
  EXPECT_EQ(basic.status, 401);
  EXPECT_EQ(Call(port_, "GET", "/api/v1/tables/a.b", "", Bearer("reader-token")).status, 200);
  EXPECT_EQ(Call(port_, "GET", "/api/v1/health").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/api/v1/openapi.json").status, 200);
}

TEST(HttpServerStartTest, NonLoopbackNeedsAVerifier) {
  HttpServerOptions o;
  o.listen = "0.0.0.0:0";
  HttpServer no_verifier(o, Router());
  EXPECT_EQ(no_verifier.Start().code(), Code::kInvalidArgument);
  FakeVerifier v;
  HttpServer with_verifier(o, Router(), &v);
  ASSERT_TRUE(with_verifier.Start().ok());
  EXPECT_TRUE(with_verifier.auth_required());
  EXPECT_NE(with_verifier.port(), 0);
  with_verifier.Stop(0ms);
  o.listen = "not-an-ip:80";
  EXPECT_EQ(HttpServer(o, Router()).Start().code(), Code::kInvalidArgument);
  o.listen = "[::1]:0";
  HttpServer v6(o, Router());
  Status s = v6.Start();  // a host without IPv6 fails with IoError, never crashes
  EXPECT_TRUE(s.ok() || s.code() == Code::kIoError) << s.ToString();
  if (s.ok()) {
    EXPECT_FALSE(v6.auth_required());
  }
}

TEST_F(HttpServerTest, CancelledFlipsWhenClientDisconnects) {
  StartServer();
  auto started = cancel_started_.get_future();
  auto seen = cancel_seen_.get_future();
  {
    Conn c(port_);
    ASSERT_TRUE(c.Send(Req("GET", "/api/v1/wait_cancel")));
    ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  }  // closes the socket
  ASSERT_EQ(seen.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(seen.get());
  EXPECT_EQ(Call(port_, "GET", "/api/v1/health").status, 200);
}

TEST_F(HttpServerTest, PipelinedBytesDoNotCancel) {
  // A request pipelined behind a running handler must neither cancel it nor get lost.
  StartServer();
  auto started = gate_.started.get_future();
  Conn c(port_);
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/slow")));
  ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/health")));
  gate_.release.set_value();
  HttpReply a = c.Read(), b = c.Read();
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, R"({"slow":true})");
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.body, R"({"status":"ok"})");
}

TEST_F(HttpServerTest, StopDrainsInFlightRequest) {
  StartServer();
  auto started = gate_.started.get_future();
  Conn c(port_);
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/slow")));
  ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  Conn idle(port_);  // an idle keep-alive connection is closed at once
  ASSERT_TRUE(idle.Send(Req("GET", "/api/v1/health")));
  ASSERT_EQ(idle.Read().status, 200);
  std::atomic<bool> stop_returned{false};
  std::thread stopper([&] {
    server_->Stop(10s);
    stop_returned = true;
  });
  EXPECT_TRUE(idle.ReadsEof());
  EXPECT_FALSE(stop_returned.load());
  gate_.release.set_value();
  HttpReply r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"slow":true})");
  EXPECT_EQ(r.Header("connection"), "close");
  stopper.join();
  EXPECT_TRUE(stop_returned.load());
  EXPECT_FALSE(Conn(port_).connected());
}

TEST_F(HttpServerTest, StopAfterGraceCancelsStragglers) {
  StartServer();
  auto started = cancel_started_.get_future();
  auto seen = cancel_seen_.get_future();
  Conn c(port_);
  ASSERT_TRUE(c.Send(Req("GET", "/api/v1/wait_cancel")));
  ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  server_->Stop(0ms);  // returns once the handler saw the flag and finished
  ASSERT_EQ(seen.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(seen.get());
}

TEST_F(HttpServerTest, FullWorkerQueueIs429) {
  test_workers_ = std::make_unique<ThreadPool>("w", 1, 1);
  ThreadPool& workers = *test_workers_;
  StartServer({}, &workers);
  auto started = gate_.started.get_future();
  Conn slow(port_);
  ASSERT_TRUE(slow.Send(Req("GET", "/api/v1/slow")));
  ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  Conn queued(port_);
  ASSERT_TRUE(queued.Send(Req("GET", "/api/v1/tables/a.b")));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (workers.queued() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(workers.queued(), 1u);
  HttpReply full = Call(port_, "GET", "/api/v1/tables/a.b");
  EXPECT_EQ(full.status, 429);
  EXPECT_EQ(full.ErrorCode(), "resource_exhausted");
  EXPECT_EQ(full.Header("retry-after"), "1");
  gate_.release.set_value();
  EXPECT_EQ(slow.Read().status, 200);
  EXPECT_EQ(queued.Read().status, 200);
}

TEST_F(HttpServerTest, SeveralIoThreadsWithStrands) {
  HttpServerOptions o;
  o.io_threads = 2;
  o.worker_threads = 2;
  StartServer(o);
  std::vector<std::thread> clients;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      Conn c(port_);
      std::string batch;
      for (int i = 0; i < 20; ++i) {
        batch += Req("GET", "/api/v1/tables/z" + std::to_string(t) + ".t" + std::to_string(i));
        batch += Req("GET", "/api/v1/async");
      }
      if (!c.Send(batch)) return;
      for (int i = 0; i < 20; ++i) {
        HttpReply a = c.Read(), b = c.Read();
        std::string want = "\"table\":\"t" + std::to_string(i) + "\"";
        if (a.status == 200 && a.body.find(want) != std::string::npos && b.status == 200) ++good;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(good.load(), 80);
  auto started = cancel_started_.get_future();
  auto seen = cancel_seen_.get_future();
  {
    Conn c(port_);
    ASSERT_TRUE(c.Send(Req("GET", "/api/v1/wait_cancel")));
    ASSERT_EQ(started.wait_for(5s), std::future_status::ready);
  }
  ASSERT_EQ(seen.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(seen.get());
}

TEST_F(HttpServerTest, OpenApiDocumentIsServed) {
  StartServer();
  HttpReply r = Call(port_, "GET", "/api/v1/openapi.json");
  ASSERT_EQ(r.status, 200);
  auto doc = ParseJsonObject(r.body);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->at("openapi").as_string(), "3.0.3");
  const auto& paths = doc->at("paths").as_object();
  EXPECT_TRUE(paths.contains("/api/v1/openapi.json"));
  EXPECT_TRUE(paths.at("/api/v1/tables/{zone}.{table}").as_object().contains("post"));
}

TEST_F(HttpServerTest, ExpectContinueIsHonoured) {
  StartServer();
  Conn c(port_);
  ASSERT_TRUE(
      c.Send("POST /api/v1/sql HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
             "Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n"));
  HttpReply cont = c.Read();
  EXPECT_EQ(cont.status, 100);
  ASSERT_TRUE(c.Send("hello"));
  HttpReply r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"body_size\":5"), std::string::npos);
}

// Response::body_file: the file is the body (Content-Length its size, bytes intact, several
// chunks), and its owner is released once written, twice on one keep-alive connection.
TEST(HttpServerFileTest, BodyFileIsStreamedAndItsOwnerReleased) {
  char tmpl[] = "/tmp/lakeloop-http-file-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  std::string content;
  for (int i = 0; content.size() < (1 << 20) + 123; ++i) content += std::to_string(i) + ",";
  struct Owner {
    std::filesystem::path path;
    ~Owner() { std::filesystem::remove(path); }
  };
  std::atomic<int> served{0};
  Router router;
  ASSERT_TRUE(router
                  .AddSync(Spec("GET", "/api/v1/file", Role::kReader, Execution::kWorker),
                           [&](const Request&) {
                             auto owner = std::make_shared<Owner>();
                             owner->path = dir / ("f" + std::to_string(served++));
                             std::ofstream(owner->path, std::ios::binary) << content;
                             Response r;
                             r.content_type = "application/octet-stream";
                             r.body_file = owner->path;
                             r.body_file_owner = owner;
                             return r;
                           })
                  .ok());
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  FakeVerifier verifier;
  HttpServer server(o, std::move(router), &verifier);
  ASSERT_TRUE(server.Start().ok());
  Conn c(server.port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c.Send(Req("GET", "/api/v1/file", "", "")));
    HttpReply r = c.Read();
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("content-length"), std::to_string(content.size()));
    EXPECT_TRUE(r.body == content) << r.body.size() << " bytes";
  }
  server.Stop(2s);
  // Both owners were released: their files are gone.
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The front door: Host, cross-site requests, content types, CORS, connection and body bounds,
// bad-token throttling.

TEST_F(HttpServerTest, HostOutsideTheAllowlistIs421) {
  HttpServerOptions o;
  o.allowed_hosts = {"lakeloop.internal", "api.example:9000"};
  StartServer(o);
  auto get = [&](std::string_view host_line) {
    return Call(port_, "GET", "/api/v1/health", "", host_line).status;
  };
  EXPECT_EQ(get("Host: localhost\r\n"), 200);
  EXPECT_EQ(get("Host: LOCALHOST:1234\r\n"), 200);
  EXPECT_EQ(get("Host: 127.0.0.1:8080\r\n"), 200);
  EXPECT_EQ(get("Host: [::1]:80\r\n"), 200);
  EXPECT_EQ(get("Host: lakeloop.internal:443\r\n"), 200);
  EXPECT_EQ(get("Host: api.example:9000\r\n"), 200);
  EXPECT_EQ(get("Host: api.example:9001\r\n"), 421);
  HttpReply evil = Call(port_, "GET", "/api/v1/health", "", "Host: evil.example:8080\r\n");
  EXPECT_EQ(evil.status, 421);
  EXPECT_EQ(evil.ErrorCode(), "misdirected_request");
  EXPECT_NE(evil.body.find("evil.example"), std::string::npos);
  EXPECT_NE(evil.body.find("server.allowed_hosts"), std::string::npos);
  // A rebinding POST is refused before its handler runs.
  HttpReply post = Call(port_, "POST", "/api/v1/tables/a.b", "{}", "Host: evil.example\r\n");
  EXPECT_EQ(post.status, 421);
  EXPECT_EQ(writes_.load(), 0);
  // No Host on HTTP/1.1: 400; HTTP/1.0 had no Host.
  Conn c(port_);
  ASSERT_TRUE(c.Send("GET /api/v1/health HTTP/1.1\r\n\r\n"));
  HttpReply missing = c.Read();
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(missing.ErrorCode(), "malformed_request");
  Conn c10(port_);
  ASSERT_TRUE(c10.Send("GET /api/v1/health HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(c10.Read().status, 200);
}

TEST_F(HttpServerTest, CrossSiteStateChangesAre403) {
  StartServer();
  std::string self = "Origin: http://localhost:" + std::to_string(port_) + "\r\n";
  auto post = [&](std::string_view headers) {
    return Call(port_, "POST", "/api/v1/tables/a.b", "{}", headers);
  };
  HttpReply evil = post("Origin: http://evil.example\r\n");
  EXPECT_EQ(evil.status, 403);
  EXPECT_EQ(evil.ErrorCode(), "permission_denied");
  EXPECT_NE(evil.body.find("evil.example"), std::string::npos);
  EXPECT_EQ(post("Origin: null\r\n").status, 403);
  EXPECT_EQ(post("Sec-Fetch-Site: cross-site\r\n").status, 403);
  EXPECT_EQ(post("Sec-Fetch-Site: same-site\r\nOrigin: http://other.localhost\r\n").status, 403);
  EXPECT_EQ(post("Origin: http://localhost:1\r\n").status, 403);  // another port
  EXPECT_EQ(post("Origin: https://localhost:" + std::to_string(port_) + "\r\n").status, 403);
  EXPECT_EQ(writes_.load(), 0);
  // Same origin, no Origin (curl), Sec-Fetch-Site same-origin: pass.
  EXPECT_EQ(post(self).status, 200);
  EXPECT_EQ(post("").status, 200);
  EXPECT_EQ(post("Sec-Fetch-Site: same-origin\r\n" + self).status, 200);
  EXPECT_EQ(writes_.load(), 3);
  // Reads are not refused (the browser keeps the answer from the page: no CORS header).
  HttpReply read = Call(port_, "GET", "/api/v1/tables/a.b", "", "Origin: http://evil.example\r\n");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.Header("access-control-allow-origin"), "");
}

TEST_F(HttpServerTest, ContentTypesAreTheRoutesOrElse415) {
  StartServer();
  auto send = [&](std::string_view target, std::string_view body, std::string_view headers) {
    Conn c(port_);
    std::string req = "POST " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n" +
                      std::string(headers) + "Content-Length: " + std::to_string(body.size()) +
                      "\r\n\r\n" + std::string(body);
    if (!c.connected() || !c.Send(req)) return HttpReply{};
    return c.Read();
  };
  for (std::string_view form : {"application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                "text/plain;charset=UTF-8"}) {
    HttpReply r = send("/api/v1/tables/a.b", "{}", "Content-Type: " + std::string(form) + "\r\n");
    EXPECT_EQ(r.status, 415) << form;
    EXPECT_EQ(r.ErrorCode(), "unsupported_media_type");
    EXPECT_NE(r.body.find("application/json"), std::string::npos);  // names the accepted type
    // Even with no body at all.
    EXPECT_EQ(send("/api/v1/tables/a.b", "", "Content-Type: " + std::string(form) + "\r\n").status,
              415);
  }
  EXPECT_EQ(send("/api/v1/tables/a.b", "{}", "").status, 415);  // a body needs a type
  EXPECT_EQ(send("/api/v1/tables/a.b", "{}", "Content-Type: text/csv\r\n").status, 415);
  EXPECT_EQ(writes_.load(), 0);
  EXPECT_EQ(send("/api/v1/tables/a.b", "{}", "Content-Type: application/json\r\n").status, 200);
  EXPECT_EQ(
      send("/api/v1/tables/a.b", "{}", "Content-Type: Application/JSON; charset=utf-8\r\n").status,
      200);
  EXPECT_EQ(send("/api/v1/tables/a.b", "", "").status, 200);  // a body-less trigger
  // A route's declared types.
  EXPECT_EQ(send("/api/v1/upload", "a,b\n1,2\n", "Content-Type: text/csv\r\n").status, 200);
  HttpReply json = send("/api/v1/upload", "{}", "Content-Type: application/json\r\n");
  EXPECT_EQ(json.status, 415);
  EXPECT_NE(json.body.find("text/csv"), std::string::npos);
  EXPECT_EQ(writes_.load(), 4);
  // OpenAPI shows them.
  HttpReply doc = Call(port_, "GET", "/api/v1/openapi.json");
  EXPECT_NE(doc.body.find("application/vnd.apache.parquet"), std::string::npos);
}

TEST_F(HttpServerTest, CorsOnlyForListedOrigins) {
  {  // Off by default: preflights refused, no ACAO.
    StartServer();
    HttpReply pre = Call(port_, "OPTIONS", "/api/v1/sql", "",
                         "Origin: http://app.example\r\nAccess-Control-Request-Method: POST\r\n");
    EXPECT_EQ(pre.status, 403);
    EXPECT_EQ(pre.Header("access-control-allow-origin"), "");
    server_->Stop(1s);
    server_.reset();
  }
  HttpServerOptions o;
  o.cors_allowed_origins = {"http://app.example:5173"};
  StartServer(o);
  const std::string app = "Origin: http://app.example:5173\r\n";
  HttpReply pre = Call(port_, "OPTIONS", "/api/v1/tables/a.b", "",
                       app +
                           "Access-Control-Request-Method: POST\r\n"
                           "Access-Control-Request-Headers: authorization, content-type\r\n");
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.Header("access-control-allow-origin"), "http://app.example:5173");
  EXPECT_EQ(pre.Header("vary"), "Origin");
  EXPECT_NE(pre.Header("access-control-allow-methods").find("POST"), std::string::npos);
  EXPECT_NE(pre.Header("access-control-allow-headers").find("Authorization"), std::string::npos);
  EXPECT_NE(pre.Header("access-control-allow-headers").find("Content-Type"), std::string::npos);
  HttpReply other =
      Call(port_, "OPTIONS", "/api/v1/tables/a.b", "",
           "Origin: http://app.example:5174\r\nAccess-Control-Request-Method: POST\r\n");
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(other.Header("access-control-allow-origin"), "");
  // Actual requests: the listed origin may write and reads its answer; another may not.
  HttpReply write = Call(port_, "POST", "/api/v1/tables/a.b", "{}", app);
  EXPECT_EQ(write.status, 200);
  EXPECT_EQ(write.Header("access-control-allow-origin"), "http://app.example:5173");
  EXPECT_EQ(
      Call(port_, "POST", "/api/v1/tables/a.b", "{}", "Origin: http://app.example\r\n").status,
      403);
  HttpReply read = Call(port_, "GET", "/api/v1/health", "", "Origin: http://app.example\r\n");
  EXPECT_EQ(read.Header("access-control-allow-origin"), "");
}

TEST_F(HttpServerTest, ConnectionsPastTheLimitGet503) {
  HttpServerOptions o;
  o.max_connections = 2;
  StartServer(o);
  // Two live keep-alive connections (each answered once, so the server holds both).
  Conn a(port_), b(port_);
  ASSERT_TRUE(a.Send(Req("GET", "/api/v1/health")) && b.Send(Req("GET", "/api/v1/health")));
  ASSERT_EQ(a.Read().status, 200);
  ASSERT_EQ(b.Read().status, 200);
  Conn c(port_);
  ASSERT_TRUE(c.connected());
  c.Send(Req("GET", "/api/v1/health"));
  HttpReply busy = c.Read();
  ASSERT_TRUE(busy.ok);
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.ErrorCode(), "unavailable");
  EXPECT_EQ(busy.Header("retry-after"), "1");
  EXPECT_TRUE(c.ReadsEof());
  // The live ones still work; once one closes, a new connection is served (bounded poll).
  ASSERT_TRUE(a.Send(Req("GET", "/api/v1/health")));
  EXPECT_EQ(a.Read().status, 200);
  b.Close();
  int status = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       status != 200 && std::chrono::steady_clock::now() < deadline;) {
    status = Call(port_, "GET", "/api/v1/health").status;
  }
  EXPECT_EQ(status, 200);
}

TEST_F(HttpServerTest, BodiesInMemoryPastTheBoundGet503) {
  HttpServerOptions o;
  o.max_body_bytes = 4096;
  o.max_inflight_body_bytes = 4096;
  StartServer(o);
  // A 3000-byte body held by a handler that has not answered yet.
  Conn a(port_);
  ASSERT_TRUE(a.Send(Req("POST", "/api/v1/slow", std::string(3000, 'a'))));
  gate_.started.get_future().wait();
  // 2000 more do not fit: refused from the announced length, before the body is read.
  Conn b(port_);
  ASSERT_TRUE(
      b.Send("POST /api/v1/sql HTTP/1.1\r\nHost: localhost\r\n"
             "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"));
  HttpReply busy = b.Read();
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.ErrorCode(), "unavailable");
  EXPECT_EQ(busy.Header("retry-after"), "1");
  // Small ones still fit.
  EXPECT_EQ(Call(port_, "POST", "/api/v1/sql", std::string(500, 'b')).status, 200);
  gate_.release.set_value();
  EXPECT_EQ(a.Read().status, 200);
  // Released with the answer: the 2000 bytes fit now.
  EXPECT_EQ(Call(port_, "POST", "/api/v1/sql", std::string(2000, 'c')).status, 200);
}

TEST_F(HttpServerTest, BadTokenFloodIsThrottledPerAddress) {
  HttpServerOptions o;
  o.auth_failures_per_minute = 5;
  StartServer(o);
  auto get = [&](const char* source, std::string_view token, std::string_view target) {
    Conn c(port_, source);
    if (!c.connected() || !c.Send(Req("GET", target, "", Bearer(token)))) return HttpReply{};
    return c.Read();
  };
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(get("127.0.0.2", "bad-" + std::to_string(i), "/api/v1/tables/a.b").status, 401);
  }
  HttpReply limited = get("127.0.0.2", "bad-x", "/api/v1/tables/a.b");
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.ErrorCode(), "resource_exhausted");
  EXPECT_FALSE(limited.Header("retry-after").empty());
  EXPECT_GT(std::stoi(limited.Header("retry-after")), 0);
  // That address may not try a good one either until the minute is over...
  EXPECT_EQ(get("127.0.0.2", "reader-token", "/api/v1/tables/a.b").status, 429);
  // ...but open routes answer it, and other addresses are not affected.
  EXPECT_EQ(get("127.0.0.2", "bad-y", "/api/v1/health").status, 200);
  EXPECT_EQ(get("127.0.0.1", "reader-token", "/api/v1/tables/a.b").status, 200);
  EXPECT_EQ(get("127.0.0.1", "bad-z", "/api/v1/tables/a.b").status, 401);
}

}  // namespace
}  // namespace lakeloop::api
