#include "batch/batch.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "core/fs.h"
#include "core/json.h"
#include "sql/lake_io.h"

namespace lakeloop::batch {
namespace fs = std::filesystem;
namespace json = boost::json;
using catalog::Definitions;

struct Batch::Applied {
  std::vector<ingest::SourceSpec> sources;
  std::shared_ptr<transform::Graph> graph;
  const ingest::SourceSpec* FindSource(std::string_view name) const {
    for (const auto& s : sources) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
};

namespace {

constexpr Micros kFarPast = -62135596800000000;    // 0001-01-01
constexpr Micros kFarFuture = 253402300799000000;  // 9999-12-31T23:59:59

// A model's definition body: its SQL and YAML texts as one JSON object.
std::string ModelBody(const std::string& sql, const std::string& yaml) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("sql").String(sql).Key("yaml").String(yaml).EndObject();
  return out;
}

Result<flow::RunInfo> Terminal(Result<flow::RunInfo> run) {
  if (!run.ok()) return run;
  if (run->status != flow::RunStatus::kSucceeded) {
    Code code = run->error_code == Code::kOk ? Code::kInternal : run->error_code;
    return Status(code, run->job + " run " + run->id + " " +
                            std::string(flow::RunStatusName(run->status)) + ": " + run->error);
  }
  return run;
}

// Params of a manual run: {"start": RFC 3339, "end": RFC 3339, "full_refresh": bool}.
struct RunParams {
  std::optional<transform::Interval> interval;
  bool full_refresh = false;
};

Result<RunParams> ParseParams(const flow::RunContext& ctx) {
  RunParams p;
  if (ctx.has_interval()) p.interval = transform::Interval{ctx.interval_start, ctx.interval_end};
  auto obj = ParseJsonObject(ctx.params.empty() ? "{}" : ctx.params);
  if (!obj.ok()) return obj.status();
  if (const auto* fr = obj->if_contains("full_refresh"); fr && fr->is_bool()) {
    p.full_refresh = fr->as_bool();
  }
  const auto* s = obj->if_contains("start");
  const auto* e = obj->if_contains("end");
  if (s || e) {
    if (!s || !e || !s->is_string() || !e->is_string()) {
      return InvalidArgument("a run interval needs both 'start' and 'end' as RFC 3339 timestamps");
    }
    ASSIGN_OR_RETURN(Micros start, ParseRfc3339(s->as_string()));
    ASSIGN_OR_RETURN(Micros end, ParseRfc3339(e->as_string()));
    if (end <= start) return InvalidArgument("'end' must be after 'start'");
    p.interval = transform::Interval{start, end};
  }
  return p;
}

}  // namespace

Batch::Batch(catalog::Store* catalog, lake::Lake* lake, std::shared_ptr<flow::Scheduler> scheduler,
             BatchOptions options)
    : catalog_(catalog),
      lake_(lake),
      options_(std::move(options)),
      scheduler_(std::move(scheduler)) {}

Batch::~Batch() {
  Stop();
  if (listener_handle_) {
    std::lock_guard<std::mutex> life(listener_handle_->mu);
    listener_handle_->self = nullptr;
  }
}

std::vector<catalog::Migration> Batch::Migrations() {
  std::vector<catalog::Migration> all = Definitions::Migrations();
  for (auto& m : ingest::Ingestor::Migrations()) all.push_back(m);
  for (auto& m : flow::Scheduler::Migrations()) all.push_back(m);
  for (auto& m : transform::Migrations()) all.push_back(m);
  return all;
}

Result<std::unique_ptr<Batch>> Batch::Open(catalog::Store* catalog, lake::Lake* lake,
                                           std::shared_ptr<flow::Scheduler> scheduler,
                                           BatchOptions options) {
  if (!scheduler) return InvalidArgument("batch: needs a scheduler");
  std::unique_ptr<Batch> b(new Batch(catalog, lake, std::move(scheduler), std::move(options)));
  sql::EngineOptions eo;
  eo.sandboxed = false;
  eo.lake_root = b->options_.lake_root;
  eo.scratch_dir = b->options_.scratch / "ingest";
  eo.threads = b->options_.sql_threads;
  eo.memory_limit = b->options_.memory_limit;
  eo.max_query_ms = b->options_.query_timeout_ms;
  eo.timeout_key = "limits.loads_query_timeout_ms";
  eo.name = "loads";
  eo.interrupt_group = b->options_.interrupt_group;
  ASSIGN_OR_RETURN(b->loader_, sql::Engine::Open(eo));
  eo.sandboxed = true;
  eo.scratch_dir = b->options_.scratch / "analyze";
  eo.threads = 1;
  ASSIGN_OR_RETURN(b->analyzer_, sql::Engine::Open(eo));
  ingest::IngestorOptions io;
  io.scratch_dir = b->options_.scratch / "ingest-files";
  RETURN_IF_ERROR(CreateDirs(io.scratch_dir));
  b->ingestor_ =
      std::make_unique<ingest::Ingestor>(b->loader_.get(), lake, catalog, b->options_.project, io);
  transform::RunnerOptions ro;
  ro.engine.sandboxed = true;
  ro.engine.lake_root = b->options_.lake_root;
  ro.engine.scratch_dir = b->options_.scratch / "transform";
  ro.engine.threads = b->options_.sql_threads;
  ro.engine.memory_limit = b->options_.memory_limit;
  ro.engine.max_query_ms = b->options_.query_timeout_ms;
  ro.engine.timeout_key = "limits.loads_query_timeout_ms";
  ro.engine.name = "models";
  ro.engine.interrupt_group = b->options_.interrupt_group;
  ro.lineage_store = catalog;
  ASSIGN_OR_RETURN(b->runner_, transform::Runner::Open(lake, ro));
  ASSIGN_OR_RETURN(b->applied_, b->LoadApplied());
  Batch* self = b.get();
  // The lake keeps its listeners for its whole life: the Batch may go first (the handle is
  // cleared in ~Batch under its mutex).
  b->listener_handle_ = std::make_shared<ListenerHandle>();
  b->listener_handle_->self = self;
  lake->AddCommitListener([h = b->listener_handle_](const lake::TableInfo& t) {
    std::shared_ptr<flow::Scheduler> s;
    {
      std::lock_guard<std::mutex> life(h->mu);
      Batch* batch = h->self;
      if (!batch) return;
      std::lock_guard<std::mutex> lock(batch->mu_);
      if (!batch->started_ || batch->building_ > 0 || !batch->options_.triggers) return;
      s = batch->scheduler_;
    }
    s->NotifyTableCommitted(t.ref.ToString(), t.current_version);
  });
  return b;
}

Result<ProjectFiles> Batch::ReadProject() {
  ProjectFiles out;
  std::vector<std::string> errors;
  const fs::path& project = options_.project;
  for (const auto& f : ListFiles(project / "sources", {".yaml", ".yml"})) {
    auto text = ReadFile(f);
    if (!text.ok()) {
      errors.push_back(text.status().message());
      continue;
    }
    std::string origin = RelativePath(f, project);
    auto spec = ingest::ParseSource(*text, origin);
    if (!spec.ok()) {
      errors.push_back(spec.status().message());
      continue;
    }
    out.definitions.push_back({"source", spec->name, *text, origin});
    out.sources.push_back(std::move(*spec));
  }
  std::set<std::string> names;
  for (const auto& s : out.sources) {
    if (!names.insert(s.name).second) {
      errors.push_back(s.file_name + ": a second source named '" + s.name + "'");
    }
  }
  if (fs::is_directory(project / "models")) {
    auto models = transform::LoadModels(project / "models");
    if (!models.ok()) {
      errors.push_back(models.status().message());
    } else {
      for (const auto& m : *models) {
        auto sql = ReadFile(m.sql_file);
        std::string yaml;
        if (!m.yaml_file.empty()) {
          auto y = ReadFile(m.yaml_file);
          if (y.ok()) yaml = *y;
        }
        std::string origin = RelativePath(m.sql_file, project);
        if (!m.yaml_file.empty()) origin += "," + RelativePath(m.yaml_file, project);
        out.definitions.push_back(
            {"model", m.name, ModelBody(sql.ok() ? *sql : m.sql, yaml), origin});
      }
      out.models = std::move(*models);
      auto graph = transform::Graph::Build(*analyzer_, out.models);
      if (!graph.ok()) errors.push_back(graph.status().message());
    }
  }
  if (!errors.empty()) {
    std::string msg = "the project has errors; nothing was applied:";
    for (const auto& e : errors) msg += "\n  " + e;
    return InvalidArgument(msg);
  }
  return out;
}

Result<std::shared_ptr<const Batch::Applied>> Batch::LoadApplied() {
  Definitions defs(catalog_);
  ASSIGN_OR_RETURN(auto all, defs.List());
  auto applied = std::make_shared<Applied>();
  std::vector<transform::Model> models;
  for (const auto& d : all) {
    if (d.kind == "source") {
      ASSIGN_OR_RETURN(auto spec, ingest::ParseSource(d.body, d.origin));
      applied->sources.push_back(std::move(spec));
    } else if (d.kind == "model") {
      ASSIGN_OR_RETURN(json::object body, ParseJsonObject(d.body));
      std::string origin = d.origin;
      std::string sql_file = origin.substr(0, origin.find(','));
      std::string yaml_file = origin.find(',') == std::string::npos
                                  ? std::string()
                                  : origin.substr(origin.find(',') + 1);
      ASSIGN_OR_RETURN(auto model,
                       transform::ParseModel(
                           d.name, std::string(body.at("sql").as_string()),
                           std::string(body.at("yaml").as_string()), options_.project / sql_file,
                           yaml_file.empty() ? fs::path() : options_.project / yaml_file));
      models.push_back(std::move(model));
    }
  }
  ASSIGN_OR_RETURN(transform::Graph graph, transform::Graph::Build(*analyzer_, std::move(models)));
  applied->graph = std::make_shared<transform::Graph>(std::move(graph));
  {
    // Lake ownership follows the applied definitions: a source owns raw.<source> and
    // raw.<source>__rejected, a model processed.<model>; a removed one releases its tables.
    std::vector<lake::OwnedTable> by_sources, by_models;
    for (const auto& s : applied->sources) {
      by_sources.push_back({ingest::Ingestor::TableFor(s), {"source", s.name}});
      by_sources.push_back({ingest::Ingestor::RejectedTableFor(s), {"source", s.name}});
    }
    for (const auto& m : applied->graph->models()) {
      by_models.push_back({m.output(), {"model", m.name}});
    }
    for (const auto& [kind, owned] :
         {std::pair{"source", by_sources}, std::pair{"model", by_models}}) {
      Status s = lake_->SetOwners(kind, owned);
      if (!s.ok()) spdlog::error("batch: table ownership: {}", s.ToString());
    }
  }
  return std::shared_ptr<const Applied>(applied);
}

std::shared_ptr<flow::Scheduler> Batch::scheduler() {
  std::lock_guard<std::mutex> lock(mu_);
  return scheduler_;
}

std::shared_ptr<const Batch::Applied> Batch::applied() {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

std::vector<std::string> Batch::DefinitionKinds() const { return {"source", "model"}; }

Result<std::vector<flow::Definition>> Batch::ReadDefinitions() {
  ASSIGN_OR_RETURN(ProjectFiles files, ReadProject());
  return std::move(files.definitions);
}

std::string Batch::DeleteNote(const flow::Definition& d) const {
  if (d.kind == "source") {
    return "raw." + d.name + " and its snapshots are kept; it is no longer loaded";
  }
  return "processed." + d.name + " and its snapshots are kept; it is no longer built";
}

std::optional<Batch::JobDef> Batch::SourceJob(const Applied& applied, const std::string& name) {
  const ingest::SourceSpec* s = applied.FindSource(name);
  if (!s) return std::nullopt;
  JobDef d;
  if (options_.triggers) d.spec.schedule = s->schedule;
  d.job = flow::MakeJob("source:" + name,
                        [this, name](flow::RunContext& ctx) { return RunSource(name, ctx); });
  return d;
}

std::optional<Batch::JobDef> Batch::ModelJob(const Applied& applied, const std::string& name) {
  const transform::Model* m = applied.graph->Find(name);
  if (!m) return std::nullopt;
  JobDef d;
  if (options_.triggers) {
    for (const auto& in : m->inputs) d.spec.upstream_tables.push_back(in.ToString());
  }
  d.job = flow::MakeJob("model:" + name,
                        [this, name](flow::RunContext& ctx) { return RunModel(name, ctx); });
  return d;
}

Status Batch::ApplyChanges(const std::vector<flow::DefinitionChange>& changes) {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  ASSIGN_OR_RETURN(auto applied, LoadApplied());
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_ = applied;
  }
  for (const auto& c : changes) {
    const std::string& name = c.definition.name;
    const bool source = c.definition.kind == "source";
    if (!source && c.definition.kind != "model") continue;
    std::string job = (source ? "source:" : "model:") + name;
    auto make = [&] { return source ? SourceJob(*applied, name) : ModelJob(*applied, name); };
    auto def = make();
    if (!def) {
      Status st = scheduler_->RemoveJob(job);
      if (!st.ok() && st.code() != Code::kNotFound) return st.WithContext("removing " + job);
      continue;
    }
    Status st = scheduler_->ReplaceJob(std::move(def->job), def->spec);
    if (st.code() == Code::kNotFound) {
      def = make();
      st = scheduler_->Register(std::move(def->job), def->spec);
    }
    if (!st.ok()) return st.WithContext("applying " + job);
  }
  return Status::Ok();
}

Status Batch::Reload() {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  ASSIGN_OR_RETURN(auto applied, LoadApplied());
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_ = applied;
  }
  std::set<std::string> wanted;
  for (const auto& s : applied->sources) wanted.insert("source:" + s.name);
  for (const auto& m : applied->graph->models()) wanted.insert("model:" + m.name);
  for (const auto& job : scheduler_->JobNames()) {
    if ((job.starts_with("source:") || job.starts_with("model:")) && !wanted.count(job)) {
      Status st = scheduler_->RemoveJob(job);
      if (!st.ok() && st.code() != Code::kNotFound) return st;
    }
  }
  for (const auto& job : wanted) {
    const bool source = job.starts_with("source:");
    std::string name = job.substr(job.find(':') + 1);
    auto make = [&] { return source ? SourceJob(*applied, name) : ModelJob(*applied, name); };
    auto def = make();
    Status st = scheduler_->ReplaceJob(std::move(def->job), def->spec);
    if (st.code() == Code::kNotFound) {
      def = make();
      st = scheduler_->Register(std::move(def->job), def->spec);
    }
    if (!st.ok()) return st.WithContext("registering " + job);
  }
  return Status::Ok();
}

