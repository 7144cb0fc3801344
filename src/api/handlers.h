// api/handlers: the REST routes of lakeloop, one file per component (health, sql, tables, tokens).
// Each AddXRoutes registers its routes with their roles and OpenAPI metadata on a Router.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "api/api.h"
#include "batch/batch.h"
#include "catalog/catalog.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "core/time.h"
#include "lake/lake.h"
#include "realtime/realtime.h"
#include "sql/sql.h"

namespace lakeloop::features {
class DatasetBuilder;
}

namespace lakeloop::api {

// What the handlers use; owned by the composition root (app), which outlives the server.
struct Services {
  const Config* config = nullptr;
  catalog::Store* catalog = nullptr;
  catalog::TokenStore* tokens = nullptr;
  lake::Lake* lake = nullptr;
  sql::Engine* engine = nullptr;           // sandboxed: user SQL
  sql::Engine* loader = nullptr;           // internal: converts uploads to Parquet
  batch::Batch* batch = nullptr;           // sources, models, runs
  realtime::Realtime* realtime = nullptr;  // streams, stream features
  // Validates and applies the project's definition files (all kinds), or only reports (dry run).
  std::function<Result<batch::ApplyReport>(bool dry_run)> apply;
  std::filesystem::path scratch_dir;
  // Admission queue of expensive work (uploads, exports, ad-hoc SQL): limits.expensive_concurrency
  // threads, limits.expensive_queue waiting; null: run on the calling thread.
  ThreadPool* expensive = nullptr;
  metrics::Registry* metrics = nullptr;  // GET /metrics (not served when null)
  Micros started_at = 0;
  std::string version;
  // Point-in-time datasets (POST /api/v1/features/historical); null: not served (embedded mode).
  features::DatasetBuilder* datasets = nullptr;
};

Status AddHealthRoutes(Router& router, Services* services);
Status AddSqlRoutes(Router& router, Services* services);
Status AddTableRoutes(Router& router, Services* services);
Status AddTokenRoutes(Router& router, Services* services);
Status AddBatchRoutes(Router& router, Services* services);
Status AddStreamRoutes(Router& router, Services* services);
Status AddMetricsRoutes(Router& router, Services* services);
Status AddFeatureRoutes(Router& router, Services* services);
// The feature store's JSON (handlers/features.cc), shared with the CLI's embedded mode.
Result<features::OnlineRequest> ParseOnlineRequest(std::string_view body);
std::string OnlineResponseToJson(const features::OnlineRequest& request,
                                 const features::OnlineResponse& response);
std::string FeatureRegistryToJson(const features::Registry& registry);
std::string MaterializeReportToJson(const std::string& run_id,
                                    const realtime::MaterializeReport& report);
Status AddDatasetRoutes(Router& router, Services* services);

// The built web UI (handlers/static.cc): GET /, /{file} (a file of the root, else index.html),
// /assets/{file}; open (Role::kNone). Root: server.web_root, else DefaultWebRoot().
Status AddStaticRoutes(Router& router, Services* services);
// <dir of the running binary>/../web/dist (the binary lives in <repo>/build).
std::filesystem::path DefaultWebRoot();
// The regular file under `root` named by `relative` (a percent-decoded, '/'-separated path such
// as "assets/index-1a2b3c4d.js"). InvalidArgument for an absolute path, an empty, "." / ".." or
// hidden segment, a backslash, colon, NUL or control character; NotFound when it does not exist,
// is not a regular file, or resolves (through symlinks) outside the canonical root.
Result<std::filesystem::path> ResolveStaticPath(const std::filesystem::path& root,
                                                std::string_view relative);
// Content type by file extension (case-insensitive); application/octet-stream when unknown.
std::string_view StaticContentType(std::string_view file_name);

// Every route of the server, OpenAPI document included.
Status AddAllRoutes(Router& router, Services* services);

// A SyncHandler from a function (Services*, const Request&) -> Result<Response>: errors become
// the API's error replies.
template <typename F>
SyncHandler Wrap(Services* s, F f) {
  return [s, f](const Request& req) {
    auto r = f(s, req);
    return r.ok() ? std::move(r).value() : Response::Error(r.status());
  };
}

// A handler for expensive work: runs `handler` on Services::expensive (the route's own worker
// only queues it and is free again at once; auth still runs on the worker), or answers 503
// unavailable with Retry-After when the queue is full; a request whose client left while it waited
// is dropped unrun.
Handler Admitted(Services* s, SyncHandler handler);

// Shapes shared by the API and the CLI's embedded mode, so both print the same thing.
std::string RunsToJson(const std::vector<flow::RunInfo>& runs);
std::string ApplyReportToJson(const batch::ApplyReport& report);
// "1d", "6h", "15m" as microseconds.
Result<Micros> ParseStep(std::string_view step);

// Adapts the catalog's token store to the server's verifier interface.
class CatalogTokenVerifier : public TokenVerifier {
 public:
  explicit CatalogTokenVerifier(catalog::TokenStore* tokens) : tokens_(tokens) {}
  Result<Role> Verify(std::string_view token) override;

 private:
  catalog::TokenStore* tokens_;
};

}  // namespace lakeloop::api
