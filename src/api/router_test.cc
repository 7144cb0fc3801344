#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

#include "api/api.h"
#include "api/internal/url.h"
#include "core/json.h"

namespace lakeloop::api {
namespace {

void Noop(const Request&, Responder r) { r.Send(Response::Json("{}")); }

RouteSpec Spec(std::string method, std::string pattern) {
  RouteSpec s;
  s.method = std::move(method);
  s.pattern = std::move(pattern);
  return s;
}

TEST(RouterTest, RejectsBadPatterns) {
  Router r;
  for (const char* p : {"", "x", "/a//b", "/{", "/{}", "/{a}{b}", "/a}", "/{a-b}", "/{a}/{a}"}) {
    EXPECT_EQ(r.Add(Spec("GET", p), Noop).code(), Code::kInvalidArgument) << p;
  }
  EXPECT_EQ(r.Add(Spec("get", "/a"), Noop).code(), Code::kInvalidArgument);
  RouteSpec bad_schema = Spec("POST", "/a");
  bad_schema.request_schema = "{not json";
  EXPECT_EQ(r.Add(bad_schema, Noop).code(), Code::kInvalidArgument);
  ASSERT_TRUE(r.Add(Spec("GET", "/a"), Noop).ok());
  EXPECT_EQ(r.Add(Spec("GET", "/a"), Noop).code(), Code::kAlreadyExists);
}

TEST(RouterTest, MatchesParamsAndPrefersLiterals) {
  Router r;
  ASSERT_TRUE(r.Add(Spec("GET", "/api/v1/tables/{zone}.{table}"), Noop).ok());
  ASSERT_TRUE(r.Add(Spec("POST", "/api/v1/tables/{zone}.{table}"), Noop).ok());
  ASSERT_TRUE(r.Add(Spec("GET", "/api/v1/tables/{name}"), Noop).ok());
  ASSERT_TRUE(r.Add(Spec("GET", "/api/v1/tables/search"), Noop).ok());
  ASSERT_TRUE(r.Add(Spec("GET", "/api/v1/models/{name}/versions/{version}"), Noop).ok());

  auto m = r.Find("GET", "/api/v1/tables/sales.orders");
  ASSERT_EQ(m.kind, Router::MatchKind::kFound);
  EXPECT_EQ(m.route->spec.pattern, "/api/v1/tables/{zone}.{table}");
  ASSERT_EQ(m.path_params.size(), 2u);
  EXPECT_EQ(m.path_params[0], (Header{"zone", "sales"}));
  EXPECT_EQ(m.path_params[1], (Header{"table", "orders"}));

  m = r.Find("GET", "/api/v1/tables/a.b.c");  // splits at the first '.'
  ASSERT_EQ(m.kind, Router::MatchKind::kFound);
  EXPECT_EQ(m.path_params[0].second, "a");
  EXPECT_EQ(m.path_params[1].second, "b.c");

  m = r.Find("GET", "/api/v1/tables/search");
  EXPECT_EQ(m.route->spec.pattern, "/api/v1/tables/search");
  m = r.Find("GET", "/api/v1/tables/plain");
  EXPECT_EQ(m.route->spec.pattern, "/api/v1/tables/{name}");
  m = r.Find("GET", "/api/v1/tables/.x");  // empty zone: not the dotted route
  EXPECT_EQ(m.route->spec.pattern, "/api/v1/tables/{name}");

  m = r.Find("GET", "/api/v1/tables/a%2Fb");  // an encoded '/' stays inside the parameter
  ASSERT_EQ(m.kind, Router::MatchKind::kFound);
  EXPECT_EQ(m.path_params[0].second, "a/b");

  m = r.Find("GET", "/api/v1/models/m1/versions/3");
  ASSERT_EQ(m.kind, Router::MatchKind::kFound);
  EXPECT_EQ(m.path_params[1], (Header{"version", "3"}));

  EXPECT_EQ(r.Find("GET", "/api/v1/tables/").kind, Router::MatchKind::kNotFound);
  EXPECT_EQ(r.Find("GET", "/api/v1/tables/x/").kind, Router::MatchKind::kNotFound);
  EXPECT_EQ(r.Find("GET", "/api/v1/nope").kind, Router::MatchKind::kNotFound);
  m = r.Find("DELETE", "/api/v1/tables/a.b");
  EXPECT_EQ(m.kind, Router::MatchKind::kMethodNotAllowed);
  EXPECT_EQ(m.allow, "GET, POST");
}

TEST(RouterTest, ErrorResponseUsesCodeTable) {
  Response r = Response::Error(Status(Code::kPermissionDenied, "no \"way\""));
  EXPECT_EQ(r.status, 403);
  auto body = ParseJsonObject(r.body);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->at("error").at("code").as_string(), "permission_denied");
  EXPECT_EQ(body->at("error").at("message").as_string(), "no \"way\"");
  Response u = Response::Error(Unauthenticated("x"));
  EXPECT_EQ(u.status, 401);
  ASSERT_EQ(u.headers.size(), 1u);
  EXPECT_EQ(u.headers[0], (Header{"WWW-Authenticate", "Bearer"}));
}

TEST(RouterTest, RolesRoundTrip) {
  EXPECT_EQ(RoleName(Role::kNone), "none");
  for (Role r : {Role::kReader, Role::kWriter, Role::kAdmin}) {
    auto parsed = ParseRole(RoleName(r));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, r);
  }
  EXPECT_FALSE(ParseRole("root").ok());
  EXPECT_LT(Role::kReader, Role::kWriter);
}