Status Batch::Start() {
  RETURN_IF_ERROR(Reload());
  std::lock_guard<std::mutex> lock(mu_);
  started_ = true;
  return Status::Ok();
}

void Batch::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  started_ = false;
}

namespace {
// Registers a job run as reading the lake for its lifetime (lake GC keeps what it may read).
class ActiveRead {
 public:
  ActiveRead(std::mutex* mu, std::multiset<Micros>* set) : mu_(mu), set_(set) {
    std::lock_guard<std::mutex> lock(*mu_);
    it_ = set_->insert(NowMicros());
  }
  ~ActiveRead() {
    std::lock_guard<std::mutex> lock(*mu_);
    set_->erase(it_);
  }

 private:
  std::mutex* mu_;
  std::multiset<Micros>* set_;
  std::multiset<Micros>::iterator it_;
};
}  // namespace

Micros Batch::OldestActiveRead() {
  std::lock_guard<std::mutex> lock(mu_);
  return active_reads_.empty() ? NowMicros() : *active_reads_.begin();
}

Result<flow::RunOutput> Batch::RunSource(const std::string& name, flow::RunContext& ctx) {
  auto applied_now = applied();
  const ingest::SourceSpec* spec = applied_now->FindSource(name);
  if (!spec) return NotFound("source '" + name + "' is no longer defined (lakeloop apply)");
  ASSIGN_OR_RETURN(RunParams params, ParseParams(ctx));
  ActiveRead read(&mu_, &active_reads_);
  ingest::RunOptions ro;
  ro.batch_id = ctx.run_id;
  ro.full_refresh = params.full_refresh;
  ASSIGN_OR_RETURN(ingest::LoadResult r, ingestor_->Run(*spec, ro));
  flow::RunOutput out;
  out.rows_in = r.rows_loaded + r.rows_rejected + r.rows_deduplicated;
  out.rows_out = r.rows_loaded;
  out.rows_rejected = r.rows_rejected;
  if (r.snapshot_version) out.output_tables.push_back(ingest::Ingestor::TableFor(*spec).ToString());
  if (r.rejected_snapshot_version) {
    out.output_tables.push_back(ingest::Ingestor::RejectedTableFor(*spec).ToString());
  }
  JsonWriter w(&out.detail);
  out.detail.clear();
  w.BeginObject()
      .Key("files_loaded")
      .Int(r.files_loaded)
      .Key("files_skipped")
      .Int(r.files_skipped)
      .Key("rows_deduplicated")
      .Int(r.rows_deduplicated)
      .Key("snapshot_version")
      .Int(r.snapshot_version)
      .Key("rejected_snapshot_version")
      .Int(r.rejected_snapshot_version)
      .Key("cursor_before")
      .String(r.cursor_before)
      .Key("cursor_after")
      .String(r.cursor_after)
      .Key("schema_evolved")
      .Bool(r.schema_evolved)
      .EndObject();
  return out;
}

