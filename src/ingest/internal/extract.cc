#include "ingest/internal/extract.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>

#include "ingest/internal/cursor.h"

namespace lakeloop::ingest::internal {

namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// "schema.table" -> "schema"."table"; a query -> (query) without a trailing ';'.
std::string Relation(const std::string& table, const std::string& query) {
  if (!query.empty()) {
    std::string q = query;
    while (!q.empty() && (std::isspace(static_cast<unsigned char>(q.back())) || q.back() == ';')) {
      q.pop_back();
    }
    return "(" + q + ")";
  }
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t dot = table.find('.', start);
    if (!out.empty()) out += ".";
    out += sql::QuoteIdentifier(table.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

void AppendCsvQuoted(std::string* out, const char* data, size_t n) {
  out->push_back('"');
  for (size_t i = 0; i < n; ++i) {
    if (data[i] == '"') out->push_back('"');
    out->push_back(data[i]);
  }
  out->push_back('"');
}

// ---- SQLite -------------------------------------------------------------------------------------

class SqliteReader : public DbReader {
 public:
  ~SqliteReader() override {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  Status Open(const std::filesystem::path& path, const std::string& table,
              const std::string& query) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
      return InvalidArgument("sqlite database '" + path.string() + "' does not exist");
    }
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      return Unavailable("cannot open sqlite database '" + path.string() +
                         "': " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
    }
    sqlite3_busy_timeout(db_, 10000);
    relation_ = Relation(table, query);
    sqlite3_stmt* stmt = nullptr;
    std::string sql = "SELECT * FROM " + relation_ + " AS _q";
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return InvalidArgument("sqlite: " + std::string(sqlite3_errmsg(db_)));
    }
    for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
      const char* decl = sqlite3_column_decltype(stmt, i);
      columns_.push_back({sqlite3_column_name(stmt, i), SqliteTypeToDuckDb(decl ? decl : "")});
    }
    sqlite3_finalize(stmt);
    return Status::Ok();
  }

  const std::vector<sql::Column>& Columns() const override { return columns_; }

  Result<int64_t> ExtractCsv(const std::string& cursor, const std::string& cursor_type,
                             const std::optional<std::string>& lower,
                             const std::filesystem::path& out) override {
    std::string sql = "SELECT * FROM " + relation_ + " AS _q";
    if (lower) {
      // Numbers compare exactly; text timestamps compare by julianday (a superset: the caller
      // filters exactly after typing); anything else as text.
      std::string c = sql::QuoteIdentifier(cursor);
      if (IsNumericType(cursor_type))
        sql += " WHERE " + c + " > ?1";
      else if (IsTimeType(cursor_type))
        sql += " WHERE julianday(" + c + ") >= julianday(?1) - 0.00001";
      else
        sql += " WHERE " + c + " > ?1";
    }
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return InvalidArgument("sqlite: " + std::string(sqlite3_errmsg(db_)));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    if (lower) {
      if (IsNumericType(cursor_type)) {
        // Bind as a number so integer and real columns compare numerically.
        double d = 0;
        long long i = 0;
        size_t used = 0;
        try {
          i = std::stoll(*lower, &used);
        } catch (...) {
          used = 0;
        }
        if (used == lower->size()) {
          sqlite3_bind_int64(stmt, 1, i);
        } else {
          try {
            d = std::stod(*lower);
          } catch (...) {
            return InvalidArgument("cursor value '" + *lower + "' is not a number");
          }
          sqlite3_bind_double(stmt, 1, d);
        }
      } else {
        sqlite3_bind_text(stmt, 1, lower->c_str(), static_cast<int>(lower->size()),
                          SQLITE_TRANSIENT);
      }
    }
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    if (!f) return IoError("cannot write " + out.string());
    std::string buf;
    const int n = sqlite3_column_count(stmt);
    for (int i = 0; i < n; ++i) {
      if (i) buf.push_back(',');
      std::string name = sqlite3_column_name(stmt, i);
      AppendCsvQuoted(&buf, name.data(), name.size());
    }
    buf.push_back('\n');
    int64_t rows = 0;
    char num[64];
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Unavailable("sqlite: " + std::string(sqlite3_errmsg(db_)));
      for (int i = 0; i < n; ++i) {
        if (i) buf.push_back(',');
        switch (sqlite3_column_type(stmt, i)) {
          case SQLITE_NULL:
            break;
          case SQLITE_FLOAT: {
            int len = std::snprintf(num, sizeof(num), "%.17g", sqlite3_column_double(stmt, i));
            AppendCsvQuoted(&buf, num, static_cast<size_t>(len));
            break;
          }
          case SQLITE_BLOB: {
            // Lower-case hex: bytes need not be valid UTF-8.
            const auto* b = static_cast<const unsigned char*>(sqlite3_column_blob(stmt, i));
            int len = sqlite3_column_bytes(stmt, i);
            std::string hex;
            static const char* kHex = "0123456789abcdef";
            for (int k = 0; k < len; ++k) {
              hex.push_back(kHex[b[k] >> 4]);
              hex.push_back(kHex[b[k] & 15]);
            }
            AppendCsvQuoted(&buf, hex.data(), hex.size());
            break;
          }
          default: {
            const char* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
            AppendCsvQuoted(&buf, t, static_cast<size_t>(sqlite3_column_bytes(stmt, i)));
          }
        }
      }
      buf.push_back('\n');
      ++rows;
      if (buf.size() > (1 << 20)) {
        f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
        buf.clear();
      }
    }
    f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    f.close();
    if (!f) return IoError("cannot write " + out.string());
    return rows;
  }

 private:
  sqlite3* db_ = nullptr;
  std::string relation_;
  std::vector<sql::Column> columns_;
};

