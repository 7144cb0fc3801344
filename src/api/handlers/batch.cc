// The batch data path: apply, build, runs, backfills and lineage.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "core/json.h"

namespace lakeloop::api {
namespace json = boost::json;

namespace {

void WriteRun(JsonWriter& w, const flow::RunInfo& r) {
  auto ts = [&](const char* key, Micros t) {
    if (t > 0) {
      w.Key(key).String(FormatRfc3339(t));
    } else {
      w.Key(key).Null();
    }
  };
  w.BeginObject()
      .Key("id")
      .String(r.id)
      .Key("job")
      .String(r.job)
      .Key("trigger")
      .String(flow::TriggerName(r.trigger))
      .Key("status")
      .String(flow::RunStatusName(r.status))
      .Key("attempt")
      .Int(r.attempt)
      .Key("max_attempts")
      .Int(r.max_attempts);
  if (r.interval_end > r.interval_start) {
    w.Key("interval").BeginObject();
    ts("start", r.interval_start);
    ts("end", r.interval_end);
    w.EndObject();
  }
  ts("queued_at", r.queued_at);
  ts("started_at", r.started_at);
  ts("finished_at", r.finished_at);
  if (r.started_at > 0 && r.finished_at >= r.started_at) {
    w.Key("duration_ms").Double(static_cast<double>(r.finished_at - r.started_at) / 1000.0);
  }
  w.Key("rows_in")
      .Int(r.rows_in)
      .Key("rows_out")
      .Int(r.rows_out)
      .Key("rows_rejected")
      .Int(r.rows_rejected);
  if (r.error_code != Code::kOk || !r.error.empty()) {
    w.Key("error")
        .BeginObject()
        .Key("code")
        .String(CodeName(r.error_code))
        .Key("message")
        .String(r.error)
        .EndObject();
  }
  w.Key("output_tables").BeginArray();
  for (const auto& t : r.output_tables) w.String(t);
  w.EndArray();
  auto detail = ParseJson(r.detail.empty() ? "{}" : r.detail);
  w.Key("detail").Raw(detail.ok() ? r.detail : "{}");
  if (!r.backfill_id.empty()) w.Key("backfill_id").String(r.backfill_id);
  w.EndObject();
}

Result<std::shared_ptr<flow::Scheduler>> SchedulerOf(Services* s) {
  auto sched = s->batch->scheduler();
  if (!sched) return Unavailable("the scheduler is not running");
  return sched;
}

Result<Response> Apply(Services* s, const Request& req) {
  bool dry_run = false;
  if (!req.body.empty()) {
    ASSIGN_OR_RETURN(json::object body, ParseJsonObject(req.body));
    if (const auto* d = body.if_contains("dry_run")) {
      if (!d->is_bool()) return InvalidArgument("'dry_run' must be true or false");
      dry_run = d->as_bool();
    }
  }
  ASSIGN_OR_RETURN(batch::ApplyReport report, s->apply(dry_run));
  return Response::Json(ApplyReportToJson(report));
}

Result<Response> Build(Services* s, const Request&) {
  ASSIGN_OR_RETURN(auto runs, s->batch->Build());
  return Response::Json(RunsToJson(runs));
}

Result<Response> StartRun(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(req.body));
  const auto* job = body.if_contains("job");
  if (!job || !job->is_string()) {
    return InvalidArgument(
        "field 'job' (e.g. \"source:orders\" or \"model:daily_revenue\") is required");
  }
  std::string params = "{}";
  if (const auto* p = body.if_contains("params")) {
    if (!p->is_object()) return InvalidArgument("'params' must be an object");
    params = ToJson(*p);
  }
  bool wait = false;
  if (const auto* w = body.if_contains("wait")) {
    if (!w->is_bool()) return InvalidArgument("'wait' must be true or false");
    wait = w->as_bool();
  }
  ASSIGN_OR_RETURN(flow::RunInfo run, s->batch->Run(std::string(job->as_string()), params, wait));
  std::string out;
  JsonWriter w(&out);
  WriteRun(w, run);
  return Response::Json(std::move(out), wait ? 200 : 202);
}

Result<Response> ListRuns(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(auto sched, SchedulerOf(s));
  flow::RunFilter f;
  if (auto j = req.QueryParam("job")) f.job = std::string(*j);
  if (auto st = req.QueryParam("status")) {
    ASSIGN_OR_RETURN(flow::RunStatus status, flow::ParseRunStatus(*st));
    f.status = status;
  }
  if (auto l = req.QueryParam("limit")) {
    try {
      f.limit = std::stoi(std::string(*l));
    } catch (const std::exception&) {
      return InvalidArgument("limit must be a number");
    }
    if (f.limit < 1 || f.limit > 10000) return InvalidArgument("limit must be 1..10000");
  }
  ASSIGN_OR_RETURN(auto runs, sched->ListRuns(f));
  return Response::Json(RunsToJson(runs));
}

Result<Response> GetRun(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(auto sched, SchedulerOf(s));
  ASSIGN_OR_RETURN(flow::RunInfo run, sched->GetRun(req.PathParam("id")));
  std::string out;
  JsonWriter w(&out);
  WriteRun(w, run);
  return Response::Json(std::move(out));
}

Result<Micros> ParseTime(const json::object& body, const char* key) {
  const auto* v = body.if_contains(key);
  if (!v || !v->is_string()) {
    return InvalidArgument(std::string("field '") + key +
                           "' (a date or RFC 3339 time) is required");
  }
  return ParseRfc3339(v->as_string());
}

Result<Response> Backfill(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(req.body));
  const auto* model = body.if_contains("model");
  if (!model || !model->is_string()) return InvalidArgument("field 'model' is required");
  ASSIGN_OR_RETURN(Micros from, ParseTime(body, "from"));
  ASSIGN_OR_RETURN(Micros to, ParseTime(body, "to"));
  if (to <= from) return InvalidArgument("'to' must be after 'from'");
  Micros step = 86400LL * 1000000;
  if (const auto* st = body.if_contains("step")) {
    if (!st->is_string()) return InvalidArgument("'step' must be a string like 1d");
    ASSIGN_OR_RETURN(step, ParseStep(st->as_string()));
  }
  ASSIGN_OR_RETURN(auto runs, s->batch->Backfill(std::string(model->as_string()), from, to, step));
  return Response::Json(RunsToJson(runs));
}

