#include "features/historical.h"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <condition_variable>
#include <fstream>
#include <map>
#include <set>

#include "core/ids.h"
#include "core/json.h"
#include "core/time.h"
#include "features/internal/pit_replay.h"
#include "sql/lake_io.h"
#include "stream/definition.h"

namespace lakeloop::features {
namespace {

namespace fs = std::filesystem;
using sql::QuoteIdentifier;
using sql::QuoteLiteral;

constexpr char kZone[] = "datasets";
// Background builds share the datasets engine (its memory and threads): a few at a time.
constexpr size_t kMaxBackgroundBuilds = 4;
constexpr char kBuildColumns[] =
    "name, build, status, lake_version, rows, progress, error, created_by, started_at, "
    "finished_at, request, lineage, schema";

DatasetBuild FromRow(const catalog::Rows& r, size_t i) {
  DatasetBuild b;
  b.name = r.Text(i, 0);
  b.build = r.Int(i, 1);
  b.status = r.Text(i, 2);
  b.lake_version = r.Int(i, 3);
  b.rows = r.Int(i, 4);
  b.progress = r.Text(i, 5);
  b.error = r.Text(i, 6);
  b.created_by = r.Text(i, 7);
  b.started_at = r.Int(i, 8);
  b.finished_at = r.Int(i, 9);
  b.request_json = r.Text(i, 10);
  b.lineage_json = r.Text(i, 11);
  if (auto s = lake::SchemaFromJson(r.Text(i, 12)); s.ok()) b.schema = *s;
  return b;
}

// A feature reference resolved against the applied views.
struct ViewUse {
  const FeatureView* view;
  std::vector<size_t> features;  // indexes into view->features, in request order
  std::string join_key;          // the entity rows' column
  std::string key_type;          // batch: the entity's SQL type (the join compares it)
};

// Removes its files when it goes (every exit path of a build).
struct ScratchFiles {
  std::vector<fs::path> paths;
  ~ScratchFiles() {
    std::error_code ec;
    for (const auto& p : paths) fs::remove(p, ec);
  }
};

// One CSV line "t,key" of the engine's CSV output: t is an integer, the key the rest (quoted by
// the engine when it holds a comma, a quote or a line break; empty = NULL).
bool ParseCsvRow(std::string_view body, size_t* pos, bool* has_t, int64_t* t, std::string* key) {
  if (*pos >= body.size()) return false;
  size_t i = *pos;
  size_t comma = body.find(',', i);
  if (comma == std::string_view::npos) return false;
  std::string_view ts = body.substr(i, comma - i);
  *t = 0;
  *has_t = !ts.empty() && std::from_chars(ts.data(), ts.data() + ts.size(), *t).ec == std::errc();
  i = comma + 1;
  key->clear();
  if (i < body.size() && body[i] == '"') {
    ++i;
    while (i < body.size()) {
      if (body[i] == '"') {
        if (i + 1 < body.size() && body[i + 1] == '"') {
          key->push_back('"');
          i += 2;
          continue;
        }
        ++i;
        break;
      }
      key->push_back(body[i++]);
    }
  }
  size_t eol = body.find('\n', i);
  if (eol == std::string_view::npos) eol = body.size();
  std::string_view rest = body.substr(i, eol - i);
  if (!rest.empty() && rest.back() == '\r') rest.remove_suffix(1);
  key->append(rest);
  *pos = eol + 1;
  return true;
}

// A UTC instant as a naive TIMESTAMP whatever the column's type: a TIMESTAMPTZ goes through
// epoch micros (a cast would apply the session's time zone); TIMESTAMP (UTC by convention) and
// DATE cast.
std::string UtcTimestamp(const std::string& column, const std::string& type) {
  const std::string c = QuoteIdentifier(column);
  if (type.find("WITH TIME ZONE") != std::string::npos || type == "TIMESTAMPTZ") {
    return "make_timestamp(epoch_us(" + c + "))";
  }
  return "CAST(" + c + " AS TIMESTAMP)";
}

bool IsTimeType(const std::string& type) {
  return type.rfind("TIMESTAMP", 0) == 0 || type == "DATE";
}

}  // namespace

std::vector<catalog::Migration> DatasetBuilder::Migrations() {
  return {{"datasets", 1,
           "CREATE TABLE dataset_builds ("
           "name TEXT NOT NULL, build INTEGER NOT NULL, status TEXT NOT NULL, "
           "lake_version INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0, "
           "progress TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', "
           "created_by TEXT NOT NULL DEFAULT '', started_at INTEGER NOT NULL, "
           "finished_at INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, "
           "lineage TEXT NOT NULL DEFAULT '', schema TEXT NOT NULL DEFAULT '', "
           "PRIMARY KEY (name, build))"}};
}

Status DatasetBuilder::SetProgress(const std::string& name, int64_t build,
                                   const std::string& progress) {
  return deps_.catalog->Exec("UPDATE dataset_builds SET progress = ? WHERE name = ? AND build = ?",
                             {progress, name, build});
}

Result<DatasetBuild> DatasetBuilder::Build(const HistoricalRequest& req) {
  // ---- Validate the request before anything changes.
  RETURN_IF_ERROR(lake::ValidateIdentifier("dataset name", req.name));
  if (req.entities_sql.empty() == req.entities_table.empty()) {
    return InvalidArgument("give exactly one of entities_sql and entities_table");
  }
  if (req.features.empty() == req.feature_service.empty()) {
    return InvalidArgument("give exactly one of features and feature_service");
  }
  // The registry as applied (never what the files say now).
  Registry registry;
  std::vector<catalog::Definitions::Definition> defs;
  {
    catalog::Definitions d(deps_.catalog);
    ASSIGN_OR_RETURN(defs, d.List());
    for (const auto& def : defs) {
      if (def.kind == "feature_view") {
        if (auto v = ParseFeatureView(def.body, def.origin); v.ok()) {
          registry.views.push_back(std::move(v).value());
        }
      } else if (def.kind == "entity") {
        if (auto e = ParseEntity(def.body, def.origin); e.ok()) {
          registry.entities.push_back(std::move(e).value());
        }
      } else if (def.kind == "feature_service") {
        if (auto fs = ParseFeatureService(def.body, def.origin); fs.ok()) {
          registry.services.push_back(std::move(fs).value());
        }
      }
    }
  }
  std::vector<std::string> wanted = req.features;
  if (!req.feature_service.empty()) {
    const FeatureService* svc = registry.FindService(req.feature_service);
    if (svc == nullptr) return NotFound("unknown feature service '" + req.feature_service + "'");
    for (const FeatureRef& r : svc->features) {
      const FeatureView* v = registry.FindView(r.view);
      if (r.feature == "*" && v != nullptr) {
        for (const auto& f : v->features) wanted.push_back(r.view + ":" + f.name);
      } else {
        wanted.push_back(r.ToString());
      }
    }
  }
  std::vector<ViewUse> uses;
  std::set<std::string> seen;
  for (const std::string& ref : wanted) {
    const size_t colon = ref.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == ref.size()) {
      return InvalidArgument("feature '" + ref + "' must be written view:feature");
    }
    if (!seen.insert(ref).second) return InvalidArgument("feature '" + ref + "' is listed twice");
    const std::string vname = ref.substr(0, colon), fname = ref.substr(colon + 1);
    const FeatureView* v = registry.FindView(vname);
    if (v == nullptr) return NotFound("unknown feature view '" + vname + "' in '" + ref + "'");
    auto f = std::find_if(v->features.begin(), v->features.end(),
                          [&](const FeatureDef& x) { return x.name == fname; });
    if (f == v->features.end()) {
      return NotFound("feature view '" + vname + "' has no feature '" + fname + "'");
    }
    auto u = std::find_if(uses.begin(), uses.end(), [&](const ViewUse& x) { return x.view == v; });
    if (u == uses.end()) {
      ViewUse nu{v, {}, v->entity, "VARCHAR"};
      if (v->kind == ViewKind::kBatch) {
        const Entity* e = registry.FindEntity(v->entity);
        if (e == nullptr) return NotFound("view " + v->name + ": unknown entity " + v->entity);
        nu.join_key = e->join_key;
        nu.key_type = e->type == ValueType::kInt64 ? "BIGINT" : "VARCHAR";
      }
      uses.push_back(std::move(nu));
      u = uses.end() - 1;
    }
    u->features.push_back(static_cast<size_t>(f - v->features.begin()));
  }
  for (const ViewUse& u : uses) {
    if (u.view->kind == ViewKind::kStream && deps_.log == nullptr) {
      return Status(Code::kUnavailable, "stream views need the event log (server mode)");
    }
  }
  std::optional<lake::TableRef> entity_table;
  int64_t entity_version = 0;
  if (!req.entities_table.empty()) {
    ASSIGN_OR_RETURN(lake::TableRef t, lake::ParseTableRef(req.entities_table));
    ASSIGN_OR_RETURN(lake::TableInfo info, deps_.lake->GetTable(t));
    if (info.current_version == 0) {
      return InvalidArgument("entities_table " + t.ToString() + " has no data yet");
    }
    entity_table = t;
    entity_version = info.current_version;
  }

