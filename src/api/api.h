// api: lakeloop's HTTP/1.1 JSON server. A Router maps "METHOD /pattern/{param}" to handlers, each
// with a minimum Role, an execution place (inline on a network thread, or on a worker pool) and
// OpenAPI metadata; HttpServer (Boost.Beast, hidden in internal/) serves a Router, verifies bearer
// tokens, and answers errors as {"error":{"code":"<wire name>","message":"..."}} with the HTTP
// status of the code's row in core/status.h. This header does not include Beast or Asio.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"

namespace lakeloop {
class ThreadPool;
}

namespace lakeloop::api {

// ---------------------------------------------------------------------------------------------
// Auth

// Roles are the catalog's (tokens are stored with them); ordered, so a stronger role satisfies
// every weaker minimum.
using Role = catalog::Role;
using catalog::ParseRole;  // reader | writer | admin
using catalog::RoleName;   // "none" | "reader" | "writer" | "admin"

// Maps a bearer token to its role. Implementations must be thread-safe: Verify runs on a network
// thread for inline routes (so keep it fast: an in-memory cache) and on a worker for worker routes.
class TokenVerifier {
 public:
  virtual ~TokenVerifier() = default;
  // kUnauthenticated for an unknown, expired or revoked token.
  virtual Result<Role> Verify(std::string_view token) = 0;
};

// ---------------------------------------------------------------------------------------------
// Request / Response

using Header = std::pair<std::string, std::string>;

// One parsed request. Handlers get it by const reference; it stays valid for as long as any copy of
// the request's Responder is alive.
struct Request {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // raw request target, e.g. "/api/v1/x%20y?a=1"
  std::string path;    // percent-decoded path without the query, e.g. "/api/v1/x y"
  // Percent-decoded ('+' is a space) query parameters; for a repeated key the first one wins.
  std::map<std::string, std::string, std::less<>> query;
  std::vector<Header> headers;  // as received (names in their original case)
  std::string body;
  std::string remote_address;  // "127.0.0.1:54321", "[::1]:54321"
  // Filled by the router: {"zone","sales"}, {"table","orders"} for /tables/{zone}.{table}.
  std::vector<Header> path_params;
  // The caller's role after auth (kAdmin for token-less requests when auth is not required).
  Role role = Role::kNone;
  // Becomes true when the peer closes the connection (or the server is force-stopping) before the
  // response is written. Long handlers (SQL) poll it and give up. Never null inside a handler.
  std::shared_ptr<std::atomic<bool>> cancelled;

  // Case-insensitive header lookup; the first matching header.
  std::optional<std::string_view> GetHeader(std::string_view name) const;
  // Empty when the route has no such parameter.
  std::string_view PathParam(std::string_view name) const;
  std::optional<std::string_view> QueryParam(std::string_view name) const;
  bool IsCancelled() const { return cancelled && cancelled->load(std::memory_order_relaxed); }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers (Content-Type, Content-Length, Connection are set by the server).
  std::vector<Header> headers;
  // When set, the response body is this file (instead of `body`), streamed in chunks so it is
  // never held in memory whole; `body_file_owner` is released once it is written or the
  // connection closes (e.g. an object that then removes the file).
  std::filesystem::path body_file;
  std::shared_ptr<const void> body_file_owner;

  static Response Json(std::string body, int status = 200);
  static Response Text(std::string body, int status = 200,
                       std::string content_type = "text/plain; charset=utf-8");
  // {"error":{"code":"<wire name>","message":"..."}} with InfoFor(code).http_status.
  // An ok Status gives 500 internal (a handler bug).
  static Response Error(const Status& status);
};

// Delivers a handler's one Response to the connection, from any thread. Copyable; the first Send
// wins and later ones are ignored. If every copy is destroyed without a Send, the client gets a
// 500 internal error, so a forgotten path cannot hang a connection.
class Responder {
 public:
  // The server's side of a request in flight (internal).
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void Deliver(Response response) = 0;  // called at most once
    Request request;
    std::atomic<bool> sent{false};
  };

