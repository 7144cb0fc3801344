#include "realtime/realtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "core/fs.h"
#include "core/json.h"
#include "core/time.h"

namespace lakeloop::realtime {
namespace fs = std::filesystem;
using catalog::Definitions;

struct Realtime::Applied {
  std::vector<stream::StreamDefinition> streams;
  std::vector<features::FeatureView> views;
  std::vector<features::Entity> entities;
  std::vector<features::FeatureService> services;
  features::Registry Registry() const { return {entities, views, services}; }
  std::map<std::string, std::string> view_bodies;  // name -> definition text (what changed)
  const stream::StreamDefinition* FindStream(std::string_view name) const {
    for (const auto& s : streams) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
};

namespace {

// A view must read a defined stream, and aggregate fields that stream has, with fitting types.
std::vector<std::string> CrossCheck(const std::vector<stream::StreamDefinition>& streams,
                                    const std::vector<features::FeatureView>& views) {
  std::vector<std::string> errors;
  std::set<std::string> names;
  for (const auto& s : streams) {
    if (!names.insert(s.name).second)
      errors.push_back(s.origin + ": a second stream '" + s.name + "'");
  }
  std::set<std::string> view_names;
  for (const auto& v : views) {
    if (!view_names.insert(v.name).second) {
      errors.push_back(v.file_name + ": a second feature view '" + v.name + "'");
    }
    if (v.kind != features::ViewKind::kStream) continue;
    auto it = std::find_if(streams.begin(), streams.end(),
                           [&](const stream::StreamDefinition& s) { return s.name == v.stream; });
    if (it == streams.end()) {
      errors.push_back(v.file_name + ": view '" + v.name + "' reads stream '" + v.stream +
                       "', which is not defined in streams/");
      continue;
    }
    auto field = [&](const std::string& name) -> const stream::FieldDefinition* {
      int i = it->FieldIndex(name);
      return i < 0 ? nullptr : &it->fields[static_cast<size_t>(i)];
    };
    for (const auto& f : v.features) {
      if (!f.field.empty()) {
        const auto* fd = field(f.field);
        if (!fd) {
          errors.push_back(v.file_name + ": feature '" + f.name + "' reads field '" + f.field +
                           "', which stream '" + v.stream + "' does not have");
        } else if (f.agg != stream::Agg::kCountDistinct && f.agg != stream::Agg::kCount &&
                   fd->type != stream::FieldType::kInteger &&
                   fd->type != stream::FieldType::kNumber) {
          errors.push_back(v.file_name + ": feature '" + f.name + "' aggregates field '" + f.field +
                           "' of type " + std::string(stream::FieldTypeName(fd->type)) + "; " +
                           std::string(stream::AggName(f.agg)) + " needs a number");
        }
      }
      for (const auto& w : f.where) {
        if (!field(w.field)) {
          errors.push_back(v.file_name + ": feature '" + f.name + "' filters on field '" + w.field +
                           "', which stream '" + v.stream + "' does not have");
        }
      }
    }
  }
  return errors;
}

}  // namespace

Realtime::Realtime(catalog::Store* catalog, lake::Lake* lake, RealtimeOptions options)
    : catalog_(catalog), lake_(lake), options_(std::move(options)) {}

Realtime::~Realtime() { Stop(); }

std::vector<catalog::Migration> Realtime::Migrations() {
  std::vector<catalog::Migration> all = stream::Archiver::Migrations();
  for (auto& m : features::Migrations()) all.push_back(m);
  // Per batch view: the definition its online rows were loaded with and how far (event time).
  all.push_back({"feature_materialization", 1,
                 "CREATE TABLE features_materializations ("
                 " view TEXT PRIMARY KEY,"
                 " fingerprint TEXT NOT NULL,"
                 " watermark_us INTEGER NOT NULL,"
                 " source_version INTEGER NOT NULL,"
                 " updated_at INTEGER NOT NULL)"});
  return all;
}

Result<std::unique_ptr<Realtime>> Realtime::Open(catalog::Store* catalog, lake::Lake* lake,
                                                 RealtimeOptions options) {
  std::unique_ptr<Realtime> r(new Realtime(catalog, lake, std::move(options)));
  RETURN_IF_ERROR(CreateDirs(r->options_.log_dir));
  RETURN_IF_ERROR(CreateDirs(r->options_.scratch));
  stream::RocksLogOptions lo;
  lo.max_queue_events = r->options_.max_queue_events;
  ASSIGN_OR_RETURN(r->log_, stream::OpenRocksEventLog(r->options_.log_dir.string(), lo));
  ASSIGN_OR_RETURN(r->online_, features::OpenRocksOnlineStore(r->log_.get()));
  sql::EngineOptions eo;
  eo.sandboxed = false;
  eo.lake_root = lake->store()->LocalPath("");
  eo.scratch_dir = r->options_.scratch / "engine";
  eo.threads = r->options_.sql_threads;
  eo.memory_limit = r->options_.memory_limit;
  eo.max_query_ms = r->options_.query_timeout_ms;
  eo.timeout_key = "limits.loads_query_timeout_ms";
  eo.name = "archive";
  eo.interrupt_group = r->options_.interrupt_group;
  ASSIGN_OR_RETURN(r->loader_, sql::Engine::Open(eo));
  stream::ArchiverOptions ao;
  ao.spool_dir = r->options_.scratch / "archive-spool";
  ao.interval_ms = r->options_.archive_interval_ms;
  r->archiver_ = std::make_unique<stream::Archiver>(
      stream::Archiver::Deps{r->log_.get(), lake, catalog, r->loader_.get()}, ao);
  RETURN_IF_ERROR(r->Reload());
  if (r->options_.background) RETURN_IF_ERROR(r->archiver_->Start());
  return r;
}

Result<ProjectFiles> Realtime::ReadProject() {
  ProjectFiles out;
  std::vector<std::string> errors;
  // Parses every YAML file of a project folder with `parse`, collecting every error.
  auto each_file = [&](const char* folder, auto parse) {
    for (const auto& f : ListFiles(options_.project / folder, {".yaml", ".yml"})) {
      auto text = ReadFile(f);
      Status s = text.ok() ? parse(*text, RelativePath(f, options_.project)) : text.status();
      if (!s.ok()) errors.push_back(s.message());
    }
  };
  each_file("streams", [&](const std::string& text, const std::string& origin) -> Status {
    ASSIGN_OR_RETURN(auto def, stream::ParseStreamDefinition(text, origin));
    out.definitions.push_back({"stream", def.name, text, origin});
    out.streams.push_back(std::move(def));
    return Status::Ok();
  });
  each_file("features", [&](const std::string& text, const std::string& origin) -> Status {
    ASSIGN_OR_RETURN(auto view, features::ParseFeatureView(text, origin));
    out.definitions.push_back({"feature_view", view.name, text, origin});
    out.views.push_back(std::move(view));
    return Status::Ok();
  });
  each_file("entities", [&](const std::string& text, const std::string& origin) -> Status {
    ASSIGN_OR_RETURN(auto e, features::ParseEntity(text, origin));
    out.definitions.push_back({"entity", e.name, text, origin});
    out.entities.push_back(std::move(e));
    return Status::Ok();
  });
  each_file("feature_services", [&](const std::string& text, const std::string& origin) -> Status {
    ASSIGN_OR_RETURN(auto fs, features::ParseFeatureService(text, origin));
    out.definitions.push_back({"feature_service", fs.name, text, origin});
    out.services.push_back(std::move(fs));
    return Status::Ok();
  });
  if (errors.empty()) errors = CrossCheck(out.streams, out.views);
  if (errors.empty()) {
    features::Registry next{out.entities, out.views, out.services};
    errors = features::CheckRegistry(next);
    // An incompatible change to a view a service uses (a retyped or removed feature) is refused.
    std::shared_ptr<const Applied> before = applied();
    if (errors.empty() && before) errors = features::CheckCompatibility(before->Registry(), next);
  }
  if (!errors.empty()) {
    std::string msg = "the project has errors; nothing was applied:";
    for (const auto& e : errors) msg += "\n  " + e;
    return InvalidArgument(msg);
  }
  return out;
}

std::vector<std::string> Realtime::DefinitionKinds() const {
  return {"stream", "feature_view", "entity", "feature_service"};
}

Status Realtime::CheckReferences(const std::vector<flow::Definition>& all) {
  std::vector<std::string> errors;
  std::set<std::string> defined;  // source and model names
  for (const auto& d : all) {
    if (d.kind == "source" || d.kind == "model") defined.insert(d.name);
  }
  std::map<std::string, const flow::Definition*> entities;
  for (const auto& d : all) {
    if (d.kind == "entity") entities[d.name] = &d;
  }
  for (const auto& d : all) {
    if (d.kind != "feature_view") continue;
    auto view = features::ParseFeatureView(d.body, d.origin);
    if (!view.ok() || view->kind != features::ViewKind::kBatch) continue;
    auto ref = lake::ParseTableRef(view->source);
    if (!ref.ok()) continue;
    auto info = lake_->GetTable(*ref);
    if (!info.ok() || info->current_version == 0) {
      if (!defined.count(ref->name)) {
        errors.push_back(d.origin + ":1: batch view '" + view->name + "' reads " + view->source +
                         ", which no source or model defines and the lake does not hold");
      }
      continue;  // not built yet: its columns are checked by materialization
    }
    auto type_of = [&](const std::string& col) -> const std::string* {
      for (const auto& c : info->schema) {
        if (c.name == col) return &c.type;
      }
      return nullptr;
    };
    auto need = [&](const std::string& col, int line, const std::string& what,
                    std::optional<features::ValueType> t) {
      const std::string* type = type_of(col);
      const std::string at = d.origin + ":" + std::to_string(line > 0 ? line : 1) + ": ";
      if (!type) {
        errors.push_back(at + what + " reads column '" + col + "', which " + view->source +
                         " does not have");
      } else if (t && !features::ColumnFits(*t, *type)) {
        errors.push_back(at + what + " is " + std::string(features::ValueTypeName(*t)) + " but " +
                         view->source + "." + col + " is " + *type);
      }
    };
    need(view->timestamp_column, 1, "the timestamp", features::ValueType::kTimestamp);
    auto e = entities.find(view->entity);
    if (e != entities.end()) {
      auto entity = features::ParseEntity(e->second->body, e->second->origin);
      if (entity.ok()) need(entity->join_key, 1, "the entity's join key", entity->type);
    }
    for (const auto& f : view->features) {
      need(f.column, f.line, "feature '" + f.name + "'", f.type);
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string msg = "the project has errors; nothing was applied:";
  for (const auto& e : errors) msg += "\n  " + e;
  return InvalidArgument(msg);
}

Result<std::vector<flow::Definition>> Realtime::ReadDefinitions() {
  ASSIGN_OR_RETURN(ProjectFiles files, ReadProject());
  return std::move(files.definitions);
}

std::string Realtime::DeleteNote(const flow::Definition& d) const {
  if (d.kind == "stream") {
    return "raw." + d.name +
           " is kept; events are no longer accepted; the log keeps what it holds until retention";
  }
  if (d.kind == "entity") return "nothing is stored per entity";
  if (d.kind == "feature_service") return "online requests for it answer not_found";
  auto view = features::ParseFeatureView(d.body, d.origin);
  if (view.ok() && view->kind == features::ViewKind::kBatch) {
    return "its materialization job is removed; its online rows are no longer read";
  }
  return "features." + d.name + " is kept; online values are no longer updated";
}

Result<std::shared_ptr<Realtime::Applied>> Realtime::LoadApplied() {
  Definitions defs(catalog_);
  ASSIGN_OR_RETURN(auto all, defs.List());
  auto applied = std::make_shared<Applied>();
  for (const auto& d : all) {
    if (d.kind == "stream") {
      ASSIGN_OR_RETURN(auto def, stream::ParseStreamDefinition(d.body, d.origin));
      applied->streams.push_back(std::move(def));
    } else if (d.kind == "feature_view") {
      ASSIGN_OR_RETURN(auto view, features::ParseFeatureView(d.body, d.origin));
      applied->views.push_back(std::move(view));
      applied->view_bodies[d.name] = d.body;
    } else if (d.kind == "entity") {
      ASSIGN_OR_RETURN(auto e, features::ParseEntity(d.body, d.origin));
      applied->entities.push_back(std::move(e));
    } else if (d.kind == "feature_service") {
      ASSIGN_OR_RETURN(auto fs, features::ParseFeatureService(d.body, d.origin));
      applied->services.push_back(std::move(fs));
    }
  }
  {
    // Lake ownership follows the applied definitions: a stream owns its archive raw.<stream>, a
    // stream feature view its feature log features.<view>; a removed one releases its table.
    std::vector<lake::OwnedTable> streams, views;
    for (const auto& s : applied->streams) streams.push_back({{"raw", s.name}, {"stream", s.name}});
    for (const auto& v : applied->views) {
      if (v.kind == features::ViewKind::kStream) {
        views.push_back({{"features", v.name}, {"feature_view", v.name}});
      }
    }
    for (const auto& [kind, owned] :
         {std::pair{"stream", streams}, std::pair{"feature_view", views}}) {
      Status st = lake_->SetOwners(kind, owned);
      if (!st.ok()) spdlog::error("realtime: table ownership: {}", st.ToString());
    }
  }
  return applied;
}

Status Realtime::ApplyChanges(const std::vector<flow::DefinitionChange>& changes) {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<Applied> applied, LoadApplied());
  std::set<std::string> restart;
  for (const auto& c : changes) {
    if (c.definition.kind == "stream" && c.kind != catalog::Definitions::ChangeKind::kDelete) {
      const stream::StreamDefinition* s = applied->FindStream(c.definition.name);
      if (!s) continue;
      RETURN_IF_ERROR(log_->RegisterStream(s->ToStreamOptions()).WithContext("stream " + s->name));
      RETURN_IF_ERROR(archiver_->AddStream(*s).WithContext("archiving stream " + s->name));
    } else if (c.definition.kind == "feature_view") {
      restart.insert(c.definition.name);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : applied->streams) {
      if (!counters_.count(s.name)) counters_[s.name] = std::make_shared<StreamCounters>();
    }
    applied_ = applied;  // before the processors: a view's stream is accepted first
  }
  Status synced = SyncProcessors(*applied, restart);
  Status store = SyncFeatureStore(*applied);
  return synced.ok() ? store : synced;
}

Status Realtime::Reload() {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<Applied> applied, LoadApplied());
  for (const auto& s : applied->streams) {
    RETURN_IF_ERROR(log_->RegisterStream(s.ToStreamOptions()).WithContext("stream " + s.name));
    RETURN_IF_ERROR(archiver_->AddStream(s).WithContext("archiving stream " + s.name));
  }
  // A view whose definition differs from the one its processor runs is restarted.
  std::set<std::string> restart;
  std::shared_ptr<const Applied> old = this->applied();
  for (const auto& [name, body] : applied->view_bodies) {
    if (!old || !old->view_bodies.count(name) || old->view_bodies.at(name) != body) {
      restart.insert(name);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : applied->streams) {
      if (!counters_.count(s.name)) counters_[s.name] = std::make_shared<StreamCounters>();
    }
    applied_ = applied;
  }
  Status synced = SyncProcessors(*applied, restart);
  Status store = SyncFeatureStore(*applied);
  return synced.ok() ? store : synced;
}

Result<std::shared_ptr<features::StreamProcessor>> Realtime::StartProcessor(
    const features::FeatureView& view) {
  features::ProcessorOptions po;
  po.lake = lake_;
  po.catalog = catalog_;
  po.loader = loader_.get();
  po.scratch_dir = options_.scratch / "feature-log";
  RETURN_IF_ERROR(CreateDirs(po.scratch_dir));
  ASSIGN_OR_RETURN(auto processor,
                   features::StreamProcessor::Create(log_.get(), online_.get(), {view}, po));
  if (options_.background) RETURN_IF_ERROR(processor->Start());
  return std::shared_ptr<features::StreamProcessor>(std::move(processor));
}

Status Realtime::SyncProcessors(const Applied& applied, const std::set<std::string>& restart) {
  std::shared_ptr<const Processors> current = processors();
  auto next = std::make_shared<Processors>();
  std::vector<std::shared_ptr<features::StreamProcessor>> retired;
  std::set<std::string> wanted;
  for (const auto& v : applied.views) {
    if (v.kind == features::ViewKind::kStream) wanted.insert(v.name);
  }
  for (const auto& [name, r] : current->by_view) {
    if (!wanted.count(name) || restart.count(name)) {
      retired.push_back(r.processor);
    } else {
      next->by_view[name] = r;
    }
  }
  // Stop the retired ones first: a replacement reads the same consumer offsets and state.
  for (auto& p : retired) {
    Status s = p->FlushLog();
    if (!s.ok()) spdlog::warn("features: flushing the feature log: {}", s.ToString());
    p->Stop();
  }
  Status result = Status::Ok();
  for (const auto& v : applied.views) {
    if (v.kind != features::ViewKind::kStream || next->by_view.count(v.name)) continue;
    auto p = StartProcessor(v);
    if (!p.ok()) {
      if (result.ok()) result = p.status().WithContext("feature view " + v.name);
      continue;
    }
    next->by_view[v.name] = Running{*p, NowMicros()};
  }
  for (const auto& v : applied.views) {
    auto it = next->by_view.find(v.name);
    if (it != next->by_view.end()) next->by_stream[v.stream].push_back(it->second.processor);
  }
  std::lock_guard<std::mutex> lock(mu_);
  processors_ = std::move(next);
  return result;
}

std::shared_ptr<const Realtime::Processors> Realtime::processors() {
  std::lock_guard<std::mutex> lock(mu_);
  return processors_;
}

void Realtime::Stop() {
  std::shared_ptr<const Processors> ps = processors();
  for (const auto& [name, r] : ps->by_view) {
    Status s = r.processor->FlushLog();
    if (!s.ok()) spdlog::warn("features: flushing the feature log: {}", s.ToString());
    r.processor->Stop();
  }
  if (archiver_) archiver_->Stop();
}

std::shared_ptr<const Realtime::Applied> Realtime::applied() {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

std::vector<std::string> Realtime::StreamNames() {
  std::vector<std::string> out;
  for (const auto& s : applied()->streams) out.push_back(s.name);
  return out;
}

void Realtime::Ingest(const std::string& name, std::string body,
                      std::function<void(Result<IngestReport>)> done) {
  auto a = applied();
  const stream::StreamDefinition* def = a->FindStream(name);
  if (!def) {
    done(NotFound("no stream '" + name + "' (define it in streams/ and lakeloop apply)"));
    return;
  }
  std::shared_ptr<StreamCounters> counters;
  std::shared_ptr<const Processors> processors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters = counters_[name];
    if (!counters) counters = counters_[name] = std::make_shared<StreamCounters>();
    processors = processors_;
  }
  counters->requests.fetch_add(1, std::memory_order_relaxed);
  auto batch = stream::ValidateEvents(*def, body, NowMicros());
  if (!batch.ok()) {
    done(batch.status());
    return;
  }
  auto report = std::make_shared<IngestReport>();
  report->rejected = std::move(batch->rejected);
  counters->rejected.fetch_add(static_cast<int64_t>(report->rejected.size()),
                               std::memory_order_relaxed);
  if (batch->accepted.empty()) {
    done(std::move(*report));
    return;
  }
  log_->AppendAsync(name, std::move(batch->accepted),
                    [report, counters, processors, name,
                     done = std::move(done)](Result<stream::AppendResult> r) mutable {
                      if (!r.ok()) {
                        done(r.status());
                        return;
                      }
                      for (const auto& e : r->events) {
                        if (e.duplicate) {
                          ++report->duplicates;
                        } else {
                          ++report->accepted;
                        }
                      }
                      counters->accepted.fetch_add(report->accepted, std::memory_order_relaxed);
                      counters->duplicates.fetch_add(report->duplicates, std::memory_order_relaxed);
                      if (auto it = processors->by_stream.find(name);
                          it != processors->by_stream.end()) {
                        for (const auto& p : it->second) p->Notify(name);
                      }
                      done(std::move(*report));
                    });
}

Result<features::FeatureVector> Realtime::Online(const std::string& view, const std::string& key,
                                                 int64_t read_time_us) {
  std::shared_ptr<const Processors> ps = processors();
  auto it = ps->by_view.find(view);
  if (it == ps->by_view.end()) return NotFound("no feature view '" + view + "'");
  return it->second.processor->Get(view, key, read_time_us);
}

Result<Micros> Realtime::ViewRunningSince(const std::string& view) {
  std::shared_ptr<const Processors> ps = processors();
  auto it = ps->by_view.find(view);
  if (it == ps->by_view.end()) return NotFound("no running feature view '" + view + "'");
  return it->second.started_at;
}

Status Realtime::Maintain() {
  ASSIGN_OR_RETURN(stream::TrimResult t, log_->Trim(NowMicros()));
  if (t.records_deleted > 0) {
    spdlog::info("streams: retention removed {} records ({} bytes)", t.records_deleted,
                 t.bytes_deleted);
  }
  return Status::Ok();
}

Result<stream::DrainResult> Realtime::ArchiveNow(const std::string& name, int max_rounds) {
  return archiver_->ArchiveAll(name, max_rounds);
}

Result<stream::CompactResult> Realtime::CompactNow(const std::string& name) {
  return archiver_->CompactOnce(name);
}

Result<std::string> Realtime::StreamJson(const std::string& name) {
  auto a = applied();
  const stream::StreamDefinition* def = a->FindStream(name);
  if (!def) return NotFound("no stream '" + name + "'");
  std::shared_ptr<StreamCounters> counters;
  std::shared_ptr<const Processors> processors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters = counters_[name];
    if (!counters) counters = counters_[name] = std::make_shared<StreamCounters>();
    processors = processors_;
  }
  ASSIGN_OR_RETURN(auto ends, log_->EndOffsets(name));
  ASSIGN_OR_RETURN(auto ranges, log_->Offsets(name));
  ASSIGN_OR_RETURN(auto consumers, log_->ListConsumers(name));
  int64_t stored = 0;
  for (const auto& r : ranges) stored += r.end - r.begin;
  int64_t total = 0;
  for (int64_t e : ends) total += e;
  std::string out;
  JsonWriter w(&out);
  w.BeginObject()
      .Key("stream")
      .String(name)
      .Key("partitions")
      .Int(def->partitions)
      .Key("key")
      .String(def->key_field)
      .Key("time")
      .String(def->time_field)
      .Key("events")
      .BeginObject()
      .Key("total")
      .Int(total)
      .Key("stored")
      .Int(stored)
      .Key("accepted_since_start")
      .Int(counters->accepted.load())
      .Key("duplicates_since_start")
      .Int(counters->duplicates.load())
      .Key("rejected_since_start")
      .Int(counters->rejected.load())
      .Key("requests_since_start")
      .Int(counters->requests.load())
      .EndObject();
  w.Key("consumers").BeginArray();
  for (const auto& c : consumers) {
    int64_t lag = 0;
    for (size_t p = 0; p < c.next_offsets.size() && p < ends.size(); ++p) {
      lag += ends[p] - std::max<int64_t>(0, c.next_offsets[p]);
    }
    w.BeginObject()
        .Key("name")
        .String(c.consumer)
        .Key("durable")
        .Bool(c.durable)
        .Key("lag")
        .Int(lag)
        .EndObject();
  }
  w.EndArray();
  auto archive = archiver_->State(name);
  if (archive.ok()) {
    int64_t archived = 0, late = 0;
    for (const auto& p : *archive) {
      archived += std::max<int64_t>(0, p.next_offset);
      late += p.late_events;
    }
    w.Key("archive")
        .BeginObject()
        .Key("table")
        .String("raw." + name)
        .Key("archived")
        .Int(archived)
        .Key("lag")
        .Int(total - archived)
        .Key("late")
        .Int(late)
        .EndObject();
  }
  w.Key("views").BeginArray();
  for (const auto& v : a->views) {
    auto p = processors->by_view.find(v.name);
    if (v.stream != name || p == processors->by_view.end()) continue;
    auto st = p->second.processor->Stats(v.name);
    if (!st.ok()) continue;
    int64_t lag = 0;
    for (const auto& p : st->partitions) lag += p.lag;
    w.BeginObject()
        .Key("view")
        .String(v.name)
        .Key("events_applied")
        .Int(st->events_applied)
        .Key("late_events")
        .Int(st->late_events)
        .Key("invalid_events")
        .Int(st->invalid_events)
        .Key("lag")
        .Int(lag)
        .Key("freshness_ms")
        .Double(static_cast<double>(st->last_delay_us) / 1000.0);
    if (st->last_event_time_us)
      w.Key("last_event_time").String(FormatRfc3339(st->last_event_time_us));
    w.Key("running_since").String(FormatRfc3339(p->second.started_at));
    w.EndObject();
  }
  w.EndArray().EndObject();
  return out;
}

}  // namespace lakeloop::realtime

