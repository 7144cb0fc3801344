// ingest: sources that load data into the lake table raw.<source> (the MWAA extract & load role).
// A source is defined in <project>/sources/<name>.yaml (files, SQLite or PostgreSQL); each run
// loads what is new since the last run as one lake commit, with bad rows committed beside it in
// raw.<source>__rejected. See README.md for the load protocol and its crash behaviour.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "lake/lake.h"
#include "sql/lake_io.h"
#include "sql/sql.h"

namespace lakeloop::ingest {

enum class SourceType { kFiles, kSqlite, kPostgres };
std::string_view SourceTypeName(SourceType type);

enum class OnNewColumn { kFail, kEvolve };

struct CsvOptions {
  std::string delimiter = ",";  // one character
  bool header = true;
};

// A window re-read behind the stored cursor: a duration ("90s", "15m", "1h", "2d") for
// TIMESTAMP/DATE cursors, or a plain number for numeric cursors.
struct Lookback {
  std::string text;  // as written
  bool is_duration = false;
  int64_t micros = 0;  // is_duration
  double number = 0;   // !is_duration
};

// One parsed sources/*.yaml. Credentials stay as written (`${ENV_VAR}`); they are resolved only
// inside Ingestor::Run, so a SourceSpec may be stored, logged or shown.
struct SourceSpec {
  std::string file_name;  // where it was defined (for messages)
  std::string name;       // lower-case identifier, at most 53 characters (raw.<name>__rejected)
  SourceType type = SourceType::kFiles;
  std::string schedule;  // cron text, passed through to the scheduler
  std::string description;

  // files
  std::string path;                                // directory or glob, relative to the project dir
  sql::FileFormat format = sql::FileFormat::kCsv;  // json = JSON lines
  CsvOptions csv;

  // sqlite (database) / postgres (dsn); exactly one of table / query
  std::string database;
  std::string dsn;
  std::string table;
  std::string query;
  std::string cursor;  // empty: every run is a full snapshot (overwrite)
  std::optional<Lookback> lookback;
  // How the cursor's values order loads: timestamp | text_timestamp (ISO-8601 text, with or
  // without 'T', 'Z', an offset or fractions) | unix_seconds | unix_millis | integer. Empty:
  // decided from the column's type and, for text and number columns, from its values (README).
  std::string cursor_type;
  std::vector<std::string> key;  // de-duplication key (default: every column)

  // postgres: libpq connect_timeout and the session's statement_timeout (each run is bounded).
  int64_t connect_timeout_ms = 10'000;
  int64_t statement_timeout_ms = 300'000;

  // common
  std::vector<sql::Column> schema;    // declared types (others inferred / mapped)
  std::vector<std::string> required;  // columns that must not be NULL
  double max_rejected_share = 0.01;   // rejected / (loaded + rejected) above this fails the run
  OnNewColumn on_new_column = OnNewColumn::kFail;
};

// Parses one source definition. Errors are kInvalidArgument "<file>:<line>: <reason>"; unknown
// keys are errors. Never resolves `${ENV_VAR}`; refuses literal passwords in a dsn.
Result<SourceSpec> ParseSource(const std::string& yaml_text, const std::string& file_name);
// Every <dir>/*.yaml and *.yml, sorted by name; duplicate source names are an error. A missing
// directory gives no sources.
Result<std::vector<SourceSpec>> LoadSources(const std::filesystem::path& dir);

struct RunOptions {
  std::string batch_id;       // stamped on every row as _batch_id; empty: a new UUID
  bool full_refresh = false;  // files: reload every matching file; db: re-read all, overwrite
};

struct LoadResult {
  std::string batch_id;
  int64_t rows_loaded = 0;
  int64_t rows_rejected = 0;
  int64_t rows_deduplicated = 0;  // db sources: re-read rows already in the table (same key+cursor)
  int64_t files_loaded = 0;       // files sources
  int64_t files_skipped = 0;      // files already loaded with the same content
  int64_t snapshot_version = 0;   // raw.<source>; 0 if nothing was committed
  int64_t rejected_snapshot_version = 0;  // raw.<source>__rejected; 0 if nothing was committed
  std::string cursor_before;              // db sources; empty when none was stored
  std::string cursor_after;
  bool schema_evolved = false;  // the table gained columns (rewritten as one overwrite commit)
};

struct IngestorOptions {
  // Where db extracts are spooled (deleted after each run); empty: the system temp directory.
  std::filesystem::path scratch_dir;
};

// Runs sources. Owns the ingest_files and ingest_cursors catalog tables (Migrations()). Thread-
// safe for different sources; runs of one source must not overlap (the scheduler serialises them;
// an overlapping run loses the table's compare-and-swap with kConflict and commits nothing).
class Ingestor {
 public:
  // `engine` must be an internal (unsandboxed) engine: it reads the source files and the
  // project's databases.
  Ingestor(sql::Engine* engine, lake::Lake* lake, catalog::Store* catalog,
           std::filesystem::path project_dir, IngestorOptions options = {});
  static std::vector<catalog::Migration> Migrations();

  static lake::TableRef TableFor(const SourceSpec& spec) { return {"raw", spec.name}; }
  static lake::TableRef RejectedTableFor(const SourceSpec& spec) {
    return {"raw", spec.name + "__rejected"};
  }

  // One load. Errors: kInvalidArgument (bad definition, unreadable input, a missing environment
  // variable), kConflict (new column with on_new_column: fail, a type change, too many rejected
  // rows, a concurrent run), kUnavailable (the database cannot be reached), kIoError. On any error
  // nothing is committed and no catalog state changes. Messages never contain resolved
  // credentials.
  Result<LoadResult> Run(const SourceSpec& spec, const RunOptions& options);

  // The stored cursor of a db source (after settling an interrupted run), if any.
  Result<std::optional<std::string>> Cursor(const std::string& source);

 private:
  sql::Engine* engine_;
  lake::Lake* lake_;
  catalog::Store* catalog_;
  std::filesystem::path project_dir_;
  IngestorOptions options_;
};

}  // namespace lakeloop::ingest
