// HttpServer on Boost.Beast/Asio. The only translation unit of lakeloop that includes Beast (it
// costs ~11 s and ~625 MB to compile); everything else sees api/api.h.
//
// Threads: `io_threads` run one io_context; each connection (Session) lives on its own strand (none
// is needed with one io thread), reads one request, hands it to its handler (inline, or on the
// worker pool), and reads the next request only after the response is written, so pipelined
// requests are answered in order. While a handler runs, the session keeps one read outstanding on
// the socket (the "watch"): bytes it reads are kept in the session buffer for the next request;
// end-of-stream or an error flips the request's `cancelled` flag. Each request in flight (Exchange)
// holds io_context work, so the io threads only return from run() once every handler has responded
// or dropped its Responder.
#include <ifaddrs.h>
#include <pthread.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "api/api.h"
#include "api/internal/front_door.h"
#include "api/internal/url.h"
#include "core/thread_pool.h"

namespace lakeloop::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using WorkGuard = net::executor_work_guard<net::io_context::executor_type>;

namespace {
constexpr size_t kReadChunk = 16 << 10;
// While a handler runs, at most this much of the next (pipelined) requests is read ahead; beyond it
// the watch stops (and with it disconnect detection for this request).
constexpr size_t kMaxReadAhead = 256 << 10;
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr size_t kFileChunk = 256 << 10;  // Response::body_file is written this much at a time
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && beast::iequals(s.substr(0, prefix.size()), prefix);
}

std::string FormatEndpoint(const tcp::endpoint& ep) {
  if (ep.address().is_v6())
    return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}
}  // namespace

class HttpServer::Impl {
 public:
  class Session;
  class Exchange;

  Impl(HttpServerOptions options, Router router, TokenVerifier* verifier, ThreadPool* workers)
      : options_(std::move(options)),
        router_(std::move(router)),
        verifier_(verifier),
        workers_(workers),
        ioc_(static_cast<int>(std::max<size_t>(1, options_.io_threads))),
        acceptor_(net::make_strand(ioc_)) {
    if (options_.io_threads == 0) options_.io_threads = 1;
  }

  Status Start();
  void Stop(std::chrono::milliseconds grace);
  void DoAccept();
  // Answers a connection past max_connections with 503 + Retry-After and closes it.
  void RejectConnection(tcp::socket socket);
  // Checks the caller's token against the route; sets request.role. A client address with too many
  // bad tokens gets kResourceExhausted with `*retry_after_s` set.
  Status Authorize(Request& request, const RouteSpec& spec, int64_t* retry_after_s);
  // Authorize, answering its refusal (with Retry-After when throttled). False when refused.
  bool AuthorizeOrRespond(Request& request, const RouteSpec& spec, const Responder& respond);
  // Reserves request-body bytes against max_inflight_body_bytes; false when they do not fit.
  bool ReserveBody(size_t n) {
    size_t prev = inflight_body_bytes_.fetch_add(n);
    if (prev + n <= options_.max_inflight_body_bytes) return true;
    inflight_body_bytes_.fetch_sub(n);
    return false;
  }
  void ReleaseBody(size_t n) { inflight_body_bytes_.fetch_sub(n); }
  // Runs the handler (on the current thread), turning exceptions into 500.
  static void Invoke(const Router::Route& route, const std::shared_ptr<Exchange>& ex);

  void Register(uint64_t id, std::weak_ptr<Session> s) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.emplace(id, std::move(s));
  }
  void Unregister(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.erase(id);
    if (sessions_.empty()) cv_.notify_all();
  }
  template <typename F>
  void ForEachSession(F f) {
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, w] : sessions_) {
        if (auto s = w.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) f(s);
  }

  HttpServerOptions options_;
  Router router_;
  TokenVerifier* verifier_;
  ThreadPool* workers_;
  std::unique_ptr<ThreadPool> owned_workers_;
  bool auth_required_ = false;
  uint16_t port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<internal::FrontDoor> door_;         // set by Start
  std::unique_ptr<internal::AuthThrottle> throttle_;  // set by Start
  std::atomic<size_t> connections_{0};                // live sessions
  std::atomic<size_t> rejecting_{0};                  // connections being answered 503
  std::atomic<size_t> inflight_body_bytes_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions_;  // guarded by mu_
  std::atomic<uint64_t> next_session_id_{0};

  // Declared after what sessions touch in their destructors: the io_context is destroyed first.
  net::io_context ioc_;
  std::optional<WorkGuard> work_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
};

