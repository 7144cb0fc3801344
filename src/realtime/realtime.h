// realtime: the streaming path wired together. Applied stream definitions become streams of the
// durable event log (RocksDB) with an archiver into raw.<stream>; applied stream feature views run
// in the stream processor (online features fresh to the last event, logged to features.<view>).
// It also validates and ingests posted events and reports per-stream figures.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/time.h"
#include "features/features.h"
#include "features/store.h"
#include "flow/definition_kind.h"
#include "flow/flow.h"
#include "lake/lake.h"
#include "sql/sql.h"
#include "stream/archive.h"
#include "stream/definition.h"
#include "stream/stream.h"

namespace lakeloop::realtime {

struct RealtimeOptions {
  std::filesystem::path project;
  std::filesystem::path log_dir;  // the event log (RocksDB)
  std::filesystem::path scratch;
  int sql_threads = 1;
  std::string memory_limit = "1GB";
  // Serving: the archiver and the feature processor run in the background. A one-shot CLI command
  // leaves them off.
  bool background = true;
  int64_t archive_interval_ms = 1000;
  // The archiver's engine: every query's time limit (0: none) and the group the shutdown deadline
  // interrupts (may be null).
  int64_t query_timeout_ms = 0;
  std::shared_ptr<sql::InterruptGroup> interrupt_group;
  // Events waiting for (or in) the event log's group commit; past it ingest answers 429.
  size_t max_queue_events = 100'000;
  // The process's scheduler: each batch feature view gets a materialization job triggered by its
  // source table's commits (run history in flow_runs). Null: no jobs (Materialize still works).
  std::shared_ptr<flow::Scheduler> scheduler;
};

// What one materialization of a batch view did.
struct MaterializeReport {
  std::string view;
  bool full = false;
  int64_t source_version = 0;  // the snapshot read (0: the table does not exist yet)
  int64_t rows_loaded = 0;     // entities written to the online store
  int64_t watermark_us = 0;    // newest event time loaded so far (the next run starts there)
};

// The scheduler job of a batch view's materialization.
std::string MaterializeJobName(std::string_view view);

struct ProjectFiles {
  std::vector<stream::StreamDefinition> streams;
  std::vector<features::FeatureView> views;
  std::vector<features::Entity> entities;          // entities/*.yaml
  std::vector<features::FeatureService> services;  // feature_services/*.yaml
  std::vector<catalog::Definitions::Definition> definitions;
};

// What one POST of events did.
struct IngestReport {
  int64_t accepted = 0;
  int64_t duplicates = 0;
  std::vector<stream::RejectedEvent> rejected;
};

// Counters of one stream since the process started (the log's offsets are durable).
struct StreamCounters {
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> requests{0};
};

// Thread-safe. Each applied stream feature view runs in a stream processor of its own, so a view
// is added, replaced or removed without touching the others.
class Realtime : public flow::DefinitionKind {
 public:
  static Result<std::unique_ptr<Realtime>> Open(catalog::Store* catalog, lake::Lake* lake,
                                                RealtimeOptions options);
  ~Realtime() override;
  static std::vector<catalog::Migration> Migrations();

  // Reads streams/*.yaml and features/*.yaml and validates them together (a view's stream, its
  // fields and their types). Errors name file, line and reason.
  Result<ProjectFiles> ReadProject();

  // flow::DefinitionKind: "stream", "feature_view", "entity" and "feature_service".
  std::vector<std::string> DefinitionKinds() const override;
  Result<std::vector<flow::Definition>> ReadDefinitions() override;
  // A batch view's source table must be produced by a source or model definition in `all` or
  // exist in the lake; when it exists, its columns must exist with fitting types.
  Status CheckReferences(const std::vector<flow::Definition>& all) override;
  std::string DeleteNote(const flow::Definition& deleted) const override;
  // Loads the applied definitions again; registers created or updated streams (log + archiver);
  // starts a processor for each created view, replaces the processor of each updated view
  // (its state is rebuilt when its fingerprint changed) and stops that of each deleted view.
  // Unchanged views keep their processor, state and position.
  Status ApplyChanges(const std::vector<flow::DefinitionChange>& changes) override;
  // Loads the applied definitions from the catalog and brings streams and processors in line
  // with them (a processor for each view that has none or whose definition changed).
  Status Reload();
  void Stop();

  // Validates `body` (JSON array or NDJSON) against the stream's definition and appends the valid
  // events durably (group commit). `done` runs once, possibly on another thread, after the
  // acknowledgement (or the refusal). kNotFound for an unknown stream; kResourceExhausted when the
  // log's queue is full; kInvalidArgument when the body as a whole is unusable.
  void Ingest(const std::string& stream, std::string body,
              std::function<void(Result<IngestReport>)> done);