  // ---- Ownership: datasets.<name> belongs to "dataset <name>".
  const lake::TableRef table{kZone, req.name};
  const lake::Owner owner{"dataset", req.name};
  ASSIGN_OR_RETURN(std::optional<lake::Owner> current, deps_.lake->OwnerOf(table));
  if (current && *current != owner) return lake::Lake::NotOwnerError(table, *current);
  if (!current) {
    auto info = deps_.lake->GetTable(table);
    if (info.ok()) {
      return Conflict(table.ToString() +
                      " exists and was not built as a dataset; pick another name");
    }
    if (info.status().code() != Code::kNotFound) return info.status();
    RETURN_IF_ERROR(deps_.lake->RegisterOwner(table, owner));
  }

  // ---- The build record.
  std::string request_json;
  {
    JsonWriter w(&request_json);
    w.BeginObject().Key("name").String(req.name);
    if (!req.entities_sql.empty()) w.Key("entities_sql").String(req.entities_sql);
    if (!req.entities_table.empty()) w.Key("entities_table").String(req.entities_table);
    if (!req.feature_service.empty()) w.Key("feature_service").String(req.feature_service);
    w.Key("features").BeginArray();
    for (const auto& f : wanted) w.String(f);
    w.EndArray().EndObject();
  }
  int64_t build = 0;
  const Micros started = NowMicros();
  {
    ASSIGN_OR_RETURN(auto txn, deps_.catalog->Begin());
    ASSIGN_OR_RETURN(catalog::Rows r,
                     txn->Query("SELECT COALESCE(MAX(build), 0) FROM dataset_builds WHERE name = ?",
                                {req.name}));
    build = r.Int(0, 0) + 1;
    RETURN_IF_ERROR(txn->Exec(
        "INSERT INTO dataset_builds (name, build, status, progress, created_by, started_at, "
        "request) VALUES (?, ?, 'running', 'entities', ?, ?, ?)",
        {req.name, build, req.created_by, started, request_json}));
    RETURN_IF_ERROR(txn->Commit());
  }
  if (req.on_started) req.on_started(build);

