#include "app/internal/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace lakeloop::app {
namespace {

std::chrono::milliseconds EnvMillis(const char* name, std::chrono::milliseconds fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long long ms = std::strtoll(v, &end, 10);
  if (end == v || *end != '\0' || ms <= 0) return fallback;
  return std::chrono::milliseconds(ms);
}

std::string Seconds(std::chrono::milliseconds ms) {
  std::string s = std::to_string(ms.count() / 1000.0);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s + " s";
}

// Waits until `fd` is ready for `events`; false on timeout (errno ETIMEDOUT) or error.
bool WaitFor(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ETIMEDOUT;
    return n > 0;
  }
}

// Connects with a deadline (non-blocking connect, then poll). 0 on success, else errno.
int ConnectWithin(int fd, const sockaddr* addr, socklen_t len, std::chrono::milliseconds timeout) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, addr, len);
  if (rc != 0 && errno != EINPROGRESS) return errno;
  if (rc != 0) {
    if (!WaitFor(fd, POLLOUT, timeout)) return errno;
    int err = 0;
    socklen_t elen = sizeof(err);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return err;
  }
  ::fcntl(fd, F_SETFL, flags);
  return 0;
}

}  // namespace

HttpClientOptions HttpClientOptions::FromEnv() {
  HttpClientOptions o;
  o.connect_timeout = EnvMillis("LAKELOOP_CONNECT_TIMEOUT_MS", o.connect_timeout);
  o.read_timeout = EnvMillis("LAKELOOP_READ_TIMEOUT_MS", o.read_timeout);
  return o;
}

Result<HttpResponse> HttpRequest(const std::string& url, const std::string& method,
                                 const std::string& path, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const HttpClientOptions& options) {
  if (url.rfind("http://", 0) != 0) return InvalidArgument("only http:// URLs: " + url);
  std::string hostport = url.substr(7);
  if (auto slash = hostport.find('/'); slash != std::string::npos) hostport.resize(slash);
  size_t colon = hostport.rfind(':');
  std::string host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
  std::string port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) {
    return Unavailable("cannot resolve " + hostport);
  }
  int fd = -1;
  int err = 0;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    err = ConnectWithin(fd, ai->ai_addr, ai->ai_addrlen, options.connect_timeout);
    if (err == 0) break;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0 && err == ETIMEDOUT) {
    return Status(Code::kDeadlineExceeded, "connecting to " + url + " took longer than " +
                                               Seconds(options.connect_timeout) +
                                               " (LAKELOOP_CONNECT_TIMEOUT_MS)");
  }
  if (fd < 0) return Unavailable("cannot connect to " + url + ": " + std::strerror(err));
  auto timed_out = [&](const char* what) {
    ::close(fd);
    return Status(Code::kDeadlineExceeded,
                  std::string(what) + " " + url + ": no progress for " +
                      Seconds(options.read_timeout) +
                      " (raise it with --timeout SECONDS or LAKELOOP_READ_TIMEOUT_MS)");
  };

  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + hostport +
                    "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  req += body;
  size_t off = 0;
  while (off < req.size()) {
    if (!WaitFor(fd, POLLOUT, options.read_timeout)) {
      if (errno == ETIMEDOUT) return timed_out("sending to");
    }
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return Unavailable("send to " + url + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    if (!WaitFor(fd, POLLIN, options.read_timeout) && errno == ETIMEDOUT) {
      return timed_out("waiting for the answer of");
    }
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) {
    return Unavailable("malformed HTTP response from " + url);
  }
  HttpResponse r;
  r.status = std::atoi(raw.c_str() + 9);
  std::string head = raw.substr(0, head_end);
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos < head.size()) {
    size_t next = head.find("\r\n", pos + 2);
    std::string line =
        head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    if (strncasecmp(line.c_str(), "content-type:", 13) == 0) {
      r.content_type = line.substr(13);
      while (!r.content_type.empty() && r.content_type.front() == ' ') r.content_type.erase(0, 1);
    }
    pos = next;
  }
  r.body = raw.substr(head_end + 4);
  return r;
}

}  // namespace lakeloop::app