Result<Response> Lineage(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(lake::TableRef ref,
                   lake::ParseTableRef(std::string(req.PathParam("zone")) + "." +
                                       std::string(req.PathParam("table"))));
  ASSIGN_OR_RETURN(std::string out, s->batch->LineageJson(ref));
  return Response::Json(std::move(out));
}

constexpr std::string_view kRunSchema =
    R"({"type":"object","properties":{"id":{"type":"string"},"job":{"type":"string"},)"
    R"("trigger":{"type":"string"},"status":{"type":"string","enum":["queued","running","succeeded","failed","cancelled"]},)"
    R"("attempt":{"type":"integer"},"rows_in":{"type":"integer"},"rows_out":{"type":"integer"},)"
    R"("rows_rejected":{"type":"integer"},"output_tables":{"type":"array","items":{"type":"string"}},)"
    R"("detail":{"type":"object"},"error":{"type":"object"}}})";

std::string RunsSchema() {
  return R"({"type":"object","properties":{"runs":{"type":"array","items":)" +
         std::string(kRunSchema) + "}}}";
}

}  // namespace

std::string RunsToJson(const std::vector<flow::RunInfo>& runs) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("runs").BeginArray();
  for (const auto& r : runs) WriteRun(w, r);
  w.EndArray().EndObject();
  return out;
}

std::string ApplyReportToJson(const batch::ApplyReport& report) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("dry_run").Bool(report.dry_run).Key("changes").BeginArray();
  for (const auto& c : report.changes) {
    w.BeginObject().Key("action").String(c.action).Key("kind").String(c.kind).Key("name").String(
        c.name);
    if (!c.note.empty()) w.Key("note").String(c.note);
    w.EndObject();
  }
  w.EndArray().EndObject();
  return out;
}

