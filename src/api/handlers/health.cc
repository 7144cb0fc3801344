#include "api/handlers.h"
#include "core/json.h"

namespace lakeloop::api {

Status AddHealthRoutes(Router& router, Services* s) {
  RouteSpec spec;
  spec.method = "GET";
  spec.pattern = "/api/v1/health";
  spec.min_role = Role::kNone;
  spec.execution = Execution::kInline;
  spec.summary = "Liveness and basic facts about the server";
  spec.tag = "system";
  spec.response_schema =
      R"({"type":"object","required":["status"],"properties":{"status":{"type":"string","enum":["ok"]},)"
      R"("version":{"type":"string"},"uptime_s":{"type":"number"},"catalog":{"type":"string"}}})";
  return router.AddSync(spec, [s](const Request&) {
    std::string out;
    JsonWriter w(&out);
    w.BeginObject()
        .Key("status")
        .String("ok")
        .Key("version")
        .String(s->version)
        .Key("uptime_s")
        .Double(static_cast<double>(NowMicros() - s->started_at) / 1e6)
        .Key("catalog")
        .String(s->catalog->backend())
        .EndObject();
    return Response::Json(std::move(out));
  });
}

Status AddAllRoutes(Router& router, Services* services) {
  RETURN_IF_ERROR(AddHealthRoutes(router, services));
  RETURN_IF_ERROR(AddSqlRoutes(router, services));
  RETURN_IF_ERROR(AddTableRoutes(router, services));
  RETURN_IF_ERROR(AddTokenRoutes(router, services));
  RETURN_IF_ERROR(AddBatchRoutes(router, services));
  RETURN_IF_ERROR(AddStreamRoutes(router, services));
  RETURN_IF_ERROR(AddMetricsRoutes(router, services));
  if (services->realtime) RETURN_IF_ERROR(AddFeatureRoutes(router, services));
  RETURN_IF_ERROR(AddDatasetRoutes(router, services));
  RETURN_IF_ERROR(AddStaticRoutes(router, services));
  OpenApiInfo info;
  info.version = services->version;
  info.description = "lakeloop: lakehouse, streaming features and the MLOps loop in one server.";
  return AddOpenApiRoute(router, info);
}

Result<Role> CatalogTokenVerifier::Verify(std::string_view token) { return tokens_->Verify(token); }

}  // namespace lakeloop::api
