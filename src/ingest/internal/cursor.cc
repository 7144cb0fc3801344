#include "ingest/internal/cursor.h"

#include <cctype>

namespace lakeloop::ingest::internal {

namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool IsTextType(const std::string& t) {
  std::string u = Upper(t);
  return u == "VARCHAR" || u.rfind("VARCHAR(", 0) == 0 || u == "TEXT" || u == "STRING";
}

std::string Where(const SourceSpec& spec, const std::string& column_type) {
  return spec.file_name + ": cursor column '" + spec.cursor + "' (" + column_type + ")";
}

constexpr const char* kTimeKinds = "cursor_type: text_timestamp, unix_seconds or unix_millis";

// Milliseconds since the epoch as a TIMESTAMP, NULL outside the years 1..9999.
std::string EpochMs(const std::string& ms) {
  return "CASE WHEN " + ms + " BETWEEN -62135596800000 AND 253402300799000 THEN epoch_ms(" + ms +
         ") END";
}

}  // namespace

bool IsNumericType(const std::string& t) {
  static const char* kNumeric[] = {"TINYINT",  "SMALLINT",  "INTEGER",  "BIGINT",  "HUGEINT",
                                   "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT",
                                   "REAL",     "DOUBLE",    "DECIMAL",  "NUMERIC", "INT"};
  std::string u = Upper(t);
  for (const char* n : kNumeric) {
    if (u.rfind(n, 0) == 0) return true;
  }
  return false;
}

bool IsTimeType(const std::string& t) {
  std::string u = Upper(t);
  return u.rfind("TIMESTAMP", 0) == 0 || u == "DATE" || u == "DATETIME";
}

std::string_view CursorKindName(CursorKind kind) {
  switch (kind) {
    case CursorKind::kNative:
      return "native";
    case CursorKind::kText:
      return "text";
    case CursorKind::kTextTimestamp:
      return "text_timestamp";
    case CursorKind::kUnixSeconds:
      return "unix_seconds";
    case CursorKind::kUnixMillis:
      return "unix_millis";
    case CursorKind::kInteger:
      return "integer";
  }
  return "native";
}

std::string StoredCursorType(const CursorPlan& plan) {
  if (plan.kind == CursorKind::kNative || plan.kind == CursorKind::kText) return plan.column_type;
  return std::string(CursorKindName(plan.kind));
}

namespace {

CursorPlan Make(CursorKind kind, const std::string& column_type) {
  CursorPlan p;
  p.kind = kind;
  p.column_type = column_type;
  switch (kind) {
    case CursorKind::kNative:
    case CursorKind::kText:
      p.type = column_type;
      break;
    case CursorKind::kTextTimestamp:
    case CursorKind::kUnixSeconds:
    case CursorKind::kUnixMillis:
      p.type = "TIMESTAMP";
      break;
    case CursorKind::kInteger:
      p.type = "BIGINT";
      break;
  }
  return p;
}

std::optional<CursorKind> KindNamed(const std::string& name) {
  for (CursorKind k : {CursorKind::kTextTimestamp, CursorKind::kUnixSeconds,
                       CursorKind::kUnixMillis, CursorKind::kInteger}) {
    if (name == CursorKindName(k)) return k;
  }
  return std::nullopt;
}

}  // namespace

Result<CursorPlan> PlanCursor(const SourceSpec& spec, const std::string& column_type,
                              const std::optional<std::string>& stored_type) {
  const bool time = IsTimeType(column_type);
  const bool number = IsNumericType(column_type);
  const bool text = IsTextType(column_type);
  if (!time && !number && !text) {
    return InvalidArgument(Where(spec, column_type) +
                           " cannot order loads: choose a TIMESTAMP, DATE, number or "
                           "timestamp-text column as the cursor");
  }
  std::string declared = spec.cursor_type;
  if (declared.empty() && stored_type && KindNamed(*stored_type)) declared = *stored_type;
  if (declared == "timestamp" || declared == "text_timestamp") {
    if (time) return Make(CursorKind::kNative, column_type);
    if (text) return Make(CursorKind::kTextTimestamp, column_type);
    return InvalidArgument(Where(spec, column_type) + " holds numbers, not timestamps: write " +
                           "cursor_type: unix_seconds or unix_millis (or integer)");
  }
  if (declared == "unix_seconds" || declared == "unix_millis") {
    if (time) {
      return InvalidArgument(Where(spec, column_type) + " already holds timestamps: write " +
                             "cursor_type: timestamp (or leave it out)");
    }
    return Make(declared == "unix_seconds" ? CursorKind::kUnixSeconds : CursorKind::kUnixMillis,
                column_type);
  }
  if (declared == "integer") {
    if (number) return Make(CursorKind::kNative, column_type);
    if (text) return Make(CursorKind::kInteger, column_type);
    return InvalidArgument(Where(spec, column_type) + " holds timestamps, not integers: write " +
                           "cursor_type: timestamp (or leave it out)");
  }
  // Undeclared: the column's type decides, or its values (text; numbers behind a duration).
  if (time) return Make(CursorKind::kNative, column_type);
  const bool duration = spec.lookback && spec.lookback->is_duration;
  if (number && !duration) return Make(CursorKind::kNative, column_type);
  CursorPlan p = Make(number ? CursorKind::kNative : CursorKind::kText, column_type);
  p.decided = false;
  return p;
}