Result<flow::RunOutput> Batch::RunModel(const std::string& name, flow::RunContext& ctx) {
  auto applied_now = applied();
  const transform::Model* model = applied_now->graph->Find(name);
  if (!model) return NotFound("model '" + name + "' is no longer defined (lakeloop apply)");
  ASSIGN_OR_RETURN(RunParams params, ParseParams(ctx));
  ActiveRead read(&mu_, &active_reads_);
  transform::RunRequest req;
  req.model = name;
  req.interval = params.interval;
  if (model->materialized == transform::Materialization::kIncremental && !req.interval) {
    // Not a backfill: process from the newest period already built (late rows of that period
    // are merged in) to the end of time; an empty table is built over everything.
    Micros start = kFarPast;
    if (!model->time_column.empty() && !params.full_refresh) {
      auto info = lake_->GetTable(model->output());
      if (info.ok() && info->current_version > 0) {
        sql::QueryRequest q;
        q.sql = "SELECT CAST(epoch_us(CAST(max(" + sql::QuoteIdentifier(model->time_column) +
                ") AS TIMESTAMP)) AS BIGINT) FROM " + model->output().zone + "." +
                sql::QuoteIdentifier(model->output().name);
        q.timeout_ms = 0;
        auto views = std::make_unique<sql::LakeViews>(analyzer_.get(), lake_);
        RETURN_IF_ERROR(views->Refresh(*info));
        ASSIGN_OR_RETURN(sql::QueryReply reply, analyzer_->Run(q));
        ASSIGN_OR_RETURN(json::object o, ParseJsonObject(reply.body));
        const auto& cell = o.at("rows").as_array().at(0).as_array().at(0);
        if (cell.is_int64()) start = cell.as_int64();
      }
    }
    req.interval = transform::Interval{start, kFarFuture};
  }
  ASSIGN_OR_RETURN(transform::RunResult r, runner_->Run(*applied_now->graph, req));
  flow::RunOutput out;
  out.rows_out = r.rows_out;
  out.detail.clear();
  JsonWriter w(&out.detail);
  w.BeginObject()
      .Key("version")
      .Int(r.version)
      .Key("previous_version")
      .Int(r.previous_version)
      .Key("total_rows")
      .Int(r.total_rows)
      .Key("committed")
      .Bool(r.committed());
  if (r.interval) {
    w.Key("interval")
        .BeginObject()
        .Key("start")
        .String(FormatRfc3339(r.interval->start))
        .Key("end")
        .String(FormatRfc3339(r.interval->end))
        .EndObject();
  }
  w.Key("tests").BeginArray();
  for (const auto& t : r.tests) {
    w.BeginObject()
        .Key("name")
        .String(t.name)
        .Key("severity")
        .String(transform::SeverityName(t.severity))
        .Key("passed")
        .Bool(t.passed)
        .Key("failing_rows")
        .Int(t.failing_rows);
    if (!t.error.empty()) w.Key("error").String(t.error);
    if (!t.samples_json.empty()) w.Key("samples").Raw(t.samples_json);
    w.EndObject();
  }
  w.EndArray().Key("inputs").BeginArray();
  for (const auto& in : r.inputs) {
    w.BeginObject()
        .Key("table")
        .String(in.table.ToString())
        .Key("version")
        .Int(in.version)
        .EndObject();
  }
  w.EndArray().EndObject();
  if (!r.committed()) {
    std::string failed;
    for (const auto& f : r.Failed(transform::Severity::kError))
      failed += (failed.empty() ? "" : ", ") + f;
    return Status(Code::kConflict, "data tests failed, processed." + name +
                                       " keeps its previous snapshot: " + failed + " " +
                                       out.detail);
  }
  out.output_tables.push_back(r.output.ToString());
  return out;
}