// One connection. All members are used on the session's strand (its executor) only.
class HttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* server, tcp::socket socket, uint64_t id)
      : server_(server), stream_(std::move(socket)), id_(id) {
    boost::system::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = FormatEndpoint(ep);
  }
  ~Session() {
    ReleaseBody();
    server_->connections_.fetch_sub(1);
    server_->Unregister(id_);
  }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoReadNext(); });
  }
  // Server stopping: close now if waiting for a request; otherwise the current response is the
  // last.
  void OnStop() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (self->state_ == State::kIdle) self->Close();
    });
  }
  void ForceClose() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }
  void OnResponse(Response r);
  auto executor() { return stream_.get_executor(); }

 private:
  enum class State { kIdle, kReading, kHandling, kWriting, kClosing };

  void DoReadNext();
  void Parse();
  void OnRequest();
  void StartWatch();
  void OnWatch(beast::error_code ec, size_t n);
  void OnWrite(beast::error_code ec);
  // Response::body_file: the next chunk, or the end of the response.
  void WriteFileChunk();
  void EndFile() {
    file_.reset();
    file_owner_.reset();
  }
  // Answers a request that could not be read (400/413/503) and closes.
  void ReplyAndClose(const Status& status, std::vector<Header> headers = {});
  // Accounts the body being read against the server's in-flight bound; false when refused.
  bool HoldBody();
  void ReleaseBody() {
    if (held_body_ > 0) server_->ReleaseBody(held_body_);
    held_body_ = 0;
  }
  void LingerClose();
  void Drain();
  void Close();

  Impl* server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  uint64_t id_;
  std::string remote_;
  State state_ = State::kIdle;
  unsigned version_ = 11;
  bool first_ = true;
  bool keep_alive_ = true;
  bool responded_ = false;
  bool watching_ = false;
  bool want_next_ = false;
  bool peer_gone_ = false;
  bool closed_ = false;
  bool linger_ = false;
  bool sent_continue_ = false;
  std::string head_;  // serialized status line and headers of the response being written
  std::string body_;  // input was left unread: drain before closing
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::unique_ptr<std::ifstream> file_;  // Response::body_file being written
  std::shared_ptr<const void> file_owner_;
  uint64_t file_left_ = 0;
  size_t held_body_ = 0;     // bytes reserved against max_inflight_body_bytes
  std::string cors_origin_;  // an allowed CORS Origin of the current request: echoed in ACAO
};

// A request in flight: the Responder's sink. Holds the session (to write the reply) and io_context
// work (so Stop waits for it).
class HttpServer::Impl::Exchange : public Responder::Sink {
 public:
  Exchange(std::shared_ptr<Session> session, WorkGuard work)
      : session_(std::move(session)), work_(std::move(work)) {}
  ~Exchange() override {
    if (!sent.exchange(true, std::memory_order_acq_rel)) {
      Deliver(Response::Error(Internal("the handler dropped the request without responding")));
    }
  }
  void Deliver(Response response) override {
    net::dispatch(session_->executor(), [s = session_, r = std::move(response)]() mutable {
      s->OnResponse(std::move(r));
    });
  }

 private:
  std::shared_ptr<Session> session_;
  WorkGuard work_;
};

// ---------------------------------------------------------------------------------------------
// Session

void HttpServer::Impl::Session::DoReadNext() {
  if (closed_) return;
  if (server_->stopping_.load()) return Close();
  state_ = State::kIdle;
  parser_.emplace();
  parser_->eager(true);
  parser_->header_limit(static_cast<uint32_t>(server_->options_.max_header_bytes));
  parser_->body_limit(server_->options_.max_body_bytes);
  sent_continue_ = false;
  Parse();
}