Result<CursorPlan> DecideCursor(const SourceSpec& spec, CursorPlan plan, int64_t non_null,
                                int64_t timestamps, std::optional<double> max_number) {
  if (plan.decided) return plan;
  if (IsNumericType(plan.column_type)) {
    // A duration lookback over numbers: unix time, seconds or milliseconds by magnitude
    // (1e8..1e11 s is 1973..5138; 1e11..1e14 ms likewise).
    if (!max_number) return Make(CursorKind::kUnixSeconds, plan.column_type);
    double m = *max_number;
    if (m >= 1e8 && m < 1e11) return Make(CursorKind::kUnixSeconds, plan.column_type);
    if (m >= 1e11 && m < 1e14) return Make(CursorKind::kUnixMillis, plan.column_type);
    return InvalidArgument(Where(spec, plan.column_type) + " holds numbers such as " +
                           std::to_string(static_cast<int64_t>(m)) +
                           " that are not unix time, so lookback '" + spec.lookback->text +
                           "' cannot apply: write " + kTimeKinds +
                           ", or a numeric lookback (e.g. 100)");
  }
  // Text: timestamps when most values read as one (the others are bad rows).
  if (non_null == 0 || timestamps * 2 > non_null) {
    return Make(CursorKind::kTextTimestamp, plan.column_type);
  }
  return Make(CursorKind::kText, plan.column_type);
}

Status CheckLookback(const SourceSpec& spec, const CursorPlan& plan) {
  if (!spec.lookback) return Status::Ok();
  const Lookback& lb = *spec.lookback;
  const bool time_kind = plan.kind == CursorKind::kTextTimestamp ||
                         plan.kind == CursorKind::kUnixSeconds ||
                         plan.kind == CursorKind::kUnixMillis ||
                         (plan.kind == CursorKind::kNative && IsTimeType(plan.column_type));
  if (plan.kind == CursorKind::kText) {
    return InvalidArgument(Where(spec, plan.column_type) +
                           " holds text that does not read as timestamps, so lookback '" + lb.text +
                           "' cannot apply: write " + kTimeKinds +
                           " (or integer), or remove the lookback");
  }
  if (time_kind && !lb.is_duration) {
    return InvalidArgument(Where(spec, plan.column_type) + " holds timestamps: write lookback '" +
                           lb.text + "' as a duration (90s, 15m, 1h, 2d)");
  }
  if (!time_kind && lb.is_duration) {
    return InvalidArgument(Where(spec, plan.column_type) + " holds numbers, so lookback '" +
                           lb.text + "' must be a number (e.g. 100), or write " + kTimeKinds);
  }
  return Status::Ok();
}

std::string TextTimestampSql(const std::string& v) {
  // A trailing offset (+02, +0200, +02:00) after a time converts to UTC; no offset or 'Z' is UTC.
  // (TIMESTAMPTZ parses the offset; epoch_us makes the instant independent of the session zone.)
  return "CASE WHEN regexp_matches(" + v +
         ", '\\d:\\d\\d(:\\d\\d([.,]\\d*)?)?\\s*[+-]\\d\\d(:?\\d\\d)?$') THEN "
         "make_timestamp(epoch_us(TRY_CAST(" +
         v + " AS TIMESTAMPTZ))) ELSE TRY_CAST(" + v + " AS TIMESTAMP) END";
}

std::string CursorValueSql(const CursorPlan& plan, const std::string& v) {
  switch (plan.kind) {
    case CursorKind::kNative:
    case CursorKind::kText:
      return v;
    case CursorKind::kTextTimestamp:
      return TextTimestampSql("CAST(" + v + " AS VARCHAR)");
    case CursorKind::kUnixSeconds:
      return EpochMs("TRY_CAST(round(TRY_CAST(" + v + " AS DOUBLE) * 1000) AS BIGINT)");
    case CursorKind::kUnixMillis:
      return EpochMs("TRY_CAST(round(TRY_CAST(" + v + " AS DOUBLE)) AS BIGINT)");
    case CursorKind::kInteger:
      return "TRY_CAST(" + v + " AS BIGINT)";
  }
  return v;
}

}  // namespace lakeloop::ingest::internal