// ---- PostgreSQL ---------------------------------------------------------------------------------

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

std::string PgError(PGconn* c) {
  std::string m = PQerrorMessage(c);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

class PostgresReader : public DbReader {
 public:
  ~PostgresReader() override {
    if (conn_ != nullptr) PQfinish(conn_);
  }

  Status Open(const std::string& dsn, const std::string& table, const std::string& query,
              const PostgresTimeouts& timeouts) {
    // connect_timeout bounds the whole connection (TCP, TLS, startup, authentication) per
    // address; as a later keyword it overrides one written in the dsn. libpq's minimum is 2 s.
    const std::string connect_s =
        std::to_string(std::max<int64_t>(2, (timeouts.connect_ms + 999) / 1000));
    const char* keys[] = {"dbname", "connect_timeout", nullptr};
    const char* values[] = {dsn.c_str(), connect_s.c_str(), nullptr};
    conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      std::string m = conn_ ? PgError(conn_) : std::string("out of memory");
      if (m.find("timeout expired") != std::string::npos) {
        return Status(Code::kDeadlineExceeded,
                      "cannot connect to postgres within connect_timeout " + connect_s + "s: " + m);
      }
      return Unavailable("cannot connect to postgres: " + m);
    }
    // Text output we can type exactly: UTC timestamps, ISO dates, round-trip floats; every
    // statement of the run is bounded by statement_timeout.
    std::string set_sql =
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
        "SET extra_float_digits = 3; SET statement_timeout = " +
        std::to_string(std::max<int64_t>(1, timeouts.statement_ms));
    PgResult set(PQexec(conn_, set_sql.c_str()));
    if (PQresultStatus(set.get()) != PGRES_COMMAND_OK) {
      return Unavailable("postgres: " + PgError(conn_));
    }
    relation_ = Relation(table, query);
    std::string sql = "SELECT * FROM " + relation_ + " AS _q";
    PgResult prep(PQprepare(conn_, "", sql.c_str(), 0, nullptr));
    if (PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
      return InvalidArgument("postgres: " + PgError(conn_));
    }
    PgResult desc(PQdescribePrepared(conn_, ""));
    if (PQresultStatus(desc.get()) != PGRES_COMMAND_OK) {
      return InvalidArgument("postgres: " + PgError(conn_));
    }
    for (int i = 0; i < PQnfields(desc.get()); ++i) {
      columns_.push_back({PQfname(desc.get(), i),
                          PostgresTypeToDuckDb(PQftype(desc.get(), i), PQfmod(desc.get(), i))});
    }
    return Status::Ok();
  }

  const std::vector<sql::Column>& Columns() const override { return columns_; }

  Result<int64_t> ExtractCsv(const std::string& cursor, const std::string& /*cursor_type*/,
                             const std::optional<std::string>& lower,
                             const std::filesystem::path& out) override {
    std::string sql = "SELECT * FROM " + relation_ + " AS _q";
    if (lower) {
      char* lit = PQescapeLiteral(conn_, lower->c_str(), lower->size());
      if (lit == nullptr) return InvalidArgument("postgres: " + PgError(conn_));
      sql += " WHERE " + sql::QuoteIdentifier(cursor) + " > " + lit;
      PQfreemem(lit);
    }
    std::string copy = "COPY (" + sql + ") TO STDOUT WITH (FORMAT csv, HEADER true, FORCE_QUOTE *)";
    PgResult started(PQexec(conn_, copy.c_str()));
    if (PQresultStatus(started.get()) != PGRES_COPY_OUT) {
      return QueryError(started.get());
    }
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    if (!f) return IoError("cannot write " + out.string());
    int64_t lines = 0;
    for (;;) {
      char* buf = nullptr;
      int n = PQgetCopyData(conn_, &buf, 0);
      if (n == -1) break;
      if (n == -2) return Unavailable("postgres: " + PgError(conn_));
      f.write(buf, n);
      ++lines;  // one COPY data message per row (the header is one too)
      PQfreemem(buf);
    }
    PgResult done(PQgetResult(conn_));
    if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) {
      Status s = QueryError(done.get());
      return s.code() == Code::kDeadlineExceeded ? s : Unavailable(s.message());
    }
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    f.close();
    if (!f) return IoError("cannot write " + out.string());
    return std::max<int64_t>(0, lines - 1);
  }

 private:
  // 57014 (query_canceled): the statement_timeout ran out.
  Status QueryError(PGresult* r) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr && std::string(state) == "57014") {
      return Status(Code::kDeadlineExceeded, "postgres: " + PgError(conn_));
    }
    return InvalidArgument("postgres: " + PgError(conn_));
  }

  PGconn* conn_ = nullptr;
  std::string relation_;
  std::vector<sql::Column> columns_;
};

}  // namespace

