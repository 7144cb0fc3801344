// The lakeloop command line. State-changing commands go through a running server's API when one
// owns the data directory, and run embedded (taking the lock) when none does; read-only commands
// use the server when it runs and read the data directory directly otherwise.
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

#include "app/app.h"
#include "app/internal/http_client.h"
#include "core/json.h"
#include "core/log.h"

namespace lakeloop::app {
namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

struct Globals {
  std::string project = ".";
  std::string data;
  std::string log_level;
};

struct Remote {
  std::string url;
  std::string token;
};

Result<Paths> ResolvePaths(const Globals& g) {
  Paths p;
  std::error_code ec;
  p.project = fs::absolute(g.project, ec);
  if (!fs::is_directory(p.project)) {
    return InvalidArgument("project folder " + p.project.string() + " does not exist");
  }
  p.data = g.data.empty() ? p.project / ".lakeloop" : fs::absolute(g.data, ec);
  return p;
}

// The running server owning the data directory, if any.
Result<std::optional<Remote>> FindServer(const Paths& paths) {
  if (!LockFile::IsHeld(paths.lock())) return std::optional<Remote>();
  // A server that is starting writes server.json once it listens; give it a moment.
  auto info = ReadFile(paths.server_file());
  for (int i = 0; i < 500 && !info.ok() && LockFile::IsHeld(paths.lock()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    info = ReadFile(paths.server_file());
  }
  if (!info.ok()) {
    if (!LockFile::IsHeld(paths.lock())) return std::optional<Remote>();
    return Unavailable("the data directory " + paths.data.string() +
                       " is locked by another lakeloop process that serves no API; retry later");
  }
  ASSIGN_OR_RETURN(json::object o, ParseJsonObject(*info));
  Remote r;
  r.url = std::string(o.at("url").as_string());
  auto token = ReadFile(paths.admin_token());
  if (token.ok()) r.token = *token;
  return std::optional<Remote>(r);
}

Result<std::string> Call(const Remote& r, const std::string& method, const std::string& path,
                         const std::string& body, std::string accept = "application/json",
                         std::string content_type = "application/json") {
  std::vector<std::pair<std::string, std::string>> headers = {{"Accept", accept}};
  if (!body.empty()) headers.push_back({"Content-Type", content_type});
  if (!r.token.empty()) headers.push_back({"Authorization", "Bearer " + r.token});
  ASSIGN_OR_RETURN(HttpResponse resp, HttpRequest(r.url, method, path, body, headers));
  if (resp.status >= 400) {
    auto err = ParseJsonObject(resp.body);
    if (err.ok() && err->contains("error")) {
      const auto& e = err->at("error").as_object();
      std::string code(e.at("code").as_string());
      Code c = Code::kInternal;
      for (int i = 0; i <= static_cast<int>(Code::kInternal); ++i) {
        if (CodeName(static_cast<Code>(i)) == code) c = static_cast<Code>(i);
      }
      return Status(c, std::string(e.at("message").as_string()));
    }
    return Internal("HTTP " + std::to_string(resp.status) + ": " + resp.body.substr(0, 200));
  }
  return resp.body;
}

Result<std::unique_ptr<App>> OpenEmbedded(const Paths& paths, Mode mode) {
  ASSIGN_OR_RETURN(Config cfg, LoadConfig(paths.project));
  return App::Open(paths, cfg, mode);
}

// ---- output -------------------------------------------------------------------------------------

std::string CellText(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "NULL";
    case json::kind::string:
      return std::string(v.get_string());
    default:
      return ToJson(v);
  }
}

size_t DisplayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count UTF-8 code points
  return n;
}

