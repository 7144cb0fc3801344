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
  if (ref.zone[0] == '_') {
    return InvalidArgument("zone names beginning with _ are reserved for the lake's own folders");
  }
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
// Outside every table folder, so folder readers never see them.
constexpr std::string_view kFilesRoot = "_files/";
constexpr std::string_view kStagingRoot = "_staging/";
std::string StagingPrefix(const TableRef& t) { return std::string(kStagingRoot) + TablePrefix(t); }
// The immutable name of a file whose table-folder name is `live_key`.
std::string FilesKey(const std::string& live_key) { return std::string(kFilesRoot) + live_key; }

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

// Files of snapshot `version` (their immutable and table-folder names), from inside a
// transaction or the store.
template <typename Q>
Result<std::vector<DataFile>> FilesOf(Q& q, int64_t table_id, int64_t version) {
  ASSIGN_OR_RETURN(Rows r, q.Query("SELECT history_key, live_key, rows, bytes FROM lake_files "
                                   "WHERE table_id = ? AND added_in <= ? AND (removed_in IS NULL "
                                   "OR removed_in > ?) ORDER BY added_in, live_key",
                                   {table_id, version, version}));
  std::vector<DataFile> out;
  for (size_t i = 0; i < r.size(); ++i) {
    out.push_back({r.Text(i, 0), r.Text(i, 1), r.Int(i, 2), r.Int(i, 3)});
  }
  return out;
}

// Removes the empty folders below `dir` (partition folders an overwrite emptied), keeping `dir`.
// Local stores only; object stores have no folders.
void PruneEmptyFolders(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return;
  std::vector<fs::path> folders;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_directory(ec)) folders.push_back(it->path());
  }
  // Deepest first, so a folder emptied by removing its children goes too.
  std::sort(folders.begin(), folders.end(), [](const fs::path& a, const fs::path& b) {
    return a.native().size() > b.native().size();
  });
  for (const auto& f : folders) {
    if (fs::is_empty(f, ec)) fs::remove(f, ec);
  }
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
           "CREATE INDEX lake_snapshots_state ON lake_snapshots (state)"},
          {"lake", 2,
           "CREATE TABLE lake_owners ("
           " zone TEXT NOT NULL, name TEXT NOT NULL, owner_kind TEXT NOT NULL,"
           " owner_name TEXT NOT NULL, registered_at BIGINT NOT NULL, PRIMARY KEY (zone, name));"
           "CREATE TABLE lake_pins ("
           " table_id BIGINT NOT NULL, version BIGINT NOT NULL, holder TEXT NOT NULL,"
           " reason TEXT NOT NULL, pinned_at BIGINT NOT NULL,"
           " PRIMARY KEY (table_id, version, holder))"}};
}

