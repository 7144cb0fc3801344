// transform: SQL models (the Glue / dbt role). A model is `models/<name>.sql` (one SELECT over lake
// tables and other models) plus an optional `models/<name>.yaml` (materialisation and data tests);
// lakeloop materialises it as the lake table `processed.<name>`, in dependency order.
//
// - LoadModels parses the files (no engine needed); errors name file, line and reason.
// - Graph::Build finds each model's inputs from DuckDB's parse tree (json_serialize_sql, not a
//   regex), orders models topologically, refuses cycles, and answers Downstream(table).
// - Runner builds one model: the SELECT runs in the runner's own DuckDB engine whose views are
//   pinned to the exact snapshots it read, its result is COPYed to Parquet in a lake staging
//   folder, the data tests run against the staged files, and only then is the write committed
//   (compare-and-swap on the version read at the start). A failing `error` test aborts the write.
//
// In model SQL, tables are always qualified: `raw.orders`, `processed.<other model>`. Incremental
// models read the interval being built as the TIMESTAMP (UTC) parameters `$start` and `$end`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "core/time.h"
#include "lake/lake.h"
#include "sql/sql.h"

namespace lakeloop::transform {

// The zone every model's output lives in.
inline constexpr std::string_view kOutputZone = "processed";

// ---- Definitions --------------------------------------------------------------------------------

enum class Materialization { kTable, kIncremental };
enum class Strategy { kAppend, kMerge };
enum class Severity { kError, kWarn };
enum class TestKind { kNotNull, kUnique, kAcceptedValues, kRelationships, kMinRows, kSql };
std::string_view TestKindName(TestKind kind);  // "not_null", "unique", ...
std::string_view SeverityName(Severity severity);

// One data test from the model's yaml. Tests run against the model's staged output before commit.
struct DataTest {
  TestKind kind = TestKind::kNotNull;
  std::string name;                  // `name:` from yaml, else e.g. "unique(a,b)"
  std::vector<std::string> columns;  // not_null, accepted_values, relationships: one; unique: 1+
  std::vector<std::string> values;   // accepted_values; compared as text (NULLs pass)
  std::string to;                    // relationships: "zone.table", or a model name
  std::string field;                 // relationships: the column of `to` (NULLs pass)
  int64_t min_rows = 0;              // min_rows
  std::string sql;                   // sql: a SELECT returning the failing rows
  Severity severity = Severity::kError;
  int line = 0;  // 1-based line of the test in the yaml file
};

struct Model {
  std::string name;  // lower-case identifier; the output is processed.<name>
  std::string sql;
  std::filesystem::path sql_file;
  std::filesystem::path yaml_file;  // empty when the model has none
  Materialization materialized = Materialization::kTable;
  Strategy strategy = Strategy::kAppend;  // incremental only
  std::vector<std::string> unique_key;    // merge only (required there)
  std::string time_column;  // incremental: if set, every new row must lie in [$start, $end)
  std::vector<std::string> partition_by;  // hive partition columns of the output
  std::vector<DataTest> tests;

  // Filled by Graph::Build, sorted: the tables the SELECT reads, and the other tables the tests
  // read (relationships targets, tables in `sql` tests; never the model's own output).
  std::vector<lake::TableRef> inputs;
  std::vector<lake::TableRef> test_inputs;

  lake::TableRef output() const { return {std::string(kOutputZone), name}; }
};

// Parses every `<name>.sql` in `models_dir` (not recursive) with its optional sibling
// `<name>.yaml` / `<name>.yml`. All errors are collected into one kInvalidArgument whose message
// has one line per error: "<file>:<line>: <reason>". Nothing is returned unless all are valid.
// Sorted by name.
Result<std::vector<Model>> LoadModels(const std::filesystem::path& models_dir);
// One model from text; `sql_file` / `yaml_file` only name the sources in errors.
Result<Model> ParseModel(std::string_view name, std::string_view sql, std::string_view yaml_text,
                         const std::filesystem::path& sql_file,
                         const std::filesystem::path& yaml_file);

// What one SELECT reads, from DuckDB's parse tree (json_serialize_sql): BASE_TABLE references in
// FROM, joins, subqueries, set operations and CTE bodies; a name a CTE in scope defines is not a
// table. Identifiers are lower-cased (DuckDB matches them case-insensitively).
struct SqlRefs {
  std::vector<lake::TableRef> tables;   // sorted, unique
  std::vector<std::string> parameters;  // $names used, sorted, unique
};
// kInvalidArgument for: not exactly one statement, not a SELECT, a syntax error (with the line),
// an unqualified table that is no CTE, a catalog-qualified one, a name that is no lake identifier.
Result<SqlRefs> AnalyzeSql(sql::Engine& engine, std::string_view select_sql);

// ---- Dependency graph ---------------------------------------------------------------------------

// Models and their inputs; immutable once built, so thread-safe.
class Graph {
 public:
  // Analyses every model's SQL (and test SQL) with `engine` (any engine: parsing reads no table),
  // fills Model::inputs/test_inputs, and orders the models. kInvalidArgument for bad SQL (naming
  // the file), a table model using $start/$end, a relationships target that is no model and no
  // "zone.table", and cycles ("cycle: a -> b -> a"; a model reading its own output is one).
  static Result<Graph> Build(sql::Engine& engine, std::vector<Model> models);

