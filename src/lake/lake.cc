#include "lake/lake.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/json.h"

namespace lakeloop::lake {
namespace json = boost::json;
using catalog::Rows;
using catalog::Value;

// ---- names, modes, schemas ----------------------------------------------------------------------

Status ValidateIdentifier(std::string_view what, std::string_view id) {
  bool ok = !id.empty() && id.size() <= 63 && (std::islower(id[0]) || id[0] == '_');
  for (char c : id) ok = ok && (std::islower(c) || std::isdigit(c) || c == '_');
  if (!ok) {
    return InvalidArgument(std::string(what) + " '" + std::string(id.substr(0, 80)) +
                           "' must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 63)");
  }
  return Status::Ok();
}

Result<TableRef> ParseTableRef(std::string_view text) {
  size_t dot = text.find('.');
  if (dot == std::string_view::npos || text.find('.', dot + 1) != std::string_view::npos) {
    return InvalidArgument("table name '" + std::string(text.substr(0, 80)) +
                           "' must be <zone>.<table>");
  }
  TableRef ref{std::string(text.substr(0, dot)), std::string(text.substr(dot + 1))};
  RETURN_IF_ERROR(ValidateIdentifier("zone", ref.zone));
  RETURN_IF_ERROR(ValidateIdentifier("table", ref.name));
  if (ref.zone.size() >= 10 && ref.zone.ends_with("_snapshots")) {
    return InvalidArgument("zone names ending in _snapshots are reserved for time travel");
  }
  if (ref.zone == "main" || ref.zone == "information_schema" || ref.zone == "pg_catalog" ||
      ref.zone == "temp") {
    return InvalidArgument("zone name '" + ref.zone + "' is reserved");
  }
  return ref;
}

std::string_view WriteModeName(WriteMode m) {
  return m == WriteMode::kAppend ? "append" : "overwrite";
}

Result<WriteMode> ParseWriteMode(std::string_view s) {
  if (s == "append") return WriteMode::kAppend;
  if (s == "overwrite") return WriteMode::kOverwrite;
  return InvalidArgument("mode must be append or overwrite, not '" + std::string(s) + "'");
}

std::string SchemaToJson(const std::vector<Column>& schema) {
  std::string out;
  JsonWriter w(&out);
  w.BeginArray();
  for (const auto& c : schema)
    w.BeginObject().Key("name").String(c.name).Key("type").String(c.type).EndObject();
  w.EndArray();
  return out;
}

Result<std::vector<Column>> SchemaFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::value v, ParseJson(text));
  std::vector<Column> out;
  if (!v.is_array()) return Status(Code::kDataLoss, "schema is not a JSON array");
  for (const auto& e : v.as_array()) {
    if (!e.is_object() || !e.as_object().contains("name") || !e.as_object().contains("type")) {
      return Status(Code::kDataLoss, "schema entry without name/type");
    }
    out.push_back({std::string(e.at("name").as_string()), std::string(e.at("type").as_string())});
  }
  return out;
}

namespace {

std::string Join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out.push_back(sep);
    out += v[i];
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string TablePrefix(const TableRef& t) { return t.zone + "/" + t.name + "/"; }

std::string VersionName(int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "v%08lld", static_cast<long long>(v));
  return buf;
}

std::string DescribeSchemaDiff(const std::vector<Column>& have, const std::vector<Column>& got) {
  for (size_t i = 0; i < std::max(have.size(), got.size()); ++i) {
    if (i >= have.size()) return "new column '" + got[i].name + "' " + got[i].type;
    if (i >= got.size()) return "missing column '" + have[i].name + "' " + have[i].type;
    if (have[i].name != got[i].name) {
      return "column " + std::to_string(i + 1) + " is '" + got[i].name + "', table has '" +
             have[i].name + "'";
    }
    if (have[i].type != got[i].type) {
      return "column '" + have[i].name + "' is " + got[i].type + ", table has " + have[i].type;
    }
  }
  return "schemas differ";
}

constexpr std::string_view kSnapshotColumns =
    "version, committed_at, operation, added_rows, total_rows, total_bytes, file_count, "
    "schema_json, write_id, expired_at";

