// Materialisation: pinned input views, COPY to a lake staging folder, data tests on the staged
// files, then the lake commit (compare-and-swap on the version read at the start).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "core/ids.h"
#include "core/json.h"
#include "transform/internal/sql_tree.h"
#include "transform/transform.h"

namespace lakeloop::transform {

namespace json = boost::json;
namespace fs = std::filesystem;
using sql::QuoteIdentifier;
using sql::QuoteLiteral;

namespace {

std::vector<sql::Column> ToSql(const std::vector<lake::Column>& in) {
  std::vector<sql::Column> out;
  for (const auto& c : in) out.push_back({c.name, c.type});
  return out;
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out.append(sep);
    out.append(parts[i]);
  }
  return out;
}

// read_parquet([...]) over absolute paths.
std::string ReadParquet(const std::vector<std::string>& paths, bool hive) {
  std::vector<std::string> quoted;
  for (const auto& p : paths) quoted.push_back(QuoteLiteral(p));
  return "read_parquet([" + Join(quoted, ", ") +
         "], hive_partitioning = " + (hive ? "true" : "false") + ")";
}

Result<sql::QueryReply> Query(sql::Engine& engine, const std::string& text, int64_t limit) {
  sql::QueryRequest request;
  request.sql = text;
  request.limit = limit;
  request.timeout_ms = 0;  // builds may be long; the scheduler owns run timeouts
  return engine.Run(request);
}

// The single integer a one-row, one-column query returns.
Result<int64_t> ScalarInt(sql::Engine& engine, const std::string& text) {
  ASSIGN_OR_RETURN(sql::QueryReply reply, Query(engine, text, 1));
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(reply.body));
  const json::array& rows = body.at("rows").as_array();
  if (rows.empty()) return Internal("no row from: " + text);
  const json::value& cell = rows[0].as_array().at(0);
  if (cell.is_int64()) return cell.as_int64();
  if (cell.is_uint64()) return static_cast<int64_t>(cell.as_uint64());
  if (cell.is_string()) return static_cast<int64_t>(std::stoll(std::string(cell.as_string())));
  return Internal("not an integer from: " + text);
}

std::string TimestampSql(Micros t) { return "make_timestamp(" + std::to_string(t) + ")"; }

// Removes a scratch file whatever happens.
class FileGuard {
 public:
  explicit FileGuard(fs::path path) : path_(std::move(path)) {}
  ~FileGuard() {
    std::error_code ec;
    fs::remove(path_, ec);
  }

 private:
  fs::path path_;
};

}  // namespace

std::vector<std::string> RunResult::Failed(Severity severity) const {
  std::vector<std::string> out;
  for (const auto& t : tests) {
    if (!t.passed && t.severity == severity) out.push_back(t.name);
  }
  return out;
}

Result<std::unique_ptr<Runner>> Runner::Open(lake::Lake* lake, RunnerOptions options) {
  if (lake == nullptr) return InvalidArgument("a runner needs a lake");
  if (options.engine.scratch_dir.empty()) return InvalidArgument("a runner needs a scratch_dir");
  if (options.sample_rows < 0) return InvalidArgument("sample_rows must not be negative");
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Engine> engine, sql::Engine::Open(options.engine));
  return std::unique_ptr<Runner>(new Runner(lake, std::move(options), std::move(engine)));
}

Result<RunResult> Runner::Run(const Graph& graph, const RunRequest& request) {
  const Model* model = graph.Find(request.model);
  if (model == nullptr) return NotFound("no model named '" + request.model + "'");
  std::lock_guard<std::mutex> lock(mu_);
  return RunLocked(*model, request);
}

Result<std::vector<RunResult>> Runner::RunAll(const Graph& graph, std::optional<Interval> interval,
                                              const std::vector<std::string>& models) {
  for (const auto& name : models) {
    if (graph.Find(name) == nullptr) return NotFound("no model named '" + name + "'");
  }
  std::vector<RunResult> results;
  for (const Model& m : graph.models()) {
    if (!models.empty() && std::find(models.begin(), models.end(), m.name) == models.end()) {
      continue;
    }
    RunRequest request;
    request.model = m.name;
    if (m.materialized == Materialization::kIncremental) {
      if (!interval) {
        return InvalidArgument("model " + m.name + " is incremental: give the interval to build");
      }
      request.interval = interval;
    }
    auto result = Run(graph, request);
    if (!result.ok()) return result.status().WithContext("model " + m.name);
    const bool stop = !result->committed();
    results.push_back(std::move(result).value());
    if (stop) break;
  }
  return results;
}

