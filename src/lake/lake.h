// lake: the data lake — an object store of immutable Parquet files plus the write-then-commit
// protocol that makes a table version (snapshot) visible atomically through the catalog.
//
// Layout under the object store root:
//   <zone>/<table>/[<partition>=<value>/]part-<uuid>.parquet   live files of the current snapshot
//   <zone>/<table>/_staging/<write-id>/...                     files being written (invisible)
//   <zone>/<table>/_history/[<partition>=<value>/]part-<uuid>.parquet  files only older
//                                                              snapshots use
//   <zone>/<table>/_manifests/v<version>.json, current.json    what each snapshot holds, for
//                                                              readers without the catalog
// Underscore folders are skipped by Spark, Trino, DuckDB hive globs and pyarrow, so a reader of the
// table folder sees exactly the current snapshot's files.
//
// Commit protocol (see README.md): 1) the writer puts files in a staging folder and they are made
// durable; 2) one catalog transaction compares-and-swaps the table version and records the new
// snapshot with each file's staged and final key: this is the commit point; 3) roll forward:
// superseded live files are linked into _history, staged files renamed to their final keys, the
// manifest written, listeners told. A crash before 2 leaves only staging garbage; a crash after 2
// is rolled forward by Recover() at the next start. Superseded files are unlinked only when no
// query that could still read them runs, and history files only after the retention period.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "core/time.h"

namespace lakeloop::lake {

// ---- Object store -------------------------------------------------------------------------------

struct ObjectInfo {
  std::string key;  // '/'-separated, relative to the store root
  int64_t size = 0;
};

// Where lake files live. Keys are relative '/'-separated paths without '..'. Implementations:
// local filesystem (here), S3 later. Thread-safe.
class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // Durable once it returns.
  virtual Status Put(std::string_view key, std::string_view data) = 0;
  virtual Result<std::string> Get(std::string_view key) = 0;
  virtual Result<bool> Exists(std::string_view key) = 0;
  // Removing a missing key is ok.
  virtual Status Delete(std::string_view key) = 0;
  // Every object below `prefix` (recursive), sorted by key.
  virtual Result<std::vector<ObjectInfo>> List(std::string_view prefix) = 0;
  // Moves an object to a new key, durably; the source disappears.
  virtual Status Move(std::string_view from, std::string_view to) = 0;
  // Makes `to` another name of `from` (hard link locally, server-side copy on S3).
  virtual Status Copy(std::string_view from, std::string_view to) = 0;
  // Makes everything Put/written below `prefix` durable (fsync files and directories).
  virtual Status Sync(std::string_view prefix) = 0;
  // The location an engine reads the key from (an absolute path locally, s3://... later).
  virtual std::string Locate(std::string_view key) const = 0;
  // A local directory a writer (DuckDB COPY) may write a staging prefix into, when the store is
  // local; empty for remote stores.
  virtual std::filesystem::path LocalPath(std::string_view key) const = 0;
};

std::unique_ptr<ObjectStore> NewLocalObjectStore(const std::filesystem::path& root);
// Rejects empty keys, absolute keys, '..' and '.' segments, backslashes and NUL.
Status ValidateKey(std::string_view key);

// ---- Tables and snapshots -----------------------------------------------------------------------

struct Column {
  std::string name;
  std::string type;  // DuckDB SQL type text
  bool operator==(const Column&) const = default;
};

struct TableRef {
  std::string zone;
  std::string name;
  std::string ToString() const { return zone + "." + name; }
  bool operator==(const TableRef&) const = default;
};
// Parses "zone.table"; both parts lower-case identifiers [a-z_][a-z0-9_]{0,62}, zone not ending in
// "_snapshots" (reserved for time-travel views).
Result<TableRef> ParseTableRef(std::string_view text);
Status ValidateIdentifier(std::string_view what, std::string_view id);

enum class WriteMode { kAppend, kOverwrite };
std::string_view WriteModeName(WriteMode m);
Result<WriteMode> ParseWriteMode(std::string_view s);

struct DataFile {
  std::string key;  // final key in the store
  int64_t rows = 0;
  int64_t bytes = 0;
};

struct Snapshot {
  int64_t version = 0;
  Micros committed_at = 0;
  std::string operation;  // append | overwrite | replace
  int64_t added_rows = 0;
  int64_t total_rows = 0;
  int64_t total_bytes = 0;
  int64_t file_count = 0;
  std::vector<Column> schema;
  std::string write_id;
  bool expired = false;
};

struct TableInfo {
  TableRef ref;
  int64_t current_version = 0;  // 0 = created, never committed
  std::vector<Column> schema;
  std::vector<std::string> partition_by;
  Micros created_at = 0;
  Micros updated_at = 0;
};