  Result<features::FeatureVector> Online(const std::string& view, const std::string& key,
                                         int64_t read_time_us);

  // The feature store's online plan as of the last apply (never null after Open): the in-process
  // read path (features::OnlinePlan::Get). Rebuilt and swapped by every apply and reload.
  std::shared_ptr<const features::OnlinePlan> plan();
  Result<features::OnlineResponse> OnlineFeatures(const features::OnlineRequest& request);

  // Loads a batch view's newest row per entity (within its TTL) from its source table into the
  // online store: rows with an event time at or after the last run's watermark, or all of them
  // with `full` (which first drops the view's online rows). A changed definition runs full.
  // kNotFound for an unknown batch view. Serialised per view.
  Result<MaterializeReport> Materialize(const std::string& view, bool full);
  // Runs Materialize as the view's scheduler job (run history) and waits for it; without a
  // scheduler, runs it inline. Returns the run's id ("" inline) and the report.
  Result<std::pair<std::string, MaterializeReport>> MaterializeRun(const std::string& view,
                                                                   bool full);
  // {"stream","partitions","events":{...},"consumers":[...],"archive":{...},"views":[...]}
  Result<std::string> StreamJson(const std::string& stream);
  std::vector<std::string> StreamNames();

  // When the processor of `view` started (it keeps running across applies that leave the view
  // unchanged); kNotFound for a view without one. Also in StreamJson as "running_since".
  Result<Micros> ViewRunningSince(const std::string& view);

  // Retention: deletes log records past each stream's retention (never past a durable consumer:
  // the archiver and the feature views). Called periodically by the server.
  Status Maintain();

  // For tests and tools: archive what the log holds now, in at most `max_rounds` batches; the
  // result says whether the archive caught up and how many events remain if not.
  Result<stream::DrainResult> ArchiveNow(const std::string& stream, int max_rounds = 1000);
  // For tests and tools: compact raw.<stream>'s small files now (it also runs on its cadence).
  Result<stream::CompactResult> CompactNow(const std::string& stream);
  stream::EventLog& log() { return *log_; }

 private:
  Realtime(catalog::Store* catalog, lake::Lake* lake, RealtimeOptions options);
  struct Applied;
  std::shared_ptr<const Applied> applied();
  Result<std::shared_ptr<Applied>> LoadApplied();

  catalog::Store* catalog_;
  lake::Lake* lake_;
  RealtimeOptions options_;
  std::unique_ptr<stream::EventLog> log_;
  std::unique_ptr<features::OnlineStore> online_;
  std::unique_ptr<sql::Engine> loader_;
  std::unique_ptr<stream::Archiver> archiver_;
  // The running processors, one per stream view; replaced as a whole (copy on write).
  struct Running {
    std::shared_ptr<features::StreamProcessor> processor;
    Micros started_at = 0;
  };
  struct Processors {
    std::map<std::string, Running, std::less<>> by_view;
    std::map<std::string, std::vector<std::shared_ptr<features::StreamProcessor>>, std::less<>>
        by_stream;
  };
  std::shared_ptr<const Processors> processors();
  // Starts a processor for `view` (not started when options_.background is off).
  Result<std::shared_ptr<features::StreamProcessor>> StartProcessor(
      const features::FeatureView& view);
  // Brings the processors in line with `applied`: views in `restart` (and views without one)
  // get a new processor, views no longer applied lose theirs.
  Status SyncProcessors(const Applied& applied, const std::set<std::string>& restart);

  // Builds the online plan from `applied` and the running processors, and swaps it in; registers,
  // replaces or removes the batch views' materialization jobs.
  Status SyncFeatureStore(const Applied& applied);
  std::shared_ptr<const features::OnlinePlan> plan_;  // guarded by mu_
  std::set<std::string> materialize_jobs_;            // guarded by apply_mu_
  std::map<std::string, std::string> job_specs_;      // view -> source, guarded by apply_mu_
  std::mutex materialize_mu_;                         // one materialization at a time

  std::mutex apply_mu_;  // one ApplyChanges / Reload at a time
  std::mutex mu_;        // guards applied_, processors_, counters_
  std::shared_ptr<const Applied> applied_;
  std::shared_ptr<const Processors> processors_ = std::make_shared<Processors>();
  std::map<std::string, std::shared_ptr<StreamCounters>, std::less<>> counters_;
};

}  // namespace lakeloop::realtime