void PrintTable(const json::object& reply) {
  const auto& cols = reply.at("columns").as_array();
  const auto& rows = reply.at("rows").as_array();
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width(cols.size(), 0);
  std::vector<std::string> head;
  for (size_t i = 0; i < cols.size(); ++i) {
    head.push_back(std::string(cols[i].at("name").as_string()));
    width[i] = DisplayWidth(head[i]);
  }
  for (const auto& r : rows) {
    std::vector<std::string> line;
    const auto& a = r.as_array();
    for (size_t i = 0; i < a.size(); ++i) {
      line.push_back(CellText(a[i]));
      width[i] = std::max(width[i], DisplayWidth(line.back()));
    }
    cells.push_back(std::move(line));
  }
  auto print_row = [&](const std::vector<std::string>& line, bool right_numbers) {
    for (size_t i = 0; i < line.size(); ++i) {
      std::string pad(width[i] - DisplayWidth(line[i]), ' ');
      bool num = right_numbers && !rows.empty() && rows[0].as_array()[i].is_number();
      std::cout << (i ? " | " : "") << (num ? pad + line[i] : line[i] + pad);
    }
    std::cout << "\n";
  };
  print_row(head, false);
  for (size_t i = 0; i < width.size(); ++i) {
    std::cout << (i ? "-+-" : "") << std::string(width[i], '-');
  }
  std::cout << "\n";
  for (const auto& line : cells) print_row(line, true);
  std::cout << "(" << reply.at("row_count").to_number<int64_t>() << " row"
            << (reply.at("row_count").to_number<int64_t>() == 1 ? "" : "s")
            << (reply.at("truncated").as_bool() ? ", truncated" : "") << ")\n";
}

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return InfoFor(s.code()).http_status >= 500 ? 2 : 1;
}

// ---- commands -----------------------------------------------------------------------------------

int CmdUp(const Globals& g, const std::optional<std::string>& listen) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  auto cfg = LoadConfig(paths->project);
  if (!cfg.ok()) return Fail(cfg.status());
  if (!g.log_level.empty()) cfg->log_level = g.log_level;
  if (auto s = CreateDirs(paths->logs()); !s.ok()) return Fail(s);
  if (auto s = InitLogging(cfg->log_level, paths->logs() / "lakeloop.log"); !s.ok()) return Fail(s);
  auto app = App::Open(*paths, *cfg, Mode::kServer);
  if (!app.ok()) return Fail(app.status());
  Status s = (*app)->Serve(listen);
  if (!s.ok()) return Fail(s);
  return 0;
}

int CmdSql(const Globals& g, const std::string& query, const std::string& format, int64_t limit) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  std::string body;
  JsonWriter w(&body);
  w.BeginObject().Key("sql").String(query);
  if (limit >= 0) w.Key("limit").Int(limit);
  w.EndObject();
  std::string accept = format == "csv" ? "text/csv" : "application/json";
  auto server = FindServer(*paths);
  if (!server.ok()) return Fail(server.status());
  std::string out;
  if (*server) {
    auto r = Call(**server, "POST", "/api/v1/sql", body, accept);
    if (!r.ok()) return Fail(r.status());
    out = std::move(*r);
  } else {
    auto app = OpenEmbedded(*paths, Mode::kReadOnly);
    if (!app.ok()) return Fail(app.status());
    sql::QueryRequest q;
    q.sql = query;
    q.limit = limit >= 0 ? limit : (*app)->config().sql.default_row_limit;
    q.timeout_ms = (*app)->config().sql.query_timeout_ms;
    q.format = format == "csv" ? sql::Format::kCsv : sql::Format::kJson;
    auto r = (*app)->engine().Run(q);
    if (!r.ok()) return Fail(r.status());
    out = std::move(r->body);
  }
  if (format == "table") {
    auto reply = ParseJsonObject(out);
    if (!reply.ok()) return Fail(reply.status());
    PrintTable(*reply);
  } else {
    std::cout << out;
    if (format == "json") std::cout << "\n";
  }
  return 0;
}

int CmdTables(const Globals& g, const std::string& format) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  auto server = FindServer(*paths);
  if (!server.ok()) return Fail(server.status());
  if (*server) {
    auto r = Call(**server, "GET", "/api/v1/tables", "");
    if (!r.ok()) return Fail(r.status());
    if (format == "json") {
      std::cout << *r << "\n";
      return 0;
    }
    auto o = ParseJsonObject(*r);
    if (!o.ok()) return Fail(o.status());
    std::printf("%-32s %8s %12s %6s\n", "table", "version", "rows", "files");
    for (const auto& t : o->at("tables").as_array()) {
      std::printf("%-32s %8lld %12lld %6lld\n", std::string(t.at("name").as_string()).c_str(),
                  static_cast<long long>(t.at("version").to_number<int64_t>()),
                  static_cast<long long>(t.at("row_count").to_number<int64_t>()),
                  static_cast<long long>(t.at("files").to_number<int64_t>()));
    }
    return 0;
  }
  auto app = OpenEmbedded(*paths, Mode::kReadOnly);
  if (!app.ok()) return Fail(app.status());
  auto tables = (*app)->lake().ListTables();
  if (!tables.ok()) return Fail(tables.status());
  if (format == "json") {
    std::string out;
    JsonWriter w(&out);
    w.BeginObject().Key("tables").BeginArray();
    for (const auto& t : *tables) {
      auto snap = (*app)->lake().GetSnapshot(t.ref, t.current_version);
      w.BeginObject().Key("name").String(t.ref.ToString()).Key("version").Int(t.current_version);
      w.Key("row_count").Int(snap.ok() ? snap->total_rows : 0);
      w.Key("files").Int(snap.ok() ? snap->file_count : 0).EndObject();
    }
    w.EndArray().EndObject();
    std::cout << out << "\n";
    return 0;
  }
  std::printf("%-32s %8s %12s %6s\n", "table", "version", "rows", "files");
  for (const auto& t : *tables) {
    auto snap = (*app)->lake().GetSnapshot(t.ref, t.current_version);
    std::printf("%-32s %8lld %12lld %6lld\n", t.ref.ToString().c_str(),
                static_cast<long long>(t.current_version),
                static_cast<long long>(snap.ok() ? snap->total_rows : 0),
                static_cast<long long>(snap.ok() ? snap->file_count : 0));
  }
  return 0;
}