TEST(OpenApiTest, DocumentListsExactlyTheRegisteredRoutes) {
  Router r;
  RouteSpec sql = Spec("POST", "/api/v1/sql");
  sql.summary = "Run one SELECT";
  sql.tag = "sql";
  sql.request_schema = R"({"type":"object","properties":{"sql":{"type":"string"}}})";
  sql.response_schema = R"({"type":"object"})";
  ASSERT_TRUE(r.Add(sql, Noop).ok());
  RouteSpec table = Spec("GET", "/api/v1/tables/{zone}.{table}");
  table.query_params.push_back({"limit", "max rows", "integer", false});
  ASSERT_TRUE(r.Add(table, Noop).ok());
  ASSERT_TRUE(r.Add(Spec("DELETE", "/api/v1/tables/{zone}.{table}"), Noop).ok());
  RouteSpec health = Spec("GET", "/api/v1/health");
  health.min_role = Role::kNone;
  ASSERT_TRUE(r.Add(health, Noop).ok());
  ASSERT_TRUE(AddOpenApiRoute(r).ok());

  auto doc = ParseJsonObject(OpenApiDocument(r, {}));
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ(doc->at("openapi").as_string(), "3.0.3");
  EXPECT_TRUE(doc->at("info").as_object().contains("title"));
  EXPECT_TRUE(doc->at("info").as_object().contains("version"));
  const auto& components = doc->at("components").as_object();
  EXPECT_EQ(components.at("securitySchemes").at("bearerAuth").at("scheme").as_string(), "bearer");
  EXPECT_TRUE(components.at("schemas").as_object().contains("Error"));

  std::set<std::string> documented, registered;
  for (const auto& [path, item] : doc->at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      std::string m(method);
      for (auto& c : m) c = static_cast<char>(std::toupper(c));
      documented.insert(m + " " + std::string(path));
      EXPECT_TRUE(op.as_object().contains("responses"));
    }
  }
  for (const auto& route : r.routes())
    registered.insert(route.spec.method + " " + route.spec.pattern);
  EXPECT_EQ(documented, registered);

  const auto& get_table = doc->at("paths").at("/api/v1/tables/{zone}.{table}").at("get");
  const auto& params = get_table.at("parameters").as_array();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[0].at("name").as_string(), "zone");
  EXPECT_EQ(params[0].at("in").as_string(), "path");
  EXPECT_EQ(params[1].at("name").as_string(), "table");
  EXPECT_EQ(params[2].at("in").as_string(), "query");
  const auto& post_sql = doc->at("paths").at("/api/v1/sql").at("post");
  EXPECT_EQ(post_sql.at("requestBody")
                .at("content")
                .at("application/json")
                .at("schema")
                .at("type")
                .as_string(),
            "object");
  EXPECT_EQ(post_sql.at("tags").as_array()[0].as_string(), "sql");
  // Open routes carry an empty security requirement; others the bearer one.
  EXPECT_TRUE(doc->at("paths").at("/api/v1/health").at("get").at("security").as_array().empty());
  EXPECT_EQ(post_sql.at("security").as_array().size(), 1u);
}

TEST(UrlTest, PercentDecodeAndQuery) {
  EXPECT_EQ(*internal::PercentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(*internal::PercentDecode("a%20b+c", true), "a b c");
  EXPECT_FALSE(internal::PercentDecode("%zz", false).has_value());
  EXPECT_FALSE(internal::PercentDecode("%4", false).has_value());
  EXPECT_FALSE(internal::PercentDecode("x%", false).has_value());
  std::map<std::string, std::string, std::less<>> q;
  ASSERT_TRUE(internal::ParseQuery("a=1&b=x%20y&a=2&flag&&c=", &q).ok());
  EXPECT_EQ(q["a"], "1");
  EXPECT_EQ(q["b"], "x y");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["c"], "");
  EXPECT_EQ(internal::ParseQuery("a=%g0", &q).code(), Code::kMalformedRequest);
}

TEST(UrlTest, SplitHostPort) {
  auto a = internal::SplitHostPort("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = internal::SplitHostPort("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = internal::SplitHostPort("0.0.0.0:0");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "0.0.0.0");
  for (const char* bad : {"", "8080", ":80", "host:", "host:99999", "::1:80", "[::1]80", "h:8x"}) {
    EXPECT_FALSE(internal::SplitHostPort(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace lakeloop::api
