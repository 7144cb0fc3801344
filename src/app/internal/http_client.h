// A minimal blocking HTTP/1.1 client for the CLI talking to its own server on this machine.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace lakeloop::app {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// `url` is "http://host:port"; `path` starts with '/'. One request per connection.
Result<HttpResponse> HttpRequest(const std::string& url, const std::string& method,
                                 const std::string& path, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers);

}  // namespace lakeloop::app
