// POST /api/v1/features/historical (point-in-time datasets), GET /api/v1/datasets[/{name}], and
// the Parquet download of a dataset build.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "core/json.h"
#include "features/historical.h"

namespace lakeloop::api {
namespace json = boost::json;

namespace {

Result<std::string> StringField(const json::object& body, std::string_view key) {
  const json::value* v = body.if_contains(key);
  if (v == nullptr) return std::string();
  if (!v->is_string() || v->as_string().empty()) {
    return InvalidArgument("field '" + std::string(key) + "' must be a non-empty string");
  }
  return std::string(v->as_string());
}

Result<Response> Historical(Services* s, const Request& req) {
  if (s->datasets == nullptr) {
    return Status(Code::kUnavailable, "dataset builds need the server (the event log)");
  }
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(req.body));
  for (const auto& kv : body) {
    const std::string_view k = kv.key();
    if (k != "name" && k != "entities_sql" && k != "entities_table" && k != "features" &&
        k != "feature_service" && k != "wait") {
      return InvalidArgument("unknown field '" + std::string(k) +
                             "' (expected name, entities_sql or entities_table, features or "
                             "feature_service, wait)");
    }
  }
  features::HistoricalRequest r;
  ASSIGN_OR_RETURN(r.name, StringField(body, "name"));
  if (r.name.empty()) return InvalidArgument("field 'name' (the dataset's name) is required");
  ASSIGN_OR_RETURN(r.entities_sql, StringField(body, "entities_sql"));
  ASSIGN_OR_RETURN(r.entities_table, StringField(body, "entities_table"));
  ASSIGN_OR_RETURN(r.feature_service, StringField(body, "feature_service"));
  if (const json::value* f = body.if_contains("features")) {
    if (!f->is_array() || f->as_array().empty()) {
      return InvalidArgument("field 'features' must be a non-empty array of \"view:feature\"");
    }
    for (const auto& x : f->as_array()) {
      if (!x.is_string()) return InvalidArgument("field 'features' must hold strings");
      r.features.emplace_back(x.as_string());
    }
  }
  r.created_by = std::string(RoleName(req.role));
  r.cancelled = req.cancelled;
  if (const json::value* w = body.if_contains("wait")) {
    if (!w->is_bool()) return InvalidArgument("field 'wait' must be true or false");
    if (!w->as_bool()) {
      // 202 with the running build; GET /api/v1/datasets/<name> follows it.
      ASSIGN_OR_RETURN(features::DatasetBuild b, s->datasets->Start(std::move(r)));
      return Response::Json(features::DatasetBuildToJson(b), 202);
    }
  }
  ASSIGN_OR_RETURN(features::DatasetBuild b, s->datasets->Build(r));
  return Response::Json(features::DatasetBuildToJson(b), 201);
}

Result<Response> ListDatasets(Services* s, const Request&) {
  if (s->datasets == nullptr) return Response::Json(R"({"datasets":[]})");
  ASSIGN_OR_RETURN(auto builds, s->datasets->List());
  std::string out = R"({"datasets":[)";
  for (size_t i = 0; i < builds.size(); ++i) {
    if (i) out += ',';
    out += features::DatasetBuildToJson(builds[i]);
  }
  out += "]}";
  return Response::Json(std::move(out));
}

Result<Response> GetDataset(Services* s, const Request& req) {
  if (s->datasets == nullptr) return NotFound("no datasets here");
  ASSIGN_OR_RETURN(auto builds, s->datasets->Builds(std::string(req.PathParam("name"))));
  std::string out = R"({"builds":[)";
  for (size_t i = 0; i < builds.size(); ++i) {
    if (i) out += ',';
    out += features::DatasetBuildToJson(builds[i]);
  }
  out += "]}";
  return Response::Json(std::move(out));
}

Result<Response> Download(Services* s, const Request& req) {
  if (s->datasets == nullptr) return NotFound("no datasets here");
  const std::string name(req.PathParam("name"));
  int64_t build = 0;
  if (auto b = req.QueryParam("build")) {
    try {
      build = std::stoll(std::string(*b));
    } catch (...) {
      build = -1;
    }
    if (build < 1) return InvalidArgument("build must be a positive integer");
  } else {
    ASSIGN_OR_RETURN(auto builds, s->datasets->Builds(name));
    for (const auto& b : builds) {
      if (b.status == "succeeded") {
        build = b.build;
        break;
      }
    }
    if (build == 0) return NotFound("dataset '" + name + "' has no finished build");
  }
  ASSIGN_OR_RETURN(features::DatasetBuild b, s->datasets->GetBuild(name, build));
  if (b.status != "succeeded") {
    return Conflict("build " + std::to_string(build) + " of dataset '" + name + "' is " + b.status);
  }
  ASSIGN_OR_RETURN(std::vector<lake::DataFile> files,
                   s->lake->SnapshotFiles({"datasets", name}, b.lake_version));
  if (files.size() != 1) return Internal("a dataset build has one file");
  Response r;
  // Streamed from the lake's immutable name of the file (the build's snapshot is pinned).
  r.body_file = s->lake->store()->Locate(files[0].key);
  r.content_type = "application/vnd.apache.parquet";
  r.headers.push_back({"X-Lakeloop-Row-Count", std::to_string(b.rows)});
  r.headers.push_back({"Content-Disposition", "attachment; filename=\"" + name + "-" +
                                                  std::to_string(build) + ".parquet\""});
  return r;
}

}  // namespace

Status AddDatasetRoutes(Router& router, Services* s) {
  RouteSpec build;
  build.method = "POST";
  build.pattern = "/api/v1/features/historical";
  build.min_role = Role::kWriter;
  build.execution = Execution::kWorker;
  build.summary =
      "Build a point-in-time dataset: entity rows (entities_sql or entities_table, with "
      "event_timestamp) plus features or a feature service, committed as datasets.<name>";
  build.tag = "features";
  build.request_schema =
      R"({"type":"object","required":["name"],"additionalProperties":false,"properties":{)"
      R"("name":{"type":"string"},"entities_sql":{"type":"string"},)"
      R"("entities_table":{"type":"string"},"features":{"type":"array","items":{"type":"string"}},)"
      R"("feature_service":{"type":"string"},"wait":{"type":"boolean"}}})";
  build.response_schema = R"({"type":"object"})";
  RETURN_IF_ERROR(router.Add(build, Admitted(s, Wrap(s, Historical))));

  RouteSpec list;
  list.method = "GET";
  list.pattern = "/api/v1/datasets";
  list.summary = "Datasets with their latest build";
  list.tag = "features";
  list.response_schema = R"({"type":"object"})";
  RETURN_IF_ERROR(router.AddSync(list, Wrap(s, ListDatasets)));

  RouteSpec one = list;
  one.pattern = "/api/v1/datasets/{name}";
  one.summary = "Every build of a dataset: status, progress, rows, lineage";
  RETURN_IF_ERROR(router.AddSync(one, Wrap(s, GetDataset)));

  RouteSpec dl = list;
  dl.pattern = "/api/v1/datasets/{name}/parquet";
  dl.summary = "A build's rows as Parquet (the newest finished build, or ?build=N)";
  dl.query_params = {
      {"build", "the build number (default: the newest finished)", "integer", false}};
  dl.response_schema = R"({"type":"string","format":"binary"})";
  return router.AddSync(dl, Wrap(s, Download));
}

}  // namespace lakeloop::api
