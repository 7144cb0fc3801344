// lake: the data lake — an object store of immutable Parquet files plus the write-then-commit
// protocol that makes a table version (snapshot) visible atomically through the catalog.
//
// Layout under the object store root (see README.md):
//   <zone>/<table>/[<partition>=<value>/]part-<uuid>.parquet   the current snapshot's files, only
//   <zone>/<table>/_manifests/v<version>.json, current.json    what each snapshot holds (JSON)
//   _files/<zone>/<table>/[<partition>=<value>/]part-<uuid>.parquet  an immutable second name of
//                                                              every file a retained snapshot uses
//                                                              (engines and time travel read these)
//   _staging/<zone>/<table>/<write-id>/...                     files being written (invisible)
// A reader of the table folder (pyarrow, Spark, Trino, DuckDB's `**` glob) sees exactly the
// current snapshot's Parquet files: superseded and staged files live outside the folder.
//
// Commit protocol (see README.md): 1) the writer puts files in a staging folder, they are made
// durable and get their immutable _files name; 2) one catalog transaction compares-and-swaps the
// table version, checks the table's owner and records the new snapshot: this is the commit point;
// 3) roll forward: superseded files leave the table folder, staged files are renamed into it, the
// manifest written, listeners told, all before Commit returns. A crash before 2 leaves only
// garbage; a crash after 2 is rolled forward by Recover() at the next start. _files names are
// removed only after the retention period (never while a snapshot using them is pinned) and when
// no query that could read them still runs.
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
  // The immutable name to read the file by (_files/<zone>/<table>/...): valid while the snapshot
  // is retained, whatever commits meanwhile.
  std::string key;
  // Its name in the table folder (<zone>/<table>/...), present only while the file belongs to the
  // current snapshot.
  std::string live_key;
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
  std::string prefix;  // _staging/<zone>/<table>/<write_id>/
  std::filesystem::path local_dir;
};

// The definition that produces a table (ARCHITECTURE.md: every table has one owner). Kinds in use:
// "source" (raw.<source>, raw.<source>__rejected), "model" (processed.<model>), "stream"
// (raw.<stream>, its archive), "feature_view" (features.<view>, its feature log); later modules
// add theirs ("dataset", "inference_log", ...) with one Lake::RegisterOwner call.
struct Owner {
  std::string kind;  // lower-case identifier
  std::string name;
  std::string ToString() const { return kind + " " + name; }
  bool operator==(const Owner&) const = default;
};

struct OwnedTable {
  TableRef table;
  Owner owner;
  Micros registered_at = 0;
};

// A snapshot kept from retention on behalf of `holder` (e.g. "model churn v3").
struct Pin {
  TableRef table;
  int64_t version = 0;
  std::string holder;
  std::string reason;
  Micros pinned_at = 0;
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
  // Files of the current snapshot (a DataFile's key or live_key) that this commit removes while
  // adding `files`, atomically: compaction rewrites small files into one. Only with kAppend (the
  // schema must match); each key must be live at the commit, else kConflict and nothing changes.
  // Removed files follow the overwrite path: they leave the table folder in the roll forward and
  // keep their _files name for time travel. Snapshot operation "replace".
  std::vector<std::string> replaces;
  // Runs inside the commit's catalog transaction, after the snapshot rows are written: state that
  // must change exactly when the snapshot becomes visible (e.g. a consumer's offset) goes here. An
  // error aborts the commit.
  std::function<Status(catalog::Transaction& txn, const Snapshot& snapshot)> in_transaction;
  // Who commits: the definition that owns the table (see Owner), or nullopt for a direct commit
  // (an upload). A table with a registered owner takes commits from that owner only: anyone else
  // gets kConflict naming the owner, and nothing changes.
  std::optional<Owner> owner;
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
  // staging folders of no live write, files of no snapshot (in table folders and in _files).
  // Migrates the first layout (_history/ and _staging/ inside table folders) to this one. Run at
  // start, before serving.
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

  // ---- Ownership: one owner per table, registered when its definition is applied.
  // Makes `owner` the table's owner (the table need not exist yet). Idempotent for the same
  // owner; kConflict naming the current owner when another one holds the table.
  Status RegisterOwner(const TableRef& table, const Owner& owner);
  // Releases the table if `owner` holds it (no-op otherwise). The table keeps its data and becomes
  // an ordinary table (direct commits allowed) until a definition claims it again.
  Status ReleaseOwner(const TableRef& table, const Owner& owner);
  // Declarative form for apply: afterwards the tables owned by kind `kind` are exactly `owned`
  // (each entry's owner.kind must be `kind`): new ones registered, the others of that kind
  // released, in one transaction. A table another owner holds stays with it: the rest is applied
  // and the call returns kConflict naming each such table (the caller logs it; that definition's
  // commits are refused until the conflict is resolved).
  Status SetOwners(std::string_view kind, const std::vector<OwnedTable>& owned);
  // The owner of a table, nullopt when none.
  Result<std::optional<Owner>> OwnerOf(const TableRef& table);
  Result<std::vector<OwnedTable>> ListOwners();
  // The kConflict a commit by `committer` (nullopt: a direct commit) to a table owned by `owner`
  // gets: "processed.x is owned by model x; run the model instead".
  static Status NotOwnerError(const TableRef& table, const Owner& owner);

  // ---- Pins: a pinned snapshot is never expired, so its files and catalog rows stay.
  // kNotFound for an unknown or already expired snapshot. Pinning again by the same holder
  // updates the reason.
  Status PinSnapshot(const TableRef& table, int64_t version, std::string_view holder,
                     std::string_view reason);
  // Ok if the pin did not exist. Retention applies again at the next CollectGarbage.
  Status UnpinSnapshot(const TableRef& table, int64_t version, std::string_view holder);
  // Every pin, or the pins of one table.
  Result<std::vector<Pin>> ListPins(const std::optional<TableRef>& table = std::nullopt);

 private:
  Status RollForward(int64_t table_id, int64_t version);
  Status WriteManifest(const TableRef& table, int64_t table_id, int64_t version);
  void Notify(const TableInfo& info);

  ObjectStore* store_;
  catalog::Store* catalog_;
  LakeOptions options_;
  // Removes a write's staging folder and the staging folders it leaves empty.
  Status DropStaging(const std::string& write_prefix);

  std::mutex roll_mu_;     // serialises roll forwards (they move files in and out of table folders)
  std::mutex staging_mu_;  // creating a write's staging folder vs removing emptied ones
  std::mutex mu_;          // guards listeners_, live_writes_, pending_unlinks_
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
