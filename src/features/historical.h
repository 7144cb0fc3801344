// features/historical: point-in-time (historical) retrieval and training datasets.
//
// A build takes entity rows (an entity query run in the sandboxed build engine, or a lake table)
// with an entity key column and `event_timestamp`, plus features ("view:feature"), and adds to
// every row each feature's value as of that row's timestamp:
//   - stream views: the value an online read at t returns, computed by replaying the stream's
//     event log through the processor's own window code (internal/pit_replay.h: lateness by log
//     order, tails rounded to the tile, the same HyperLogLog);
//   - batch views: DuckDB ASOF LEFT JOIN on the view's source snapshot (see historical.cc).
// No value stamped after a row's timestamp is used; one stamped exactly at it is.
// The result is committed as a new snapshot of datasets.<name> (owner "dataset <name>", pinned so
// retention keeps every version) with its lineage, and each build is recorded with its status
// and progress in the catalog (dataset_builds).
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "features/features.h"
#include "features/store.h"
#include "lake/lake.h"
#include "sql/sql.h"
#include "stream/stream.h"

namespace lakeloop::features {

struct HistoricalRequest {
  std::string name;                   // dataset name: datasets.<name>
  std::string entities_sql;           // a SELECT (sandboxed), or
  std::string entities_table;         // "zone.table"
  std::vector<std::string> features;  // "view:feature", or
  std::string feature_service;        // a service's name
  std::string created_by;             // who asked (for the build record)
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called once the request is valid and the build is recorded as running (Start uses it).
  std::function<void(int64_t build)> on_started;
};

struct DatasetBuild {
  std::string name;
  int64_t build = 0;         // 1, 2, ... per name
  std::string status;        // running | succeeded | failed
  int64_t lake_version = 0;  // snapshot of datasets.<name> (succeeded builds)
  int64_t rows = 0;
  std::string progress;  // stage and counters while running
  std::string error;
  std::string created_by;
  Micros started_at = 0;
  Micros finished_at = 0;
  std::string request_json;  // what was asked
  std::string lineage_json;  // input snapshots, stream offsets, definitions (sha256)
  std::vector<lake::Column> schema;
};

// Builds datasets. Thread-safe: builds may run concurrently (different names; the same name
// twice: the second commit loses the compare-and-swap and fails with kConflict).
class DatasetBuilder {
 public:
  struct Deps {
    lake::Lake* lake = nullptr;
    catalog::Store* catalog = nullptr;
    const stream::EventLog* log = nullptr;  // null: no stream views
    // The build engine: sandboxed (runs the entity query), its own memory and threads; its
    // scratch_dir (readable by the sandbox) holds the intermediate files.
    sql::Engine* engine = nullptr;
    std::filesystem::path scratch_dir;
  };
  explicit DatasetBuilder(Deps deps) : deps_(std::move(deps)) {}
  ~DatasetBuilder();  // cancels the builds Start began and joins them
  DatasetBuilder(const DatasetBuilder&) = delete;
  DatasetBuilder& operator=(const DatasetBuilder&) = delete;

  static std::vector<catalog::Migration> Migrations();

  // Runs a build to its end. kInvalidArgument for a bad request (name, features syntax, entity
  // columns), kNotFound for an unknown view or feature or table, kSqlError / kStatementNotAllowed
  // for the entity query, kConflict when datasets.<name> is owned by something else.
  Result<DatasetBuild> Build(const HistoricalRequest& request);

  // The same on a thread of its own: returns the build's record (status "running") as soon as the
  // request is validated and recorded, or the error Build would return for a bad request. The
  // build is cancelled by the destructor (its record then says failed), not by the caller.
  Result<DatasetBuild> Start(HistoricalRequest request);

  // Newest first. kNotFound for a name never built.
  Result<std::vector<DatasetBuild>> Builds(const std::string& name);
  Result<DatasetBuild> GetBuild(const std::string& name, int64_t build);
  // Every dataset's latest build.
  Result<std::vector<DatasetBuild>> List();

 private:
  Status SetProgress(const std::string& name, int64_t build, const std::string& progress);
  Deps deps_;
  std::shared_ptr<std::atomic<bool>> stop_ = std::make_shared<std::atomic<bool>>(false);
  std::mutex mu_;  // guards threads_
  struct Async {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Async> threads_;
};

// The JSON of a build record (API and CLI print the same).
std::string DatasetBuildToJson(const DatasetBuild& build);

}  // namespace lakeloop::features