// Parses what is buffered (no scheduler round trip when a whole request is there, the common case
// with keep-alive and pipelining), and reads more only when the parser needs it.
void HttpServer::Impl::Session::Parse() {
  while (buffer_.size() > 0) {
    if (state_ == State::kIdle) {
      // First byte of a request: the header deadline starts now.
      state_ = State::kReading;
      first_ = false;
      stream_.expires_after(server_->options_.header_timeout);
    }
    bool header_was_done = parser_->is_header_done();
    beast::error_code ec;
    size_t n = parser_->put(buffer_.data(), ec);
    buffer_.consume(n);
    if (!header_was_done && parser_->is_header_done()) {
      stream_.expires_after(server_->options_.body_timeout);
    }
    bool need_more = ec == http::error::need_more;
    if (need_more) ec = {};
    if (ec == http::error::body_limit) {
      return ReplyAndClose(Status(
          Code::kPayloadTooLarge,
          "request body exceeds " + std::to_string(server_->options_.max_body_bytes) + " bytes"));
    }
    if (ec == http::error::header_limit) {
      return ReplyAndClose(Status(Code::kMalformedRequest, "request headers are too large"));
    }
    if (ec) {
      return ReplyAndClose(Status(Code::kMalformedRequest, "bad HTTP request: " + ec.message()));
    }
    if (parser_->is_header_done() && !HoldBody()) {
      return ReplyAndClose(Unavailable("the server holds too many request bodies in memory "
                                       "(server.max_inflight_body_bytes); retry later"),
                           {{"Retry-After", "1"}});
    }
    if (need_more) break;
    if (parser_->is_done()) return OnRequest();
    if (n == 0) break;
  }
  if (state_ == State::kIdle) {
    stream_.expires_after(first_ ? server_->options_.header_timeout
                                 : server_->options_.idle_timeout);
  }
  if (parser_->is_header_done() && !sent_continue_ &&
      beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
    sent_continue_ = true;
    net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec || self->closed_) return self->Close();
                       self->Parse();
                     });
    return;
  }
  stream_.async_read_some(buffer_.prepare(kReadChunk),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->buffer_.commit(n);
                            // End of stream, a reset or a timeout: nothing to answer.
                            if (ec || self->closed_) return self->Close();
                            self->Parse();
                          });
}

bool HttpServer::Impl::Session::HoldBody() {
  // Announced length up front (refused before the body is read); chunked bodies as they grow.
  size_t want = parser_->get().body().size();
  if (auto len = parser_->content_length()) want = std::max<size_t>(want, *len);
  if (want <= held_body_) return true;
  if (!server_->ReserveBody(want - held_body_)) return false;
  held_body_ = want;
  return true;
}