  ScratchFiles scratch;
  std::optional<lake::Staging> staging;
  auto run = [&]() -> Result<lake::Snapshot> {
    // 1) Entity rows into a Parquet file of the build engine's scratch folder.
    std::string entity_sql = req.entities_sql;
    if (entity_table) {
      entity_sql =
          "SELECT * FROM " + QuoteIdentifier(sql::LakeViews::SnapshotSchema(entity_table->zone)) +
          "." + QuoteIdentifier(sql::LakeViews::SnapshotView(entity_table->name, entity_version));
    }
    sql::QueryRequest q;
    q.sql = entity_sql;
    q.format = sql::Format::kParquet;
    q.parquet_to_file = true;
    q.timeout_ms = 0;
    q.cancelled = req.cancelled;
    ASSIGN_OR_RETURN(sql::QueryReply entities, deps_.engine->Run(q));
    if (entities.file == nullptr) return Internal("the entity query left no file");
    const std::string efile = entities.file->path.string();
    auto column = [&](const std::string& name) -> const sql::Column* {
      for (const auto& c : entities.columns) {
        if (c.name == name) return &c;
      }
      return nullptr;
    };
    const sql::Column* ts = column("event_timestamp");
    if (ts == nullptr || !IsTimeType(ts->type)) {
      return InvalidArgument(
          "the entity rows need a column event_timestamp of type TIMESTAMP or DATE (e.g. "
          "SELECT customer_id, ts AS event_timestamp, label FROM ...)");
    }
    for (const ViewUse& u : uses) {
      if (column(u.join_key) == nullptr) {
        return InvalidArgument("the entity rows need the column " + u.join_key +
                               " (the entity key of view " + u.view->name + ")");
      }
    }
    for (const auto& c : entities.columns) {
      if (c.name == "file_row_number" || c.name.find("__") != std::string::npos) {
        return InvalidArgument("entity column '" + c.name +
                               "' is reserved (file_row_number, names with '__')");
      }
    }
    const std::string eread = "read_parquet(" + QuoteLiteral(efile) + ", file_row_number = true)";

    // 2) Stream views: keys and times in row order, replayed in C++, values to a CSV file.
    std::string lineage_streams;
    JsonWriter ls(&lineage_streams);
    ls.BeginArray();
    std::vector<std::string> stream_files(uses.size());
    std::map<std::string, std::pair<std::vector<std::string>, std::vector<int64_t>>> rows_by_entity;
    for (size_t ui = 0; ui < uses.size(); ++ui) {
      const ViewUse& u = uses[ui];
      if (u.view->kind != ViewKind::kStream) continue;
      RETURN_IF_ERROR(SetProgress(req.name, build, "replaying stream view " + u.view->name));
      auto& [keys, times] = rows_by_entity[u.join_key];
      if (keys.empty()) {
        sql::QueryRequest kq;
        kq.sql = "SELECT epoch_us(" + UtcTimestamp("event_timestamp", ts->type) + ") AS t, CAST(" +
                 QuoteIdentifier(u.join_key) + " AS VARCHAR) AS k FROM " + eread +
                 " ORDER BY file_row_number";
        kq.format = sql::Format::kCsv;
        kq.limit = int64_t{1} << 40;
        kq.timeout_ms = 0;
        kq.cancelled = req.cancelled;
        ASSIGN_OR_RETURN(sql::QueryReply kr, deps_.engine->Run(kq));
        keys.reserve(static_cast<size_t>(kr.row_count));
        times.reserve(static_cast<size_t>(kr.row_count));
        std::string_view body = kr.body;
        size_t pos = body.find('\n');  // header
        pos = pos == std::string_view::npos ? body.size() : pos + 1;
        bool has_t = false;
        int64_t t = 0;
        std::string k;
        while (ParseCsvRow(body, &pos, &has_t, &t, &k)) {
          if (!has_t) {
            return InvalidArgument("entity row " + std::to_string(keys.size()) +
                                   " has a NULL event_timestamp");
          }
          keys.push_back(k);
          times.push_back(t);
        }
      }
      internal::ReplayOptions ro;
      ro.cancelled = req.cancelled;
      // What retention trimmed from the log comes from the archive raw.<stream> (its snapshot
      // current now), rebuilt as payloads of the stream's fields.
      std::optional<stream::StreamDefinition> sdef;
      for (const auto& d : defs) {
        if (d.kind != "stream" || d.name != u.view->stream) continue;
        if (auto parsed = stream::ParseStreamDefinition(d.body, d.origin); parsed.ok()) {
          sdef = std::move(parsed).value();
        }
      }
      int64_t archive_version = 0;
      if (sdef) {
        auto info = deps_.lake->GetTable({"raw", u.view->stream});
        if (info.ok()) archive_version = info->current_version;
      }
      if (sdef && archive_version > 0) {
        std::string fields;
        for (const auto& f : sdef->fields) {
          if (!fields.empty()) fields += ", ";
          fields += QuoteIdentifier(f.name) + " := " + QuoteIdentifier(f.name);
        }
        const std::string from =
            QuoteIdentifier(sql::LakeViews::SnapshotSchema("raw")) + "." +
            QuoteIdentifier(sql::LakeViews::SnapshotView(u.view->stream, archive_version));
        const std::string head =
            "SELECT _offset, epoch_us(" + UtcTimestamp(sdef->time_field, "TIMESTAMP") + "), CAST(" +
            QuoteIdentifier(sdef->key_field) + " AS VARCHAR), CAST(to_json(struct_pack(" + fields +
            ")) AS VARCHAR) FROM " + from + " WHERE _partition = ";
        ro.archived = [this, head, &req](int32_t p,
                                         int64_t below) -> Result<std::vector<stream::Record>> {
          sql::QueryRequest aq;
          aq.sql = head + std::to_string(p) + " AND _offset < " + std::to_string(below) +
                   " ORDER BY _offset";
          aq.limit = int64_t{1} << 40;
          aq.timeout_ms = 0;
          aq.cancelled = req.cancelled;
          ASSIGN_OR_RETURN(sql::QueryReply ar, deps_.engine->Run(aq));
          boost::system::error_code ec;
          boost::json::value v = boost::json::parse(ar.body, ec);
          if (ec || !v.is_object() || !v.as_object().contains("rows")) {
            return Internal("unreadable archive rows");
          }
          std::vector<stream::Record> out;
          for (const auto& rv : v.at("rows").as_array()) {
            const auto& r = rv.as_array();
            if (r.size() != 4 || r[1].is_null() || r[2].is_null() || !r[3].is_string()) continue;
            stream::Record rec;
            rec.partition = p;
            rec.offset = r[0].to_number<int64_t>();
            rec.ingest_time_us = 0;
            rec.event.key = std::string(r[2].as_string());
            rec.event.event_time_us = r[1].to_number<int64_t>();
            rec.event.payload = std::string(r[3].as_string());
            out.push_back(std::move(rec));
          }
          return out;
        };
      }
      int64_t last_report = 0;
      ro.progress = [&](int64_t done, int64_t total) {
        if (done - last_report < 1'000'000 && done < total) return;
        last_report = done;
        (void)SetProgress(req.name, build,
                          "replaying stream view " + u.view->name + ": " + std::to_string(done) +
                              " of " + std::to_string(total) + " events");
      };
      ASSIGN_OR_RETURN(internal::ReplayResult rr,
                       internal::ReplayStreamView(*deps_.log, *u.view, keys, times, ro));
      const fs::path file = deps_.scratch_dir / ("pit-" + NewUuid() + ".csv");
      scratch.paths.push_back(file);
      {
        std::ofstream out(file, std::ios::binary);
        std::string line;
        out << "_row";
        for (size_t j = 0; j < u.features.size(); ++j) out << ",c" << j;
        out << '\n';
        char buf[32];
        for (size_t row = 0; row < keys.size(); ++row) {
          line.clear();
          auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(row));
          line.append(buf, r.ptr);
          for (size_t fi : u.features) {
            line.push_back(',');
            // No event of the key at or before t: "missing" online, null here (never 0).
            if (!rr.has_state[row]) continue;
            if (const auto& v = rr.values[fi][row]) {
              auto d = std::to_chars(buf, buf + sizeof buf, *v);
              line.append(buf, d.ptr);
            }
          }
          line.push_back('\n');
          out << line;
        }
        out.flush();
        if (!out) return IoError("cannot write " + file.string());
      }
      stream_files[ui] = file.string();
      ls.BeginObject().Key("view").String(u.view->name).Key("stream").String(u.view->stream);
      ls.Key("offsets").BeginArray();
      for (const auto& o : rr.offsets) ls.BeginArray().Int(o.begin).Int(o.end).EndArray();
      ls.EndArray().Key("complete").Bool(rr.complete).Key("events_late").Int(rr.events_late);
      if (archive_version > 0) {
        ls.Key("archive").BeginObject().Key("table").String("raw." + u.view->stream);
        ls.Key("version").Int(archive_version).Key("events").Int(rr.events_archived).EndObject();
      }
      ls.EndObject();
    }
    ls.EndArray();