int CmdLoad(const Globals& g, const std::string& table, const std::string& file,
            const std::string& mode, std::string format) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  auto ref = lake::ParseTableRef(table);
  if (!ref.ok()) return Fail(ref.status());
  auto wmode = lake::ParseWriteMode(mode);
  if (!wmode.ok()) return Fail(wmode.status());
  sql::FileFormat ff;
  if (format.empty()) {
    auto f = sql::FileFormatFromPath(file);
    if (!f.ok()) return Fail(f.status());
    ff = *f;
    format = ff == sql::FileFormat::kCsv    ? "csv"
             : ff == sql::FileFormat::kJson ? "json"
                                            : "parquet";
  } else {
    auto f = sql::ParseFileFormat(format);
    if (!f.ok()) return Fail(f.status());
    ff = *f;
  }
  if (!fs::is_regular_file(file)) return Fail(InvalidArgument("no such file: " + file));
  auto server = FindServer(*paths);
  if (!server.ok()) return Fail(server.status());
  if (*server) {
    auto data = ReadFile(file);
    if (!data.ok()) return Fail(data.status());
    auto r = Call(**server, "POST",
                  "/api/v1/tables/" + table + "/commits?mode=" + mode + "&format=" + format, *data,
                  "application/json", "application/octet-stream");
    if (!r.ok()) return Fail(r.status());
    std::cout << *r << "\n";
    return 0;
  }
  auto app = OpenEmbedded(*paths, Mode::kOneShot);
  if (!app.ok()) return Fail(app.status());
  sql::LoadRequest req;
  req.table = *ref;
  req.file = fs::absolute(file);
  req.format = ff;
  req.mode = *wmode;
  auto snap = sql::LoadFile((*app)->loader(), (*app)->lake(), req);
  if (!snap.ok()) return Fail(snap.status());
  std::cout << "committed " << table << " version " << snap->version << ": " << snap->added_rows
            << " rows added, " << snap->total_rows << " rows in total\n";
  return 0;
}

int CmdTokenCreate(const Globals& g, const std::string& role, const std::string& name) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  auto r = catalog::ParseRole(role);
  if (!r.ok()) return Fail(r.status());
  auto server = FindServer(*paths);
  if (!server.ok()) return Fail(server.status());
  std::string token, id;
  if (*server) {
    std::string body;
    JsonWriter w(&body);
    w.BeginObject().Key("role").String(role).Key("name").String(name).EndObject();
    auto resp = Call(**server, "POST", "/api/v1/tokens", body);
    if (!resp.ok()) return Fail(resp.status());
    auto o = ParseJsonObject(*resp);
    if (!o.ok()) return Fail(o.status());
    token = std::string(o->at("token").as_string());
    id = std::string(o->at("id").as_string());
  } else {
    auto app = OpenEmbedded(*paths, Mode::kOneShot);
    if (!app.ok()) return Fail(app.status());
    auto created = (*app)->tokens().Create(*r, name);
    if (!created.ok()) return Fail(created.status());
    token = created->token;
    id = created->id;
  }
  std::cout << "created " << role << " token " << id << " (shown once; keep it secret):\n"
            << token << "\n";
  return 0;
}

// ---- batch: apply, build, run, runs, backfill ---------------------------------------------------