Result<Snapshot> SnapshotFromRow(const Rows& r, size_t i) {
  Snapshot s;
  s.version = r.Int(i, 0);
  s.committed_at = r.Int(i, 1);
  s.operation = r.Text(i, 2);
  s.added_rows = r.Int(i, 3);
  s.total_rows = r.Int(i, 4);
  s.total_bytes = r.Int(i, 5);
  s.file_count = r.Int(i, 6);
  ASSIGN_OR_RETURN(s.schema, SchemaFromJson(r.Text(i, 7)));
  s.write_id = r.Text(i, 8);
  s.expired = !r.IsNull(i, 9);
  return s;
}

// Files of snapshot `version` (their current keys), from inside a transaction or the store.
template <typename Q>
Result<std::vector<DataFile>> FilesOf(Q& q, int64_t table_id, int64_t version) {
  ASSIGN_OR_RETURN(Rows r, q.Query("SELECT CASE WHEN removed_in IS NULL THEN live_key ELSE "
                                   "history_key END, rows, bytes FROM lake_files WHERE "
                                   "table_id = ? AND added_in <= ? AND (removed_in IS NULL OR "
                                   "removed_in > ?) ORDER BY added_in, live_key",
                                   {table_id, version, version}));
  std::vector<DataFile> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back({r.Text(i, 0), r.Int(i, 1), r.Int(i, 2)});
  return out;
}

}  // namespace

// ---- Lake ---------------------------------------------------------------------------------------

Lake::Lake(ObjectStore* store, catalog::Store* catalog, LakeOptions options)
    : store_(store), catalog_(catalog), options_(options) {}

std::vector<catalog::Migration> Lake::Migrations() {
  return {{"lake", 1,
           "CREATE TABLE lake_tables ("
           " id BIGINT PRIMARY KEY, zone TEXT NOT NULL, name TEXT NOT NULL,"
           " current_version BIGINT NOT NULL DEFAULT 0,"
           " schema_json TEXT NOT NULL DEFAULT '[]', partition_by TEXT NOT NULL DEFAULT '',"
           " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, UNIQUE (zone, name));"
           "CREATE TABLE lake_snapshots ("
           " table_id BIGINT NOT NULL, version BIGINT NOT NULL, committed_at BIGINT NOT NULL,"
           " operation TEXT NOT NULL, added_rows BIGINT NOT NULL, total_rows BIGINT NOT NULL,"
           " total_bytes BIGINT NOT NULL, file_count BIGINT NOT NULL, schema_json TEXT NOT NULL,"
           " write_id TEXT NOT NULL, state TEXT NOT NULL, superseded_at BIGINT,"
           " expired_at BIGINT, PRIMARY KEY (table_id, version));"
           "CREATE TABLE lake_files ("
           " table_id BIGINT NOT NULL, live_key TEXT NOT NULL, history_key TEXT NOT NULL,"
           " staged_key TEXT NOT NULL, rows BIGINT NOT NULL, bytes BIGINT NOT NULL,"
           " added_in BIGINT NOT NULL, removed_in BIGINT, PRIMARY KEY (table_id, live_key));"
           "CREATE INDEX lake_files_added ON lake_files (table_id, added_in);"
           "CREATE INDEX lake_snapshots_state ON lake_snapshots (state)"}};
}

Result<Staging> Lake::BeginWrite(const TableRef& table) {
  RETURN_IF_ERROR(ValidateIdentifier("zone", table.zone));
  RETURN_IF_ERROR(ValidateIdentifier("table", table.name));
  Staging s;
  s.table = table;
  s.write_id = NewUuid();
  s.prefix = TablePrefix(table) + "_staging/" + s.write_id + "/";
  s.local_dir = store_->LocalPath(s.prefix);
  if (!s.local_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(s.local_dir, ec);
    if (ec) return IoError("create staging folder: " + ec.message());
  }
  std::lock_guard<std::mutex> lock(mu_);
  live_writes_.push_back(s.prefix);
  return s;
}

Status Lake::AbortWrite(const Staging& staging) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(live_writes_, staging.prefix);
  }
  return store_->Delete(staging.prefix.substr(0, staging.prefix.size() - 1));
}