void HttpServer::Impl::Session::OnRequest() {
  state_ = State::kHandling;
  stream_.expires_never();
  http::request<http::string_body> msg = parser_->release();
  parser_.reset();
  version_ = msg.version();
  keep_alive_ = msg.keep_alive() && !server_->stopping_.load();
  responded_ = false;
  cancelled_ = std::make_shared<std::atomic<bool>>(false);

  auto ex = std::make_shared<Exchange>(shared_from_this(), net::make_work_guard(server_->ioc_));
  Request& req = ex->request;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  req.remote_address = remote_;
  req.cancelled = cancelled_;
  req.headers.reserve(8);
  for (const auto& f : msg) req.headers.emplace_back(f.name_string(), f.value());
  req.body = std::move(msg.body());
  Responder respond(ex);
  const internal::FrontDoor& door = *server_->door_;
  cors_origin_.clear();
  std::optional<std::string_view> origin = req.GetHeader("Origin");
  if (origin && door.CorsAllowed(*origin)) cors_origin_ = std::string(*origin);

  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  auto path = internal::PercentDecode(raw_path, false);
  Status host_ok = door.CheckHost(req.GetHeader("Host"), version_);
  if (!host_ok.ok()) {
    cors_origin_.clear();
    respond.SendError(host_ok);
  } else if (req.method == "OPTIONS" && origin && req.GetHeader("Access-Control-Request-Method")) {
    // A CORS preflight: answered here for the listed origins only.
    std::string_view wanted = *req.GetHeader("Access-Control-Request-Method");
    Router::Match m = server_->router_.Find(wanted, raw_path);
    if (!door.CorsAllowed(*origin)) {
      respond.SendError(PermissionDenied(
          "CORS preflight from '" + std::string(*origin) + "' refused: " +
          (door.cors_enabled() ? "the origin is not listed in server.cors_allowed_origins"
                               : "CORS is off (server.cors_allowed_origins is empty)")));
    } else if (m.kind == Router::MatchKind::kNotFound) {
      respond.SendError(
          NotFound("no route for " + std::string(wanted) + " " + std::string(raw_path)));
    } else {
      std::string allow;
      if (m.kind == Router::MatchKind::kFound) {
        allow = std::string(wanted);
      } else {
        allow = m.allow;
      }
      Response r;
      r.status = 204;
      r.headers = {{"Access-Control-Allow-Methods", allow},
                   {"Access-Control-Allow-Headers", "Authorization, Content-Type, Accept"},
                   {"Access-Control-Max-Age", "600"}};
      respond.Send(std::move(r));
    }
  } else if (!path || raw_path.empty() || raw_path.front() != '/') {
    respond.SendError(Status(Code::kMalformedRequest, "bad request target"));
  } else {
    req.path = std::move(*path);
    Status qs = q == std::string_view::npos
                    ? Status::Ok()
                    : internal::ParseQuery(target.substr(q + 1), &req.query);
    if (!qs.ok()) {
      respond.SendError(qs);
    } else {
      Router::Match m = server_->router_.Find(req.method, raw_path);
      if (m.kind == Router::MatchKind::kNotFound) {
        respond.SendError(NotFound("no route for " + req.method + " " + req.path));
      } else if (m.kind == Router::MatchKind::kMethodNotAllowed) {
        Response r = Response::Error(Status(
            Code::kMethodNotAllowed, "method " + req.method + " is not allowed on " + req.path));
        r.headers.emplace_back("Allow", m.allow);
        respond.Send(std::move(r));
      } else {
        req.path_params = std::move(m.path_params);
        const Router::Route* route = m.route;
        Status door_ok = door.CheckCrossSite(req);
        if (door_ok.ok()) door_ok = internal::FrontDoor::CheckContentType(req, route->spec);
        if (!door_ok.ok()) {
          respond.SendError(door_ok);
        } else if (route->spec.execution == Execution::kInline) {
          if (server_->AuthorizeOrRespond(req, route->spec, respond)) Impl::Invoke(*route, ex);
        } else if (route->spec.min_role != Role::kNone &&
                   server_->throttle_->BlockedFor(req.remote_address) > 0) {
          // A throttled address is answered (429) here: its flood never reaches the workers.
          server_->AuthorizeOrRespond(req, route->spec, respond);
        } else {
          Impl* server = server_;
          bool queued = server->workers_->Submit([server, route, ex] {
            if (server->AuthorizeOrRespond(ex->request, route->spec, Responder(ex))) {
              Impl::Invoke(*route, ex);
            }
          });
          if (!queued) {
            if (server->stopping_.load()) {
              respond.SendError(Unavailable("the server is shutting down"));
            } else {
              Response r = Response::Error(
                  Status(Code::kResourceExhausted, "the worker queue is full; retry later"));
              r.headers.emplace_back("Retry-After", "1");
              respond.Send(std::move(r));
            }
          }
        }
      }
    }
  }
  ex.reset();
  // `respond` still holds the exchange; responded_ tells whether the reply already went out.
  if (!responded_ && !closed_) StartWatch();
}

void HttpServer::Impl::Session::StartWatch() {
  if (watching_ || peer_gone_ || buffer_.size() >= kMaxReadAhead) return;
  watching_ = true;
  stream_.socket().async_read_some(
      buffer_.prepare(kReadChunk),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnWatch(ec, n); });
}