std::string SqliteTypeToDuckDb(const std::string& declared) {
  std::string u = Upper(declared);
  if (u.find("BOOL") != std::string::npos) return "BOOLEAN";
  if (u.find("INT") != std::string::npos) return "BIGINT";
  if (u.find("TIMESTAMP") != std::string::npos || u.find("DATETIME") != std::string::npos) {
    return "TIMESTAMP";
  }
  if (u.find("DATE") != std::string::npos) return "DATE";
  if (u.find("CHAR") != std::string::npos || u.find("CLOB") != std::string::npos ||
      u.find("TEXT") != std::string::npos) {
    return "VARCHAR";
  }
  if (u.find("REAL") != std::string::npos || u.find("FLOA") != std::string::npos ||
      u.find("DOUB") != std::string::npos || u.find("NUMERIC") != std::string::npos ||
      u.find("DEC") != std::string::npos) {
    return "DOUBLE";
  }
  return "VARCHAR";  // BLOB (as hex), no declared type (expressions): declare it in `schema`
}

std::string PostgresTypeToDuckDb(unsigned int oid, int typmod) {
  switch (oid) {
    case 16:
      return "BOOLEAN";
    case 20:
    case 26:  // oid
      return "BIGINT";
    case 21:
      return "SMALLINT";
    case 23:
      return "INTEGER";
    case 700:
      return "FLOAT";
    case 701:
      return "DOUBLE";
    case 1700: {
      if (typmod >= 4) {
        int p = ((typmod - 4) >> 16) & 0xffff;
        int s = (typmod - 4) & 0xffff;
        if (p >= 1 && p <= 38 && s <= p) {
          return "DECIMAL(" + std::to_string(p) + "," + std::to_string(s) + ")";
        }
      }
      return "DOUBLE";  // unconstrained numeric: no fixed scale to keep
    }
    case 1082:
      return "DATE";
    case 1114:
    case 1184:  // timestamptz, read in UTC
      return "TIMESTAMP";
    case 1083:
      return "TIME";
    case 1186:
      return "INTERVAL";
    case 2950:
      return "UUID";
    case 114:
    case 3802:
      return "JSON";
    default:
      return "VARCHAR";  // text, varchar, bpchar, name, bytea (\x hex), arrays, enums, ...
  }
}

Result<std::unique_ptr<DbReader>> OpenSqlite(const std::filesystem::path& database,
                                             const std::string& table, const std::string& query) {
  auto r = std::make_unique<SqliteReader>();
  RETURN_IF_ERROR(r->Open(database, table, query));
  return std::unique_ptr<DbReader>(std::move(r));
}

Result<std::unique_ptr<DbReader>> OpenPostgres(const std::string& dsn, const std::string& table,
                                               const std::string& query,
                                               const PostgresTimeouts& timeouts) {
  auto r = std::make_unique<PostgresReader>();
  RETURN_IF_ERROR(r->Open(dsn, table, query, timeouts));
  return std::unique_ptr<DbReader>(std::move(r));
}

}  // namespace lakeloop::ingest::internal
