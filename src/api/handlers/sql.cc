// POST /api/v1/sql: one SELECT or EXPLAIN over the lake, as JSON, CSV or Parquet.
#include <boost/json.hpp>

#include "api/handlers.h"
#include "core/json.h"

namespace lakeloop::api {
namespace json = boost::json;

namespace {

Result<sql::Format> ChooseFormat(const Request& req) {
  if (auto f = req.QueryParam("format")) {
    if (*f == "json") return sql::Format::kJson;
    if (*f == "csv") return sql::Format::kCsv;
    if (*f == "parquet") return sql::Format::kParquet;
    return InvalidArgument("format must be json, csv or parquet, not '" + std::string(*f) + "'");
  }
  if (auto accept = req.GetHeader("Accept")) {
    if (accept->find("text/csv") != std::string_view::npos) return sql::Format::kCsv;
    if (accept->find("application/vnd.apache.parquet") != std::string_view::npos) {
      return sql::Format::kParquet;
    }
  }
  return sql::Format::kJson;
}

Result<Response> RunSql(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(req.body));
  for (const auto& kv : body) {
    if (kv.key() != "sql" && kv.key() != "limit" && kv.key() != "timeout_ms") {
      return InvalidArgument("unknown field '" + std::string(kv.key()) +
                             "' (expected sql, limit, timeout_ms)");
    }
  }
  const json::value* sql = body.if_contains("sql");
  if (!sql || !sql->is_string()) return InvalidArgument("field 'sql' (a string) is required");
  const SqlConfig& cfg = s->config->sql;
  sql::QueryRequest q;
  q.sql = std::string(sql->as_string());
  q.limit = cfg.default_row_limit;
  q.timeout_ms = cfg.query_timeout_ms;
  if (const json::value* l = body.if_contains("limit")) {
    if (!l->is_int64() && !l->is_uint64()) {
      return InvalidArgument("field 'limit' must be a non-negative integer");
    }
    int64_t v = l->is_int64() ? l->as_int64() : static_cast<int64_t>(l->as_uint64());
    if (v < 0 || v > cfg.max_row_limit) {
      return InvalidArgument("field 'limit' must be between 0 and " +
                             std::to_string(cfg.max_row_limit));
    }
    q.limit = v;
  }
  if (const json::value* t = body.if_contains("timeout_ms")) {
    if (!t->is_int64() || t->as_int64() <= 0) {
      return InvalidArgument("field 'timeout_ms' must be a positive integer");
    }
    q.timeout_ms = std::min<int64_t>(t->as_int64(), cfg.query_timeout_ms);
  }
  ASSIGN_OR_RETURN(q.format, ChooseFormat(req));
  q.cancelled = req.cancelled;
  if (req.role < Role::kWriter) {
    // Readers may only read; say so with 403 before anything else is said about the statement.
    ASSIGN_OR_RETURN(std::string type, s->engine->StatementType(q.sql));
    if (type != "SELECT" && type != "EXPLAIN") {
      return PermissionDenied("a reader token may run SELECT and EXPLAIN only; got " + type);
    }
  }
  if (q.format == sql::Format::kParquet) {
    q.max_rows = s->config->limits.export_max_rows;
    q.max_bytes = s->config->limits.export_max_bytes;
    q.parquet_to_file = true;
  }
  ASSIGN_OR_RETURN(sql::QueryReply reply, s->engine->Run(q));
  Response r;
  r.body = std::move(reply.body);
  if (reply.file != nullptr) {
    // Streamed from the scratch file, which goes when the response is written.
    r.body_file = reply.file->path;
    r.body_file_owner = reply.file;
  }
  r.content_type = reply.content_type;
  r.headers.push_back({"X-Lakeloop-Row-Count", std::to_string(reply.row_count)});
  r.headers.push_back({"X-Lakeloop-Truncated", reply.truncated ? "true" : "false"});
  if (q.format == sql::Format::kParquet) {
    r.headers.push_back({"Content-Disposition", "attachment; filename=\"result.parquet\""});
  }
  return r;
}

}  // namespace

Status AddSqlRoutes(Router& router, Services* s) {
  RouteSpec spec;
  spec.method = "POST";
  spec.pattern = "/api/v1/sql";
  spec.min_role = Role::kReader;
  spec.execution = Execution::kWorker;
  spec.summary =
      "Run one SELECT or EXPLAIN over the lake (JSON; CSV with Accept: text/csv; Parquet with "
      "?format=parquet)";
  spec.tag = "sql";
  spec.query_params = {{"format", "json (default), csv or parquet", "string", false}};
  spec.request_schema =
      R"({"type":"object","required":["sql"],"additionalProperties":false,"properties":{)"
      R"("sql":{"type":"string"},"limit":{"type":"integer","minimum":0},)"
      R"("timeout_ms":{"type":"integer","minimum":1}}})";
  spec.response_schema =
      R"({"type":"object","required":["columns","rows","row_count","truncated"],"properties":{)"
      R"("columns":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},)"
      R"("type":{"type":"string"}}}},"rows":{"type":"array","items":{"type":"array","items":{}}},)"
      R"("row_count":{"type":"integer"},"truncated":{"type":"boolean"}}})";
  return router.Add(spec, Admitted(s, [s](const Request& req) {
                      auto r = RunSql(s, req);
                      return r.ok() ? std::move(r).value() : Response::Error(r.status());
                    }));
}

Handler Admitted(Services* s, SyncHandler handler) {
  return [s, handler = std::move(handler)](const Request& req, Responder respond) {
    auto run = [handler, &req, respond] {
      if (req.IsCancelled()) {
        respond.SendError(Status(Code::kCancelled, "the client went away while queued"));
        return;
      }
      Response r;
      try {
        r = handler(req);
      } catch (const std::exception& e) {
        r = Response::Error(Internal(std::string("handler threw: ") + e.what()));
      }
      respond.Send(std::move(r));
    };
    if (s->expensive == nullptr) return run();
    // The Responder keeps the request alive until it is answered.
    if (!s->expensive->Submit(run)) {
      Response r = Response::Error(
          Unavailable("too many uploads, exports and SQL queries at once; retry later (limits."
                      "expensive_concurrency, limits.expensive_queue in lakeloop.yaml)"));
      r.headers.push_back({"Retry-After", "1"});
      respond.Send(std::move(r));
    }
  };
}

}  // namespace lakeloop::api
