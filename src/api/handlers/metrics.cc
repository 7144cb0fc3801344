// GET /metrics: the process's metrics in the Prometheus text format (core/metrics.h).
#include "core/metrics.h"

#include "api/handlers.h"

namespace lakeloop::api {

Status AddMetricsRoutes(Router& router, Services* s) {
  if (!s->metrics) return Status::Ok();
  RouteSpec spec;
  spec.method = "GET";
  spec.pattern = "/metrics";
  spec.min_role = Role::kReader;
  spec.summary = "Metrics in the Prometheus text exposition format (version 0.0.4)";
  spec.tag = "system";
  spec.response_content_type = "text/plain; version=0.0.4";
  return router.AddSync(spec, [s](const Request&) {
    return Response::Text(s->metrics->RenderPrometheus(), 200,
                          "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace lakeloop::api