void HttpServer::Impl::Session::OnWatch(beast::error_code ec, size_t n) {
  watching_ = false;
  buffer_.commit(n);
  if (closed_) return;
  if (ec && ec != net::error::operation_aborted) {
    // End of stream or a reset: the client is gone (or half-closed: treated the same).
    peer_gone_ = true;
    keep_alive_ = false;
    if (!responded_ && cancelled_) cancelled_->store(true);
  }
  if (want_next_) {
    want_next_ = false;
    if (peer_gone_) return Close();
    return DoReadNext();
  }
  if (state_ == State::kHandling) StartWatch();
}

namespace {
// Header names and values from handlers go on the wire verbatim: refuse CR/LF (response splitting).
bool SafeHeaderText(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos;
}
}  // namespace

// Serializes the response by hand: cheaper than beast::http::response + serializer, which showed up
// at the top of the profile for small replies.
void HttpServer::Impl::Session::OnResponse(Response r) {
  if (closed_ || responded_) return;
  responded_ = true;
  ReleaseBody();  // the handler has answered: its body no longer counts as held
  if (peer_gone_ || server_->stopping_.load()) keep_alive_ = false;
  uint64_t length = r.body.size();
  if (!r.body_file.empty()) {
    std::error_code fec;
    const uint64_t size = std::filesystem::file_size(r.body_file, fec);
    auto file = std::make_unique<std::ifstream>(r.body_file, std::ios::binary);
    if (fec || !*file) {
      r = Response::Error(IoError("cannot read the response file"));
      length = r.body.size();
    } else {
      file_ = std::move(file);
      file_owner_ = std::move(r.body_file_owner);
      file_left_ = size;
      length = size;
      r.body.clear();
    }
  }
  unsigned status = r.status >= 100 && r.status <= 999 ? static_cast<unsigned>(r.status) : 500;
  std::string_view reason = http::obsolete_reason(static_cast<http::status>(status));
  head_.clear();
  head_ += version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  head_ += std::to_string(status);
  head_ += ' ';
  head_ += reason.empty() ? std::string_view("Unknown") : reason;
  head_ += "\r\nServer: lakeloop\r\nContent-Type: ";
  head_ += SafeHeaderText(r.content_type) ? std::string_view(r.content_type)
                                          : std::string_view("application/octet-stream");
  head_ += "\r\nContent-Length: ";
  head_ += std::to_string(length);
  head_ += "\r\n";
  if (!keep_alive_) {
    head_ += "Connection: close\r\n";
  } else if (version_ == 10) {
    head_ += "Connection: keep-alive\r\n";
  }
  for (const auto& [k, v] : r.headers) {
    if (k.empty() || !SafeHeaderText(k) || !SafeHeaderText(v) || k.find(':') != std::string::npos) {
      continue;
    }
    head_ += k;
    head_ += ": ";
    head_ += v;
    head_ += "\r\n";
  }
  if (!cors_origin_.empty()) {
    head_ += "Access-Control-Allow-Origin: ";
    head_ += cors_origin_;
    head_ += "\r\nVary: Origin\r\n";
  }
  head_ += "\r\n";
  body_ = std::move(r.body);
  state_ = State::kWriting;
  stream_.expires_after(server_->options_.body_timeout);
  if (file_) {
    net::async_write(stream_, net::buffer(head_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) {
                         self->EndFile();
                         return self->OnWrite(ec);
                       }
                       self->WriteFileChunk();
                     });
    return;
  }
  std::array<net::const_buffer, 2> bufs{net::buffer(head_), net::buffer(body_)};
  net::async_write(stream_, bufs, [self = shared_from_this()](beast::error_code ec, size_t) {
    self->OnWrite(ec);
  });
}

