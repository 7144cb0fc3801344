// api/internal/url: request-target and listen-address parsing (no Beast), unit-tested on its own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace lakeloop::api::internal {

// Percent-decodes `in`; with `plus_is_space`, '+' becomes ' ' (query strings). nullopt for a bad
// escape ("%zz", a truncated "%4").
std::optional<std::string> PercentDecode(std::string_view in, bool plus_is_space);

// Splits "a=1&b=x%20y" into decoded pairs; the first occurrence of a key wins. A key without '='
// maps to "". InvalidArgument (kMalformedRequest) for a bad escape.
Status ParseQuery(std::string_view query, std::map<std::string, std::string, std::less<>>* out);

struct HostPort {
  std::string host;  // without brackets: "127.0.0.1", "::1", "localhost"
  uint16_t port = 0;
};
// "127.0.0.1:8080", "[::1]:0", "0.0.0.0:0", "localhost:80".
Result<HostPort> SplitHostPort(std::string_view listen);

}  // namespace lakeloop::api::internal