  // Topological order (every model after the models it reads); ties broken by name.
  const std::vector<Model>& models() const { return models_; }
  std::vector<std::string> Order() const;
  const Model* Find(std::string_view name) const;
  // Models that read `table` directly or through other models, in topological order. `table`
  // may be a lake table (raw.orders) or a model output (processed.x; x itself is not included).
  std::vector<std::string> Downstream(const lake::TableRef& table) const;

 private:
  std::vector<Model> models_;
};

// ---- Materialisation ----------------------------------------------------------------------------

// A half-open interval [start, end) of event time, UTC micros.
struct Interval {
  Micros start = 0;
  Micros end = 0;
};

struct RunRequest {
  std::string model;
  // Required for incremental models (bound to $start/$end); refused for table models.
  std::optional<Interval> interval;
};

struct TestResult {
  std::string name;
  TestKind kind = TestKind::kNotNull;
  Severity severity = Severity::kError;
  bool passed = false;
  int64_t failing_rows = 0;
  // Up to RunnerOptions::sample_rows failing rows, as sql's JSON reply
  // ({"columns":[...],"rows":[...],...}); empty when passed.
  std::string samples_json;
  std::string error;  // the test could not run (a SQL error): counts as failed
};

struct InputRead {
  lake::TableRef table;
  int64_t version = 0;
  bool operator==(const InputRead&) const = default;
};

enum class Outcome {
  kCommitted,    // a new snapshot is current (warn tests may have failed)
  kTestsFailed,  // an error-severity test failed: nothing committed, the previous snapshot stays
};

struct RunResult {
  std::string model;
  lake::TableRef output;
  Outcome outcome = Outcome::kCommitted;
  std::optional<Interval> interval;
  int64_t rows_out = 0;          // rows the model's SELECT produced in this run
  int64_t total_rows = 0;        // rows of the table after commit (staged total when aborted)
  int64_t previous_version = 0;  // 0: the table did not exist
  int64_t version = 0;           // the new snapshot; previous_version when nothing committed
  std::vector<TestResult> tests;
  std::vector<InputRead> inputs;  // every table read (model and tests) at the version read
  Micros started_at = 0;
  Micros duration_us = 0;

  bool committed() const { return outcome == Outcome::kCommitted; }
  // Names of failed tests of one severity.
  std::vector<std::string> Failed(Severity severity) const;
};

struct RunnerOptions {
  // The runner's own engine. Model SQL is user text: keep it sandboxed (the default) with
  // lake_root = the lake's root folder (staging folders are written there) and a scratch_dir.
  sql::EngineOptions engine;
  // When set, each committed run's lineage is recorded here (apply Migrations() first).
  catalog::Store* lineage_store = nullptr;
  int64_t sample_rows = 5;
};

// Builds models into the lake. Owns one DuckDB engine whose views it pins per run, so runs are
// serialised (a mutex): one model build at a time per Runner. Thread-safe. Needs a lake whose
// object store is local (staging folders written by DuckDB's COPY).
class Runner {
 public:
  static Result<std::unique_ptr<Runner>> Open(lake::Lake* lake, RunnerOptions options);

  // Builds one model. A non-ok Result: nothing was committed (SQL error, a missing input:
  // kNotFound, a concurrent commit to the output: kConflict — rerun). Failed error-severity tests
  // are an ok Result with outcome kTestsFailed.
  Result<RunResult> Run(const Graph& graph, const RunRequest& request);
  // Runs `models` (default: all) in the graph's order, incremental ones over `interval`. Stops at
  // the first model whose tests failed (its result is the last) or that errored (the status,
  // prefixed with the model name).
  Result<std::vector<RunResult>> RunAll(const Graph& graph, std::optional<Interval> interval,
                                        const std::vector<std::string>& models = {});

  // The engine (for parsing in Graph::Build; its views are the runner's business).
  sql::Engine& engine() { return *engine_; }

 private:
  Runner(lake::Lake* lake, RunnerOptions options, std::unique_ptr<sql::Engine> engine)
      : lake_(lake), options_(std::move(options)), engine_(std::move(engine)) {}
  Result<RunResult> RunLocked(const Model& model, const RunRequest& request);

  lake::Lake* lake_;
  RunnerOptions options_;
  std::unique_ptr<sql::Engine> engine_;
  std::mutex mu_;
};

// ---- Lineage ------------------------------------------------------------------------------------

// Snapshot-level lineage: output table version <- input table versions.
struct LineageEdge {
  std::string model;
  lake::TableRef output;
  int64_t output_version = 0;
  lake::TableRef input;
  int64_t input_version = 0;
  Micros recorded_at = 0;
};

// The `transform` module's catalog tables (transform_lineage).
std::vector<catalog::Migration> Migrations();
// Records a committed run's inputs (no-op for a run that committed nothing).
Status RecordLineage(catalog::Store& store, const RunResult& run);
// Lineage of `output` (all versions when version is 0), ordered by version then input.
Result<std::vector<LineageEdge>> LineageOf(catalog::Store& store, const lake::TableRef& output,
                                           int64_t version = 0);

}  // namespace lakeloop::transform