Result<flow::RunInfo> Batch::Wait(const std::string& run_id) {
  std::shared_ptr<flow::Scheduler> s = scheduler();
  if (!s) return Unavailable("the scheduler is not running");
  return s->WaitForRun(run_id, std::chrono::hours(6));
}

Result<flow::RunInfo> Batch::Run(const std::string& job, const std::string& params, bool wait) {
  std::shared_ptr<flow::Scheduler> s = scheduler();
  if (!s) return Unavailable("the scheduler is not running");
  auto id = s->Trigger(job, params);
  if (!id.ok()) return id.status();
  if (!wait) return s->GetRun(*id);
  return Wait(*id);
}

Result<std::vector<flow::RunInfo>> Batch::Build() {
  auto applied_now = applied();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++building_;
  }
  struct Done {
    Batch* b;
    ~Done() {
      std::lock_guard<std::mutex> lock(b->mu_);
      --b->building_;
    }
  } done{this};
  std::vector<flow::RunInfo> runs;
  std::vector<std::string> jobs;
  for (const auto& s : applied_now->sources) jobs.push_back("source:" + s.name);
  for (const auto& m : applied_now->graph->models()) jobs.push_back("model:" + m.name);
  for (const auto& job : jobs) {
    auto run = Terminal(Run(job, "{}", true));
    if (!run.ok()) return run.status().WithContext("build stopped");
    runs.push_back(std::move(*run));
  }
  return runs;
}

