// api/internal/front_door: the checks every request passes before auth and its handler, against
// DNS rebinding and cross-site (CSRF) requests from a browser: the Host allowlist (421), the
// cross-site refusal of state-changing requests (403), the route's declared content types (415),
// CORS; and the per-address throttle of bad bearer tokens (429). No Beast here: unit-tested alone.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "core/status.h"

namespace lakeloop::api::internal {

// Immutable after construction; thread-safe.
class FrontDoor {
 public:
  // `allowed_hosts`: entries "host" (any port) or "host:port" ("[v6]:port" for IPv6), added to the
  // loopback names. `port`: the port the server listens on (same-origin Origins carry it).
  FrontDoor(const std::vector<std::string>& allowed_hosts,
            const std::vector<std::string>& cors_allowed_origins, uint16_t port);

  // InvalidArgument unless `entry` is "host", "host:port", "[v6]:port" or a bare IPv6 address.
  static Status ValidateHostEntry(std::string_view entry);
  // 400 malformed_request without a Host on HTTP/1.1 (`version` 11) or with a bad one; 421
  // misdirected_request for a host outside the allowlist. HTTP/1.0 without Host passes.
  Status CheckHost(std::optional<std::string_view> host, unsigned version) const;
  // For methods that change state: ok for an Origin listed in cors_allowed_origins; else 403
  // permission_denied for Sec-Fetch-Site cross-site or same-site, Origin "null", or an Origin that
  // is not this server (http, an allowed host, this port). Ok for GET/HEAD/OPTIONS.
  Status CheckCrossSite(const Request& request) const;
  // For methods that change state: 415 unsupported_media_type for a form type (never accepted), a
  // type the route does not declare, or a non-empty body without a Content-Type.
  static Status CheckContentType(const Request& request, const RouteSpec& spec);

  // True when `origin` is listed in cors_allowed_origins (exact match).
  bool CorsAllowed(std::string_view origin) const;
  bool cors_enabled() const { return !origins_.empty(); }
  static bool ChangesState(std::string_view method);

 private:
  struct HostEntry {
    std::string host;  // lower case; IPv6 with brackets
    int port = -1;     // -1: any port
  };
  bool HostAllowed(std::string_view host, int port) const;

  std::vector<HostEntry> hosts_;
  std::vector<std::string> origins_;
  uint16_t port_;
};

// Counts bad bearer tokens per client address in a fixed table (no allocation); once an address
// has `limit` failures within a minute it is blocked until that minute is over. Thread-safe; the
// happy path (no address blocked anywhere) costs one relaxed atomic load.
class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit AuthThrottle(size_t limit, Clock::duration window = std::chrono::minutes(1))
      : limit_(limit), window_(window) {}

  // Seconds until `address` ("ip:port" or "[v6]:port"; the port is ignored) may try again; 0 when
  // it is not blocked.
  int64_t BlockedFor(std::string_view address, Clock::time_point now = Clock::now());
  // Records a failure; returns BlockedFor after it.
  int64_t Fail(std::string_view address, Clock::time_point now = Clock::now());

 private:
  static constexpr size_t kSlots = 4096;
  static constexpr size_t kProbe = 16;
  struct Slot {
    uint64_t key = 0;  // hash of the IP; 0 = free
    Clock::time_point window_start{};
    Clock::time_point blocked_until{};
    size_t failures = 0;
  };
  static uint64_t Key(std::string_view address);

  size_t limit_;
  Clock::duration window_;
  std::mutex mu_;
  std::array<Slot, kSlots> slots_{};  // guarded by mu_
  // Latest blocked_until of any slot, as ticks; the fast path skips the table when it is past.
  std::atomic<int64_t> any_blocked_until_{0};
};

}  // namespace lakeloop::api::internal
