// sql: the DuckDB engine of lakeloop. An in-memory database rebuilt from the catalog (views over
// committed Parquet files), a sandbox for user SQL, and result encoders (JSON, CSV, Parquet).
// DuckDB errors never cross this boundary: everything returns Status / Result with a code from
// core/status.h (kSqlError for DuckDB's parse/bind/run-time errors, with DuckDB's message).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"

namespace lakeloop::sql {

struct Column {
  std::string name;
  // DuckDB SQL type text: "BIGINT", "DECIMAL(18,3)", "STRUCT(a INTEGER, b VARCHAR)".
  std::string type;

  bool operator==(const Column&) const = default;
};

// Interrupts every running query of every engine opened with it, and refuses new ones
// (kUnavailable): the shutdown deadline. Thread-safe; engines join on Open and leave when
// destroyed, so the group may outlive them.
class InterruptGroup {
 public:
  void InterruptAll();
  bool interrupted() const { return interrupted_.load(std::memory_order_acquire); }
  // Descriptions of the queries running now, for the shutdown log.
  std::vector<std::string> Running();

  // Used by Engine.
  struct Member {
    std::function<void()> interrupt;
    std::function<std::vector<std::string>()> running;
  };
  int64_t Join(Member member);
  void Leave(int64_t id);

 private:
  std::atomic<bool> interrupted_{false};
  std::mutex mu_;
  int64_t next_id_ = 0;
  std::vector<std::pair<int64_t, Member>> members_;
};

struct EngineOptions {
  // true: the user-facing engine (file access only below lake_root and scratch_dir, configuration
  // locked). false: the internal engine for our own trusted SQL (ingest, conversions).
  bool sandboxed = true;
  std::filesystem::path lake_root;    // readable by the sandbox
  std::filesystem::path scratch_dir;  // spill files and Parquet exports; created if missing
  int threads = 2;
  std::string memory_limit = "2GB";
  // Cap on every query of this engine (Run, Exec, ExecWithParams), also those that ask for no
  // deadline (timeout_ms <= 0); 0: none. Past it: kDeadlineExceeded naming `timeout_key`.
  int64_t max_query_ms = 0;
  std::string timeout_key;                          // the config key of the cap, for error messages
  std::string name = "sql";                         // for logs ("loads", "adhoc", ...)
  std::shared_ptr<InterruptGroup> interrupt_group;  // optional
};

enum class Format { kJson, kCsv, kParquet };

struct QueryRequest {
  std::string sql;
  int64_t limit = 10000;  // max rows for JSON/CSV (Parquet exports the full result); >= 0
  Format format = Format::kJson;
  int64_t timeout_ms = 30000;  // <= 0: no deadline. Past it: Code::kDeadlineExceeded
  // Set by the HTTP layer when the client goes away: the query is interrupted, Code::kCancelled.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Parquet export caps: more rows, or a file growing past max_bytes, fail with
  // kPayloadTooLarge naming the limit key; 0: none.
  int64_t max_rows = 0;
  int64_t max_bytes = 0;
  // Parquet: leave the result in a scratch file (QueryReply::file) instead of the body.
  bool parquet_to_file = false;
};

// A scratch file removed when the last reference goes.
struct ScratchFile {
  std::filesystem::path path;
  ~ScratchFile();
};

// Per-call options of the trusted path.
struct ExecOptions {
  int64_t timeout_ms = 0;  // <= 0: the engine's cap only
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct QueryReply {
  // JSON: {"columns":[{"name":..,"type":..}],"rows":[[..],..],"row_count":N,"truncated":b}
  // CSV: header line, then rows (CRLF). Parquet: the file's bytes.
  std::string body;
  std::string content_type;
  int64_t row_count = 0;   // rows in body
  bool truncated = false;  // more rows existed than `limit`
  std::vector<Column> columns;
  // Parquet with parquet_to_file: the file (body empty); removed when the last copy goes.
  std::shared_ptr<ScratchFile> file;
  int64_t file_bytes = 0;
};

// A TIMESTAMP value for a named parameter: UTC microseconds since the Unix epoch.
struct Timestamp {
  int64_t micros = 0;
};
using ParamValue = std::variant<int64_t, std::string, Timestamp>;
// `$name` in the SQL.
struct NamedParam {
  std::string name;
  ParamValue value;
};

// Optional knobs for ReplaceView.
struct ViewOptions {
  bool hive_partitioning = false;  // derive columns from key=value directories
  bool union_by_name = false;      // files whose schemas differ (costs a footer read per file)
};

// Owns one in-memory DuckDB database, a pool of connections and a watchdog thread that interrupts
// queries past their deadline or cancelled. Thread-safe: every method may be called concurrently.
class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // User path: exactly one statement whose type is SELECT or EXPLAIN, else kStatementNotAllowed
  // ("only SELECT and EXPLAIN statements are allowed here; got CREATE"; several statements:
  // "exactly one statement ..."); empty SQL: kInvalidArgument; DuckDB errors: kSqlError.
  // Parquet exports SELECT only (EXPLAIN: kInvalidArgument).
  Result<QueryReply> Run(const QueryRequest& request);

  // DuckDB's statement type name ("SELECT", "CREATE", ...) without running it (statements that do
  // not start like a query are named from their keyword and never bound). Several statements:
  // kStatementNotAllowed; unparseable, or a query that does not bind: kSqlError; empty:
  // kInvalidArgument.
  Result<std::string> StatementType(std::string_view sql);

  // Trusted path (our own generated SQL, never user input): one or more statements.
  Status Exec(std::string_view sql);
  Status Exec(std::string_view sql, const ExecOptions& options);
  // Trusted path with named parameters: exactly one statement (else kStatementNotAllowed),
  // prepared, each `$name` it uses bound from `params` (BIGINT, VARCHAR or TIMESTAMP; names it
  // does not use are ignored; one it uses but is not given fails as kSqlError), then run. Returns
  // DuckDB's changed-row count (for COPY ... TO: the rows written).
  Result<int64_t> ExecWithParams(std::string_view sql, const std::vector<NamedParam>& params);
  Result<int64_t> ExecWithParams(std::string_view sql, const std::vector<NamedParam>& params,
                                 const ExecOptions& options);

  // Interrupts every running query of this engine (they fail with kUnavailable) and refuses new
  // ones. For shutdown; irreversible.
  void InterruptAll();

  // Result columns of one query (must start like a SELECT) without running it.
  Result<std::vector<Column>> Describe(std::string_view sql);

  // CREATE SCHEMA IF NOT EXISTS + CREATE OR REPLACE VIEW "<schema>"."<name>" over the Parquet
  // `files`; with no files, a typed empty relation built from `columns`.
  Status ReplaceView(const std::string& schema, const std::string& name,
                     const std::vector<std::string>& files, const std::vector<Column>& columns,
                     const ViewOptions& options = {});
  Status DropView(const std::string& schema, const std::string& name);

  // Wall-clock start (UTC micros) of the oldest query running through Run; now when none runs.
  // The lake unlinks a superseded file only when every query that could read it has finished.
  int64_t OldestRunningQueryStart();

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "a""b" — always quoted, so no keyword or character can escape it.
std::string QuoteIdentifier(std::string_view name);
// 'it''s'
std::string QuoteLiteral(std::string_view text);

}  // namespace lakeloop::sql