Result<std::vector<flow::RunInfo>> Batch::Backfill(const std::string& model, Micros from, Micros to,
                                                   Micros step) {
  auto applied_now = applied();
  const transform::Model* m = applied_now->graph->Find(model);
  if (!m) return NotFound("no model '" + model + "'");
  if (m->materialized != transform::Materialization::kIncremental) {
    return InvalidArgument("model '" + model + "' is not incremental; a backfill needs intervals");
  }
  std::shared_ptr<flow::Scheduler> s = scheduler();
  if (!s) return Unavailable("the scheduler is not running");
  ASSIGN_OR_RETURN(std::string id, s->Backfill("model:" + model, from, to, step));
  flow::RunFilter f;
  f.backfill_id = id;
  f.limit = 100000;
  ASSIGN_OR_RETURN(auto queued, s->ListRuns(f));
  std::sort(queued.begin(), queued.end(), [](const flow::RunInfo& a, const flow::RunInfo& b) {
    return a.interval_start < b.interval_start;
  });
  std::vector<flow::RunInfo> out;
  for (const auto& q : queued) {
    ASSIGN_OR_RETURN(auto done, s->WaitForRun(q.id, std::chrono::hours(6)));
    out.push_back(done);
    if (done.status != flow::RunStatus::kSucceeded) break;
  }
  return out;
}