  explicit Responder(std::shared_ptr<Sink> sink) : sink_(std::move(sink)) {}
  void Send(Response response) const;
  void SendError(const Status& status) const { Send(Response::Error(status)); }
  bool sent() const { return sink_->sent.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<Sink> sink_;
};

// An asynchronous handler: responds through `respond`, now or later, from any thread.
using Handler = std::function<void(const Request& request, Responder respond)>;
// A synchronous handler; exceptions become 500 internal.
using SyncHandler = std::function<Response(const Request& request)>;

// ---------------------------------------------------------------------------------------------
// Router

// Where the handler runs. kInline is for cheap, non-blocking work (health, a cache lookup): it runs
// on the network thread. kWorker runs on the server's worker pool; anything that may block (SQL,
// the catalog, files) belongs there.
enum class Execution { kInline, kWorker };

struct QueryParamSpec {
  std::string name;
  std::string description;
  std::string type = "string";  // OpenAPI primitive: string | integer | number | boolean
  bool required = false;
};

struct RouteSpec {
  std::string method;  // "GET", "POST", "PUT", "PATCH", "DELETE"
  // Absolute, '/'-separated. A segment is a literal ("tables"), or a mix of literals and
  // parameters:
  // "{id}", "{zone}.{table}", "v{n}". Parameters match one non-empty part of one segment; between
  // two parameters the literal splits at its first occurrence (so "a.b.c" gives zone "a", table
  // "b.c"). A literal segment beats a mixed one, which beats a single parameter.
  std::string pattern;
  Role min_role = Role::kReader;
  Execution execution = Execution::kWorker;
  // OpenAPI metadata.
  std::string summary;
  std::string tag;
  std::string request_schema;  // JSON Schema text; empty = no request body
  // Media types (without parameters) a request body may have; checked on every method other than
  // GET/HEAD/OPTIONS before auth and the handler (415 otherwise). An empty body without a
  // Content-Type passes (a trigger such as POST /build); form types (urlencoded, multipart,
  // text/plain: what a cross-site HTML form can send) never pass. Shown in OpenAPI.
  std::vector<std::string> request_content_types = {"application/json"};
  std::string response_schema;  // JSON Schema text; empty = none documented
  std::string response_content_type = "application/json";
  std::vector<QueryParamSpec> query_params;
};

struct OpenApiInfo;

// A route table. Not thread-safe while routes are added; immutable (and safe to share) once handed
// to an HttpServer.
class Router {
 public:
  Router();
  Router(Router&&) noexcept = default;
  Router& operator=(Router&&) noexcept = default;

  struct Route {
    RouteSpec spec;
    Handler handler;
    // Parsed pattern: per segment, alternating literal / parameter pieces.
    struct Piece {
      bool is_param;
      std::string text;  // the literal, or the parameter name
    };
    std::vector<std::vector<Piece>> segments;
  };

  // InvalidArgument for a malformed pattern, a bad schema or an unknown method; AlreadyExists for a
  // duplicate method + pattern.
  Status Add(RouteSpec spec, Handler handler);
  Status AddSync(RouteSpec spec, SyncHandler handler);

  enum class MatchKind { kFound, kNotFound, kMethodNotAllowed };
  struct Match {
    MatchKind kind = MatchKind::kNotFound;
    const Route* route = nullptr;  // kFound
    std::vector<Header> path_params;
    std::string allow;  // kMethodNotAllowed: "GET, POST"
  };
  // `path` is the raw (not yet decoded) path; segments are decoded after splitting, so "%2F" inside
  // a parameter does not split it.
  Match Find(std::string_view method, std::string_view raw_path) const;

  const std::vector<Route>& routes() const { return *routes_; }

