#include "api/internal/front_door.h"

#include <algorithm>
#include <functional>

namespace lakeloop::api::internal {
namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "host", "host:port", "[v6]", "[v6]:port" -> host (brackets kept) and port (-1 when absent).
// False for an empty host, a bad port, or characters a host name cannot have.
bool SplitHost(std::string_view in, std::string_view* host, int* port) {
  *port = -1;
  std::string_view rest;
  if (!in.empty() && in.front() == '[') {
    size_t close = in.find(']');
    if (close == std::string_view::npos) return false;
    *host = in.substr(0, close + 1);
    rest = in.substr(close + 1);
  } else {
    size_t colon = in.find(':');
    *host = in.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : in.substr(colon);
  }
  if (host->empty()) return false;
  for (char c : *host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  if (rest.empty()) return true;
  if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return false;
  int p = 0;
  for (char c : rest.substr(1)) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p > 65535) return false;
  *port = p;
  return true;
}

constexpr std::string_view kFormTypes[] = {"application/x-www-form-urlencoded",
                                           "multipart/form-data", "text/plain"};

std::string JoinTypes(const std::vector<std::string>& types) {
  std::string out;
  for (const auto& t : types) {
    if (!out.empty()) out += ", ";
    out += t;
  }
  return out.empty() ? std::string("none (no body)") : out;
}

}  // namespace

Status FrontDoor::ValidateHostEntry(std::string_view entry) {
  std::string_view host;
  int port = -1;
  std::string_view t = Trim(entry);
  // A bare IPv6 address is accepted too.
  if (t.find(':') != t.rfind(':') && t.front() != '[') return Status::Ok();
  if (!SplitHost(t, &host, &port)) {
    return InvalidArgument("server.allowed_hosts: '" + std::string(entry) +
                           "' is not a host or host:port");
  }
  return Status::Ok();
}

FrontDoor::FrontDoor(const std::vector<std::string>& allowed_hosts,
                     const std::vector<std::string>& cors_allowed_origins, uint16_t port)
    : origins_(cors_allowed_origins), port_(port) {
  for (const char* h : {"localhost", "127.0.0.1", "[::1]"}) hosts_.push_back({h, -1});
  for (const auto& entry : allowed_hosts) {
    std::string_view host;
    int p = -1;
    std::string_view t = Trim(entry);
    if (t.find(':') != t.rfind(':') && t.front() != '[') {  // a bare IPv6 address, any port
      host = t;
    } else if (!SplitHost(t, &host, &p)) {
      continue;  // ValidateHostEntry refused it already
    }
    std::string lower(host);
    for (auto& c : lower) c = Lower(c);
    // A bare IPv6 address ("::1") is written with brackets in a Host header.
    if (lower.find(':') != std::string::npos && lower.front() != '[') lower = "[" + lower + "]";
    hosts_.push_back({std::move(lower), p});
  }
}

bool FrontDoor::HostAllowed(std::string_view host, int port) const {
  // A fully qualified name may end with a dot ("localhost.").
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  for (const auto& e : hosts_) {
    if (IEquals(e.host, host) && (e.port < 0 || e.port == port)) return true;
  }
  return false;
}

Status FrontDoor::CheckHost(std::optional<std::string_view> host, unsigned version) const {
  if (!host) {
    if (version < 11) return Status::Ok();
    return Status(Code::kMalformedRequest, "an HTTP/1.1 request needs a Host header");
  }
  std::string_view h;
  int port = -1;
  if (!SplitHost(Trim(*host), &h, &port)) {
    return Status(Code::kMalformedRequest, "bad Host header '" + std::string(*host) + "'");
  }
  if (port < 0) port = 80;
  if (HostAllowed(h, port)) return Status::Ok();
  return Status(Code::kMisdirectedRequest,
                "this server does not answer to host '" + std::string(*host) +
                    "' (a DNS-rebinding guard): add it to server.allowed_hosts in lakeloop.yaml "
                    "if it is a name of this server");
}