void HttpServer::Impl::Session::WriteFileChunk() {
  if (closed_ || file_left_ == 0) {
    EndFile();
    return OnWrite({});
  }
  const size_t n = static_cast<size_t>(std::min<uint64_t>(file_left_, kFileChunk));
  body_.resize(n);
  file_->read(body_.data(), static_cast<std::streamsize>(n));
  if (static_cast<size_t>(file_->gcount()) != n) {
    // The file shrank under us: the promised Content-Length cannot be kept; drop the connection.
    EndFile();
    return OnWrite(net::error::make_error_code(net::error::broken_pipe));
  }
  file_left_ -= n;
  stream_.expires_after(server_->options_.body_timeout);
  net::async_write(stream_, net::buffer(body_),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     if (ec) {
                       self->EndFile();
                       return self->OnWrite(ec);
                     }
                     self->WriteFileChunk();
                   });
}

void HttpServer::Impl::Session::OnWrite(beast::error_code ec) {
  body_.clear();
  if (body_.capacity() > (64 << 10)) body_.shrink_to_fit();
  if (closed_) return;
  if (ec) return Close();
  if (!keep_alive_) return linger_ || buffer_.size() > 0 ? LingerClose() : Close();
  if (watching_) {
    // Stop the watch; OnWatch continues with the next request.
    want_next_ = true;
    boost::system::error_code ignored;
    stream_.socket().cancel(ignored);
    return;
  }
  DoReadNext();
}

void HttpServer::Impl::Session::ReplyAndClose(const Status& status, std::vector<Header> headers) {
  // Not a real request: answer without a handler, then close (the rest of the input is unread).
  state_ = State::kHandling;
  parser_.reset();
  keep_alive_ = false;
  linger_ = true;
  responded_ = false;
  cancelled_.reset();
  cors_origin_.clear();
  Response r = Response::Error(status);
  for (auto& h : headers) r.headers.push_back(std::move(h));
  OnResponse(std::move(r));
}

// Half-closes and reads (discards) what the client still sends for up to a second, so the client
// sees our reply instead of a reset caused by unread input (an unread body after a 413/400, or
// pipelined requests after a Connection: close).
void HttpServer::Impl::Session::LingerClose() {
  if (watching_) {
    want_next_ = false;
    boost::system::error_code ignored;
    stream_.socket().cancel(ignored);
  }
  state_ = State::kClosing;
  boost::system::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return Close();
  buffer_.consume(buffer_.size());
  stream_.expires_after(kLingerTimeout);
  Drain();
}

void HttpServer::Impl::Session::Drain() {
  if (watching_) {
    // The cancelled watch completes first; drain after it (OnWatch is a no-op in kClosing).
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->Drain(); });
    return;
  }
  stream_.async_read_some(buffer_.prepare(kReadChunk),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            self->buffer_.consume(self->buffer_.size());
                            if (ec || self->closed_) return self->Close();
                            self->Drain();
                          });
}

void HttpServer::Impl::Session::Close() {
  if (closed_) return;
  closed_ = true;
  ReleaseBody();
  if (!responded_ && cancelled_) cancelled_->store(true);
  state_ = State::kClosing;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

// ---------------------------------------------------------------------------------------------
// Impl

bool HttpServer::Impl::AuthorizeOrRespond(Request& req, const RouteSpec& spec,
                                          const Responder& respond) {
  int64_t retry_after = 0;
  Status auth = Authorize(req, spec, &retry_after);
  if (auth.ok()) return true;
  Response r = Response::Error(auth);
  if (retry_after > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after));
  respond.Send(std::move(r));
  return false;
}

