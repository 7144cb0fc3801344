// app: the composition root. Builds lakeloop's components from the project's config and the data
// directory, starts them in dependency order (catalog, lake, sql, api) and stops them in reverse.
// The `lakeloop` CLI (cli.cc) is the only other code here.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/api.h"
#include "api/handlers.h"
#include "batch/batch.h"
#include "catalog/catalog.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/metrics.h"
#include "core/thread_pool.h"
#include "features/historical.h"
#include "flow/definition_kind.h"
#include "flow/flow.h"
#include "lake/lake.h"
#include "realtime/realtime.h"
#include "sql/lake_io.h"
#include "sql/sql.h"

namespace lakeloop::app {

inline constexpr std::string_view kVersion = "0.1.0";

struct Paths {
  std::filesystem::path project;
  std::filesystem::path data;
  std::filesystem::path catalog() const { return data / "catalog.db"; }
  std::filesystem::path lake() const { return data / "lake"; }
  std::filesystem::path scratch() const { return data / "tmp"; }
  std::filesystem::path logs() const { return data / "logs"; }
  std::filesystem::path lock() const { return data / "lakeloop.lock"; }
  // Written by a running server (its URL and pid), removed when it stops; read by the CLI.
  std::filesystem::path server_file() const { return data / "server.json"; }
  // An admin token for the local CLI (mode 0600): whoever can read the data directory owns it.
  std::filesystem::path admin_token() const { return data / "admin.token"; }
};

enum class Mode {
  kServer,    // owns the data directory (the lock); serves; schedules and triggers run
  kOneShot,   // owns the data directory for one CLI command; runs only what it is asked to
  kReadOnly,  // reads committed state beside a possibly running owner; changes nothing
};

// Every component of one lakeloop process. Not copyable; destroyed in reverse order of creation.
class App {
 public:
  static Result<std::unique_ptr<App>> Open(const Paths& paths, const Config& config, Mode mode);
  ~App();

  // Serves HTTP until SIGTERM/SIGINT, then drains requests and stops. `listen` overrides config.
  Status Serve(const std::optional<std::string>& listen);

  const Paths& paths() const { return paths_; }
  const Config& config() const { return config_; }
  lake::Lake& lake() { return *lake_; }
  sql::Engine& engine() { return *engine_; }
  sql::Engine& loader() { return *loader_; }
  catalog::TokenStore& tokens() { return *tokens_; }
  // Sources, models and their runs; null in read-only mode.
  batch::Batch* batch() { return batch_.get(); }
  // Streams and stream features; null in read-only mode.
  realtime::Realtime* realtime() { return realtime_.get(); }
  features::DatasetBuilder* datasets() { return datasets_.get(); }
  metrics::Registry& metrics() { return *metrics_; }
  // The process's one scheduler (every kind of job runs on it); null in read-only mode.
  std::shared_ptr<flow::Scheduler> scheduler() { return scheduler_; }
  // Validates every definition file of the project (every registered DefinitionKind: sources,
  // models, streams, feature views) and, unless `dry_run`, stores them in one catalog transaction
  // and hands each kind its changes: only what changed is started, replaced or stopped.
  Result<batch::ApplyReport> Apply(bool dry_run);

 private:
  App() = default;
  Status StartGarbageCollector();

  Paths paths_;
  Config config_;
  std::optional<LockFile> lock_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<catalog::TokenStore> tokens_;
  std::unique_ptr<lake::ObjectStore> store_;
  std::unique_ptr<lake::Lake> lake_;
  // Interrupts every query of every engine below at the shutdown deadline.
  std::shared_ptr<sql::InterruptGroup> interrupts_ = std::make_shared<sql::InterruptGroup>();
  std::unique_ptr<sql::Engine> engine_;
  std::unique_ptr<sql::Engine> loader_;
  // Admission queue of uploads, exports and ad-hoc SQL (limits.expensive_*).
  std::unique_ptr<ThreadPool> expensive_;
  std::unique_ptr<sql::LakeViews> views_;
  std::shared_ptr<flow::Scheduler> scheduler_;
  std::unique_ptr<batch::Batch> batch_;
  std::unique_ptr<realtime::Realtime> realtime_;
  // What `apply` reads and applies, in order; later modules add theirs in Open.
  std::vector<flow::DefinitionKind*> definition_kinds_;
  std::mutex apply_mu_;  // one Apply at a time (API and CLI may both ask)
  // GET /metrics; modules' figures are registered in RegisterMetrics.
  std::unique_ptr<metrics::Registry> metrics_;
  Status RegisterMetrics();
  api::Services services_;

  // Point-in-time datasets: their own sandboxed engine (limits.datasets_*) and its lake views.
  // Declared last: stopped first.
  Status OpenDatasets(const Paths& paths, const Config& config);
  std::unique_ptr<sql::Engine> datasets_engine_;
  std::unique_ptr<sql::LakeViews> datasets_views_;
  std::unique_ptr<features::DatasetBuilder> datasets_;
};

// Blocks SIGTERM, SIGINT and SIGPIPE in the calling thread (call before any thread starts, so every
// thread inherits the mask) so that Serve can wait for them with sigwait.
void BlockStopSignals();

}  // namespace lakeloop::app
