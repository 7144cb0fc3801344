// The CLI's HTTP client against a peer that stalls: it gives up with a clear error.
#include "app/internal/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

namespace lakeloop::app {
namespace {

using namespace std::chrono_literals;

// A listening socket on a free loopback port; its thread accepts one connection, reads the
// request, and answers only when `answer` is set (else it stalls until the client goes away).
class Peer {
 public:
  explicit Peer(std::string answer) : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 4);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      while (request_.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      if (!answer_.empty()) {
        ::send(c, answer_.data(), answer_.size(), MSG_NOSIGNAL);
      } else {
        // A stalled peer never answers: wait until the client gives up and closes.
        while (::recv(c, buf, sizeof(buf), 0) > 0) {
        }
      }
      ::close(c);
    });
  }
  ~Peer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& request() const { return request_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string answer_;
  std::string request_;
  std::thread thread_;
};

TEST(HttpClientTest, AStalledServerTimesOutWithAClearError) {
  Peer peer("");
  HttpClientOptions o;
  o.read_timeout = 200ms;
  auto r = HttpRequest(peer.url(), "POST", "/api/v1/build", "", {}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded);
  EXPECT_NE(r.status().message().find("--timeout"), std::string::npos);
}

TEST(HttpClientTest, AnswersAreReadAndHeadersSent) {
  Peer peer(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
      "Connection: close\r\n\r\n{}");
  auto r = HttpRequest(peer.url(), "POST", "/api/v1/sql", R"({"sql":"SELECT 1"})",
                       {{"Content-Type", "application/json"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{}");
  EXPECT_NE(peer.request().find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(peer.request().find("Host: 127.0.0.1:"), std::string::npos);
}

TEST(HttpClientTest, TimeoutsComeFromTheEnvironment) {
  ::setenv("LAKELOOP_READ_TIMEOUT_MS", "1500", 1);
  ::setenv("LAKELOOP_CONNECT_TIMEOUT_MS", "250", 1);
  HttpClientOptions o = HttpClientOptions::FromEnv();
  EXPECT_EQ(o.read_timeout, 1500ms);
  EXPECT_EQ(o.connect_timeout, 250ms);
  ::unsetenv("LAKELOOP_READ_TIMEOUT_MS");
  ::unsetenv("LAKELOOP_CONNECT_TIMEOUT_MS");
  EXPECT_EQ(HttpClientOptions::FromEnv().read_timeout, 600'000ms);
}

}  // namespace
}  // namespace lakeloop::app
