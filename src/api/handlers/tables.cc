// Lake tables: list with snapshots, one table, and commits of uploaded files.
#include "api/handlers.h"
#include "core/ids.h"
#include "core/json.h"
#include "sql/lake_io.h"

namespace lakeloop::api {
namespace {

constexpr std::string_view kSchemaColumns =
    R"({"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},"type":{"type":"string"}}}})";

void WriteSchema(JsonWriter& w, const std::vector<lake::Column>& schema) {
  w.BeginArray();
  for (const auto& c : schema)
    w.BeginObject().Key("name").String(c.name).Key("type").String(c.type).EndObject();
  w.EndArray();
}

void WriteSnapshot(JsonWriter& w, const lake::TableRef& t, const lake::Snapshot& s) {
  w.BeginObject()
      .Key("version")
      .Int(s.version)
      .Key("committed_at")
      .String(FormatRfc3339(s.committed_at))
      .Key("operation")
      .String(s.operation)
      .Key("added_rows")
      .Int(s.added_rows)
      .Key("row_count")
      .Int(s.total_rows)
      .Key("bytes")
      .Int(s.total_bytes)
      .Key("files")
      .Int(s.file_count)
      .Key("expired")
      .Bool(s.expired);
  if (!s.expired) {
    w.Key("query_as")
        .String(sql::LakeViews::SnapshotSchema(t.zone) + "." +
                sql::LakeViews::SnapshotView(t.name, s.version));
  }
  w.EndObject();
}

Status WriteTable(Services* s, JsonWriter& w, const lake::TableInfo& t) {
  ASSIGN_OR_RETURN(auto snaps, s->lake->ListSnapshots(t.ref));
  const lake::Snapshot* cur = nullptr;
  for (const auto& sn : snaps) {
    if (sn.version == t.current_version) cur = &sn;
  }
  w.BeginObject()
      .Key("name")
      .String(t.ref.ToString())
      .Key("zone")
      .String(t.ref.zone)
      .Key("table")
      .String(t.ref.name)
      .Key("version")
      .Int(t.current_version)
      .Key("row_count")
      .Int(cur ? cur->total_rows : 0)
      .Key("bytes")
      .Int(cur ? cur->total_bytes : 0)
      .Key("files")
      .Int(cur ? cur->file_count : 0)
      .Key("created_at")
      .String(FormatRfc3339(t.created_at))
      .Key("updated_at")
      .String(FormatRfc3339(t.updated_at))
      .Key("columns");
  WriteSchema(w, t.schema);
  w.Key("partition_by").BeginArray();
  for (const auto& p : t.partition_by) w.String(p);
  w.EndArray();
  // The definition that owns the table (only it commits), or null: direct commits allowed.
  ASSIGN_OR_RETURN(std::optional<lake::Owner> owner, s->lake->OwnerOf(t.ref));
  w.Key("owner");
  if (owner) {
    w.BeginObject().Key("kind").String(owner->kind).Key("name").String(owner->name).EndObject();
  } else {
    w.Null();
  }
  ASSIGN_OR_RETURN(auto pins, s->lake->ListPins(t.ref));
  w.Key("pins").BeginArray();
  for (const auto& p : pins) {
    w.BeginObject()
        .Key("version")
        .Int(p.version)
        .Key("holder")
        .String(p.holder)
        .Key("reason")
        .String(p.reason)
        .EndObject();
  }
  w.EndArray();
  w.Key("snapshots").BeginArray();
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) WriteSnapshot(w, t.ref, *it);
  w.EndArray().EndObject();
  return Status::Ok();
}

Result<Response> ListTables(Services* s, const Request&) {
  ASSIGN_OR_RETURN(auto tables, s->lake->ListTables());
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("tables").BeginArray();
  for (const auto& t : tables) RETURN_IF_ERROR(WriteTable(s, w, t));
  w.EndArray().EndObject();
  return Response::Json(std::move(out));
}

Result<lake::TableRef> RefFrom(const Request& req) {
  return lake::ParseTableRef(std::string(req.PathParam("zone")) + "." +
                             std::string(req.PathParam("table")));
}

Result<Response> GetTable(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(lake::TableRef ref, RefFrom(req));
  ASSIGN_OR_RETURN(lake::TableInfo t, s->lake->GetTable(ref));
  std::string out;
  JsonWriter w(&out);
  RETURN_IF_ERROR(WriteTable(s, w, t));
  return Response::Json(std::move(out));
}

sql::UploadLimits UploadLimitsOf(const Config& c) {
  sql::UploadLimits l;
  l.max_json_depth = c.limits.upload_max_json_depth;
  l.max_columns = c.limits.upload_max_columns;
  l.max_line_bytes = c.limits.upload_max_line_bytes;
  l.max_parquet_footer_bytes = c.limits.upload_max_parquet_footer_bytes;
  l.max_parquet_row_groups = c.limits.upload_max_parquet_row_groups;
  return l;
}