Result<Micros> ParseStep(std::string_view s) {
  if (s.size() < 2) return InvalidArgument("step must look like 1d, 6h or 15m");
  char unit = s.back();
  int64_t n = 0;
  for (char c : s.substr(0, s.size() - 1)) {
    if (c < '0' || c > '9') return InvalidArgument("step must look like 1d, 6h or 15m");
    n = n * 10 + (c - '0');
  }
  int64_t per = unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : 0;
  if (per == 0 || n <= 0) return InvalidArgument("step must look like 1d, 6h or 15m");
  return n * per * 1000000;
}

Status AddBatchRoutes(Router& router, Services* s) {
  RouteSpec apply;
  apply.method = "POST";
  apply.pattern = "/api/v1/apply";
  apply.min_role = Role::kAdmin;
  apply.summary = "Validate the project's definitions and apply them (or only show the changes)";
  apply.tag = "batch";
  apply.request_schema = R"({"type":"object","properties":{"dry_run":{"type":"boolean"}}})";
  apply.response_schema =
      R"({"type":"object","properties":{"dry_run":{"type":"boolean"},"changes":{"type":"array","items":{"type":"object","properties":{"action":{"type":"string"},"kind":{"type":"string"},"name":{"type":"string"},"note":{"type":"string"}}}}}})";
  RETURN_IF_ERROR(router.AddSync(apply, Wrap(s, Apply)));

  RouteSpec build;
  build.method = "POST";
  build.pattern = "/api/v1/build";
  build.min_role = Role::kWriter;
  build.summary = "Load every source, then build every model in dependency order with its tests";
  build.tag = "batch";
  build.response_schema = RunsSchema();
  RETURN_IF_ERROR(router.AddSync(build, Wrap(s, Build)));

  RouteSpec run;
  run.method = "POST";
  run.pattern = "/api/v1/runs";
  run.min_role = Role::kWriter;
  run.summary = "Start a run of a job (source:<name> or model:<name>), optionally waiting for it";
  run.tag = "batch";
  run.request_schema =
      R"({"type":"object","required":["job"],"properties":{"job":{"type":"string"},"params":{"type":"object"},"wait":{"type":"boolean"}}})";
  run.response_schema = std::string(kRunSchema);
  RETURN_IF_ERROR(router.AddSync(run, Wrap(s, StartRun)));

  RouteSpec list;
  list.method = "GET";
  list.pattern = "/api/v1/runs";
  list.summary = "Run history, newest first";
  list.tag = "batch";
  list.query_params = {{"job", "only this job", "string", false},
                       {"status", "queued|running|succeeded|failed|cancelled", "string", false},
                       {"limit", "at most this many (default 100)", "integer", false}};
  list.response_schema = RunsSchema();
  RETURN_IF_ERROR(router.AddSync(list, Wrap(s, ListRuns)));

  RouteSpec one = list;
  one.pattern = "/api/v1/runs/{id}";
  one.summary = "One run";
  one.query_params.clear();
  one.response_schema = std::string(kRunSchema);
  RETURN_IF_ERROR(router.AddSync(one, Wrap(s, GetRun)));

  RouteSpec backfill;
  backfill.method = "POST";
  backfill.pattern = "/api/v1/backfills";
  backfill.min_role = Role::kWriter;
  backfill.summary = "Run an incremental model once per interval of [from, to), in order";
  backfill.tag = "batch";
  backfill.request_schema =
      R"({"type":"object","required":["model","from","to"],"properties":{"model":{"type":"string"},"from":{"type":"string"},"to":{"type":"string"},"step":{"type":"string"}}})";
  backfill.response_schema = RunsSchema();
  RETURN_IF_ERROR(router.AddSync(backfill, Wrap(s, Backfill)));

  RouteSpec lineage;
  lineage.method = "GET";
  lineage.pattern = "/api/v1/lineage/{zone}.{table}";
  lineage.summary = "What a table's current version was built from, and what depends on it";
  lineage.tag = "batch";
  lineage.response_schema =
      R"({"type":"object","properties":{"table":{"type":"string"},"version":{"type":"integer"},"inputs":{"type":"array","items":{"type":"object"}},"downstream":{"type":"array","items":{"type":"string"}}}})";
  return router.AddSync(lineage, Wrap(s, Lineage));
}

}  // namespace lakeloop::api