Result<Staging> Lake::BeginWrite(const TableRef& table) {
  RETURN_IF_ERROR(ValidateIdentifier("zone", table.zone));
  RETURN_IF_ERROR(ValidateIdentifier("table", table.name));
  if (table.zone[0] == '_') return InvalidArgument("zone names beginning with _ are reserved");
  Staging s;
  s.table = table;
  s.write_id = NewUuid();
  s.prefix = StagingPrefix(table) + s.write_id + "/";
  s.local_dir = store_->LocalPath(s.prefix);
  if (!s.local_dir.empty()) {
    std::lock_guard<std::mutex> lock(staging_mu_);
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
  return DropStaging(staging.prefix);
}

Status Lake::DropStaging(const std::string& write_prefix) {
  std::string dir = write_prefix;
  while (!dir.empty() && dir.back() == '/') dir.pop_back();
  std::lock_guard<std::mutex> lock(staging_mu_);
  RETURN_IF_ERROR(store_->Delete(dir));
  // _staging/<zone>/<table>, _staging/<zone>, _staging: removed when empty (rmdir refuses others).
  for (size_t slash = dir.rfind('/'); slash != std::string::npos; slash = dir.rfind('/')) {
    dir.resize(slash);
    std::filesystem::path local = store_->LocalPath(dir);
    std::error_code ec;
    if (local.empty() || !std::filesystem::is_empty(local, ec) || ec) break;
    std::filesystem::remove(local, ec);
  }
  return Status::Ok();
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
    // The immutable name keeps the partition folders too, so views of a partitioned table
    // still derive the partition columns (and DuckDB sees one hive layout).
    std::string live = TablePrefix(t) + dir + name;
    planned.push_back({staged, live, FilesKey(live), f.rows, it->size});
    added_rows += f.rows;
  }
  // Each new file gets its immutable name before the commit point, so every key a committed
  // snapshot lists exists from the moment it is visible in the catalog. Undone if the commit
  // fails; after a crash Recover() removes names no snapshot references.
  bool committed = false;
  struct UndoLinks {
    ObjectStore* store;
    const std::vector<Planned>* planned;
    const bool* committed;
    ~UndoLinks() {
      if (*committed) return;
      for (const auto& p : *planned) {
        Status s = store->Delete(p.history);
        if (!s.ok()) spdlog::warn("lake: removing {}: {}", p.history, s.ToString());
      }
    }
  } undo{store_, &planned, &committed};
  for (const auto& p : planned) RETURN_IF_ERROR(store_->Copy(p.staged, p.history));

  // 2) The commit point: one catalog transaction, compare-and-swap on the table version.
  Micros now = NowMicros();
  int64_t table_id = 0, version = 0;
  Snapshot snap;
  {
    ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
    ASSIGN_OR_RETURN(Rows cur, txn->Query("SELECT id, current_version, schema_json FROM "
                                          "lake_tables WHERE zone = ? AND name = ?",
                                          {t.zone, t.name}));
    ASSIGN_OR_RETURN(Rows own, txn->Query("SELECT owner_kind, owner_name FROM lake_owners WHERE "
                                          "zone = ? AND name = ?",
                                          {t.zone, t.name}));
    if (!own.empty()) {
      Owner owner{own.Text(0, 0), own.Text(0, 1)};
      if (!req.owner || *req.owner != owner) return NotOwnerError(t, owner);
    }
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
          txn->Exec("UPDATE lake_files SET removed_in = ? WHERE table_id = ? AND (live_key = ? "
                    "OR history_key = ?) AND removed_in IS NULL",
                    {version, table_id, key, key}));
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
    committed = true;
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
  std::lock_guard<std::mutex> roll(roll_mu_);
  ASSIGN_OR_RETURN(Rows tr,
                   catalog_->Query("SELECT zone, name FROM lake_tables WHERE id = ?", {table_id}));
  if (tr.empty()) return Internal("roll forward: no table " + std::to_string(table_id));
  TableRef t{tr.Text(0, 0), tr.Text(0, 1)};
  ASSIGN_OR_RETURN(Rows removed,
                   catalog_->Query("SELECT live_key, history_key FROM lake_files WHERE table_id "
                                   "= ? AND removed_in = ?",
                                   {table_id, version}));
  ASSIGN_OR_RETURN(Rows added,
                   catalog_->Query("SELECT staged_key, live_key, history_key, removed_in FROM "
                                   "lake_files WHERE table_id = ? AND added_in = ?",
                                   {table_id, version}));
  // Every file of both snapshots keeps (or gets) its immutable name first: running queries and
  // time travel read those. Commit() made them for new files; this repairs older layouts.
  auto ensure_name = [&](const std::string& name, const std::vector<std::string>& sources) {
    ASSIGN_OR_RETURN(bool have, store_->Exists(name));
    if (have) return Status::Ok();
    for (const auto& from : sources) {
      ASSIGN_OR_RETURN(bool there, store_->Exists(from));
      if (there) return store_->Copy(from, name);
    }
    return Status(Code::kDataLoss,
                  "file of " + t.ToString() + " v" + std::to_string(version) + " missing: " + name);
  };
  for (size_t i = 0; i < removed.size(); ++i) {
    RETURN_IF_ERROR(ensure_name(removed.Text(i, 1), {removed.Text(i, 0)}));
  }
  for (size_t i = 0; i < added.size(); ++i) {
    RETURN_IF_ERROR(ensure_name(added.Text(i, 2), {added.Text(i, 0), added.Text(i, 1)}));
  }
  CrashPoint("lake.roll.history_link");
  // Superseded files leave the table folder before the commit is acknowledged: a folder reader
  // sees the current snapshot only.
  for (size_t i = 0; i < removed.size(); ++i) {
    RETURN_IF_ERROR(store_->Delete(removed.Text(i, 0)));
    CrashPoint("lake.roll.unlinked");
  }
  for (size_t i = 0; i < added.size(); ++i) {
    ASSIGN_OR_RETURN(bool live, store_->Exists(added.Text(i, 1)));
    if (live) continue;
    // A file a later commit already removed (its roll forward ran first) stays out of the folder.
    if (!added.IsNull(i, 3)) continue;
    RETURN_IF_ERROR(store_->Move(added.Text(i, 0), added.Text(i, 1)));
    CrashPoint("lake.roll.moved_file");
  }
  // Partition folders the removed files leave empty go too (rmdir refuses a non-empty one).
  for (size_t i = 0; i < removed.size(); ++i) {
    std::string dir = removed.Text(i, 0);
    for (size_t slash = dir.rfind('/'); slash != std::string::npos; slash = dir.rfind('/')) {
      dir.resize(slash);
      if (dir.size() + 1 <= TablePrefix(t).size()) break;  // keep the table folder itself
      std::filesystem::path local = store_->LocalPath(dir);
      std::error_code ec;
      if (local.empty() || !std::filesystem::remove(local, ec)) break;
    }
  }
  RETURN_IF_ERROR(WriteManifest(t, table_id, version));
  CrashPoint("lake.roll.manifest");
  ASSIGN_OR_RETURN(Rows w, catalog_->Query("SELECT write_id FROM lake_snapshots WHERE table_id = ? "
                                           "AND version = ?",
                                           {table_id, version}));
  if (!w.empty()) RETURN_IF_ERROR(DropStaging(StagingPrefix(t) + w.Text(0, 0)));
  RETURN_IF_ERROR(
      catalog_->Exec("UPDATE lake_snapshots SET state = 'published' WHERE table_id = "
                     "? AND version = ?",
                     {table_id, version}));
  CrashPoint("lake.roll.published");
  ASSIGN_OR_RETURN(TableInfo info, GetTable(t));
  Notify(info);  // views now read the new snapshot's immutable names
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
    // Relative paths, so the lake can be moved or mounted elsewhere: "path" below the table
    // folder (there while this snapshot is current), "file" below the lake root (the immutable
    // name, there while the snapshot is retained).
    fa.push_back(json::object{{"path", f.live_key.substr(prefix.size())},
                              {"file", f.key},
                              {"rows", f.rows},
                              {"bytes", f.bytes}});
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
  // The first layout kept immutable names in <zone>/<table>/_history/ and only for superseded
  // files: give every file its _files name (a hard link of the old history name or of the live
  // file), then the sweep below removes the old names.
  ASSIGN_OR_RETURN(Rows legacy, catalog_->Query("SELECT table_id, live_key, history_key, "
                                                "removed_in FROM lake_files WHERE "
                                                "SUBSTR(history_key, 1, 7) <> '_files/'"));
  for (size_t i = 0; i < legacy.size(); ++i) {
    std::string live = legacy.Text(i, 1), old = legacy.Text(i, 2), name = FilesKey(live);
    ASSIGN_OR_RETURN(bool have, store_->Exists(name));
    if (!have) {
      ASSIGN_OR_RETURN(bool old_there, store_->Exists(old));
      ASSIGN_OR_RETURN(bool live_there, store_->Exists(live));
      if (!old_there && !live_there) {
        return Status(Code::kDataLoss, "migrating the lake layout: no file for " + live);
      }
      RETURN_IF_ERROR(store_->Copy(old_there ? old : live, name));
    }
    RETURN_IF_ERROR(
        catalog_->Exec("UPDATE lake_files SET history_key = ? WHERE table_id = ? AND "
                       "live_key = ?",
                       {name, legacy.Int(i, 0), live}));
  }
  if (legacy.size()) spdlog::info("lake: moved {} files to the _files layout", legacy.size());
  // Nothing runs yet: names no snapshot references can go now.
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_unlinks_.clear();
  }
  ASSIGN_OR_RETURN(auto tables, ListTables());
  ASSIGN_OR_RETURN(Rows known, catalog_->Query("SELECT live_key, history_key, removed_in FROM "
                                               "lake_files"));
  std::set<std::string> referenced;
  for (size_t i = 0; i < known.size(); ++i) {
    referenced.insert(known.Text(i, 1));
    if (known.IsNull(i, 2)) referenced.insert(known.Text(i, 0));
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
    // <zone>/<table>/<rest>, _files/<zone>/<table>/<rest>, _staging/<zone>/<table>/<write>/...
    std::vector<std::string> parts = Split(o.key, '/');
    if (parts.size() < 3 || parts[0] == "_staging") continue;
    if (parts[0] != "_files") {
      table_dirs.insert(parts[0] + "/" + parts[1]);
      if (parts[2] == "_staging" || parts[2] == "_manifests") continue;
    }
    // A Parquet file that no snapshot references: left by a crash after its snapshot was
    // superseded, before its commit point, or by an interrupted garbage collection; or an old
    // _history name.
    if (o.key.ends_with(".parquet") && !referenced.count(o.key)) {
      RETURN_IF_ERROR(store_->Delete(o.key));
      ++removed_files;
    }
  }
  for (const auto& t : tables) table_dirs.insert(t.ref.zone + "/" + t.ref.name);
  for (const auto& dir : table_dirs) {
    // First-layout folders inside the table folder: nothing lives there any more.
    ASSIGN_OR_RETURN(auto old_staged, store_->List(dir + "/_staging"));
    removed_files += static_cast<int64_t>(old_staged.size());
    RETURN_IF_ERROR(store_->Delete(dir + "/_staging"));
    RETURN_IF_ERROR(store_->Delete(dir + "/_history"));
    PruneEmptyFolders(store_->LocalPath(dir));
  }
  // Staging folders of writes that are not running: everything written before a crash.
  ASSIGN_OR_RETURN(auto staged, store_->List(std::string(kStagingRoot)));
  std::set<std::string> dead_writes;
  for (const auto& o : staged) {
    std::vector<std::string> parts = Split(o.key, '/');
    if (parts.size() < 5) continue;
    std::string prefix = parts[0] + "/" + parts[1] + "/" + parts[2] + "/" + parts[3] + "/";
    if (!live_writes.count(prefix)) {
      dead_writes.insert(prefix.substr(0, prefix.size() - 1));
      ++removed_files;
    }
  }
  for (const auto& w : dead_writes) RETURN_IF_ERROR(store_->Delete(w));
  // Empty staging folders (a write that staged nothing), unless a write is running.
  if (live_writes.empty()) {
    RETURN_IF_ERROR(store_->Delete(std::string(kStagingRoot.substr(0, kStagingRoot.size() - 1))));
  }
  PruneEmptyFolders(store_->LocalPath(std::string(kFilesRoot)));
  if (removed_files) spdlog::info("lake: removed {} orphaned files", removed_files);
  return Status::Ok();
}