namespace lakeloop::realtime {

std::string MaterializeJobName(std::string_view view) {
  return "features:materialize:" + std::string(view);
}

namespace {

class MaterializeJob : public flow::Job {
 public:
  MaterializeJob(Realtime* rt, std::string view) : rt_(rt), view_(std::move(view)) {}
  std::string name() const override { return MaterializeJobName(view_); }
  Result<flow::RunOutput> Run(flow::RunContext& ctx) override {
    bool full = false;
    auto params = ParseJsonObject(ctx.params);
    if (params.ok()) {
      auto it = params->find("full");
      full = it != params->end() && it->value().is_bool() && it->value().as_bool();
    }
    ASSIGN_OR_RETURN(MaterializeReport r, rt_->Materialize(view_, full));
    flow::RunOutput out;
    out.rows_out = r.rows_loaded;
    out.detail.clear();
    JsonWriter w(&out.detail);
    w.BeginObject()
        .Key("view")
        .String(r.view)
        .Key("full")
        .Bool(r.full)
        .Key("source_version")
        .Int(r.source_version)
        .Key("rows_loaded")
        .Int(r.rows_loaded)
        .Key("watermark_us")
        .Int(r.watermark_us)
        .EndObject();
    return out;
  }

 private:
  Realtime* rt_;
  std::string view_;
};

// The SELECT list expression that turns a source column into the feature's type.
std::string CastTo(features::ValueType t, const std::string& column) {
  const std::string c = sql::QuoteIdentifier(column);
  switch (t) {
    case features::ValueType::kInt64:
      return "CAST(" + c + " AS BIGINT)";
    case features::ValueType::kDouble:
      return "CAST(" + c + " AS DOUBLE)";
    case features::ValueType::kString:
      return "CAST(" + c + " AS VARCHAR)";
    case features::ValueType::kBool:
      return "CAST(" + c + " AS BOOLEAN)";
    case features::ValueType::kTimestamp:
      return "epoch_us(CAST(" + c + " AS TIMESTAMP))";
  }
  return c;
}

Result<features::Value> FromJson(features::ValueType t, const boost::json::value& v) {
  if (v.is_null()) return features::Value{};
  switch (t) {
    case features::ValueType::kInt64:
      if (v.is_int64()) return features::Value{v.as_int64()};
      if (v.is_uint64()) return features::Value{static_cast<int64_t>(v.as_uint64())};
      break;
    case features::ValueType::kDouble:
      if (v.is_double()) return features::Value{v.as_double()};
      if (v.is_int64()) return features::Value{static_cast<double>(v.as_int64())};
      if (v.is_uint64()) return features::Value{static_cast<double>(v.as_uint64())};
      break;
    case features::ValueType::kString:
      if (v.is_string()) return features::Value{std::string(v.as_string())};
      break;
    case features::ValueType::kBool:
      if (v.is_bool()) return features::Value{v.as_bool()};
      break;
    case features::ValueType::kTimestamp:
      if (v.is_int64()) return features::Value{features::TimestampValue{v.as_int64()}};
      break;
  }
  return Internal("materialization: unexpected JSON value for a " +
                  std::string(features::ValueTypeName(t)) + " feature");
}

}  // namespace

Status Realtime::SyncFeatureStore(const Applied& applied) {
  // The plan reads the running processors of this very apply.
  std::map<std::string, std::shared_ptr<features::StreamProcessor>, std::less<>> running;
  for (const auto& [name, r] : processors()->by_view) running[name] = r.processor;
  auto plan = features::OnlinePlan::Build(applied.Registry(), online_.get(), std::move(running));
  Status result = Status::Ok();
  if (plan.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    plan_ = *plan;
  } else {
    result = plan.status();
  }
  if (!options_.scheduler) return result;
  // One job per batch view, triggered by its source's commits.
  std::map<std::string, std::string> wanted;
  for (const auto& v : applied.views) {
    if (v.kind == features::ViewKind::kBatch) wanted[v.name] = v.source;
  }
  for (const auto& [view, source] : job_specs_) {
    if (!wanted.count(view)) {
      Status st = options_.scheduler->RemoveJob(MaterializeJobName(view));
      if (!st.ok()) spdlog::warn("features: removing {}: {}", view, st.ToString());
    }
  }
  for (const auto& [view, source] : wanted) {
    flow::JobSpec spec;
    if (options_.background) spec.upstream_tables = {source};
    auto job = std::make_unique<MaterializeJob>(this, view);
    Status st = job_specs_.count(view) ? options_.scheduler->ReplaceJob(std::move(job), spec)
                                       : options_.scheduler->Register(std::move(job), spec);
    if (!st.ok() && result.ok()) result = st.WithContext("materialization job of " + view);
  }
  job_specs_ = std::move(wanted);
  if (!options_.background) return result;
  // A view whose online rows are behind its source (it committed while no server ran, or the
  // view is new or changed) catches up now instead of at the source's next commit.
  for (const auto& v : applied.views) {
    if (v.kind != features::ViewKind::kBatch) continue;
    auto ref = lake::ParseTableRef(v.source);
    auto info = ref.ok() ? lake_->GetTable(*ref) : Result<lake::TableInfo>(ref.status());
    if (!info.ok() || info->current_version == 0) continue;
    auto rows = catalog_->Query(
        "SELECT fingerprint, source_version FROM features_materializations WHERE view = ?",
        {v.name});
    auto body = applied.view_bodies.find(v.name);
    const bool current = rows.ok() && rows->size() == 1 && body != applied.view_bodies.end() &&
                         std::get<std::string>(rows->At(0, 0)) == body->second &&
                         std::get<int64_t>(rows->At(0, 1)) == info->current_version;
    if (current) continue;
    auto run = options_.scheduler->Trigger(MaterializeJobName(v.name), "{}");
    if (!run.ok()) spdlog::warn("features: materializing {}: {}", v.name, run.status().ToString());
  }
  return result;
}

std::shared_ptr<const features::OnlinePlan> Realtime::plan() {
  std::lock_guard<std::mutex> lock(mu_);
  return plan_;
}

Result<features::OnlineResponse> Realtime::OnlineFeatures(const features::OnlineRequest& request) {
  std::shared_ptr<const features::OnlinePlan> p = plan();
  if (!p) return Unavailable("the feature store is not loaded");
  return p->Get(request);
}

Result<MaterializeReport> Realtime::Materialize(const std::string& view_name, bool full) {
  std::lock_guard<std::mutex> one_at_a_time(materialize_mu_);
  std::shared_ptr<const Applied> a = applied();
  const features::FeatureView* view = nullptr;
  for (const auto& v : a->views) {
    if (v.name == view_name && v.kind == features::ViewKind::kBatch) view = &v;
  }
  if (!view) return NotFound("batch feature view '" + view_name + "'");
  const features::Registry registry =
      a->Registry();  // a copy: keep it alive while `entity` is used
  const features::Entity* entity = registry.FindEntity(view->entity);
  if (!entity) return NotFound("entity '" + view->entity + "' of view '" + view_name + "'");
  const std::string join_key = entity->join_key;
  const std::string fingerprint = a->view_bodies.at(view_name);
  MaterializeReport report;
  report.view = view_name;

  // Where the last run got to, with which definition.
  int64_t watermark = INT64_MIN;
  bool known = false;
  {
    ASSIGN_OR_RETURN(auto rows, catalog_->Query("SELECT fingerprint, watermark_us FROM "
                                                "features_materializations WHERE view = ?",
                                                {view_name}));
    if (rows.size() == 1) {
      known = std::get<std::string>(rows.At(0, 0)) == fingerprint;
      watermark = std::get<int64_t>(rows.At(0, 1));
    }
  }
  const bool asked_full = full;
  full = full || !known;
  report.full = full;
  if (full) watermark = INT64_MIN;

  ASSIGN_OR_RETURN(lake::TableRef ref, lake::ParseTableRef(view->source));
  auto info = lake_->GetTable(ref);
  if (!info.ok() || info->current_version == 0) {
    report.watermark_us = known ? watermark : 0;
    return report;  // nothing to load yet
  }
  report.source_version = info->current_version;
  // Columns and types are checked again here: the table may have been built after the apply.
  for (const auto& f : view->features) {
    bool ok = false;
    for (const auto& c : info->schema)
      ok = ok || (c.name == f.column && features::ColumnFits(f.type, c.type));
    if (!ok) {
      return InvalidArgument(view->file_name + ":" + std::to_string(f.line) + ": feature '" +
                             f.name + "' needs a " + std::string(features::ValueTypeName(f.type)) +
                             " column '" + f.column + "' in " + view->source);
    }
  }
  ASSIGN_OR_RETURN(auto files, lake_->SnapshotFiles(ref, info->current_version));
  // An explicit --full drops the rows first (entities gone from the table disappear); a changed
  // definition reloads in place: rows of the old definition read as missing until replaced.
  if (asked_full) RETURN_IF_ERROR(online_->ResetView(view_name, "", 0, ""));
  const uint64_t schema = features::BatchSchema(*view);
  if (files.empty()) return report;
  std::string list;
  for (const auto& f : files) {
    list +=
        (list.empty() ? "" : ", ") + sql::QuoteLiteral(lake_->store()->LocalPath(f.key).string());
  }
  const std::string ts = "CAST(" + sql::QuoteIdentifier(view->timestamp_column) + " AS TIMESTAMP)";
  std::string q =
      "SELECT CAST(" + sql::QuoteIdentifier(join_key) + " AS VARCHAR), epoch_us(" + ts + ")";
  for (const auto& f : view->features) q += ", " + CastTo(f.type, f.column);
  // Partition columns of a partitioned table live in the folder names (key=value).
  q += " FROM read_parquet([" + list + "], union_by_name = true, hive_partitioning = " +
       (info->partition_by.empty() ? "false" : "true") + ") WHERE " +
       sql::QuoteIdentifier(join_key) + " IS NOT NULL AND " + ts + " IS NOT NULL";
  if (watermark != INT64_MIN) q += " AND epoch_us(" + ts + ") >= " + std::to_string(watermark);
  if (view->ttl_us > 0) {
    q += " AND epoch_us(" + ts + ") >= " + std::to_string(NowMicros() - view->ttl_us);
  }
  // The newest row per entity; equal event times: the greatest row wins (deterministic).
  q += " QUALIFY row_number() OVER (PARTITION BY " + sql::QuoteIdentifier(join_key) + " ORDER BY " +
       ts + " DESC";
  for (const auto& f : view->features) q += ", " + CastTo(f.type, f.column) + " DESC NULLS LAST";
  q += ") = 1";
  sql::QueryRequest req;
  req.sql = q;
  req.limit = std::numeric_limits<int32_t>::max();
  req.timeout_ms = 0;
  ASSIGN_OR_RETURN(sql::QueryReply reply, loader_->Run(req));
  ASSIGN_OR_RETURN(boost::json::object body, ParseJsonObject(reply.body));
  const auto& rows = body.at("rows").as_array();
  features::StateBatch batch;
  batch.view = view_name;
  constexpr size_t kBatchRows = 10'000;
  int64_t newest = watermark;
  for (const auto& rv : rows) {
    const auto& r = rv.as_array();
    features::BatchRow row;
    row.schema = schema;
    row.event_time_us = r.at(1).as_int64();
    newest = std::max(newest, row.event_time_us);
    for (size_t i = 0; i < view->features.size(); ++i) {
      ASSIGN_OR_RETURN(features::Value v, FromJson(view->features[i].type, r.at(i + 2)));
      row.values.push_back(std::move(v));
    }
    batch.states.emplace_back(std::string(r.at(0).as_string()), features::EncodeBatchRow(row));
    if (batch.states.size() >= kBatchRows) {
      RETURN_IF_ERROR(online_->Commit(batch));
      batch.states.clear();
    }
  }
  if (!batch.states.empty()) RETURN_IF_ERROR(online_->Commit(batch));
  report.rows_loaded = static_cast<int64_t>(rows.size());
  report.watermark_us = newest == INT64_MIN ? 0 : newest;
  // Rows are at least once: a crash before this record reloads from the old watermark, and a
  // reload writes the same newest rows again.
  RETURN_IF_ERROR(catalog_->Exec(
      "INSERT INTO features_materializations (view, fingerprint, watermark_us, source_version, "
      "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (view) DO UPDATE SET fingerprint = "
      "excluded.fingerprint, watermark_us = excluded.watermark_us, source_version = "
      "excluded.source_version, updated_at = excluded.updated_at",
      {view_name, fingerprint, newest == INT64_MIN ? int64_t{INT64_MIN} : newest,
       report.source_version, NowMicros()}));
  return report;
}

Result<std::pair<std::string, MaterializeReport>> Realtime::MaterializeRun(const std::string& view,
                                                                           bool full) {
  if (!options_.scheduler) {
    ASSIGN_OR_RETURN(MaterializeReport r, Materialize(view, full));
    return std::make_pair(std::string(), r);
  }
  {
    std::lock_guard<std::mutex> l(apply_mu_);
    if (!job_specs_.count(view)) return NotFound("batch feature view '" + view + "'");
  }
  ASSIGN_OR_RETURN(
      std::string run_id,
      options_.scheduler->Trigger(MaterializeJobName(view), full ? R"({"full":true})" : "{}"));
  ASSIGN_OR_RETURN(flow::RunInfo run,
                   options_.scheduler->WaitForRun(run_id, std::chrono::minutes(30)));
  if (run.status != flow::RunStatus::kSucceeded) {
    return Status(run.error_code == Code::kOk ? Code::kInternal : run.error_code,
                  "materialization run " + run_id + ": " + run.error);
  }
  MaterializeReport r;
  r.view = view;
  auto detail = ParseJsonObject(run.detail);
  if (detail.ok()) {
    auto num = [&](const char* k) -> int64_t {
      auto it = detail->find(k);
      return it != detail->end() && it->value().is_int64() ? it->value().as_int64() : 0;
    };
    r.source_version = num("source_version");
    r.rows_loaded = num("rows_loaded");
    r.watermark_us = num("watermark_us");
    auto f = detail->find("full");
    r.full = f != detail->end() && f->value().is_bool() && f->value().as_bool();
  }
  return std::make_pair(run_id, r);
}

}  // namespace lakeloop::realtime