    // 3) One SELECT joining it all, in entity row order, COPY'd to the staging folder.
    RETURN_IF_ERROR(SetProgress(req.name, build, "joining"));
    std::string exclude = "file_row_number, __t";  // helper columns of the entity side
    std::string features_sql;                      // the feature columns
    std::string from;
    std::string entity_extra;
    std::string lineage_batch;
    JsonWriter lb(&lineage_batch);
    lb.BeginArray();
    for (size_t ui = 0; ui < uses.size(); ++ui) {
      const ViewUse& u = uses[ui];
      const std::string alias = "v" + std::to_string(ui);
      if (u.view->kind == ViewKind::kStream) {
        std::string cols = "{'_row': 'BIGINT'";
        for (size_t j = 0; j < u.features.size(); ++j) {
          cols += ", 'c" + std::to_string(j) + "': 'DOUBLE'";
          features_sql +=
              ", " + alias + ".c" + std::to_string(j) + " AS " +
              QuoteIdentifier(u.view->name + "__" + u.view->features[u.features[j]].name);
        }
        cols += "}";
        from += " LEFT JOIN read_csv(" + QuoteLiteral(stream_files[ui]) +
                ", header = true, columns = " + cols + ") " + alias + " ON " + alias +
                "._row = e.file_row_number";
        continue;
      }
      // Batch: as of the row's time within TTL, the source row with the greatest timestamp <= t
      // (an equal timestamp counts), from the snapshot current when the build started; a row
      // with no such source row keeps its place with nulls (ASOF LEFT JOIN).
      ASSIGN_OR_RETURN(lake::TableRef src, lake::ParseTableRef(u.view->source));
      ASSIGN_OR_RETURN(lake::TableInfo info, deps_.lake->GetTable(src));
      lb.BeginObject().Key("view").String(u.view->name).Key("table").String(src.ToString());
      lb.Key("version").Int(info.current_version).EndObject();
      const std::string k = "__k" + std::to_string(ui);
      std::string cols;
      for (size_t j = 0; j < u.features.size(); ++j) {
        const FeatureDef& f = u.view->features[u.features[j]];
        const std::string c = f.column.empty() ? f.name : f.column;
        cols += ", " + QuoteIdentifier(c) + " AS c" + std::to_string(j);
        std::string value = alias + ".c" + std::to_string(j);
        if (info.current_version == 0) {
          value = "NULL";
        } else if (u.view->ttl_us > 0) {
          value = "CASE WHEN " + alias + ".__ts >= e.__t - to_microseconds(" +
                  std::to_string(u.view->ttl_us) + ") THEN " + value + " END";
        }
        features_sql += ", " + value + " AS " + QuoteIdentifier(u.view->name + "__" + f.name);
      }
      if (info.current_version == 0) continue;  // no rows yet: nulls
      std::string ts_type = "TIMESTAMP";
      for (const auto& col : info.schema) {
        if (col.name == u.view->timestamp_column) ts_type = col.type;
      }
      exclude += ", " + k;
      entity_extra += ", CAST(" + QuoteIdentifier(u.join_key) + " AS " + u.key_type + ") AS " + k;
      const std::string snapshot =
          QuoteIdentifier(sql::LakeViews::SnapshotSchema(src.zone)) + "." +
          QuoteIdentifier(sql::LakeViews::SnapshotView(src.name, info.current_version));
      from += " ASOF LEFT JOIN (SELECT CAST(" + QuoteIdentifier(u.join_key) + " AS " + u.key_type +
              ") AS __k, " + UtcTimestamp(u.view->timestamp_column, ts_type) + " AS __ts" + cols +
              " FROM " + snapshot + ") " + alias + " ON e." + k + " = " + alias +
              ".__k AND e.__t >= " + alias + ".__ts";
    }
    lb.EndArray();
    const std::string select = "SELECT e.* EXCLUDE (" + exclude + ")" + features_sql +
                               " FROM (SELECT *, " + UtcTimestamp("event_timestamp", ts->type) +
                               " AS __t" + entity_extra + " FROM " + eread + ") e" + from +
                               " ORDER BY e.file_row_number";
    ASSIGN_OR_RETURN(std::vector<sql::Column> columns, deps_.engine->Describe(select));
    ASSIGN_OR_RETURN(lake::Staging st, deps_.lake->BeginWrite(table));
    staging = st;
    if (st.local_dir.empty()) return Status(Code::kUnimplemented, "datasets need a local lake");
    std::error_code ec;
    fs::create_directories(st.local_dir, ec);
    const std::string part = "part-" + NewUuid() + ".parquet";
    sql::ExecOptions eo;
    eo.cancelled = req.cancelled;
    ASSIGN_OR_RETURN(int64_t rows,
                     deps_.engine->ExecWithParams("COPY (" + select + ") TO " +
                                                      QuoteLiteral((st.local_dir / part).string()) +
                                                      " (FORMAT parquet)",
                                                  {}, eo));

