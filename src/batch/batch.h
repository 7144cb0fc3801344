// batch: the batch data path wired together — applied sources and SQL models become scheduler
// jobs (`source:<name>`, `model:<name>`); lake commits notify the scheduler so models downstream of
// a table rebuild (data-aware triggers); `apply`, `build`, manual runs and backfills.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "flow/definition_kind.h"
#include "flow/flow.h"
#include "ingest/ingest.h"
#include "lake/lake.h"
#include "sql/sql.h"
#include "transform/transform.h"

namespace lakeloop::batch {

// The project's definition files, read and validated as a whole.
struct ProjectFiles {
  std::vector<ingest::SourceSpec> sources;
  std::vector<transform::Model> models;
  std::vector<catalog::Definitions::Definition> definitions;
};

// One line of what `apply` changes, with what happens to the data of a removed definition.
struct PlannedChange {
  std::string action;  // create | update | delete
  std::string kind;    // source | model
  std::string name;
  std::string note;
};

struct ApplyReport {
  bool dry_run = false;
  std::vector<PlannedChange> changes;
};

struct BatchOptions {
  std::filesystem::path project;
  std::filesystem::path lake_root;
  std::filesystem::path scratch;
  int sql_threads = 1;
  std::string memory_limit = "1GB";
  // Serving: cron schedules and data-aware triggers are on. A one-shot CLI command turns them off
  // so that it runs exactly what it was asked to and leaves nothing queued behind.
  bool triggers = true;
  size_t workers = 2;
  // Limits of the loads-and-models engines: every query's time limit (0: none) and the group
  // the shutdown deadline interrupts (may be null).
  int64_t query_timeout_ms = 0;
  std::shared_ptr<sql::InterruptGroup> interrupt_group;
};

// Thread-safe. Its jobs run on a scheduler it is given (one per process, owned by the
// composition root): stop that scheduler (or let the jobs finish) before destroying the Batch.
class Batch : public flow::DefinitionKind {
 public:
  static Result<std::unique_ptr<Batch>> Open(catalog::Store* catalog, lake::Lake* lake,
                                             std::shared_ptr<flow::Scheduler> scheduler,
                                             BatchOptions options);
  ~Batch() override;
  static std::vector<catalog::Migration> Migrations();

  // Reads the project folder and validates every definition (sources, models and their graph).
  Result<ProjectFiles> ReadProject();

  // flow::DefinitionKind: "source" and "model".
  std::vector<std::string> DefinitionKinds() const override;
  Result<std::vector<flow::Definition>> ReadDefinitions() override;
  std::string DeleteNote(const flow::Definition& deleted) const override;
  // Loads the applied definitions again and adds, replaces or removes exactly the changed jobs
  // (`source:<name>`, `model:<name>`) on the running scheduler; other jobs and their runs are
  // untouched. A run in flight of a replaced job finishes with the definition it started with.
  Status ApplyChanges(const std::vector<flow::DefinitionChange>& changes) override;
  // Loads the applied definitions again and brings every job in line with them (register,
  // replace, remove), without stopping the scheduler. For tools; apply uses ApplyChanges.
  Status Reload();

  // Registers the jobs of the applied definitions (the scheduler may already run) and turns the
  // commit listener's triggers on.
  Status Start();
  // Turns the commit listener off. The scheduler is the caller's to stop.
  void Stop();

  // Every source once, then every model once in dependency order (with its data tests), like
  // `dbt build`. Stops at the first failure (later models would read stale inputs).
  Result<std::vector<flow::RunInfo>> Build();
  // A manual run of `job` ("source:<name>" or "model:<name>"); waits when `wait`.
  Result<flow::RunInfo> Run(const std::string& job, const std::string& params, bool wait);
  // One run per `step` interval of [from, to) for an incremental model, in order; waits.
  Result<std::vector<flow::RunInfo>> Backfill(const std::string& model, Micros from, Micros to,
                                              Micros step);

  // The scheduler its jobs run on: run history, cancel.
  std::shared_ptr<flow::Scheduler> scheduler();
  // Lineage of a lake table: what its current (or given) version was built from.
  Result<std::string> LineageJson(const lake::TableRef& table);
  // Start time of the oldest job run still reading the lake (now when none): lake GC waits for it.
  Micros OldestActiveRead();

 private:
  Batch(catalog::Store* catalog, lake::Lake* lake, std::shared_ptr<flow::Scheduler> scheduler,
        BatchOptions options);
  struct Applied;
  Result<std::shared_ptr<const Applied>> LoadApplied();
  // The job of a source or model of `applied` (nullopt when it has none of that name).
  struct JobDef {
    std::unique_ptr<flow::Job> job;
    flow::JobSpec spec;
  };
  std::optional<JobDef> SourceJob(const Applied& applied, const std::string& name);
  std::optional<JobDef> ModelJob(const Applied& applied, const std::string& name);
  Result<flow::RunOutput> RunSource(const std::string& name, flow::RunContext& ctx);
  Result<flow::RunOutput> RunModel(const std::string& name, flow::RunContext& ctx);
  Result<flow::RunInfo> Wait(const std::string& run_id);
  std::shared_ptr<const Applied> applied();

  catalog::Store* catalog_;
  lake::Lake* lake_;
  BatchOptions options_;
  std::unique_ptr<sql::Engine> loader_;    // ingest (trusted SQL)
  std::unique_ptr<sql::Engine> analyzer_;  // parses model SQL for dependencies
  std::unique_ptr<ingest::Ingestor> ingestor_;
  std::unique_ptr<transform::Runner> runner_;
  std::shared_ptr<flow::Scheduler> scheduler_;
  std::mutex mu_;        // guards applied_, active_reads_, started_, building_
  std::mutex apply_mu_;  // one ApplyChanges / Reload / Start at a time
  struct ListenerHandle {
    std::mutex mu;
    Batch* self = nullptr;
  };
  std::shared_ptr<ListenerHandle> listener_handle_;  // the lake's commit listener -> this
  std::shared_ptr<const Applied> applied_;
  std::multiset<Micros> active_reads_;
  bool started_ = false;
  int building_ = 0;  // while > 0, commits do not trigger downstream runs (build runs them)
};

}  // namespace lakeloop::batch