 private:
  friend Status AddOpenApiRoute(Router& router, OpenApiInfo info);
  // Shared with the openapi.json handler (weakly), so the document follows the router when moved.
  std::shared_ptr<std::vector<Route>> routes_;
};

struct OpenApiInfo {
  std::string title = "lakeloop API";
  std::string version = "0.1.0";
  std::string description;
};

// The OpenAPI 3.0.3 document for every route of `router`: paths, methods, path and query
// parameters, request and response schemas, the bearer security scheme and the shared Error schema.
std::string OpenApiDocument(const Router& router, const OpenApiInfo& info);

// Registers GET /api/v1/openapi.json (open to all, inline), serving OpenApiDocument of `router`
// as it is when the server starts (the document is built on first request and cached).
Status AddOpenApiRoute(Router& router, OpenApiInfo info = {});

// ---------------------------------------------------------------------------------------------
// HttpServer

struct HttpServerOptions {
  // "127.0.0.1:8080", "[::1]:0", "0.0.0.0:0", "localhost:8080". Port 0 picks a free port.
  std::string listen = "127.0.0.1:8080";
  size_t io_threads = 1;
  // Size of the worker pool the server creates when none is given.
  size_t worker_threads = 4;
  // Queued worker tasks beyond which requests get 429 resource_exhausted (Retry-After: 1).
  size_t max_worker_queue = 1024;
  size_t max_body_bytes = 16 << 20;                  // larger -> 413 payload_too_large
  size_t max_header_bytes = 64 << 10;                // larger -> 400 malformed_request
  std::chrono::milliseconds header_timeout{10'000};  // first byte to end of headers
  std::chrono::milliseconds body_timeout{60'000};    // reading the body; also writing a response
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive wait for the next request
  // Require a valid token on every route above Role::kNone even on loopback. Auth is always
  // required when the listen address is not loopback.
  bool require_auth = false;

  // The front door. Every request's Host must be a loopback name or address (localhost,
  // 127.0.0.1, [::1]; any port), the listen address, or one of `allowed_hosts` ("host" for any
  // port, "host:port"); else 421. A missing Host on HTTP/1.1 is 400.
  std::vector<std::string> allowed_hosts;
  // Browser origins ("http://localhost:5173", exact) allowed cross-origin: CORS preflights and
  // Access-Control-Allow-Origin for them, and their state-changing requests pass. Empty: CORS off.
  // A state-changing request whose Origin is neither same-origin nor listed is 403.
  std::vector<std::string> cors_allowed_origins;
  size_t max_connections = 1024;  // beyond: 503 + Retry-After, then close
  // Request bodies held in memory (being read or handled) across all connections; a request that
  // would pass it gets 503 + Retry-After before its body is read.
  size_t max_inflight_body_bytes = 256 << 20;
  // Bad bearer tokens per client address (IP) within a minute; past it, requests that need auth
  // from that address get 429 + Retry-After until the minute is over.
  size_t auth_failures_per_minute = 20;
};

// Serves a Router over HTTP/1.1 with keep-alive; requests on one connection are answered in order
// (one at a time). Network threads never block: kWorker handlers run on the worker pool.
// Start/Stop are not thread-safe against each other; everything else is.
class HttpServer {
 public:
  // `verifier` (may be null: then only token-less requests on loopback pass) and `workers` (null:
  // the server owns a pool of options.worker_threads) must outlive the server.
  HttpServer(HttpServerOptions options, Router router, TokenVerifier* verifier = nullptr,
             ThreadPool* workers = nullptr);
  ~HttpServer();  // Stop(0) if still running
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the network threads. InvalidArgument for a bad listen address or auth required
  // without a verifier; IoError when the bind fails.
  Status Start();
  // Stops accepting and closes idle connections; lets requests in flight finish for up to `grace`;
  // then flags the rest cancelled and closes their connections. Returns once the network threads,
  // and every handler still holding a Responder, are done.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10'000));

  uint16_t port() const;       // the bound port (after Start)
  bool auth_required() const;  // after Start

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lakeloop::api