    // 4) Commit: the snapshot and the build record change together.
    std::string lineage;
    JsonWriter lw(&lineage);
    lw.BeginObject().Key("entities").BeginObject();
    if (entity_table) {
      lw.Key("table").String(entity_table->ToString()).Key("version").Int(entity_version);
    } else {
      lw.Key("sql").String(req.entities_sql);
    }
    lw.EndObject();
    lw.Key("streams").Raw(lineage_streams).Key("batch").Raw(lineage_batch);
    lw.Key("definitions").BeginArray();
    for (const ViewUse& u : uses) {
      for (const auto& d : defs) {
        if (d.name != u.view->name) continue;
        lw.BeginObject().Key("kind").String(d.kind).Key("name").String(d.name);
        lw.Key("sha256").String(d.sha256).Key("applied_at").String(FormatRfc3339(d.applied_at));
        lw.EndObject();
      }
    }
    lw.EndArray().EndObject();
    lake::CommitRequest c;
    c.staging = st;
    c.mode = lake::WriteMode::kOverwrite;
    c.files = {{part, rows}};
    for (const auto& col : columns) c.schema.push_back({col.name, col.type});
    c.owner = owner;
    const std::string schema_json = lake::SchemaToJson(c.schema);
    c.in_transaction = [&](catalog::Transaction& txn, const lake::Snapshot& snap) -> Status {
      return txn.Exec(
          "UPDATE dataset_builds SET status = 'succeeded', lake_version = ?, rows = ?, "
          "progress = 'done', finished_at = ?, lineage = ?, schema = ? WHERE name = ? AND "
          "build = ?",
          {snap.version, rows, NowMicros(), lineage, schema_json, req.name, build});
    };
    ASSIGN_OR_RETURN(lake::Snapshot snap, deps_.lake->Commit(c));
    staging.reset();
    return snap;
  };
  Result<lake::Snapshot> done = run();
  if (!done.ok()) {
    if (staging) (void)deps_.lake->AbortWrite(*staging);
    (void)deps_.catalog->Exec(
        "UPDATE dataset_builds SET status = 'failed', error = ?, finished_at = ? WHERE name = ? "
        "AND build = ?",
        {done.status().ToString(), NowMicros(), req.name, build});
    return done.status();
  }
  // Every version stays readable (time travel, downloads) whatever the retention.
  RETURN_IF_ERROR(deps_.lake->PinSnapshot(table, done->version,
                                          "dataset " + req.name + " build " + std::to_string(build),
                                          "dataset version"));
  return GetBuild(req.name, build);
}

