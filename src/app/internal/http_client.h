// A minimal blocking HTTP/1.1 client for the CLI talking to its own server on this machine.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace lakeloop::app {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

struct HttpClientOptions {
  // Connecting (TCP handshake) may take this long.
  std::chrono::milliseconds connect_timeout{5'000};
  // Longest wait for the server's next bytes (a request that builds models may run for minutes,
  // so this bounds silence, not the whole exchange); also bounds each send.
  std::chrono::milliseconds read_timeout{600'000};

  // Defaults, overridden by LAKELOOP_CONNECT_TIMEOUT_MS and LAKELOOP_READ_TIMEOUT_MS (the CLI's
  // global --timeout SECONDS sets the latter).
  static HttpClientOptions FromEnv();
};

// `url` is "http://host:port"; `path` starts with '/'. One request per connection. Unavailable when
// the server cannot be reached; DeadlineExceeded (naming the timeout and how to change it) when
// connecting or the answer takes longer than the options allow.
Result<HttpResponse> HttpRequest(const std::string& url, const std::string& method,
                                 const std::string& path, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const HttpClientOptions& options = HttpClientOptions::FromEnv());

}  // namespace lakeloop::app