Status HttpServer::Impl::Authorize(Request& req, const RouteSpec& spec, int64_t* retry_after_s) {
  Role anonymous = auth_required_ ? Role::kNone : Role::kAdmin;
  if (spec.min_role != Role::kNone && throttle_) {
    if (int64_t wait = throttle_->BlockedFor(req.remote_address); wait > 0) {
      *retry_after_s = wait;
      return Status(Code::kResourceExhausted,
                    "too many requests with bad tokens from this address; retry in " +
                        std::to_string(wait) + " s");
    }
  }
  std::optional<std::string_view> token;
  if (auto auth = req.GetHeader("Authorization")) {
    if (!StartsWithIgnoreCase(*auth, "Bearer ")) {
      if (spec.min_role == Role::kNone) {
        req.role = Role::kNone;
        return Status::Ok();
      }
      return Unauthenticated("the Authorization header must be 'Bearer <token>'");
    }
    std::string_view t = auth->substr(7);
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    token = t;
  }
  if (!token) {
    req.role = anonymous;
  } else if (verifier_ == nullptr) {
    if (spec.min_role == Role::kNone) {
      req.role = Role::kNone;
      return Status::Ok();
    }
    return Unauthenticated("tokens are not configured on this server");
  } else {
    Result<Role> role = verifier_->Verify(*token);
    if (!role.ok()) {
      req.role = Role::kNone;
      if (spec.min_role == Role::kNone) return Status::Ok();  // open routes ignore a bad token
      if (role.status().code() == Code::kUnauthenticated && throttle_) {
        throttle_->Fail(req.remote_address);
      }
      return role.status();
    }
    req.role = *role;
  }
  if (spec.min_role == Role::kNone) return Status::Ok();
  if (req.role == Role::kNone) return Unauthenticated("this route needs a bearer token");
  if (req.role < spec.min_role) {
    return PermissionDenied("role '" + std::string(RoleName(req.role)) + "' may not call " +
                            spec.method + " " + spec.pattern + " (needs '" +
                            std::string(RoleName(spec.min_role)) + "')");
  }
  return Status::Ok();
}

void HttpServer::Impl::Invoke(const Router::Route& route, const std::shared_ptr<Exchange>& ex) {
  Responder respond(ex);
  try {
    route.handler(ex->request, respond);
  } catch (const std::exception& e) {
    respond.SendError(Internal(std::string("handler threw: ") + e.what()));
  } catch (...) {
    respond.SendError(Internal("handler threw"));
  }
}

Status HttpServer::Impl::Start() {
  if (started_) return Status(Code::kConflict, "the server is already started");
  ASSIGN_OR_RETURN(internal::HostPort hp, internal::SplitHostPort(options_.listen));
  if (hp.host == "localhost") hp.host = "127.0.0.1";
  boost::system::error_code ec;
  net::ip::address address = net::ip::make_address(hp.host, ec);
  if (ec) {
    return InvalidArgument("listen address '" + options_.listen +
                           "': host must be an IP address or localhost");
  }
  auth_required_ = options_.require_auth || !address.is_loopback();
  if (auth_required_ && verifier_ == nullptr) {
    return InvalidArgument("auth is required on " + options_.listen +
                           " (not loopback, or require_auth) but no token verifier was given");
  }
  tcp::endpoint ep(address, hp.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return IoError("cannot listen on " + options_.listen + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint(ec).port();
  std::vector<std::string> hosts;
  for (const auto& h : options_.allowed_hosts) {
    Status valid = internal::FrontDoor::ValidateHostEntry(h);
    if (!valid.ok()) {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      return valid;
    }
    hosts.push_back(h);
  }
  // The server answers to its own address: the listen address, or every interface's address when
  // it listens on all of them.
  if (!address.is_loopback() && !address.is_unspecified()) {
    hosts.push_back(address.is_v6() ? "[" + address.to_string() + "]" : address.to_string());
  } else if (address.is_unspecified()) {
    ifaddrs* ifs = nullptr;
    if (::getifaddrs(&ifs) == 0) {
      for (ifaddrs* i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        tcp::endpoint e;
        if (i->ifa_addr->sa_family == AF_INET) {
          std::memcpy(e.data(), i->ifa_addr, sizeof(sockaddr_in));
        } else if (i->ifa_addr->sa_family == AF_INET6) {
          std::memcpy(e.data(), i->ifa_addr, sizeof(sockaddr_in6));
        } else {
          continue;
        }
        net::ip::address a = e.address();
        if (a.is_v6() && a.to_v6().scope_id() != 0) continue;  // link-local
        hosts.push_back(a.is_v6() ? "[" + a.to_string() + "]" : a.to_string());
      }
      ::freeifaddrs(ifs);
    }
  }
  door_ = std::make_unique<internal::FrontDoor>(hosts, options_.cors_allowed_origins, port_);
  throttle_ = std::make_unique<internal::AuthThrottle>(
      std::max<size_t>(1, options_.auth_failures_per_minute));
  if (workers_ == nullptr) {
    owned_workers_ = std::make_unique<ThreadPool>("http-worker", options_.worker_threads,
                                                  options_.max_worker_queue);
    workers_ = owned_workers_.get();
  }
  started_ = true;
  work_.emplace(net::make_work_guard(ioc_));
  DoAccept();
  size_t n = std::max<size_t>(1, options_.io_threads);
  for (size_t i = 0; i < n; ++i) {
    threads_.emplace_back([this, i] {
      std::string name = "http-io-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      ioc_.run();
    });
  }
  return Status::Ok();
}

void HttpServer::Impl::DoAccept() {
  // One io thread needs no strand: every handler of a session already runs on that thread.
  net::any_io_executor ex = options_.io_threads > 1 ? net::any_io_executor(net::make_strand(ioc_))
                                                    : net::any_io_executor(ioc_.get_executor());
  acceptor_.async_accept(ex, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (connections_.load() >= options_.max_connections) {
        RejectConnection(std::move(socket));
        return DoAccept();
      }
      connections_.fetch_add(1);
      uint64_t id = next_session_id_.fetch_add(1);
      auto session = std::make_shared<Session>(this, std::move(socket), id);
      Register(id, session);
      session->Start();
    }
    DoAccept();
  });
}