// A write in progress: the writer puts Parquet files under `prefix` (for local stores, directly
// into `local_dir`), then calls Lake::Commit. Files may sit in hive partition folders
// (`dt=2026-11-26/x.parquet`); that relative folder is kept in the final key.
struct Staging {
  TableRef table;
  std::string write_id;
  std::string prefix;  // <zone>/<table>/_staging/<write_id>/
  std::filesystem::path local_dir;
};

struct StagedFile {
  std::string key;  // below the staging prefix
  int64_t rows = 0;
};

struct CommitRequest {
  Staging staging;
  WriteMode mode = WriteMode::kAppend;
  std::vector<StagedFile> files;
  std::vector<Column> schema;  // the files' schema (without partition columns' duplication)
  std::vector<std::string> partition_by;
  // Compare-and-swap: the table version this write was based on; nullopt = whatever is current
  // when the commit runs (appends from a single writer).
  std::optional<int64_t> expected_version;
  // Files of the current snapshot (their keys as SnapshotFiles returns them) that this commit
  // removes while adding `files`, atomically: compaction rewrites small files into one. Only with
  // kAppend (the schema must match); each key must be live at the commit, else kConflict and
  // nothing changes. Removed files follow the overwrite path: linked into _history for time
  // travel, their live names unlinked once no query can read them. Snapshot operation "replace".
  std::vector<std::string> replaces;
  // Runs inside the commit's catalog transaction, after the snapshot rows are written: state that
  // must change exactly when the snapshot becomes visible (e.g. a consumer's offset) goes here. An
  // error aborts the commit.
  std::function<Status(catalog::Transaction& txn, const Snapshot& snapshot)> in_transaction;
};

struct LakeOptions {
  int64_t snapshot_retention_s = 7 * 24 * 3600;
};

// Called after a commit became visible (rolled forward), with the table and its new version.
using CommitListener = std::function<void(const TableInfo&)>;

// Owns the table/snapshot/file records in the catalog and the commit protocol. Thread-safe;
// commits to one table are serialised by the catalog's compare-and-swap.
class Lake {
 public:
  Lake(ObjectStore* store, catalog::Store* catalog, LakeOptions options);
  static std::vector<catalog::Migration> Migrations();

  ObjectStore* store() const { return store_; }

  Result<Staging> BeginWrite(const TableRef& table);
  // Abandons a write: deletes its staging folder.
  Status AbortWrite(const Staging& staging);
  // The commit point and roll forward. kConflict when expected_version lost the race, or the
  // schema of an append does not match the table's; kInvalidArgument for bad requests (unknown
  // staged files, empty schema...). On any error nothing is visible.
  Result<Snapshot> Commit(const CommitRequest& request);

  Result<std::vector<TableInfo>> ListTables();
  Result<TableInfo> GetTable(const TableRef& table);
  Result<std::vector<Snapshot>> ListSnapshots(const TableRef& table);
  Result<Snapshot> GetSnapshot(const TableRef& table, int64_t version);
  // The files of a snapshot (version 0 = current), with their final keys.
  Result<std::vector<DataFile>> SnapshotFiles(const TableRef& table, int64_t version = 0);

  // Completes commits interrupted by a crash (after their commit point) and removes garbage:
  // staging folders of no live write, live-folder files of no snapshot. Run at start, before
  // serving.
  Status Recover();
  // Expires snapshots past retention and removes files nobody can read any more. Files that a
  // running query may still read are kept: `oldest_query_start` is the start time of the oldest
  // query still running (NowMicros() when none).
  struct GcStats {
    int64_t snapshots_expired = 0;
    int64_t files_deleted = 0;
  };
  Result<GcStats> CollectGarbage(Micros now, Micros oldest_query_start);

  void AddCommitListener(CommitListener listener);

 private:
  Status RollForward(int64_t table_id, int64_t version);
  Status WriteManifest(const TableRef& table, int64_t table_id, int64_t version);
  void Notify(const TableInfo& info);

  ObjectStore* store_;
  catalog::Store* catalog_;
  LakeOptions options_;
  std::mutex mu_;  // guards listeners_, live_writes_, pending_unlinks_
  std::vector<CommitListener> listeners_;
  std::vector<std::string> live_writes_;  // staging prefixes of writes in progress
  struct PendingUnlink {
    std::string key;
    Micros not_before;  // unlink once no query started before this runs
  };
  std::vector<PendingUnlink> pending_unlinks_;
};

std::string SchemaToJson(const std::vector<Column>& schema);
Result<std::vector<Column>> SchemaFromJson(std::string_view json);

}  // namespace lakeloop::lake