// Runs `remote` against the server when one owns the data directory, else `local` embedded.
int Dispatch(const Globals& g, const std::function<Result<std::string>(const Remote&)>& remote,
             const std::function<Result<std::string>(App&)>& local,
             const std::function<void(const json::object&)>& print) {
  auto paths = ResolvePaths(g);
  if (!paths.ok()) return Fail(paths.status());
  auto server = FindServer(*paths);
  if (!server.ok()) return Fail(server.status());
  Result<std::string> out = std::string();
  if (*server) {
    out = remote(**server);
  } else {
    auto app = OpenEmbedded(*paths, Mode::kOneShot);
    if (!app.ok()) return Fail(app.status());
    out = local(**app);
  }
  if (!out.ok()) return Fail(out.status());
  auto obj = ParseJsonObject(*out);
  if (!obj.ok()) return Fail(obj.status());
  print(*obj);
  return 0;
}

void PrintRuns(const json::object& o) {
  const json::array* runs = nullptr;
  json::array single;
  if (o.contains("runs")) {
    runs = &o.at("runs").as_array();
  } else {
    single.push_back(o);
    runs = &single;
  }
  std::printf("%-36s %-28s %-10s %9s %9s %9s  %s\n", "run", "job", "status", "rows_out", "rejected",
              "ms", "error");
  for (const auto& rv : *runs) {
    const auto& r = rv.as_object();
    double ms = r.contains("duration_ms") ? r.at("duration_ms").to_number<double>() : 0;
    std::string err;
    if (r.contains("error")) err = std::string(r.at("error").at("message").as_string());
    if (err.size() > 160) err = err.substr(0, 157) + "...";
    std::printf(
        "%-36s %-28s %-10s %9lld %9lld %9.1f  %s\n", std::string(r.at("id").as_string()).c_str(),
        std::string(r.at("job").as_string()).c_str(),
        std::string(r.at("status").as_string()).c_str(),
        static_cast<long long>(r.at("rows_out").to_number<int64_t>()),
        static_cast<long long>(r.at("rows_rejected").to_number<int64_t>()), ms, err.c_str());
  }
}

std::string RunJsonViaApi(const std::vector<flow::RunInfo>& runs) { return api::RunsToJson(runs); }

int CmdApply(const Globals& g, bool dry_run) {
  std::string body = dry_run ? R"({"dry_run":true})" : R"({"dry_run":false})";
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/apply", body); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(batch::ApplyReport rep, app.Apply(dry_run));
        return api::ApplyReportToJson(rep);
      },
      [&](const json::object& o) {
        const auto& changes = o.at("changes").as_array();
        if (changes.empty()) std::cout << "no changes: the catalog matches the project\n";
        for (const auto& cv : changes) {
          const auto& c = cv.as_object();
          std::string action(c.at("action").as_string());
          char mark = action == "create" ? '+' : action == "update" ? '~' : '-';
          std::cout << mark << " " << std::string(c.at("kind").as_string()) << " "
                    << std::string(c.at("name").as_string());
          if (c.contains("note"))
            std::cout << "  (" << std::string(c.at("note").as_string()) << ")";
          std::cout << "\n";
        }
        if (dry_run && !changes.empty()) std::cout << "(dry run: nothing was applied)\n";
      });
}

int CmdBuild(const Globals& g) {
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/build", ""); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(auto runs, app.batch()->Build());
        return RunJsonViaApi(runs);
      },
      PrintRuns);
}

int CmdRun(const Globals& g, const std::string& kind, const std::string& name,
           const std::string& start, const std::string& end, bool full_refresh) {
  std::string job = kind + ":" + name;
  std::string params;
  JsonWriter p(&params);
  p.BeginObject();
  if (!start.empty()) p.Key("start").String(start);
  if (!end.empty()) p.Key("end").String(end);
  if (full_refresh) p.Key("full_refresh").Bool(true);
  p.EndObject();
  std::string body;
  JsonWriter w(&body);
  w.BeginObject()
      .Key("job")
      .String(job)
      .Key("params")
      .Raw(params)
      .Key("wait")
      .Bool(true)
      .EndObject();
  int rc = 0;
  int out = Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/runs", body); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(auto run, app.batch()->Run(job, params, true));
        return RunJsonViaApi({run});
      },
      [&](const json::object& o) {
        PrintRuns(o);
        const json::object& r = o.contains("runs") ? o.at("runs").as_array().at(0).as_object() : o;
        if (r.at("status").as_string() != "succeeded") rc = 1;
      });
  return out ? out : rc;
}