Result<Lake::GcStats> Lake::CollectGarbage(Micros now, Micros oldest_query_start) {
  GcStats stats;
  // Unlink immutable names nobody can be reading.
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
    // A pinned snapshot never expires, so the files it uses are never collected.
    constexpr std::string_view kExpirable =
        "expired_at IS NULL AND superseded_at IS NOT NULL AND superseded_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM lake_pins p WHERE p.table_id = lake_snapshots.table_id AND p.version = "
        "lake_snapshots.version)";
    ASSIGN_OR_RETURN(Rows r, txn->Query("SELECT table_id, version FROM lake_snapshots WHERE " +
                                            std::string(kExpirable),
                                        {cutoff}));
    for (size_t i = 0; i < r.size(); ++i) touched.insert(r.Int(i, 0));
    RETURN_IF_ERROR(
        txn->Exec("UPDATE lake_snapshots SET expired_at = ? WHERE " + std::string(kExpirable),
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

// ---- ownership ----------------------------------------------------------------------------------

Status Lake::NotOwnerError(const TableRef& table, const Owner& owner) {
  std::string hint = "only its owner commits to it";
  if (owner.kind == "model") hint = "run the model instead";
  if (owner.kind == "source") hint = "run the source instead";
  if (owner.kind == "stream") hint = "send events to the stream instead";
  if (owner.kind == "feature_view") hint = "the feature view's processor writes it";
  return Conflict(table.ToString() + " is owned by " + owner.ToString() + "; " + hint);
}

namespace {
Status ValidateOwner(const Owner& owner) {
  RETURN_IF_ERROR(ValidateIdentifier("owner kind", owner.kind));
  if (owner.name.empty() || owner.name.size() > 200) {
    return InvalidArgument("owner name must have 1 to 200 characters");
  }
  return Status::Ok();
}

// Registers inside `txn`; kConflict if another owner holds the table.
Status RegisterIn(catalog::Transaction& txn, const TableRef& table, const Owner& owner) {
  RETURN_IF_ERROR(ValidateIdentifier("zone", table.zone));
  RETURN_IF_ERROR(ValidateIdentifier("table", table.name));
  RETURN_IF_ERROR(ValidateOwner(owner));
  ASSIGN_OR_RETURN(Rows r, txn.Query("SELECT owner_kind, owner_name FROM lake_owners WHERE zone = "
                                     "? AND name = ?",
                                     {table.zone, table.name}));
  if (!r.empty()) {
    Owner have{r.Text(0, 0), r.Text(0, 1)};
    if (have == owner) return Status::Ok();
    return Conflict("cannot make " + owner.ToString() + " the owner of " + table.ToString() +
                    ": it is owned by " + have.ToString());
  }
  return txn.Exec(
      "INSERT INTO lake_owners (zone, name, owner_kind, owner_name, registered_at) "
      "VALUES (?, ?, ?, ?, ?)",
      {table.zone, table.name, owner.kind, owner.name, NowMicros()});
}
}  // namespace

Status Lake::RegisterOwner(const TableRef& table, const Owner& owner) {
  ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
  RETURN_IF_ERROR(RegisterIn(*txn, table, owner));
  return txn->Commit();
}

Status Lake::ReleaseOwner(const TableRef& table, const Owner& owner) {
  return catalog_->Exec(
      "DELETE FROM lake_owners WHERE zone = ? AND name = ? AND owner_kind = ? "
      "AND owner_name = ?",
      {table.zone, table.name, owner.kind, owner.name});
}

Status Lake::SetOwners(std::string_view kind, const std::vector<OwnedTable>& owned) {
  ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
  ASSIGN_OR_RETURN(Rows have, txn->Query("SELECT zone, name, owner_name FROM lake_owners WHERE "
                                         "owner_kind = ?",
                                         {std::string(kind)}));
  for (size_t i = 0; i < have.size(); ++i) {
    TableRef t{have.Text(i, 0), have.Text(i, 1)};
    Owner o{std::string(kind), have.Text(i, 2)};
    bool keep = std::any_of(owned.begin(), owned.end(),
                            [&](const OwnedTable& w) { return w.table == t && w.owner == o; });
    if (!keep) {
      RETURN_IF_ERROR(
          txn->Exec("DELETE FROM lake_owners WHERE zone = ? AND name = ?", {t.zone, t.name}));
    }
  }
  std::string conflicts;
  for (const auto& w : owned) {
    if (w.owner.kind != kind) {
      return InvalidArgument("SetOwners(" + std::string(kind) + ") given an owner of kind " +
                             w.owner.kind);
    }
    Status s = RegisterIn(*txn, w.table, w.owner);
    if (s.code() == Code::kConflict) {
      conflicts += (conflicts.empty() ? "" : "; ") + s.message();
    } else if (!s.ok()) {
      return s;
    }
  }
  RETURN_IF_ERROR(txn->Commit());
  if (!conflicts.empty()) return Conflict(conflicts);
  return Status::Ok();
}

Result<std::optional<Owner>> Lake::OwnerOf(const TableRef& table) {
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT owner_kind, owner_name FROM lake_owners WHERE "
                                           "zone = ? AND name = ?",
                                           {table.zone, table.name}));
  if (r.empty()) return std::optional<Owner>();
  return std::optional<Owner>(Owner{r.Text(0, 0), r.Text(0, 1)});
}

Result<std::vector<OwnedTable>> Lake::ListOwners() {
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT zone, name, owner_kind, owner_name, "
                                           "registered_at FROM lake_owners ORDER BY zone, name"));
  std::vector<OwnedTable> out;
  for (size_t i = 0; i < r.size(); ++i) {
    out.push_back({{r.Text(i, 0), r.Text(i, 1)}, {r.Text(i, 2), r.Text(i, 3)}, r.Int(i, 4)});
  }
  return out;
}