Result<std::string> Batch::LineageJson(const lake::TableRef& table) {
  auto applied_now = applied();
  ASSIGN_OR_RETURN(lake::TableInfo info, lake_->GetTable(table));
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("table").String(table.ToString()).Key("version").Int(info.current_version);
  w.Key("inputs").BeginArray();
  if (table.zone == transform::kOutputZone) {
    ASSIGN_OR_RETURN(auto edges, transform::LineageOf(*catalog_, table, info.current_version));
    for (const auto& e : edges) {
      w.BeginObject()
          .Key("table")
          .String(e.input.ToString())
          .Key("version")
          .Int(e.input_version)
          .EndObject();
    }
  }
  w.EndArray();
  if (table.zone == "raw") {
    std::string name = table.name;
    if (name.ends_with("__rejected")) name.resize(name.size() - 10);
    if (const auto* s = applied_now->FindSource(name)) {
      w.Key("source").BeginObject().Key("name").String(s->name).Key("type").String(
          ingest::SourceTypeName(s->type));
      if (!s->path.empty()) w.Key("path").String(s->path);
      if (!s->table.empty()) w.Key("source_table").String(s->table);
      w.EndObject();
    }
  }
  if (const auto* m = applied_now->graph->Find(table.name); m && table.zone == "processed") {
    w.Key("model").String(m->name);
  }
  w.Key("downstream").BeginArray();
  for (const auto& d : applied_now->graph->Downstream(table)) w.String("processed." + d);
  w.EndArray().EndObject();
  return out;
}

}  // namespace lakeloop::batch