int CmdRuns(const Globals& g, const std::string& job, int limit) {
  std::string q =
      "/api/v1/runs?limit=" + std::to_string(limit) + (job.empty() ? "" : "&job=" + job);
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "GET", q, ""); },
      [&](App& app) -> Result<std::string> {
        auto sched = app.batch()->scheduler();
        if (!sched) return Unavailable("the scheduler is not running");
        flow::RunFilter f;
        f.job = job;
        f.limit = limit;
        ASSIGN_OR_RETURN(auto runs, sched->ListRuns(f));
        return RunJsonViaApi(runs);
      },
      PrintRuns);
}

int CmdBackfill(const Globals& g, const std::string& model, const std::string& from,
                const std::string& to, const std::string& step) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject()
      .Key("model")
      .String(model)
      .Key("from")
      .String(from)
      .Key("to")
      .String(to)
      .Key("step")
      .String(step)
      .EndObject();
  int rc = 0;
  int out = Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/backfills", body); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(Micros f, ParseRfc3339(from));
        ASSIGN_OR_RETURN(Micros t, ParseRfc3339(to));
        ASSIGN_OR_RETURN(Micros st, api::ParseStep(step));
        ASSIGN_OR_RETURN(auto runs, app.batch()->Backfill(model, f, t, st));
        return RunJsonViaApi(runs);
      },
      [&](const json::object& o) {
        PrintRuns(o);
        for (const auto& r : o.at("runs").as_array()) {
          if (r.at("status").as_string() != "succeeded") rc = 1;
        }
      });
  return out ? out : rc;
}

}  // namespace

namespace {

// ---- features: list, get, materialize -----------------------------------------------------------

int CmdFeaturesList(const Globals& g) {
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "GET", "/api/v1/features", ""); },
      [&](App& app) -> Result<std::string> {
        auto plan = app.realtime()->plan();
        if (!plan) return Unavailable("the feature store is not loaded");
        return api::FeatureRegistryToJson(plan->registry());
      },
      [&](const json::object& o) {
        for (const auto& ev : o.at("entities").as_array()) {
          const auto& e = ev.as_object();
          std::cout << "entity  " << std::string(e.at("name").as_string()) << " ("
                    << std::string(e.at("join_key").as_string()) << ", "
                    << std::string(e.at("type").as_string()) << ")\n";
        }
        for (const auto& vv : o.at("views").as_array()) {
          const auto& v = vv.as_object();
          std::cout << "view    " << std::string(v.at("name").as_string()) << " ("
                    << std::string(v.at("kind").as_string()) << " from "
                    << std::string(v.at("source").as_string()) << ", "
                    << v.at("features").as_array().size() << " features)\n";
        }
        for (const auto& sv : o.at("services").as_array()) {
          const auto& svc = sv.as_object();
          std::cout << "service " << std::string(svc.at("name").as_string()) << ":";
          for (const auto& f : svc.at("features").as_array()) {
            std::cout << " " << std::string(f.as_string());
          }
          std::cout << "\n";
        }
      });
}

int CmdFeaturesGet(const Globals& g, const std::string& service, const std::string& entity) {
  auto eq = entity.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == entity.size()) {
    return Fail(InvalidArgument("--entity must be join_key=value, e.g. customer_id=42"));
  }
  const std::string key = entity.substr(0, eq), value = entity.substr(eq + 1);
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  const bool integer = ec == std::errc() && ptr == value.data() + value.size();
  std::string body;
  JsonWriter w(&body);
  w.BeginObject().Key("feature_service").String(service).Key("entities").BeginObject().Key(key);
  w.BeginArray();
  if (integer) {
    w.Int(n);
  } else {
    w.String(value);
  }
  w.EndArray().EndObject().EndObject();
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/features/online", body); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(features::OnlineRequest req, api::ParseOnlineRequest(body));
        ASSIGN_OR_RETURN(features::OnlineResponse resp, app.realtime()->OnlineFeatures(req));
        return api::OnlineResponseToJson(req, resp);
      },
      [&](const json::object& o) {
        std::printf("%-40s %-24s %-8s %s\n", "feature", "value", "status", "event_timestamp");
        for (const auto& ev : o.at("entities").as_array()) {
          for (const auto& f : ev.at("features").as_object()) {
            const auto& v = f.value().as_object();
            std::string val = json::serialize(v.at("value"));
            std::string ts = v.at("event_timestamp").is_string()
                                 ? std::string(v.at("event_timestamp").as_string())
                                 : "";
            std::printf("%-40s %-24s %-8s %s\n", std::string(f.key()).c_str(), val.c_str(),
                        std::string(v.at("status").as_string()).c_str(), ts.c_str());
          }
        }
      });
}