Result<Snapshot> Lake::Commit(const CommitRequest& req) {
  const TableRef& t = req.staging.table;
  if (req.schema.empty()) return InvalidArgument("a commit needs the files' schema");
  if (!req.replaces.empty() && req.mode != WriteMode::kAppend) {
    return InvalidArgument("replacing files is an append that removes them, not an overwrite");
  }
  for (const auto& p : req.partition_by) RETURN_IF_ERROR(ValidateIdentifier("partition column", p));
  // 1) Make the staged files durable and learn their sizes.
  ASSIGN_OR_RETURN(auto listed, store_->List(req.staging.prefix));
  RETURN_IF_ERROR(store_->Sync(req.staging.prefix));
  CrashPoint("lake.commit.staged");
  struct Planned {
    std::string staged, live, history;
    int64_t rows, bytes;
  };
  std::vector<Planned> planned;
  int64_t added_rows = 0;
  for (const auto& f : req.files) {
    RETURN_IF_ERROR(ValidateKey(f.key));
    std::string staged = req.staging.prefix + f.key;
    auto it = std::find_if(listed.begin(), listed.end(),
                           [&](const ObjectInfo& o) { return o.key == staged; });
    if (it == listed.end()) return InvalidArgument("staged file not found: " + f.key);
    // Keep the hive partition folders of the staged key; give the file a unique name.
    std::string dir;
    size_t slash = f.key.rfind('/');
    if (slash != std::string::npos) dir = f.key.substr(0, slash + 1);
    if (!dir.empty() && dir[0] == '_') return InvalidArgument("staged folder may not start with _");
    std::string name = "part-" + NewUuid() + ".parquet";
    // The history name keeps the partition folders too, so time-travel views of a partitioned
    // table still derive the partition columns (and DuckDB sees one hive layout).
    planned.push_back({staged, TablePrefix(t) + dir + name,
                       TablePrefix(t) + "_history/" + dir + name, f.rows, it->size});
    added_rows += f.rows;
  }

  // 2) The commit point: one catalog transaction, compare-and-swap on the table version.
  Micros now = NowMicros();
  int64_t table_id = 0, version = 0;
  Snapshot snap;
  {
    ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
    ASSIGN_OR_RETURN(Rows cur, txn->Query("SELECT id, current_version, schema_json FROM "
                                          "lake_tables WHERE zone = ? AND name = ?",
                                          {t.zone, t.name}));
    int64_t current = 0;
    if (cur.empty()) {
      ASSIGN_OR_RETURN(Rows next, txn->Query("SELECT COALESCE(MAX(id), 0) + 1 FROM lake_tables"));
      table_id = next.Int(0, 0);
      RETURN_IF_ERROR(
          txn->Exec("INSERT INTO lake_tables (id, zone, name, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    {table_id, t.zone, t.name, now, now}));
    } else {
      table_id = cur.Int(0, 0);
      current = cur.Int(0, 1);
      if (current > 0 && req.mode == WriteMode::kAppend) {
        ASSIGN_OR_RETURN(auto have, SchemaFromJson(cur.Text(0, 2)));
        if (have != req.schema) {
          return Conflict("cannot append to " + t.ToString() + ": " +
                          DescribeSchemaDiff(have, req.schema) + " (overwrite to change it)");
        }
      }
    }
    if (req.expected_version && *req.expected_version != current) {
      return Conflict(t.ToString() + " is at version " + std::to_string(current) +
                      ", this write expected " + std::to_string(*req.expected_version) +
                      " (a concurrent commit won; retry)");
    }
    version = current + 1;
    if (req.mode == WriteMode::kOverwrite) {
      RETURN_IF_ERROR(txn->Exec(
          "UPDATE lake_files SET removed_in = ? WHERE table_id = ? AND removed_in IS NULL",
          {version, table_id}));
    }
    for (const auto& key : req.replaces) {
      RETURN_IF_ERROR(
          txn->Exec("UPDATE lake_files SET removed_in = ? WHERE table_id = ? AND live_key = ? AND "
                    "removed_in IS NULL",
                    {version, table_id, key}));
      if (txn->Changes() != 1) {
        return Conflict("cannot replace " + key + ": it is not a file of " + t.ToString() + " v" +
                        std::to_string(current) + " (a concurrent commit removed it?)");
      }
    }
    for (const auto& p : planned) {
      RETURN_IF_ERROR(
          txn->Exec("INSERT INTO lake_files (table_id, live_key, history_key, "
                    "staged_key, rows, bytes, added_in) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    {table_id, p.live, p.history, p.staged, p.rows, p.bytes, version}));
    }
    ASSIGN_OR_RETURN(Rows totals,
                     txn->Query("SELECT COUNT(*), COALESCE(SUM(rows), 0), COALESCE(SUM(bytes), 0) "
                                "FROM lake_files WHERE table_id = ? AND removed_in IS NULL",
                                {table_id}));
    snap.version = version;
    snap.committed_at = now;
    snap.operation = req.replaces.empty() ? std::string(WriteModeName(req.mode)) : "replace";
    snap.added_rows = added_rows;
    snap.file_count = totals.Int(0, 0);
    snap.total_rows = totals.Int(0, 1);
    snap.total_bytes = totals.Int(0, 2);
    snap.schema = req.schema;
    snap.write_id = req.staging.write_id;
    RETURN_IF_ERROR(txn->Exec(
        "INSERT INTO lake_snapshots (table_id, version, committed_at, operation, added_rows, "
        "total_rows, total_bytes, file_count, schema_json, write_id, state) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'committed')",
        {table_id, version, now, snap.operation, added_rows, snap.total_rows, snap.total_bytes,
         snap.file_count, SchemaToJson(req.schema), snap.write_id}));
    RETURN_IF_ERROR(
        txn->Exec("UPDATE lake_snapshots SET superseded_at = ? WHERE table_id = ? "
                  "AND version = ?",
                  {now, table_id, current}));
    RETURN_IF_ERROR(
        txn->Exec("UPDATE lake_tables SET current_version = ?, schema_json = ?, "
                  "partition_by = ?, updated_at = ? WHERE id = ?",
                  {version, SchemaToJson(req.schema), Join(req.partition_by, ','), now, table_id}));
    if (req.in_transaction) RETURN_IF_ERROR(req.in_transaction(*txn, snap));
    CrashPoint("lake.commit.before_catalog");
    RETURN_IF_ERROR(txn->Commit());
  }
  CrashPoint("lake.commit.after_catalog");
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(live_writes_, req.staging.prefix);
  }
  // 3) Roll forward. A failure here is repaired by Recover(); the commit stands.
  Status s = RollForward(table_id, version);
  if (!s.ok()) {
    spdlog::error("lake: roll forward of {} v{} failed (Recover() completes it): {}", t.ToString(),
                  version, s.ToString());
  }
  return snap;
}

Status Lake::RollForward(int64_t table_id, int64_t version) {
  ASSIGN_OR_RETURN(Rows tr,
                   catalog_->Query("SELECT zone, name FROM lake_tables WHERE id = ?", {table_id}));
  if (tr.empty()) return Internal("roll forward: no table " + std::to_string(table_id));
  TableRef t{tr.Text(0, 0), tr.Text(0, 1)};
  // Superseded live files get a second name under _history before anything else moves.
  ASSIGN_OR_RETURN(Rows removed,
                   catalog_->Query("SELECT live_key, history_key FROM lake_files WHERE table_id "
                                   "= ? AND removed_in = ?",
                                   {table_id, version}));
  for (size_t i = 0; i < removed.size(); ++i) {
    ASSIGN_OR_RETURN(bool hist, store_->Exists(removed.Text(i, 1)));
    if (hist) continue;
    ASSIGN_OR_RETURN(bool live, store_->Exists(removed.Text(i, 0)));
    if (!live) {
      return Status(Code::kDataLoss, "file of " + t.ToString() + " missing: " + removed.Text(i, 0));
    }
    RETURN_IF_ERROR(store_->Copy(removed.Text(i, 0), removed.Text(i, 1)));
    CrashPoint("lake.roll.history_link");
  }
  ASSIGN_OR_RETURN(Rows added,
                   catalog_->Query("SELECT staged_key, live_key FROM lake_files WHERE table_id = "
                                   "? AND added_in = ?",
                                   {table_id, version}));
  for (size_t i = 0; i < added.size(); ++i) {
    ASSIGN_OR_RETURN(bool live, store_->Exists(added.Text(i, 1)));
    if (live) continue;
    ASSIGN_OR_RETURN(bool staged, store_->Exists(added.Text(i, 0)));
    if (!staged) {
      return Status(Code::kDataLoss, "staged file of " + t.ToString() + " v" +
                                         std::to_string(version) + " missing: " + added.Text(i, 0));
    }
    RETURN_IF_ERROR(store_->Move(added.Text(i, 0), added.Text(i, 1)));
    CrashPoint("lake.roll.moved_file");
  }
  RETURN_IF_ERROR(WriteManifest(t, table_id, version));
  CrashPoint("lake.roll.manifest");
  ASSIGN_OR_RETURN(Rows w, catalog_->Query("SELECT write_id FROM lake_snapshots WHERE table_id = ? "
                                           "AND version = ?",
                                           {table_id, version}));
  if (!w.empty()) RETURN_IF_ERROR(store_->Delete(TablePrefix(t) + "_staging/" + w.Text(0, 0)));
  RETURN_IF_ERROR(
      catalog_->Exec("UPDATE lake_snapshots SET state = 'published' WHERE table_id = "
                     "? AND version = ?",
                     {table_id, version}));
  CrashPoint("lake.roll.published");
  ASSIGN_OR_RETURN(TableInfo info, GetTable(t));
  Notify(info);  // views now read the new files and _history names
  Micros after = NowMicros();
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < removed.size(); ++i) {
    pending_unlinks_.push_back({removed.Text(i, 0), after});
  }
  return Status::Ok();
}

Status Lake::WriteManifest(const TableRef& t, int64_t table_id, int64_t version) {
  ASSIGN_OR_RETURN(Snapshot snap, GetSnapshot(t, version));
  ASSIGN_OR_RETURN(auto files, FilesOf(*catalog_, table_id, version));
  json::object m;
  m["table"] = t.ToString();
  m["version"] = version;
  m["committed_at"] = FormatRfc3339(snap.committed_at);
  m["operation"] = snap.operation;
  m["row_count"] = snap.total_rows;
  json::array schema;
  for (const auto& c : snap.schema)
    schema.push_back(json::object{{"name", c.name}, {"type", c.type}});
  m["schema"] = std::move(schema);
  json::array fa;
  std::string prefix = TablePrefix(t);
  for (const auto& f : files) {
    // Paths relative to the table folder, so the lake can be moved or mounted elsewhere.
    fa.push_back(
        json::object{{"path", f.key.substr(prefix.size())}, {"rows", f.rows}, {"bytes", f.bytes}});
  }
  m["files"] = std::move(fa);
  std::string text = ToJson(m);
  RETURN_IF_ERROR(store_->Put(prefix + "_manifests/" + VersionName(version) + ".json", text));
  ASSIGN_OR_RETURN(TableInfo info, GetTable(t));
  if (info.current_version == version) {
    RETURN_IF_ERROR(store_->Put(prefix + "_manifests/current.json", text));
  }
  return Status::Ok();
}

Result<std::vector<TableInfo>> Lake::ListTables() {
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT zone, name, current_version, schema_json, "
                                           "partition_by, created_at, updated_at FROM "
                                           "lake_tables ORDER BY zone, name"));
  std::vector<TableInfo> out;
  for (size_t i = 0; i < r.size(); ++i) {
    TableInfo t;
    t.ref = {r.Text(i, 0), r.Text(i, 1)};
    t.current_version = r.Int(i, 2);
    ASSIGN_OR_RETURN(t.schema, SchemaFromJson(r.Text(i, 3)));
    t.partition_by = Split(r.Text(i, 4), ',');
    t.created_at = r.Int(i, 5);
    t.updated_at = r.Int(i, 6);
    out.push_back(std::move(t));
  }
  return out;
}