Result<Response> Commit(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(lake::TableRef ref, RefFrom(req));
  // A table a definition owns takes commits from that owner only (the lake checks again at the
  // commit point): refuse before anything is written.
  ASSIGN_OR_RETURN(std::optional<lake::Owner> owner, s->lake->OwnerOf(ref));
  if (owner) return lake::Lake::NotOwnerError(ref, *owner);
  sql::LoadRequest load;
  load.table = ref;
  std::string format = "csv";
  if (auto f = req.QueryParam("format")) {
    format = std::string(*f);
  } else if (auto ct = req.GetHeader("Content-Type")) {
    if (ct->find("parquet") != std::string_view::npos) format = "parquet";
    if (ct->find("json") != std::string_view::npos) format = "json";
  }
  ASSIGN_OR_RETURN(load.format, sql::ParseFileFormat(format));
  ASSIGN_OR_RETURN(load.mode, lake::ParseWriteMode(req.QueryParam("mode").value_or("append")));
  if (auto ev = req.QueryParam("expected_version")) {
    try {
      size_t used = 0;
      load.expected_version = std::stoll(std::string(*ev), &used);
      if (used != ev->size() || *load.expected_version < 0) throw std::invalid_argument("");
    } catch (const std::exception&) {
      return InvalidArgument("expected_version must be a non-negative integer");
    }
  }
  load.cancelled = req.cancelled;
  ASSIGN_OR_RETURN(lake::Snapshot snap,
                   sql::LoadUpload(*s->loader, *s->lake, load, req.body, UploadLimitsOf(*s->config),
                                   s->scratch_dir));
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("table").String(ref.ToString()).Key("snapshot");
  WriteSnapshot(w, ref, snap);
  w.Key("columns");
  WriteSchema(w, snap.schema);
  w.EndObject();
  return Response::Json(std::move(out), 201);
}

std::string TableSchema() {
  return std::string(
             R"({"type":"object","properties":{"name":{"type":"string"},"zone":{"type":"string"},)") +
         R"("table":{"type":"string"},"version":{"type":"integer"},"row_count":{"type":"integer"},)" +
         R"("bytes":{"type":"integer"},"files":{"type":"integer"},"columns":)" +
         std::string(kSchemaColumns) +
         R"(,"snapshots":{"type":"array","items":{"type":"object","properties":{)" +
         R"("version":{"type":"integer"},"committed_at":{"type":"string"},"operation":{"type":"string"},)" +
         R"("row_count":{"type":"integer"},"expired":{"type":"boolean"},"query_as":{"type":"string"}}}}}})";
}

}  // namespace

Status AddTableRoutes(Router& router, Services* s) {
  RouteSpec list;
  list.method = "GET";
  list.pattern = "/api/v1/tables";
  list.summary = "Lake tables with their snapshots";
  list.tag = "lake";
  list.response_schema =
      R"({"type":"object","properties":{"tables":{"type":"array","items":)" + TableSchema() + "}}}";
  RETURN_IF_ERROR(router.AddSync(list, Wrap(s, ListTables)));

  RouteSpec one = list;
  one.pattern = "/api/v1/tables/{zone}.{table}";
  one.summary = "One lake table with its snapshots";
  one.response_schema = TableSchema();
  RETURN_IF_ERROR(router.AddSync(one, Wrap(s, GetTable)));

  RouteSpec commit;
  commit.method = "POST";
  commit.pattern = "/api/v1/tables/{zone}.{table}/commits";
  commit.min_role = Role::kWriter;
  commit.summary =
      "Commit the request body (CSV with header, JSON lines or Parquet) as a new snapshot";
  commit.tag = "lake";
  commit.query_params = {
      {"format", "csv (default), json or parquet; or from Content-Type", "string", false},
      {"mode", "append (default) or overwrite", "string", false},
      {"expected_version", "commit only if the table is at this version", "integer", false}};
  commit.request_schema = R"({"type":"string","format":"binary"})";
  // What Commit reads: CSV, JSON lines, Parquet (the format from ?format= or the type).
  commit.request_content_types = {"text/csv",
                                  "application/x-ndjson",
                                  "application/jsonl",
                                  "application/json",
                                  "application/vnd.apache.parquet",
                                  "application/x-parquet",
                                  "application/octet-stream"};
  commit.response_schema =
      R"({"type":"object","properties":{"table":{"type":"string"},"snapshot":{"type":"object"},"columns":)" +
      std::string(kSchemaColumns) + "}}";
  return router.Add(commit, Admitted(s, Wrap(s, Commit)));
}

}  // namespace lakeloop::api