Result<RunResult> Runner::RunLocked(const Model& model, const RunRequest& request) {
  const Micros mono_start = MonotonicMicros();
  RunResult r;
  r.model = model.name;
  r.output = model.output();
  r.interval = request.interval;
  r.started_at = NowMicros();
  const bool incremental = model.materialized == Materialization::kIncremental;
  const bool merge = incremental && model.strategy == Strategy::kMerge;
  const bool append = incremental && model.strategy == Strategy::kAppend;
  const bool partitioned = !model.partition_by.empty();
  if (incremental && !request.interval) {
    return InvalidArgument("model " + model.name + " is incremental: give the interval to build");
  }
  if (!incremental && request.interval) {
    return InvalidArgument("model " + model.name + " is materialized as a table: no interval");
  }
  if (request.interval && request.interval->end <= request.interval->start) {
    return InvalidArgument("interval end must be after its start");
  }
  sql::Engine& engine = *engine_;
  lake::ObjectStore* store = lake_->store();
  auto locate = [&](const std::vector<lake::DataFile>& files) {
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(store->Locate(f.key));
    return paths;
  };

  // 1) Pin every input view to the snapshot current now: the run reads exactly the versions it
  // records, whatever commits meanwhile.
  std::vector<lake::TableRef> reads = model.inputs;
  reads.insert(reads.end(), model.test_inputs.begin(), model.test_inputs.end());
  std::sort(reads.begin(), reads.end(), [](const auto& a, const auto& b) {
    return std::tie(a.zone, a.name) < std::tie(b.zone, b.name);
  });
  reads.erase(std::unique(reads.begin(), reads.end()), reads.end());
  for (const auto& ref : reads) {
    auto info = lake_->GetTable(ref);
    if (!info.ok() && info.status().code() != Code::kNotFound) return info.status();
    if (!info.ok() || info->current_version == 0) {
      return NotFound("model " + model.name + " reads " + ref.ToString() +
                      ", which has no committed snapshot");
    }
    ASSIGN_OR_RETURN(auto files, lake_->SnapshotFiles(ref, info->current_version));
    sql::ViewOptions view;
    view.hive_partitioning = !info->partition_by.empty();
    RETURN_IF_ERROR(
        engine.ReplaceView(ref.zone, ref.name, locate(files), ToSql(info->schema), view));
    r.inputs.push_back({ref, info->current_version});
  }

  // 2) The output's current snapshot: the compare-and-swap base, and the old rows of a merge.
  std::vector<std::string> previous_paths;
  std::vector<lake::Column> previous_schema;
  {
    auto info = lake_->GetTable(r.output);
    if (!info.ok() && info.status().code() != Code::kNotFound) return info.status();
    if (info.ok() && info->current_version > 0) {
      r.previous_version = info->current_version;
      previous_schema = info->schema;
      ASSIGN_OR_RETURN(auto files, lake_->SnapshotFiles(r.output, r.previous_version));
      previous_paths = locate(files);
      if (info->partition_by != model.partition_by && append) {
        return Conflict("cannot append to " + r.output.ToString() +
                        ": its partition columns differ from the model's");
      }
      sql::ViewOptions view;
      view.hive_partitioning = !info->partition_by.empty();
      RETURN_IF_ERROR(engine.ReplaceView(r.output.zone, r.output.name, previous_paths,
                                         ToSql(previous_schema), view));
      if (merge) r.inputs.push_back({r.output, r.previous_version});
    } else {
      RETURN_IF_ERROR(engine.DropView(r.output.zone, r.output.name));
    }
  }

  // 3) Build into a staging folder.
  ASSIGN_OR_RETURN(lake::Staging staging, lake_->BeginWrite(r.output));
  // Nothing staged stays visible, even in this engine: the output view goes back to the
  // previous snapshot.
  auto abort = [&]() {
    Status aborted = lake_->AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("transform: abort write: {}", aborted.ToString());
    sql::ViewOptions view;
    view.hive_partitioning = partitioned;
    Status restored = r.previous_version > 0
                          ? engine.ReplaceView(r.output.zone, r.output.name, previous_paths,
                                               ToSql(previous_schema), view)
                          : engine.DropView(r.output.zone, r.output.name);
    if (!restored.ok()) spdlog::warn("transform: restore view: {}", restored.ToString());
  };
  auto fail = [&](Status s) -> Status {
    abort();
    return s.WithContext("model " + model.name);
  };
  if (staging.local_dir.empty()) {
    return fail(Status(Code::kUnimplemented, "transform needs a local object store"));
  }
  std::vector<sql::NamedParam> params;
  if (request.interval) {
    params.push_back({"start", sql::Timestamp{request.interval->start}});
    params.push_back({"end", sql::Timestamp{request.interval->end}});
  }
  std::string copy_options = " (FORMAT parquet, COMPRESSION zstd";
  std::string destination;
  if (partitioned) {
    std::vector<std::string> cols;
    for (const auto& p : model.partition_by) cols.push_back(QuoteIdentifier(p));
    copy_options += ", PARTITION_BY (" + Join(cols, ", ") + "), OVERWRITE_OR_IGNORE true";
    destination = QuoteLiteral(staging.local_dir.string());
  } else {
    destination = QuoteLiteral((staging.local_dir / "data_0.parquet").string());
  }
  copy_options += ")";
  const std::string body = internal::StripSql(model.sql);
  // The rows this run produced, for the time_column check.
  std::string new_rows;
  const fs::path merge_input =
      options_.engine.scratch_dir / ("merge-" + staging.write_id + ".parquet");
  FileGuard merge_guard(merge_input);
  if (merge) {
    auto rows = engine.ExecWithParams(
        "COPY (\n" + body + "\n) TO " + QuoteLiteral(merge_input.string()) + " (FORMAT parquet)",
        params);
    if (!rows.ok()) return fail(rows.status());
    r.rows_out = *rows;
    new_rows = ReadParquet({merge_input.string()}, false);
    std::string merged = "SELECT * FROM " + new_rows;
    if (r.previous_version > 0) {
      std::vector<std::string> match;
      for (const auto& k : model.unique_key) {
        match.push_back("__new." + QuoteIdentifier(k) + " IS NOT DISTINCT FROM __old." +
                        QuoteIdentifier(k));
      }
      merged = "SELECT * FROM " + QuoteIdentifier(r.output.zone) + "." +
               QuoteIdentifier(r.output.name) + " AS __old WHERE NOT EXISTS (SELECT 1 FROM " +
               new_rows + " AS __new WHERE " + Join(match, " AND ") + ")\nUNION ALL BY NAME\n" +
               merged;
    }
    Status s = engine.Exec("COPY (\n" + merged + "\n) TO " + destination + copy_options);
    if (!s.ok()) return fail(s);
  } else {
    auto rows =
        engine.ExecWithParams("COPY (\n" + body + "\n) TO " + destination + copy_options, params);
    if (!rows.ok()) return fail(rows.status());
    r.rows_out = *rows;
  }

  // 4) What was staged: files, rows per file, schema.
  auto listed = store->List(staging.prefix);
  if (!listed.ok()) return fail(listed.status());
  std::vector<lake::StagedFile> staged;
  std::vector<std::string> staged_paths;
  for (const auto& o : *listed) {
    if (!o.key.ends_with(".parquet")) continue;
    const std::string key = o.key.substr(staging.prefix.size());
    const std::string path = store->Locate(o.key);
    auto rows = ScalarInt(engine,
                          "SELECT CAST(COALESCE(SUM(num_rows), 0) AS BIGINT) FROM "
                          "parquet_file_metadata(" +
                              QuoteLiteral(path) + ")");
    if (!rows.ok()) return fail(rows.status());
    staged.push_back({key, *rows});
    staged_paths.push_back(path);
  }
  std::vector<lake::Column> schema;
  if (!staged_paths.empty()) {
    auto cols = engine.Describe("SELECT * FROM " + ReadParquet(staged_paths, partitioned));
    if (!cols.ok()) return fail(cols.status());
    for (const auto& c : *cols) schema.push_back({c.name, c.type});
  } else if (!previous_schema.empty()) {
    schema = previous_schema;  // a partitioned build that produced no rows
  } else {
    return fail(
        InvalidArgument("the first build produced no rows, so the partitioned table's "
                        "columns are unknown; build over an interval with data"));
  }
  if (!merge && !staged_paths.empty()) new_rows = ReadParquet(staged_paths, partitioned);

  // 5) Data tests, against the table as it would be after the commit: the view processed.<name>
  // now reads the staged files (plus the current ones for an append).
  {
    std::vector<std::string> view_files = staged_paths;
    if (append) view_files.insert(view_files.begin(), previous_paths.begin(), previous_paths.end());
    sql::ViewOptions view;
    view.hive_partitioning = partitioned;
    Status s = engine.ReplaceView(r.output.zone, r.output.name, view_files, ToSql(schema), view);
    if (!s.ok()) return fail(s);
  }
  std::vector<std::pair<DataTest, std::string>> tests;
  if (incremental && !model.time_column.empty() && !new_rows.empty()) {
    DataTest t;
    t.kind = TestKind::kSql;
    t.name = "time_column_in_interval(" + model.time_column + ")";
    const std::string col = QuoteIdentifier(model.time_column);
    tests.push_back({t, "SELECT * FROM " + new_rows + " WHERE " + col + " IS NULL OR " + col +
                            " < " + TimestampSql(request.interval->start) + " OR " + col +
                            " >= " + TimestampSql(request.interval->end)});
  }
  for (const DataTest& t : model.tests) tests.push_back({t, internal::TestSql(t, model)});
  bool blocked = false;
  for (const auto& [test, text] : tests) {
    TestResult tr;
    tr.name = test.name;
    tr.kind = test.kind;
    tr.severity = test.severity;
    auto failing = ScalarInt(engine, "SELECT COUNT(*) FROM (\n" + text + "\n)");
    if (!failing.ok()) {
      tr.error = failing.status().ToString();
    } else {
      tr.failing_rows = *failing;
      tr.passed = *failing == 0;
      if (!tr.passed && options_.sample_rows > 0) {
        auto samples = Query(engine, text, options_.sample_rows);
        if (samples.ok()) tr.samples_json = std::move(samples->body);
      }
    }
    if (!tr.passed && tr.severity == Severity::kError) blocked = true;
    r.tests.push_back(std::move(tr));
  }
  {
    auto total = ScalarInt(engine, "SELECT COUNT(*) FROM " + QuoteIdentifier(r.output.zone) + "." +
                                       QuoteIdentifier(r.output.name));
    if (!total.ok()) return fail(total.status());
    r.total_rows = *total;
  }
  if (blocked) {
    abort();
    r.outcome = Outcome::kTestsFailed;
    r.version = r.previous_version;
    r.duration_us = MonotonicMicros() - mono_start;
    spdlog::warn("transform: {} not committed: failed tests {}", model.name,
                 Join(r.Failed(Severity::kError), ", "));
    return r;
  }

  // 6) Commit: the previous snapshot stays current unless this compare-and-swap wins.
  lake::CommitRequest commit;
  commit.staging = staging;
  commit.owner = lake::Owner{"model", model.name};
  commit.mode = append ? lake::WriteMode::kAppend : lake::WriteMode::kOverwrite;
  commit.files = std::move(staged);
  commit.schema = std::move(schema);
  commit.partition_by = model.partition_by;
  commit.expected_version = r.previous_version;
  auto snap = lake_->Commit(commit);
  if (!snap.ok()) return fail(snap.status());
  r.version = snap->version;
  r.total_rows = snap->total_rows;
  r.outcome = Outcome::kCommitted;
  r.duration_us = MonotonicMicros() - mono_start;
  if (options_.lineage_store != nullptr) {
    // After the commit point: a failure (or crash) here loses this run's lineage, not its data.
    Status s = RecordLineage(*options_.lineage_store, r);
    if (!s.ok()) spdlog::warn("transform: lineage of {}: {}", model.name, s.ToString());
  }
  return r;
}

