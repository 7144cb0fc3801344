// ingest/internal/cursor: how a db source's cursor column orders loads. Application databases
// store time as TIMESTAMP/DATE, as ISO-8601 text (SQLite has no time type) or as unix seconds or
// milliseconds; a cursor is compared, stored and moved back by the lookback as a *normalised*
// value (TIMESTAMP for every kind of time, the column's number type for integers), while the
// column itself is loaded into the lake as it is.
#pragma once

#include <optional>
#include <string>

#include "core/status.h"
#include "ingest/ingest.h"

namespace lakeloop::ingest::internal {

enum class CursorKind {
  kNative,         // the column's own type orders it: TIMESTAMP*, DATE, numbers
  kText,           // text compared as text (no lookback); legacy for text that is not time
  kTextTimestamp,  // ISO-8601 text: 'T' or ' ', optional fractions, 'Z' or an offset (to UTC)
  kUnixSeconds,    // numbers (or numeric text) of seconds since 1970-01-01 UTC
  kUnixMillis,     // numbers (or numeric text) of milliseconds since 1970-01-01 UTC
  kInteger,        // numeric text compared as a number
};

struct CursorPlan {
  CursorKind kind = CursorKind::kNative;
  std::string column_type;  // the column's DuckDB type (the table's, or the source's)
  std::string type;         // DuckDB type of the normalised value (compared, stored, moved back)
  bool decided = true;      // false: decided from the values (DecideCursor)
};

bool IsTimeType(const std::string& duckdb_type);
bool IsNumericType(const std::string& duckdb_type);
std::string_view CursorKindName(CursorKind kind);

// What `ingest_cursors.cursor_type` records: the kind's name, or the column type for kNative and
// kText (so cursors stored before kinds existed read as they were written).
std::string StoredCursorType(const CursorPlan& plan);

// Resolves the definition's cursor_type against the column's type (and the kind a previous run
// recorded). Errors are kInvalidArgument, one line naming the file, the column, its type and the
// fix.
Result<CursorPlan> PlanCursor(const SourceSpec& spec, const std::string& column_type,
                              const std::optional<std::string>& stored_type);

// Decides an undecided plan from the column's values: `non_null` values of which `timestamps`
// read as text timestamps; `max_number` the largest as a number (for numeric columns).
Result<CursorPlan> DecideCursor(const SourceSpec& spec, CursorPlan plan, int64_t non_null,
                                int64_t timestamps, std::optional<double> max_number);

// The lookback fits the kind (a duration for time, a number for numbers, none for text).
Status CheckLookback(const SourceSpec& spec, const CursorPlan& plan);

// SQL: the normalised cursor of `value_sql` (an expression of the column's type); NULL when the
// value does not read as the kind.
std::string CursorValueSql(const CursorPlan& plan, const std::string& value_sql);
// SQL: `value_sql` (text) read as a text timestamp, in UTC.
std::string TextTimestampSql(const std::string& value_sql);

}  // namespace lakeloop::ingest::internal