DatasetBuilder::~DatasetBuilder() {
  stop_->store(true);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& a : threads_) a.thread.join();
}

Result<DatasetBuild> DatasetBuilder::Start(HistoricalRequest request) {
  struct Handoff {
    std::mutex mu;
    std::condition_variable cv;
    bool ready = false;
    Status status;
    int64_t build = 0;
  };
  auto h = std::make_shared<Handoff>();
  request.cancelled = stop_;  // the caller's connection ends with the reply
  request.on_started = [h](int64_t build) {
    std::lock_guard<std::mutex> lock(h->mu);
    h->build = build;
    h->ready = true;
    h->cv.notify_all();
  };
  auto done = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Reap finished builds.
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    if (threads_.size() >= kMaxBackgroundBuilds) {
      return Status(Code::kResourceExhausted,
                    std::to_string(kMaxBackgroundBuilds) +
                        " dataset builds are running in the background; retry later");
    }
    threads_.push_back({std::thread([this, request, h, done] {
                          Result<DatasetBuild> r = Build(request);
                          {
                            std::lock_guard<std::mutex> lock(h->mu);
                            if (!h->ready) {
                              h->status = r.status();
                              h->ready = true;
                              h->cv.notify_all();
                            }
                          }
                          done->store(true);
                        }),
                        done});
  }
  std::unique_lock<std::mutex> lock(h->mu);
  h->cv.wait(lock, [&] { return h->ready; });
  if (h->build == 0) return h->status.ok() ? Internal("the build did not start") : h->status;
  const int64_t build = h->build;
  lock.unlock();
  return GetBuild(request.name, build);
}

