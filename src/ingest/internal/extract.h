// ingest/internal/extract: reading SQLite and PostgreSQL sources into a CSV spool file that DuckDB
// then reads (all values as text; ingest types them). SQLite through its C API (DuckDB's sqlite
// extension is not built into our libduckdb and nothing is downloaded); PostgreSQL through libpq
// with COPY (...) TO STDOUT, which streams any table size in constant memory.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "sql/sql.h"

namespace lakeloop::ingest::internal {

class DbReader {
 public:
  virtual ~DbReader() = default;
  // The source's columns, typed as DuckDB types mapped from the source's declared types.
  virtual const std::vector<sql::Column>& Columns() const = 0;
  // Writes the rows (only those with cursor > lower_bound when given; SQLite may return a few
  // more for text timestamps, the caller filters exactly) as RFC 4180 CSV with a header: NULL is
  // an unquoted empty field, every other value is quoted. Returns the row count.
  virtual Result<int64_t> ExtractCsv(const std::string& cursor, const std::string& cursor_type,
                                     const std::optional<std::string>& lower_bound,
                                     const std::filesystem::path& out) = 0;
};

// `table` ("t" or "schema.t") or `query` (exactly one non-empty). Errors name no credentials, but
// callers still mask them (libpq messages may echo connection parameters).
Result<std::unique_ptr<DbReader>> OpenSqlite(const std::filesystem::path& database,
                                             const std::string& table, const std::string& query);
struct PostgresTimeouts {
  int64_t connect_ms = 10'000;     // libpq connect_timeout (whole seconds, at least 2)
  int64_t statement_ms = 300'000;  // SET statement_timeout for the session
};
// Errors: kDeadlineExceeded when a timeout ran out, kUnavailable when the server cannot be reached.
Result<std::unique_ptr<DbReader>> OpenPostgres(const std::string& dsn, const std::string& table,
                                               const std::string& query,
                                               const PostgresTimeouts& timeouts = {});

// DuckDB type for a SQLite declared type (affinity rules, plus DATE/TIMESTAMP/BOOLEAN names).
std::string SqliteTypeToDuckDb(const std::string& declared);
// DuckDB type for a PostgreSQL type oid and typmod.
std::string PostgresTypeToDuckDb(unsigned int oid, int typmod);

}  // namespace lakeloop::ingest::internal