void HttpServer::Impl::RejectConnection(tcp::socket socket) {
  static const std::string kBusy = [] {
    std::string body = R"({"error":{"code":"unavailable","message":"too many connections )"
                       R"((server.max_connections); retry later"}})";
    return "HTTP/1.1 503 Service Unavailable\r\nServer: lakeloop\r\n"
           "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  }();
  // Bounded too: past as many rejections in progress as connections, just close.
  if (rejecting_.load() >= options_.max_connections) return;
  rejecting_.fetch_add(1);
  struct Rejected {
    Impl* server;
    beast::tcp_stream stream;
    std::array<char, 4096> scratch;
    explicit Rejected(Impl* s, tcp::socket sock) : server(s), stream(std::move(sock)) {}
    ~Rejected() { server->rejecting_.fetch_sub(1); }
    // Reads and drops what the client sends until it closes or the timer fires, so the client
    // reads the 503 instead of a reset caused by unread input.
    static void Drain(std::shared_ptr<Rejected> r) {
      r->stream.async_read_some(net::buffer(r->scratch), [r](beast::error_code ec, size_t) {
        if (ec) {
          r->stream.close();
          return;
        }
        Drain(r);
      });
    }
  };
  auto r = std::make_shared<Rejected>(this, std::move(socket));
  r->stream.expires_after(kLingerTimeout);
  net::async_write(r->stream, net::buffer(kBusy), [r](beast::error_code ec, size_t) {
    if (ec) return r->stream.close();
    boost::system::error_code ignored;
    r->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    Rejected::Drain(r);
  });
}

void HttpServer::Impl::Stop(std::chrono::milliseconds grace) {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  ForEachSession([](const std::shared_ptr<Session>& s) { s->OnStop(); });
  work_.reset();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, grace, [this] { return sessions_.empty(); });
  }
  ForEachSession([](const std::shared_ptr<Session>& s) { s->ForceClose(); });
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (owned_workers_) owned_workers_->Shutdown();
}

// ---------------------------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(HttpServerOptions options, Router router, TokenVerifier* verifier,
                       ThreadPool* workers)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router), verifier, workers)) {}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0)); }

Status HttpServer::Start() { return impl_->Start(); }
void HttpServer::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }
uint16_t HttpServer::port() const { return impl_->port_; }
bool HttpServer::auth_required() const { return impl_->auth_required_; }

}  // namespace lakeloop::api