Result<std::vector<DatasetBuild>> DatasetBuilder::Builds(const std::string& name) {
  ASSIGN_OR_RETURN(catalog::Rows r,
                   deps_.catalog->Query(std::string("SELECT ") + kBuildColumns +
                                            " FROM dataset_builds WHERE name = ? ORDER BY build "
                                            "DESC",
                                        {name}));
  if (r.empty()) return NotFound("no dataset '" + name + "'");
  std::vector<DatasetBuild> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(FromRow(r, i));
  return out;
}

Result<DatasetBuild> DatasetBuilder::GetBuild(const std::string& name, int64_t build) {
  ASSIGN_OR_RETURN(catalog::Rows r,
                   deps_.catalog->Query(std::string("SELECT ") + kBuildColumns +
                                            " FROM dataset_builds WHERE name = ? AND build = ?",
                                        {name, build}));
  if (r.empty()) {
    return NotFound("dataset '" + name + "' has no build " + std::to_string(build));
  }
  return FromRow(r, 0);
}

Result<std::vector<DatasetBuild>> DatasetBuilder::List() {
  ASSIGN_OR_RETURN(
      catalog::Rows r,
      deps_.catalog->Query(std::string("SELECT ") + kBuildColumns +
                           " FROM dataset_builds d WHERE build = (SELECT MAX(build) FROM "
                           "dataset_builds x WHERE x.name = d.name) ORDER BY name"));
  std::vector<DatasetBuild> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(FromRow(r, i));
  return out;
}

std::string DatasetBuildToJson(const DatasetBuild& b) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("name").String(b.name).Key("build").Int(b.build);
  w.Key("table").String(std::string(kZone) + "." + b.name);
  w.Key("status").String(b.status).Key("lake_version").Int(b.lake_version);
  w.Key("rows").Int(b.rows).Key("progress").String(b.progress);
  if (!b.error.empty()) w.Key("error").String(b.error);
  w.Key("created_by").String(b.created_by);
  w.Key("started_at").String(FormatRfc3339(b.started_at));
  if (b.finished_at) w.Key("finished_at").String(FormatRfc3339(b.finished_at));
  w.Key("request").Raw(b.request_json.empty() ? "null" : b.request_json);
  w.Key("lineage").Raw(b.lineage_json.empty() ? "null" : b.lineage_json);
  w.Key("columns").BeginArray();
  for (const auto& c : b.schema) {
    w.BeginObject().Key("name").String(c.name).Key("type").String(c.type).EndObject();
  }
  w.EndArray().EndObject();
  return out;
}

}  // namespace lakeloop::features
