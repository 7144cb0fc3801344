#include "app/app.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <map>
#include <thread>

#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"

namespace lakeloop::app {
namespace fs = std::filesystem;

void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Result<std::unique_ptr<App>> App::Open(const Paths& paths, const Config& config, Mode mode) {
  std::unique_ptr<App> app(new App());
  app->paths_ = paths;
  app->config_ = config;
  RETURN_IF_ERROR(CreateDirs(paths.lake()));
  RETURN_IF_ERROR(CreateDirs(paths.scratch()));
  RETURN_IF_ERROR(CreateDirs(paths.logs()));
  const bool owner = mode != Mode::kReadOnly;
  if (owner) {
    ASSIGN_OR_RETURN(LockFile lock, LockFile::Acquire(paths.lock(), "lakeloop"));
    app->lock_.emplace(std::move(lock));
  }
  // Catalog and the modules' schemas.
  ASSIGN_OR_RETURN(app->catalog_, catalog::OpenSqlite(paths.catalog()));
  std::vector<catalog::Migration> migrations = lake::Lake::Migrations();
  for (auto& m : catalog::TokenStore::Migrations()) migrations.push_back(m);
  for (auto& m : batch::Batch::Migrations()) migrations.push_back(m);
  for (auto& m : realtime::Realtime::Migrations()) migrations.push_back(m);
  for (auto& m : features::DatasetBuilder::Migrations()) migrations.push_back(m);
  RETURN_IF_ERROR(catalog::Migrate(*app->catalog_, migrations));
  app->tokens_ = std::make_unique<catalog::TokenStore>(app->catalog_.get());
  // Lake.
  app->store_ = lake::NewLocalObjectStore(paths.lake());
  lake::LakeOptions lo;
  lo.snapshot_retention_s = config.lake.snapshot_retention_s;
  app->lake_ = std::make_unique<lake::Lake>(app->store_.get(), app->catalog_.get(), lo);
  if (owner) {
    RETURN_IF_ERROR(app->lake_->Recover().WithContext("recovering the lake"));
    // Scratch files (uploads, exports, spills) of a previous process are garbage.
    std::error_code ec;
    for (auto& e : fs::directory_iterator(paths.scratch(), ec)) fs::remove_all(e.path(), ec);
  }
  // SQL: one engine per class of work, each with its own memory limit, threads, temp folder and
  // query time limit: a sandboxed one for ad-hoc SQL (sql.*), an internal one for uploads
  // (limits.loads_*; batch opens its loads-and-models engines with the same class settings).
  sql::EngineOptions eo;
  eo.sandboxed = true;
  eo.lake_root = paths.lake();
  eo.scratch_dir = paths.scratch() / "sql";
  eo.threads = config.sql.threads;
  eo.memory_limit = config.sql.memory_limit;
  eo.max_query_ms = config.sql.query_timeout_ms;
  eo.timeout_key = "sql.query_timeout_ms";
  eo.name = "adhoc";
  eo.interrupt_group = app->interrupts_;
  ASSIGN_OR_RETURN(app->engine_, sql::Engine::Open(eo));
  eo.sandboxed = false;
  eo.scratch_dir = paths.scratch() / "loader";
  eo.threads = config.limits.loads_threads;
  eo.memory_limit = config.limits.loads_memory_limit;
  eo.max_query_ms = config.limits.loads_query_timeout_ms;
  eo.timeout_key = "limits.loads_query_timeout_ms";
  eo.name = "uploads";
  ASSIGN_OR_RETURN(app->loader_, sql::Engine::Open(eo));
  app->expensive_ = std::make_unique<ThreadPool>(
      "expensive", static_cast<size_t>(config.limits.expensive_concurrency),
      static_cast<size_t>(config.limits.expensive_queue));
  app->views_ = std::make_unique<sql::LakeViews>(app->engine_.get(), app->lake_.get());
  RETURN_IF_ERROR(app->views_->Attach());
  if (owner) {
    batch::BatchOptions bo;
    bo.project = paths.project;
    bo.lake_root = paths.lake();
    bo.scratch = paths.scratch();
    bo.sql_threads = config.limits.loads_threads;
    bo.memory_limit = config.limits.loads_memory_limit;
    bo.query_timeout_ms = config.limits.loads_query_timeout_ms;
    bo.interrupt_group = app->interrupts_;
    bo.triggers = mode == Mode::kServer;
    // One scheduler for every kind of job. Its owner is unique to this process. With the
    // embedded catalog (in the locked data directory) it is the catalog's only scheduler, so at
    // start it marks every run a crash left `running` as failed; a shared catalog relies on
    // leases instead.
    flow::SchedulerOptions so;
    so.workers = static_cast<size_t>(std::max(1, config.server.worker_threads));
    so.sole_scheduler = app->catalog_->backend() == "sqlite";
    app->scheduler_ = std::make_shared<flow::Scheduler>(app->catalog_.get(), so);
    ASSIGN_OR_RETURN(app->batch_, batch::Batch::Open(app->catalog_.get(), app->lake_.get(),
                                                     app->scheduler_, bo));
    RETURN_IF_ERROR(app->batch_->Start());
    realtime::RealtimeOptions ro;
    ro.project = paths.project;
    ro.log_dir = paths.data / "streams";
    ro.scratch = paths.scratch() / "realtime";
    ro.sql_threads = 1;
    ro.memory_limit = config.sql.memory_limit;
    ro.background = mode == Mode::kServer;
    ro.query_timeout_ms = config.limits.loads_query_timeout_ms;
    ro.interrupt_group = app->interrupts_;
    ro.max_queue_events = static_cast<size_t>(config.server.ingest_queue_events);
    ro.scheduler = app->scheduler_;  // batch feature views: materialization jobs
    ASSIGN_OR_RETURN(app->realtime_,
                     realtime::Realtime::Open(app->catalog_.get(), app->lake_.get(), ro));
    app->definition_kinds_ = {app->batch_.get(), app->realtime_.get()};
    // Every module registered its jobs: start (Recover(), catch-up, queued runs).
    RETURN_IF_ERROR(app->scheduler_->Start());
  }

  api::Services& s = app->services_;
  s.config = &app->config_;
  s.catalog = app->catalog_.get();
  s.tokens = app->tokens_.get();
  s.lake = app->lake_.get();
  s.engine = app->engine_.get();
  s.loader = app->loader_.get();
  s.batch = app->batch_.get();
  s.realtime = app->realtime_.get();
  App* self = app.get();
  s.apply = [self](bool dry_run) { return self->Apply(dry_run); };
  s.scratch_dir = paths.scratch();
  s.expensive = app->expensive_.get();
  s.started_at = NowMicros();
  RETURN_IF_ERROR(app->RegisterMetrics());
  s.metrics = app->metrics_.get();
  s.version = std::string(kVersion);
  if (owner) RETURN_IF_ERROR(app->OpenDatasets(paths, config));
  return app;
}

Status App::OpenDatasets(const Paths& paths, const Config& config) {
  sql::EngineOptions eo;
  eo.sandboxed = true;  // it runs the user's entity query
  eo.lake_root = paths.lake();
  eo.scratch_dir = paths.scratch() / "datasets";
  eo.threads = config.limits.datasets_threads;
  eo.memory_limit = config.limits.datasets_memory_limit;
  eo.max_query_ms = config.limits.datasets_query_timeout_ms;
  eo.timeout_key = "limits.datasets_query_timeout_ms";
  eo.name = "datasets";
  eo.interrupt_group = interrupts_;
  ASSIGN_OR_RETURN(datasets_engine_, sql::Engine::Open(eo));
  datasets_views_ = std::make_unique<sql::LakeViews>(datasets_engine_.get(), lake_.get());
  RETURN_IF_ERROR(datasets_views_->Attach());
  features::DatasetBuilder::Deps deps;
  deps.lake = lake_.get();
  deps.catalog = catalog_.get();
  deps.log = realtime_ ? &realtime_->log() : nullptr;
  deps.engine = datasets_engine_.get();
  deps.scratch_dir = eo.scratch_dir;
  datasets_ = std::make_unique<features::DatasetBuilder>(std::move(deps));
  services_.datasets = datasets_.get();
  return Status::Ok();
}

Status App::RegisterMetrics() {
  metrics_ = std::make_unique<metrics::Registry>();
  metrics::Registry& m = *metrics_;
  RETURN_IF_ERROR(m.AddGaugeCallback("lakeloop_build_info", "The running lakeloop version.",
                                     {{"version", std::string(kVersion)}}, [] { return 1.0; }));
  const double started = static_cast<double>(services_.started_at) / 1e6;
  RETURN_IF_ERROR(m.AddGaugeCallback("lakeloop_process_start_time_seconds",
                                     "When the process started, in seconds since the epoch.", {},
                                     [started] { return started; }));
  if (!scheduler_) return Status::Ok();
  std::shared_ptr<flow::Scheduler> sched = scheduler_;
  struct Figure {
    const char* name;
    const char* help;
    int64_t flow::SchedulerStats::*field;
  };
  static constexpr Figure kFigures[] = {
      {"lakeloop_scheduler_runs_started_total", "Job runs this process started.",
       &flow::SchedulerStats::runs_started},
      {"lakeloop_scheduler_runs_finished_total",
       "Job runs this process finished (succeeded, failed or cancelled).",
       &flow::SchedulerStats::runs_finished},
      {"lakeloop_scheduler_attempts_failed_total",
       "Failed attempts of job runs (retries included).", &flow::SchedulerStats::attempts_failed},
      {"lakeloop_scheduler_upstream_notifications_total",
       "Table commits the scheduler was told about (data-aware triggers).",
       &flow::SchedulerStats::notifications},
      {"lakeloop_scheduler_cron_ticks_fired_total", "Cron ticks this process turned into runs.",
       &flow::SchedulerStats::ticks_fired},
  };
  for (const Figure& f : kFigures) {
    auto field = f.field;
    RETURN_IF_ERROR(m.AddCounterCallback(
        f.name, f.help, {}, [sched, field] { return static_cast<double>(sched->stats().*field); }));
  }
  return m.AddGaugeCallback("lakeloop_scheduler_jobs", "Jobs registered with the scheduler.", {},
                            [sched] { return static_cast<double>(sched->JobNames().size()); });
}

App::~App() {
  if (realtime_) realtime_->Stop();
  if (batch_) batch_->Stop();
  if (scheduler_) scheduler_->Stop();  // before the modules whose jobs it runs are destroyed
}

Result<batch::ApplyReport> App::Apply(bool dry_run) {
  if (definition_kinds_.empty()) return Internal("apply needs the data directory's lock");
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  std::vector<std::string> errors;
  std::vector<catalog::Definitions::Definition> wanted;
  std::vector<std::string> kinds;
  std::map<std::string, flow::DefinitionKind*> owner_of;  // catalog kind -> module
  for (flow::DefinitionKind* k : definition_kinds_) {
    for (auto& name : k->DefinitionKinds()) {
      owner_of[name] = k;
      kinds.push_back(std::move(name));
    }
    auto defs = k->ReadDefinitions();
    if (defs.ok()) {
      wanted.insert(wanted.end(), defs->begin(), defs->end());
    } else {
      errors.push_back(defs.status().message());
    }
  }
  if (errors.empty()) {
    for (flow::DefinitionKind* k : definition_kinds_) {
      Status st = k->CheckReferences(wanted);
      if (!st.ok()) errors.push_back(st.message());
    }
  }
  if (!errors.empty()) {
    std::string msg = "the project has errors; nothing was applied:";
    for (auto& e : errors) {
      // Each part already says "nothing was applied"; keep one heading and all the lines.
      auto nl = e.find('\n');
      msg += nl == std::string::npos ? "\n  " + e : e.substr(nl);
    }
    return InvalidArgument(msg);
  }
  catalog::Definitions defs(catalog_.get());
  ASSIGN_OR_RETURN(auto changes, defs.Diff(wanted, kinds));
  batch::ApplyReport report;
  report.dry_run = dry_run;
  std::map<flow::DefinitionKind*, std::vector<catalog::Definitions::Change>> by_kind;
  for (const auto& c : changes) {
    batch::PlannedChange p;
    p.kind = c.definition.kind;
    p.name = c.definition.name;
    using K = catalog::Definitions::ChangeKind;
    p.action = c.kind == K::kCreate ? "create" : c.kind == K::kUpdate ? "update" : "delete";
    flow::DefinitionKind* k = owner_of.at(c.definition.kind);
    if (c.kind == K::kDelete) p.note = k->DeleteNote(c.definition);
    report.changes.push_back(std::move(p));
    by_kind[k].push_back(c);
  }
  if (dry_run || changes.empty()) return report;
  RETURN_IF_ERROR(defs.Apply(changes));
  for (flow::DefinitionKind* k : definition_kinds_) {
    auto it = by_kind.find(k);
    if (it != by_kind.end()) RETURN_IF_ERROR(k->ApplyChanges(it->second));
  }
  return report;
}

namespace {

struct ListenAddress {
  std::string host;
  std::string port;
};

bool IsLoopback(const std::string& listen) {
  return listen.rfind("127.", 0) == 0 || listen.rfind("localhost:", 0) == 0 ||
         listen.rfind("[::1]:", 0) == 0;
}

// Reuses the local admin token of the last run when it still verifies, so restarts do not pile up
// tokens; otherwise creates one.
Result<std::string> LocalAdminToken(const Paths& paths, catalog::TokenStore& tokens) {
  auto text = ReadFile(paths.admin_token());
  if (text.ok()) {
    auto role = tokens.Verify(*text);
    if (role.ok() && *role == catalog::Role::kAdmin) return *text;
  }
  ASSIGN_OR_RETURN(auto created, tokens.Create(catalog::Role::kAdmin, "local-cli"));
  // 0600 from the first byte: the temporary file is created with it, then renamed.
  RETURN_IF_ERROR(WriteFileAtomic(paths.admin_token(), created.token, 0600));
  return created.token;
}

}  // namespace

Status App::Serve(const std::optional<std::string>& listen) {
  if (!lock_) return Internal("Serve needs the data directory's lock");
  api::Router router;
  RETURN_IF_ERROR(api::AddAllRoutes(router, &services_));
  api::HttpServerOptions ho;
  ho.listen = listen.value_or(config_.server.listen);
  ho.io_threads = static_cast<size_t>(config_.server.io_threads);
  ho.worker_threads = static_cast<size_t>(config_.server.worker_threads);
  ho.max_body_bytes = static_cast<size_t>(config_.server.max_body_bytes);
  ho.require_auth = config_.server.require_auth;
  ho.allowed_hosts = config_.server.allowed_hosts;
  ho.cors_allowed_origins = config_.server.cors_allowed_origins;
  ho.max_connections = static_cast<size_t>(config_.server.max_connections);
  ho.max_inflight_body_bytes = static_cast<size_t>(config_.server.max_inflight_body_bytes);
  ho.auth_failures_per_minute = static_cast<size_t>(config_.server.auth_failures_per_minute);
  RETURN_IF_ERROR(LocalAdminToken(paths_, *tokens_).status());
  api::CatalogTokenVerifier verifier(tokens_.get());
  api::HttpServer server(ho, std::move(router), &verifier);
  RETURN_IF_ERROR(server.Start());

  std::string host = ho.listen.substr(0, ho.listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) host = "127.0.0.1";
  std::string url = "http://" + host + ":" + std::to_string(server.port());
  std::string info;
  JsonWriter w(&info);
  w.BeginObject()
      .Key("url")
      .String(url)
      .Key("pid")
      .Int(getpid())
      .Key("auth_required")
      .Bool(server.auth_required())
      .EndObject();
  RETURN_IF_ERROR(WriteFileAtomic(paths_.server_file(), info, 0600));
  if (!IsLoopback(ho.listen)) {
    spdlog::info("listening beyond loopback: every request needs a token (lakeloop token create)");
  }
  spdlog::info("lakeloop {} serving {} (project {}, data {})", kVersion, url,
               paths_.project.string(), paths_.data.string());
  std::printf("lakeloop is up: %s\n", url.c_str());
  std::fflush(stdout);

  // Garbage collection: expire snapshots and unlink files no running query can read.
  std::mutex gc_mu;
  std::condition_variable gc_cv;
  bool stopping = false;
  std::thread gc([&] {
    std::unique_lock<std::mutex> lock(gc_mu);
    while (!gc_cv.wait_for(lock, std::chrono::seconds(10), [&] { return stopping; })) {
      lock.unlock();
      Micros oldest = std::min(engine_->OldestRunningQueryStart(), batch_->OldestActiveRead());
      auto stats = lake_->CollectGarbage(NowMicros(), oldest);
      if (!stats.ok()) spdlog::warn("lake gc: {}", stats.status().ToString());
      Status trimmed = realtime_->Maintain();
      if (!trimmed.ok()) spdlog::warn("stream retention: {}", trimmed.ToString());
      lock.lock();
    }
  });

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("received {}, draining requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  // The shutdown deadline: after the grace period every running query and job is interrupted;
  // if the process is still here shutdown_hard_ms later, it exits anyway (the next start
  // recovers as after a crash: commits are atomic, nothing acknowledged is lost).
  std::mutex deadline_mu;
  std::condition_variable deadline_cv;
  bool stopped = false;
  std::thread deadline([&] {
    std::unique_lock<std::mutex> lock(deadline_mu);
    const auto grace = std::chrono::milliseconds(config_.server.shutdown_grace_ms);
    if (deadline_cv.wait_for(lock, grace, [&] { return stopped; })) return;
    spdlog::warn("shutdown: grace period of {} ms over; interrupting running queries and jobs",
                 config_.server.shutdown_grace_ms);
    interrupts_->InterruptAll();
    const auto hard = std::chrono::milliseconds(config_.limits.shutdown_hard_ms);
    if (deadline_cv.wait_for(lock, hard, [&] { return stopped; })) return;
    std::string running;
    for (const auto& q : interrupts_->Running()) running += "\n  " + q;
    spdlog::error(
        "shutdown: still running {} ms after the grace period (limits.shutdown_hard_ms); exiting "
        "now. Queries still running:{}",
        config_.limits.shutdown_hard_ms, running.empty() ? " none (a job or request)" : running);
    spdlog::default_logger()->flush();
    std::fflush(stdout);
    ::_exit(3);
  });
  server.Stop(std::chrono::milliseconds(config_.server.shutdown_grace_ms));
  expensive_->Shutdown();
  realtime_->Stop();
  batch_->Stop();
  scheduler_->Stop();
  {
    std::lock_guard<std::mutex> lock(deadline_mu);
    stopped = true;
  }
  deadline_cv.notify_all();
  deadline.join();
  {
    std::lock_guard<std::mutex> lock(gc_mu);
    stopping = true;
  }
  gc_cv.notify_all();
  gc.join();
  std::error_code ec;
  fs::remove(paths_.server_file(), ec);
  spdlog::info("stopped");
  spdlog::default_logger()->flush();
  return Status::Ok();
}

}  // namespace lakeloop::app