// ---- Lineage ------------------------------------------------------------------------------------

std::vector<catalog::Migration> Migrations() {
  return {{"transform", 1,
           "CREATE TABLE transform_lineage ("
           " output_zone TEXT NOT NULL, output_table TEXT NOT NULL, output_version BIGINT NOT NULL,"
           " input_zone TEXT NOT NULL, input_table TEXT NOT NULL, input_version BIGINT NOT NULL,"
           " model TEXT NOT NULL, recorded_at BIGINT NOT NULL,"
           " PRIMARY KEY (output_zone, output_table, output_version, input_zone, input_table));"
           "CREATE INDEX transform_lineage_input ON transform_lineage (input_zone, input_table);"}};
}

Status RecordLineage(catalog::Store& store, const RunResult& run) {
  if (!run.committed() || run.version == run.previous_version) return Status::Ok();
  ASSIGN_OR_RETURN(auto txn, store.Begin());
  const Micros now = NowMicros();
  for (const auto& in : run.inputs) {
    RETURN_IF_ERROR(txn->Exec(
        "INSERT INTO transform_lineage (output_zone, output_table, output_version, input_zone, "
        "input_table, input_version, model, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {run.output.zone, run.output.name, run.version, in.table.zone, in.table.name, in.version,
         run.model, now}));
  }
  return txn->Commit();
}

Result<std::vector<LineageEdge>> LineageOf(catalog::Store& store, const lake::TableRef& output,
                                           int64_t version) {
  std::string text =
      "SELECT model, output_version, input_zone, input_table, input_version, recorded_at FROM "
      "transform_lineage WHERE output_zone = ? AND output_table = ?";
  std::vector<catalog::Value> params = {output.zone, output.name};
  if (version > 0) {
    text += " AND output_version = ?";
    params.push_back(version);
  }
  text += " ORDER BY output_version, input_zone, input_table";
  ASSIGN_OR_RETURN(catalog::Rows rows, store.Query(text, params));
  std::vector<LineageEdge> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    LineageEdge e;
    e.model = rows.Text(i, 0);
    e.output = output;
    e.output_version = rows.Int(i, 1);
    e.input = {rows.Text(i, 2), rows.Text(i, 3)};
    e.input_version = rows.Int(i, 4);
    e.recorded_at = rows.Int(i, 5);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace lakeloop::transform
