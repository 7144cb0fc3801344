// Request/Response helpers, roles, the Router and the OpenAPI generator (no Beast here).
#include <algorithm>
#include <exception>
#include <mutex>
#include <set>

#include "api/api.h"
#include "api/internal/url.h"
#include "core/json.h"

namespace lakeloop::api {

// ---------------------------------------------------------------------------------------------
// Request / Response / Responder

namespace {
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
}  // namespace

std::optional<std::string_view> Request::GetHeader(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view Request::PathParam(std::string_view name) const {
  for (const auto& [k, v] : path_params) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string_view> Request::QueryParam(std::string_view name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return std::string_view(it->second);
}

Response Response::Json(std::string body, int status) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::Text(std::string body, int status, std::string content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

Response Response::Error(const Status& status) {
  Status s =
      status.ok() ? Internal("handler returned an error response with an ok status") : status;
  const CodeInfo& info = InfoFor(s.code());
  Response r;
  r.status = info.http_status;
  JsonWriter w(&r.body);
  w.BeginObject().Key("error").BeginObject();
  w.Key("code").String(info.name).Key("message").String(s.message());
  w.EndObject().EndObject();
  if (s.code() == Code::kUnauthenticated) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

void Responder::Send(Response response) const {
  if (!sink_->sent.exchange(true, std::memory_order_acq_rel)) sink_->Deliver(std::move(response));
}

// ---------------------------------------------------------------------------------------------
// Router

namespace {

constexpr std::string_view kMethods[] = {"GET",    "POST", "PUT",    "PATCH",
                                         "DELETE", "HEAD", "OPTIONS"};

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

Status ParsePattern(std::string_view pattern, std::vector<std::vector<Router::Route::Piece>>* out) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("route pattern '" + std::string(pattern) + "': " + std::string(why));
  };
  if (pattern.empty() || pattern.front() != '/') return bad("must start with '/'");
  std::set<std::string, std::less<>> names;
  std::string_view rest = pattern.substr(1);
  if (rest.empty()) return Status::Ok();  // "/"
  for (;;) {
    size_t slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (seg.empty()) return bad("empty segment");
    std::vector<Router::Route::Piece> pieces;
    size_t i = 0;
    while (i < seg.size()) {
      if (seg[i] == '{') {
        size_t close = seg.find('}', i);
        if (close == std::string_view::npos) return bad("unclosed '{'");
        std::string_view name = seg.substr(i + 1, close - i - 1);
        if (name.empty() || !std::all_of(name.begin(), name.end(), IsNameChar)) {
          return bad("parameter names are [A-Za-z0-9_]+");
        }
        if (!pieces.empty() && pieces.back().is_param) {
          return bad("two parameters need a literal between them");
        }
        if (!names.emplace(name).second) return bad("duplicate parameter name");
        pieces.push_back({true, std::string(name)});
        i = close + 1;
      } else {
        size_t next = seg.find_first_of("{}", i);
        if (next != std::string_view::npos && seg[next] == '}') return bad("stray '}'");
        std::string_view lit =
            seg.substr(i, next == std::string_view::npos ? seg.size() - i : next - i);
        pieces.push_back({false, std::string(lit)});
        i += lit.size();
      }
    }
    out->push_back(std::move(pieces));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return Status::Ok();
}

// Matches one decoded segment; appends parameters to `params`.
bool MatchSegment(const std::vector<Router::Route::Piece>& pieces, std::string_view seg,
                  std::vector<Header>* params) {
  size_t pos = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    if (!p.is_param) {
      if (seg.substr(pos, p.text.size()) != p.text) return false;
      pos += p.text.size();
      continue;
    }
    size_t end = seg.size();
    if (i + 1 < pieces.size()) {  // the next piece is a literal: split at its first occurrence
      if (pos + 1 > seg.size()) return false;
      end = seg.find(pieces[i + 1].text, pos + 1);
      if (end == std::string_view::npos) return false;
    }
    if (end <= pos) return false;
    params->emplace_back(p.text, std::string(seg.substr(pos, end - pos)));
    pos = end;
  }
  return pos == seg.size();
}

// 2 = literal, 1 = mixed, 0 = one parameter.
int SegmentRank(const std::vector<Router::Route::Piece>& pieces) {
  bool has_param = false, has_literal = false;
  for (const auto& p : pieces) (p.is_param ? has_param : has_literal) = true;
  return !has_param ? 2 : (has_literal ? 1 : 0);
}

}  // namespace

Router::Router() : routes_(std::make_shared<std::vector<Route>>()) {}

Status Router::Add(RouteSpec spec, Handler handler) {
  if (std::find(std::begin(kMethods), std::end(kMethods), spec.method) == std::end(kMethods)) {
    return InvalidArgument("route method '" + spec.method + "' is not an upper-case HTTP method");
  }
  if (!handler) return InvalidArgument("route " + spec.pattern + " has no handler");
  Route route;
  RETURN_IF_ERROR(ParsePattern(spec.pattern, &route.segments));
  for (const auto* schema : {&spec.request_schema, &spec.response_schema}) {
    if (schema->empty()) continue;
    auto parsed = ParseJson(*schema);
    if (!parsed.ok() || !parsed->is_object()) {
      return InvalidArgument("route " + spec.method + " " + spec.pattern +
                             ": a schema must be a JSON object");
    }
  }
  for (const auto& r : *routes_) {
    if (r.spec.method == spec.method && r.spec.pattern == spec.pattern) {
      return AlreadyExists("route " + spec.method + " " + spec.pattern + " is already registered");
    }
  }
  route.spec = std::move(spec);
  route.handler = std::move(handler);
  routes_->push_back(std::move(route));
  return Status::Ok();
}

Status Router::AddSync(RouteSpec spec, SyncHandler handler) {
  if (!handler) return InvalidArgument("route " + spec.pattern + " has no handler");
  return Add(std::move(spec), [h = std::move(handler)](const Request& req, Responder respond) {
    respond.Send(h(req));
  });
}

Router::Match Router::Find(std::string_view method, std::string_view raw_path) const {
  Match m;
  if (raw_path.empty() || raw_path.front() != '/') return m;
  // Split and decode the segments.
  std::vector<std::string> segs;
  if (raw_path.size() > 1) {
    std::string_view rest = raw_path.substr(1);
    for (;;) {
      size_t slash = rest.find('/');
      std::string_view seg = rest.substr(0, slash);
      if (seg.find('%') == std::string_view::npos) {
        segs.emplace_back(seg);
      } else {
        auto d = internal::PercentDecode(seg, false);
        if (!d) return m;
        segs.push_back(std::move(*d));
      }
      if (slash == std::string_view::npos) break;
      rest = rest.substr(slash + 1);
    }
  }
  // The most specific matching pattern wins (ties: first registered); then pick the method.
  const Route* best = nullptr;
  std::vector<int> best_rank;
  std::vector<Header> params;
  for (const auto& r : *routes_) {
    if (r.segments.size() != segs.size()) continue;
    if (best && r.spec.pattern == best->spec.pattern) continue;
    params.clear();
    bool ok = true;
    std::vector<int> rank;
    rank.reserve(segs.size());
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      ok = MatchSegment(r.segments[i], segs[i], &params);
      rank.push_back(SegmentRank(r.segments[i]));
    }
    if (!ok) continue;
    if (!best || rank > best_rank) {
      best = &r;
      best_rank = std::move(rank);
      m.path_params = params;
    }
  }
  if (!best) return m;
  for (const auto& r : *routes_) {
    if (r.spec.pattern != best->spec.pattern) continue;
    if (r.spec.method == method) {
      m.kind = MatchKind::kFound;
      m.route = &r;
      return m;
    }
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += r.spec.method;
  }
  m.kind = MatchKind::kMethodNotAllowed;
  m.path_params.clear();
  return m;
}

// ---------------------------------------------------------------------------------------------
// OpenAPI

namespace {

std::string OperationId(const RouteSpec& spec) {
  std::string id;
  for (char c : spec.method) id.push_back(static_cast<char>(c - 'A' + 'a'));
  bool upper = true;
  for (char c : spec.pattern) {
    if (IsNameChar(c)) {
      id.push_back(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
      upper = false;
    } else {
      upper = true;
    }
  }
  return id;
}

void WriteOperation(JsonWriter& w, const Router::Route& r) {
  const RouteSpec& s = r.spec;
  std::string lower;
  for (char c : s.method) lower.push_back(static_cast<char>(c - 'A' + 'a'));
  w.Key(lower).BeginObject();
  w.Key("operationId").String(OperationId(s));
  if (!s.summary.empty()) w.Key("summary").String(s.summary);
  if (!s.tag.empty()) w.Key("tags").BeginArray().String(s.tag).EndArray();
  w.Key("x-lakeloop-min-role").String(RoleName(s.min_role));
  w.Key("parameters").BeginArray();
  for (const auto& seg : r.segments) {
    for (const auto& p : seg) {
      if (!p.is_param) continue;
      w.BeginObject().Key("name").String(p.text).Key("in").String("path");
      w.Key("required").Bool(true);
      w.Key("schema").BeginObject().Key("type").String("string").EndObject().EndObject();
    }
  }
  for (const auto& q : s.query_params) {
    w.BeginObject().Key("name").String(q.name).Key("in").String("query");
    if (!q.description.empty()) w.Key("description").String(q.description);
    w.Key("required").Bool(q.required);
    w.Key("schema").BeginObject().Key("type").String(q.type).EndObject().EndObject();
  }
  w.EndArray();
  if (!s.request_schema.empty()) {
    w.Key("requestBody").BeginObject().Key("required").Bool(true).Key("content").BeginObject();
    for (const auto& type : s.request_content_types) {
      w.Key(type).BeginObject().Key("schema").Raw(s.request_schema).EndObject();
    }
    w.EndObject().EndObject();
  }
  w.Key("responses").BeginObject();
  w.Key("200").BeginObject().Key("description").String("OK");
  if (!s.response_schema.empty()) {
    w.Key("content").BeginObject().Key(s.response_content_type).BeginObject();
    w.Key("schema").Raw(s.response_schema).EndObject().EndObject();
  }
  w.EndObject();
  w.Key("default").BeginObject().Key("description").String("Error");
  w.Key("content").BeginObject().Key("application/json").BeginObject();
  w.Key("schema").BeginObject().Key("$ref").String("#/components/schemas/Error").EndObject();
  w.EndObject().EndObject().EndObject();
  w.EndObject();  // responses
  w.Key("security").BeginArray();
  if (s.min_role != Role::kNone) {
    w.BeginObject().Key("bearerAuth").BeginArray().EndArray().EndObject();
  }
  w.EndArray();
  w.EndObject();
}

constexpr std::string_view kErrorSchema =
    R"({"type":"object","required":["error"],"properties":{"error":{"type":"object",)"
    R"("required":["code","message"],"properties":{"code":{"type":"string",)"
    R"("description":"stable wire name, e.g. invalid_argument"},"message":{"type":"string"}}}}})";

}  // namespace

std::string OpenApiDocument(const Router& router, const OpenApiInfo& info) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("openapi").String("3.0.3");
  w.Key("info").BeginObject().Key("title").String(info.title).Key("version").String(info.version);
  if (!info.description.empty()) w.Key("description").String(info.description);
  w.EndObject();
  w.Key("paths").BeginObject();
  const auto& routes = router.routes();
  std::set<std::string_view> done;
  for (size_t i = 0; i < routes.size(); ++i) {
    const std::string& pattern = routes[i].spec.pattern;
    if (!done.insert(pattern).second) continue;
    w.Key(pattern).BeginObject();
    for (size_t j = i; j < routes.size(); ++j) {
      if (routes[j].spec.pattern == pattern) WriteOperation(w, routes[j]);
    }
    w.EndObject();
  }
  w.EndObject();  // paths
  w.Key("components").BeginObject();
  w.Key("securitySchemes").BeginObject().Key("bearerAuth").BeginObject();
  w.Key("type").String("http").Key("scheme").String("bearer").EndObject().EndObject();
  w.Key("schemas").BeginObject().Key("Error").Raw(kErrorSchema).EndObject();
  w.EndObject();  // components
  w.Key("security").BeginArray().BeginObject().Key("bearerAuth").BeginArray().EndArray();
  w.EndObject().EndArray();
  w.EndObject();
  return out;
}

Status AddOpenApiRoute(Router& router, OpenApiInfo info) {
  struct Cache {
    std::once_flag once;
    std::string doc;
  };
  auto cache = std::make_shared<Cache>();
  std::weak_ptr<std::vector<Router::Route>> routes = router.routes_;
  RouteSpec spec;
  spec.method = "GET";
  spec.pattern = "/api/v1/openapi.json";
  spec.min_role = Role::kNone;
  spec.execution = Execution::kInline;
  spec.summary = "This OpenAPI 3.0.3 document";
  spec.tag = "meta";
  spec.response_schema = R"({"type":"object"})";
  return router.AddSync(std::move(spec), [cache, routes, info](const Request&) {
    auto table = routes.lock();
    if (!table) return Response::Error(Unavailable("the router is gone"));
    std::call_once(cache->once, [&] {
      Router view;
      view.routes_ = table;
      cache->doc = OpenApiDocument(view, info);
    });
    return Response::Json(cache->doc);
  });
}

}  // namespace lakeloop::api