int CmdFeaturesMaterialize(const Globals& g, const std::string& view, bool full) {
  std::string path = "/api/v1/features/views/" + view + "/materialize" + (full ? "?full=true" : "");
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", path, ""); },
      [&](App& app) -> Result<std::string> {
        ASSIGN_OR_RETURN(auto done, app.realtime()->MaterializeRun(view, full));
        return api::MaterializeReportToJson(done.first, done.second);
      },
      [&](const json::object& o) {
        std::cout << "materialized " << std::string(o.at("view").as_string())
                  << (o.at("full").as_bool() ? " (full)" : " (incremental)") << ": "
                  << o.at("rows_loaded").to_number<int64_t>() << " entities from version "
                  << o.at("source_version").to_number<int64_t>() << "; watermark "
                  << std::string(o.at("watermark").as_string()) << "; run "
                  << std::string(o.at("run_id").as_string()) << "\n";
      });
}

// ---- features dataset: create, list, show (point-in-time datasets) ------------------------------

int CmdDatasetCreate(const Globals& g, const std::string& name, const std::string& entities_sql,
                     const std::string& entities_table, const std::vector<std::string>& features,
                     const std::string& service) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject().Key("name").String(name);
  if (!entities_sql.empty()) w.Key("entities_sql").String(entities_sql);
  if (!entities_table.empty()) w.Key("entities_table").String(entities_table);
  if (!service.empty()) w.Key("feature_service").String(service);
  if (!features.empty()) {
    w.Key("features").BeginArray();
    for (const auto& f : features) w.String(f);
    w.EndArray();
  }
  w.EndObject();
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "POST", "/api/v1/features/historical", body); },
      [&](App& app) -> Result<std::string> {
        if (app.datasets() == nullptr) return Unavailable("dataset builds are not available");
        features::HistoricalRequest req;
        req.name = name;
        req.entities_sql = entities_sql;
        req.entities_table = entities_table;
        req.features = features;
        req.feature_service = service;
        req.created_by = "cli";
        ASSIGN_OR_RETURN(features::DatasetBuild b, app.datasets()->Build(req));
        return features::DatasetBuildToJson(b);
      },
      [&](const json::object& o) {
        std::cout << "dataset " << std::string(o.at("table").as_string()) << " build "
                  << o.at("build").to_number<int64_t>() << ": "
                  << std::string(o.at("status").as_string()) << ", "
                  << o.at("rows").to_number<int64_t>() << " rows, lake version "
                  << o.at("lake_version").to_number<int64_t>() << "\n";
      });
}

int CmdDatasetShow(const Globals& g, const std::string& name) {
  const std::string path = name.empty() ? "/api/v1/datasets" : "/api/v1/datasets/" + name;
  return Dispatch(
      g, [&](const Remote& r) { return Call(r, "GET", path, ""); },
      [&](App& app) -> Result<std::string> {
        if (app.datasets() == nullptr) return Unavailable("dataset builds are not available");
        std::vector<features::DatasetBuild> builds;
        if (name.empty()) {
          ASSIGN_OR_RETURN(builds, app.datasets()->List());
        } else {
          ASSIGN_OR_RETURN(builds, app.datasets()->Builds(name));
        }
        std::string out = name.empty() ? R"({"datasets":[)" : R"({"builds":[)";
        for (size_t i = 0; i < builds.size(); ++i) {
          if (i) out += ',';
          out += features::DatasetBuildToJson(builds[i]);
        }
        return out + "]}";
      },
      [&](const json::object& o) {
        const auto& arr = o.contains("datasets") ? o.at("datasets") : o.at("builds");
        std::printf("%-24s %6s %-10s %10s %8s %s\n", "name", "build", "status", "rows", "version",
                    "started_at");
        for (const auto& bv : arr.as_array()) {
          const auto& b = bv.as_object();
          std::printf("%-24s %6lld %-10s %10lld %8lld %s\n",
                      std::string(b.at("name").as_string()).c_str(),
                      static_cast<long long>(b.at("build").to_number<int64_t>()),
                      std::string(b.at("status").as_string()).c_str(),
                      static_cast<long long>(b.at("rows").to_number<int64_t>()),
                      static_cast<long long>(b.at("lake_version").to_number<int64_t>()),
                      std::string(b.at("started_at").as_string()).c_str());
        }
      });
}
}  // namespace

