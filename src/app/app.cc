#include "app/app.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <condition_variable>
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
  // SQL: a sandboxed engine for users, an internal one for loading data.
  sql::EngineOptions eo;
  eo.sandboxed = true;
  eo.lake_root = paths.lake();
  eo.scratch_dir = paths.scratch() / "sql";
  eo.threads = config.sql.threads;
  eo.memory_limit = config.sql.memory_limit;
  ASSIGN_OR_RETURN(app->engine_, sql::Engine::Open(eo));
  eo.sandboxed = false;
  eo.scratch_dir = paths.scratch() / "loader";
  eo.threads = 1;
  ASSIGN_OR_RETURN(app->loader_, sql::Engine::Open(eo));
  app->views_ = std::make_unique<sql::LakeViews>(app->engine_.get(), app->lake_.get());
  RETURN_IF_ERROR(app->views_->Attach());
  if (owner) {
    batch::BatchOptions bo;
    bo.project = paths.project;
    bo.lake_root = paths.lake();
    bo.scratch = paths.scratch();
    bo.sql_threads = config.sql.threads;
    bo.memory_limit = config.sql.memory_limit;
    bo.triggers = mode == Mode::kServer;
    bo.workers = static_cast<size_t>(std::max(1, config.server.worker_threads));
    ASSIGN_OR_RETURN(app->batch_, batch::Batch::Open(app->catalog_.get(), app->lake_.get(), bo));
    // The scheduler marks runs a crash interrupted as failed when it starts.
    RETURN_IF_ERROR(app->batch_->Start());
    realtime::RealtimeOptions ro;
    ro.project = paths.project;
    ro.log_dir = paths.data / "streams";
    ro.scratch = paths.scratch() / "realtime";
    ro.sql_threads = 1;
    ro.memory_limit = config.sql.memory_limit;
    ro.background = mode == Mode::kServer;
    ro.max_queue_events = static_cast<size_t>(config.server.ingest_queue_events);
    ASSIGN_OR_RETURN(app->realtime_,
                     realtime::Realtime::Open(app->catalog_.get(), app->lake_.get(), ro));
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
  s.started_at = NowMicros();
  s.version = std::string(kVersion);
  return app;
}

App::~App() {
  if (realtime_) realtime_->Stop();
  if (batch_) batch_->Stop();
}

Result<batch::ApplyReport> App::Apply(bool dry_run) {
  if (!batch_ || !realtime_) return Internal("apply needs the data directory's lock");
  std::vector<std::string> errors;
  std::vector<catalog::Definitions::Definition> wanted;
  auto b = batch_->ReadProject();
  if (b.ok()) {
    wanted = b->definitions;
  } else {
    errors.push_back(b.status().message());
  }
  auto r = realtime_->ReadProject();
  if (r.ok()) {
    wanted.insert(wanted.end(), r->definitions.begin(), r->definitions.end());
  } else {
    errors.push_back(r.status().message());
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
  ASSIGN_OR_RETURN(auto changes, defs.Diff(wanted, {"source", "model", "stream", "feature_view"}));
  batch::ApplyReport report;
  report.dry_run = dry_run;
  for (const auto& c : changes) {
    batch::PlannedChange p;
    p.kind = c.definition.kind;
    p.name = c.definition.name;
    using K = catalog::Definitions::ChangeKind;
    p.action = c.kind == K::kCreate ? "create" : c.kind == K::kUpdate ? "update" : "delete";
    if (c.kind == K::kDelete) {
      if (p.kind == "source") {
        p.note = "raw." + p.name + " and its snapshots are kept; it is no longer loaded";
      } else if (p.kind == "model") {
        p.note = "processed." + p.name + " and its snapshots are kept; it is no longer built";
      } else if (p.kind == "stream") {
        p.note = "raw." + p.name +
                 " is kept; events are no longer accepted; the log keeps what "
                 "it holds until retention";
      } else {
        p.note = "features." + p.name + " is kept; online values are no longer updated";
      }
    }
    report.changes.push_back(std::move(p));
  }
  if (dry_run || changes.empty()) return report;
  RETURN_IF_ERROR(defs.Apply(changes));
  RETURN_IF_ERROR(batch_->Reload());
  RETURN_IF_ERROR(realtime_->Reload());
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
  server.Stop(std::chrono::milliseconds(config_.server.shutdown_grace_ms));
  realtime_->Stop();
  batch_->Stop();
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