Result<TableInfo> Lake::GetTable(const TableRef& table) {
  ASSIGN_OR_RETURN(auto all, ListTables());
  for (auto& t : all) {
    if (t.ref == table) return std::move(t);
  }
  return NotFound("no table " + table.ToString());
}

namespace {
template <typename Q>
Result<int64_t> TableId(Q& q, const TableRef& t) {
  ASSIGN_OR_RETURN(Rows r, q.Query("SELECT id, current_version FROM lake_tables WHERE zone = ? "
                                   "AND name = ?",
                                   {t.zone, t.name}));
  if (r.empty()) return NotFound("no table " + t.ToString());
  return r.Int(0, 0);
}
}  // namespace

Result<std::vector<Snapshot>> Lake::ListSnapshots(const TableRef& table) {
  ASSIGN_OR_RETURN(int64_t id, TableId(*catalog_, table));
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT " + std::string(kSnapshotColumns) +
                                               " FROM lake_snapshots WHERE table_id = ? ORDER BY "
                                               "version",
                                           {id}));
  std::vector<Snapshot> out;
  for (size_t i = 0; i < r.size(); ++i) {
    ASSIGN_OR_RETURN(Snapshot s, SnapshotFromRow(r, i));
    out.push_back(std::move(s));
  }
  return out;
}