bool FrontDoor::ChangesState(std::string_view method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

bool FrontDoor::CorsAllowed(std::string_view origin) const {
  return std::find(origins_.begin(), origins_.end(), origin) != origins_.end();
}

Status FrontDoor::CheckCrossSite(const Request& req) const {
  if (!ChangesState(req.method)) return Status::Ok();
  std::optional<std::string_view> origin = req.GetHeader("Origin");
  // An origin the operator listed is trusted wherever it is (that is what listing it means).
  if (origin && CorsAllowed(Trim(*origin))) return Status::Ok();
  if (auto site = req.GetHeader("Sec-Fetch-Site")) {
    std::string_view s = Trim(*site);
    if (IEquals(s, "cross-site")) {
      return PermissionDenied(
          "cross-site request refused (Sec-Fetch-Site: cross-site): a web page may not change "
          "this server's state unless its origin is listed in server.cors_allowed_origins");
    }
    if (IEquals(s, "same-site")) {
      return PermissionDenied(
          "same-site request from another origin refused (Sec-Fetch-Site: same-site): list the "
          "origin in server.cors_allowed_origins");
    }
  }
  if (!origin) return Status::Ok();  // not a browser, or a same-origin GET-like navigation
  std::string_view o = Trim(*origin);
  if (o == "null") {
    return PermissionDenied("request with 'Origin: null' refused (a sandboxed or file:// page)");
  }
  // Same origin: http://<allowed host>[:<this server's port>].
  constexpr std::string_view kHttp = "http://";
  if (o.size() > kHttp.size() && IEquals(o.substr(0, kHttp.size()), kHttp)) {
    std::string_view host;
    int port = -1;
    if (SplitHost(o.substr(kHttp.size()), &host, &port)) {
      if (port < 0) port = 80;
      if (port == port_ && HostAllowed(host, port)) return Status::Ok();
    }
  }
  return PermissionDenied("cross-origin request from '" + std::string(o) +
                          "' refused: it is not this server's origin and not listed in "
                          "server.cors_allowed_origins");
}

Status FrontDoor::CheckContentType(const Request& req, const RouteSpec& spec) {
  if (!ChangesState(req.method)) return Status::Ok();
  std::optional<std::string_view> ct = req.GetHeader("Content-Type");
  auto refuse = [&](std::string why) {
    return Status(Code::kUnsupportedMediaType, why + "; " + spec.method + " " + spec.pattern +
                                                   " accepts " +
                                                   JoinTypes(spec.request_content_types));
  };
  if (!ct) {
    if (req.body.empty()) return Status::Ok();
    return refuse("a request body needs a Content-Type header");
  }
  std::string_view type = Trim(ct->substr(0, ct->find(';')));
  for (std::string_view form : kFormTypes) {
    if (IEquals(type, form)) {
      return refuse("Content-Type '" + std::string(type) +
                    "' is a form type, which a web page can send cross-site, and is never "
                    "accepted");
    }
  }
  for (const auto& accepted : spec.request_content_types) {
    if (IEquals(type, accepted)) return Status::Ok();
  }
  return refuse("Content-Type '" + std::string(type) + "' is not accepted");
}

// ---------------------------------------------------------------------------------------------
// AuthThrottle

uint64_t AuthThrottle::Key(std::string_view address) {
  // Strip the port: "1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "[::1]".
  if (address.empty()) return 1;
  size_t colon = address.rfind(':');
  if (colon != std::string_view::npos && colon > 0 &&
      (address.front() != '[' || address[colon - 1] == ']')) {
    address = address.substr(0, colon);
  }
  uint64_t k = std::hash<std::string_view>()(address);
  return k == 0 ? 1 : k;
}

int64_t AuthThrottle::BlockedFor(std::string_view address, Clock::time_point now) {
  if (any_blocked_until_.load(std::memory_order_relaxed) <= now.time_since_epoch().count()) {
    return 0;
  }
  uint64_t key = Key(address);
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < kProbe; ++i) {
    const Slot& s = slots_[(key + i) % kSlots];
    if (s.key == key) {
      if (s.blocked_until <= now) return 0;
      return std::chrono::ceil<std::chrono::seconds>(s.blocked_until - now).count();
    }
  }
  return 0;
}

int64_t AuthThrottle::Fail(std::string_view address, Clock::time_point now) {
  uint64_t key = Key(address);
  std::lock_guard<std::mutex> lock(mu_);
  Slot* slot = nullptr;
  Slot* oldest = nullptr;
  for (size_t i = 0; i < kProbe; ++i) {
    Slot& s = slots_[(key + i) % kSlots];
    if (s.key == key) {
      slot = &s;
      break;
    }
    // A free slot, or one whose window and block are over, may be reused.
    bool stale = s.key == 0 || (s.window_start + window_ <= now && s.blocked_until <= now);
    if (stale && !oldest) oldest = &s;
  }
  if (!slot) {
    if (!oldest) {  // every probed slot is busy: evict the one whose window started first
      oldest = &slots_[key % kSlots];
      for (size_t i = 1; i < kProbe; ++i) {
        Slot& s = slots_[(key + i) % kSlots];
        if (s.window_start < oldest->window_start) oldest = &s;
      }
    }
    slot = oldest;
    *slot = Slot{};
    slot->key = key;
    slot->window_start = now;
  }
  if (slot->window_start + window_ <= now) {
    slot->window_start = now;
    slot->failures = 0;
  }
  ++slot->failures;
  if (slot->failures >= limit_ && slot->blocked_until <= now) {
    slot->blocked_until = now + window_;
    int64_t until = slot->blocked_until.time_since_epoch().count();
    int64_t prev = any_blocked_until_.load(std::memory_order_relaxed);
    while (prev < until && !any_blocked_until_.compare_exchange_weak(prev, until)) {
    }
  }
  if (slot->blocked_until <= now) return 0;
  return std::chrono::ceil<std::chrono::seconds>(slot->blocked_until - now).count();
}

}  // namespace lakeloop::api::internal