int Main(int argc, char** argv) {
  BlockStopSignals();
  CLI::App cli{"lakeloop: lakehouse, streaming features and the MLOps loop in one server"};
  cli.require_subcommand(1);
  Globals g;
  cli.add_option("--project", g.project, "project folder with the definitions (default: .)");
  cli.add_option("--data", g.data,
                 "data folder: catalog, lake, logs (default: <project>/.lakeloop)");
  cli.add_option("--log-level", g.log_level, "trace|debug|info|warn|error");
  // The HTTP client's read timeout (HttpClientOptions::FromEnv reads it from the environment).
  cli.add_option_function<double>(
         "--timeout",
         [](double seconds) {
           std::string ms = std::to_string(static_cast<int64_t>(seconds * 1000));
           ::setenv("LAKELOOP_READ_TIMEOUT_MS", ms.c_str(), 1);
         },
         "longest wait for the running server's answer, in seconds (default 600; also "
         "LAKELOOP_READ_TIMEOUT_MS, and LAKELOOP_CONNECT_TIMEOUT_MS for connecting, default 5 s)")
      ->check(CLI::PositiveNumber);

  std::optional<std::string> listen;
  auto* up = cli.add_subcommand("up", "start the server on this data directory");
  up->add_option("--listen", listen, "HOST:PORT (default from lakeloop.yaml, else 127.0.0.1:8080)");

  std::string query, format = "table";
  int64_t limit = -1;
  auto* sqlc = cli.add_subcommand("sql", "run one SELECT or EXPLAIN over the lake");
  sqlc->add_option("query", query, "the SQL")->required();
  sqlc->add_option("--format", format, "table|csv|json")
      ->check(CLI::IsMember({"table", "csv", "json"}));
  sqlc->add_option("--limit", limit, "at most this many rows");

  std::string tables_format = "table";
  auto* tables = cli.add_subcommand("tables", "list lake tables");
  tables->add_option("--format", tables_format, "table|json")
      ->check(CLI::IsMember({"table", "json"}));

  std::string load_table, load_file, load_mode = "append", load_format;
  auto* load =
      cli.add_subcommand("load", "commit a CSV, JSON-lines or Parquet file to a lake table");
  load->add_option("table", load_table, "<zone>.<table>")->required();
  load->add_option("file", load_file, "the file")->required();
  load->add_option("--mode", load_mode, "append|overwrite")
      ->check(CLI::IsMember({"append", "overwrite"}));
  load->add_option("--format", load_format, "csv|json|parquet (default: from the extension)");

  auto* token = cli.add_subcommand("token", "API tokens");
  token->require_subcommand(1);
  std::string role, token_name;
  auto* create =
      token->add_subcommand("create", "create a token; prints it alone on the last line");
  create->add_option("--role", role, "reader|writer|admin")
      ->required()
      ->check(CLI::IsMember({"reader", "writer", "admin"}));
  create->add_option("--name", token_name, "a note on who uses it");

  bool dry_run = false;
  auto* apply = cli.add_subcommand("apply", "validate the project's definitions and apply them");
  apply->add_flag("--dry-run", dry_run, "show what would change, change nothing");

  auto* build =
      cli.add_subcommand("build", "load every source, then build every model with its tests");

  auto* run = cli.add_subcommand("run", "run one source or model now");
  run->require_subcommand(1);
  std::string run_name, run_start, run_end;
  bool full_refresh = false;
  auto* run_source = run->add_subcommand("source", "load one source");
  run_source->add_option("name", run_name, "source name")->required();
  run_source->add_flag("--full-refresh", full_refresh, "reload everything");
  auto* run_model = run->add_subcommand("model", "build one model");
  run_model->add_option("name", run_name, "model name")->required();
  run_model->add_option("--start", run_start, "interval start (RFC 3339), incremental models");
  run_model->add_option("--end", run_end, "interval end (RFC 3339), incremental models");
  run_model->add_flag("--full-refresh", full_refresh, "rebuild from all input data");

  std::string runs_job;
  int runs_limit = 20;
  auto* runs = cli.add_subcommand("runs", "run history, newest first");
  runs->add_option("--job", runs_job, "only runs of this job (e.g. model:daily_revenue)");
  runs->add_option("--limit", runs_limit, "at most this many");

  std::string bf_model, bf_from, bf_to, bf_step = "1d";
  auto* backfill = cli.add_subcommand("backfill", "rebuild an incremental model over a date range");
  backfill->add_option("model", bf_model, "model name")->required();
  backfill->add_option("--from", bf_from, "first day (2026-10-01 or RFC 3339)")->required();
  backfill->add_option("--to", bf_to, "end, exclusive")->required();
  backfill->add_option("--step", bf_step, "interval per run: 1d, 6h, 15m");

  auto* feats = cli.add_subcommand("features", "the feature store: list, get, materialize");
  feats->require_subcommand(1);
  auto* feats_list = feats->add_subcommand("list", "entities, feature views and services");
  std::string fs_service, fs_entity, fs_view;
  bool fs_full = false;
  auto* feats_get = feats->add_subcommand("get", "a feature service's online values of an entity");
  feats_get->add_option("service", fs_service, "feature service")->required();
  feats_get->add_option("--entity", fs_entity, "join_key=value, e.g. customer_id=42")->required();
  auto* feats_mat = feats->add_subcommand(
      "materialize", "load a batch view's newest rows into the online store now");
  feats_mat->add_option("view", fs_view, "batch feature view")->required();
  feats_mat->add_flag("--full", fs_full, "drop the view's online rows and reload all");

  // features dataset create|list|show
  std::string ds_name, ds_sql, ds_table, ds_service;
  std::vector<std::string> ds_features;
  auto* feats_ds = feats->add_subcommand("dataset", "point-in-time training datasets");
  feats_ds->require_subcommand(1);
  auto* ds_create = feats_ds->add_subcommand(
      "create", "build datasets.<name>: entity rows + features as of each row's event_timestamp");
  ds_create->add_option("name", ds_name, "dataset name")->required();
  auto* ds_sql_opt =
      ds_create->add_option("--entities-sql", ds_sql,
                            "SELECT <join key>, <time> AS event_timestamp[, label...] FROM ...");
  ds_create->add_option("--entities-table", ds_table, "or a lake table (zone.table)")
      ->excludes(ds_sql_opt);
  auto* ds_feat_opt = ds_create->add_option("--features", ds_features, "view:feature ...");
  ds_create->add_option("--service", ds_service, "or a feature service")->excludes(ds_feat_opt);
  auto* ds_list = feats_ds->add_subcommand("list", "datasets and their latest build");
  auto* ds_show = feats_ds->add_subcommand("show", "every build of a dataset");
  ds_show->add_option("name", ds_name, "dataset name")->required();

  auto* version = cli.add_subcommand("version", "print the version");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (!g.log_level.empty() && !up->parsed()) {
    if (auto s = InitLogging(g.log_level); !s.ok()) return Fail(s);
  } else if (!up->parsed()) {
    (void)InitLogging("warn");
  }
  if (up->parsed()) return CmdUp(g, listen);
  if (sqlc->parsed()) return CmdSql(g, query, format, limit);
  if (tables->parsed()) return CmdTables(g, tables_format);
  if (load->parsed()) return CmdLoad(g, load_table, load_file, load_mode, load_format);
  if (create->parsed()) return CmdTokenCreate(g, role, token_name);
  if (apply->parsed()) return CmdApply(g, dry_run);
  if (build->parsed()) return CmdBuild(g);
  if (run_source->parsed()) return CmdRun(g, "source", run_name, "", "", full_refresh);
  if (run_model->parsed()) return CmdRun(g, "model", run_name, run_start, run_end, full_refresh);
  if (runs->parsed()) return CmdRuns(g, runs_job, runs_limit);
  if (backfill->parsed()) return CmdBackfill(g, bf_model, bf_from, bf_to, bf_step);
  if (feats_list->parsed()) return CmdFeaturesList(g);
  if (feats_get->parsed()) return CmdFeaturesGet(g, fs_service, fs_entity);
  if (feats_mat->parsed()) return CmdFeaturesMaterialize(g, fs_view, fs_full);
  if (ds_create->parsed()) {
    return CmdDatasetCreate(g, ds_name, ds_sql, ds_table, ds_features, ds_service);
  }
  if (ds_list->parsed()) return CmdDatasetShow(g, "");
  if (ds_show->parsed()) return CmdDatasetShow(g, ds_name);
  if (version->parsed()) {
    std::cout << "lakeloop " << kVersion << "\n";
    return 0;
  }
  return 1;
}

}  // namespace lakeloop::app