Result<Snapshot> Lake::GetSnapshot(const TableRef& table, int64_t version) {
  ASSIGN_OR_RETURN(int64_t id, TableId(*catalog_, table));
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT " + std::string(kSnapshotColumns) +
                                               " FROM lake_snapshots WHERE table_id = ? AND "
                                               "version = ?",
                                           {id, version}));
  if (r.empty()) {
    return NotFound("no snapshot " + std::to_string(version) + " of " + table.ToString());
  }
  return SnapshotFromRow(r, 0);
}

Result<std::vector<DataFile>> Lake::SnapshotFiles(const TableRef& table, int64_t version) {
  ASSIGN_OR_RETURN(TableInfo info, GetTable(table));
  if (version == 0) version = info.current_version;
  if (version == 0) return std::vector<DataFile>{};
  ASSIGN_OR_RETURN(Snapshot snap, GetSnapshot(table, version));
  if (snap.expired) {
    return NotFound("snapshot " + std::to_string(version) + " of " + table.ToString() +
                    " has expired (retention)");
  }
  ASSIGN_OR_RETURN(int64_t id, TableId(*catalog_, table));
  return FilesOf(*catalog_, id, version);
}

Status Lake::Recover() {
  // Roll forward every commit that passed its commit point but did not finish publishing.
  ASSIGN_OR_RETURN(Rows pending, catalog_->Query("SELECT table_id, version FROM lake_snapshots "
                                                 "WHERE state = 'committed' ORDER BY table_id, "
                                                 "version"));
  for (size_t i = 0; i < pending.size(); ++i) {
    spdlog::info("lake: completing interrupted commit (table {} v{})", pending.Int(i, 0),
                 pending.Int(i, 1));
    RETURN_IF_ERROR(RollForward(pending.Int(i, 0), pending.Int(i, 1)));
  }
  // Nothing runs yet: superseded live names can go now.
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_unlinks_.clear();
  }
  ASSIGN_OR_RETURN(auto tables, ListTables());
  ASSIGN_OR_RETURN(Rows known, catalog_->Query("SELECT live_key, history_key, removed_in FROM "
                                               "lake_files"));
  std::set<std::string> referenced;
  for (size_t i = 0; i < known.size(); ++i) {
    referenced.insert(known.IsNull(i, 2) ? known.Text(i, 0) : known.Text(i, 1));
  }
  std::set<std::string> live_writes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_writes.insert(live_writes_.begin(), live_writes_.end());
  }
  int64_t removed_files = 0;
  ASSIGN_OR_RETURN(auto all, store_->List(""));
  std::set<std::string> table_dirs;
  for (const auto& o : all) {
    // <zone>/<table>/<rest>
    std::vector<std::string> parts = Split(o.key, '/');
    if (parts.size() < 3) continue;
    table_dirs.insert(parts[0] + "/" + parts[1]);
    const std::string& third = parts[2];
    if (third == "_staging" || third == "_manifests") continue;
    // A Parquet file in the live folder or _history that no snapshot references: left by a crash
    // after its snapshot was superseded, or by an interrupted garbage collection.
    if (o.key.ends_with(".parquet") && !referenced.count(o.key)) {
      RETURN_IF_ERROR(store_->Delete(o.key));
      ++removed_files;
    }
  }
  for (const auto& t : tables) table_dirs.insert(t.ref.zone + "/" + t.ref.name);
  // Staging folders of writes that are not running: everything written before a crash.
  for (const auto& dir : table_dirs) {
    ASSIGN_OR_RETURN(auto staged, store_->List(dir + "/_staging"));
    bool live = std::any_of(live_writes.begin(), live_writes.end(),
                            [&](const std::string& p) { return p.rfind(dir + "/", 0) == 0; });
    if (live) {
      for (const auto& o : staged) {
        std::vector<std::string> parts = Split(o.key, '/');
        if (parts.size() > 3 && !live_writes.count(dir + "/_staging/" + parts[3] + "/")) {
          RETURN_IF_ERROR(store_->Delete(dir + "/_staging/" + parts[3]));
          ++removed_files;
        }
      }
    } else {
      removed_files += static_cast<int64_t>(staged.size());
      RETURN_IF_ERROR(store_->Delete(dir + "/_staging"));
    }
  }
  if (removed_files) spdlog::info("lake: removed {} orphaned files", removed_files);
  return Status::Ok();
}