// ---- pins ---------------------------------------------------------------------------------------

Status Lake::PinSnapshot(const TableRef& table, int64_t version, std::string_view holder,
                         std::string_view reason) {
  if (holder.empty() || holder.size() > 200) {
    return InvalidArgument("a pin's holder must have 1 to 200 characters");
  }
  ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
  ASSIGN_OR_RETURN(int64_t id, TableId(*txn, table));
  ASSIGN_OR_RETURN(Rows r, txn->Query("SELECT expired_at FROM lake_snapshots WHERE table_id = ? "
                                      "AND version = ?",
                                      {id, version}));
  if (r.empty()) {
    return NotFound("no snapshot " + std::to_string(version) + " of " + table.ToString());
  }
  if (!r.IsNull(0, 0)) {
    return NotFound("snapshot " + std::to_string(version) + " of " + table.ToString() +
                    " has expired (retention); it cannot be pinned");
  }
  RETURN_IF_ERROR(
      txn->Exec("DELETE FROM lake_pins WHERE table_id = ? AND version = ? AND holder "
                "= ?",
                {id, version, std::string(holder)}));
  RETURN_IF_ERROR(
      txn->Exec("INSERT INTO lake_pins (table_id, version, holder, reason, pinned_at) "
                "VALUES (?, ?, ?, ?, ?)",
                {id, version, std::string(holder), std::string(reason), NowMicros()}));
  return txn->Commit();
}

Status Lake::UnpinSnapshot(const TableRef& table, int64_t version, std::string_view holder) {
  ASSIGN_OR_RETURN(int64_t id, TableId(*catalog_, table));
  return catalog_->Exec("DELETE FROM lake_pins WHERE table_id = ? AND version = ? AND holder = ?",
                        {id, version, std::string(holder)});
}

Result<std::vector<Pin>> Lake::ListPins(const std::optional<TableRef>& table) {
  ASSIGN_OR_RETURN(Rows r, catalog_->Query("SELECT t.zone, t.name, p.version, p.holder, p.reason, "
                                           "p.pinned_at FROM lake_pins p JOIN lake_tables t ON "
                                           "t.id = p.table_id ORDER BY t.zone, t.name, p.version, "
                                           "p.holder"));
  std::vector<Pin> out;
  for (size_t i = 0; i < r.size(); ++i) {
    Pin p{{r.Text(i, 0), r.Text(i, 1)}, r.Int(i, 2), r.Text(i, 3), r.Text(i, 4), r.Int(i, 5)};
    if (!table || p.table == *table) out.push_back(std::move(p));
  }
  return out;
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
