// API tokens: created by an admin; the clear token is returned once.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "core/json.h"

namespace lakeloop::api {

Status AddTokenRoutes(Router& router, Services* s) {
  RouteSpec spec;
  spec.method = "POST";
  spec.pattern = "/api/v1/tokens";
  spec.min_role = Role::kAdmin;
  spec.summary = "Create an API token (the token is shown once)";
  spec.tag = "auth";
  spec.request_schema =
      R"({"type":"object","required":["role"],"properties":{"role":{"type":"string","enum":["reader","writer","admin"]},"name":{"type":"string"},"expires_in_s":{"type":"integer","minimum":1}}})";
  spec.response_schema =
      R"({"type":"object","properties":{"id":{"type":"string"},"token":{"type":"string"},"role":{"type":"string"}}})";
  return router.AddSync(spec, [s](const Request& req) -> Response {
    auto body = ParseJsonObject(req.body);
    if (!body.ok()) return Response::Error(body.status());
    const auto* role = body->if_contains("role");
    if (!role || !role->is_string()) {
      return Response::Error(InvalidArgument("field 'role' (reader|writer|admin) is required"));
    }
    auto r = catalog::ParseRole(role->as_string());
    if (!r.ok()) return Response::Error(r.status());
    std::string name;
    if (const auto* n = body->if_contains("name"); n && n->is_string()) name = n->as_string();
    int64_t expires_at = 0;
    if (const auto* e = body->if_contains("expires_in_s")) {
      if (!e->is_int64() || e->as_int64() <= 0) {
        return Response::Error(InvalidArgument("'expires_in_s' must be a positive integer"));
      }
      expires_at = NowMicros() + e->as_int64() * 1'000'000;
    }
    auto created = s->tokens->Create(*r, name, expires_at);
    if (!created.ok()) return Response::Error(created.status());
    std::string out;
    JsonWriter w(&out);
    w.BeginObject()
        .Key("id")
        .String(created->id)
        .Key("token")
        .String(created->token)
        .Key("role")
        .String(catalog::RoleName(*r))
        .EndObject();
    return Response::Json(std::move(out), 201);
  });
}

}  // namespace lakeloop::api