Result<Lake::GcStats> Lake::CollectGarbage(Micros now, Micros oldest_query_start) {
  GcStats stats;
  // Unlink superseded live names nobody can be reading.
  {
    std::vector<PendingUnlink> keep;
    std::vector<std::string> go;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& p : pending_unlinks_) {
        if (p.not_before < oldest_query_start) {
          go.push_back(p.key);
        } else {
          keep.push_back(p);
        }
      }
      pending_unlinks_ = std::move(keep);
    }
    for (const auto& k : go) {
      RETURN_IF_ERROR(store_->Delete(k));
      ++stats.files_deleted;
    }
  }
  // Expire superseded snapshots past retention.
  Micros cutoff = now - options_.snapshot_retention_s * 1000000;
  std::set<int64_t> touched;
  {
    ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
    ASSIGN_OR_RETURN(Rows r, txn->Query("SELECT table_id, version FROM lake_snapshots WHERE "
                                        "expired_at IS NULL AND superseded_at IS NOT NULL AND "
                                        "superseded_at < ?",
                                        {cutoff}));
    for (size_t i = 0; i < r.size(); ++i) touched.insert(r.Int(i, 0));
    RETURN_IF_ERROR(
        txn->Exec("UPDATE lake_snapshots SET expired_at = ? WHERE expired_at IS NULL "
                  "AND superseded_at IS NOT NULL AND superseded_at < ?",
                  {now, cutoff}));
    stats.snapshots_expired = static_cast<int64_t>(r.size());
    RETURN_IF_ERROR(txn->Commit());
  }
  for (int64_t id : touched) {
    ASSIGN_OR_RETURN(Rows tr,
                     catalog_->Query("SELECT zone, name FROM lake_tables WHERE id = ?", {id}));
    if (tr.empty()) continue;
    ASSIGN_OR_RETURN(TableInfo info, GetTable(TableRef{tr.Text(0, 0), tr.Text(0, 1)}));
    Notify(info);  // listeners drop views of expired snapshots
  }
  // History files whose every snapshot has expired, once no query could have bound them.
  Micros marker = NowMicros();
  ASSIGN_OR_RETURN(Rows dead,
                   catalog_->Query("SELECT f.table_id, f.live_key, f.history_key FROM lake_files f "
                                   "WHERE f.removed_in IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                                   "lake_snapshots s WHERE s.table_id = f.table_id AND "
                                   "s.expired_at IS NULL AND s.version >= f.added_in AND "
                                   "s.version < f.removed_in)"));
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < dead.size(); ++i) {
    const std::string key = dead.Text(i, 2);
    bool queued = std::any_of(pending_unlinks_.begin(), pending_unlinks_.end(),
                              [&](const PendingUnlink& p) { return p.key == key; });
    if (queued) continue;
    // Forget the file first: a crash after this leaves an unreferenced file for Recover().
    RETURN_IF_ERROR(catalog_->Exec("DELETE FROM lake_files WHERE table_id = ? AND live_key = ?",
                                   {dead.Int(i, 0), dead.Text(i, 1)}));
    pending_unlinks_.push_back({key, marker});
  }
  return stats;
}

void Lake::AddCommitListener(CommitListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.push_back(std::move(listener));
}

void Lake::Notify(const TableInfo& info) {
  std::vector<CommitListener> ls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ls = listeners_;
  }
  for (auto& l : ls) l(info);
}

}  // namespace lakeloop::lake
