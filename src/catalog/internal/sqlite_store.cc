// SQLite backend of catalog::Store. One connection guarded by a mutex: a transaction holds the
// mutex from Begin to Commit/rollback, so transactions are serialised within the process, and
// BEGIN IMMEDIATE + busy_timeout serialise them against other processes sharing the file.
#include <sqlite3.h>

#include "catalog/catalog.h"

namespace lakeloop::catalog {
namespace {

Status SqliteError(sqlite3* db, std::string_view what) {
  int rc = sqlite3_extended_errcode(db);
  Code code = Code::kIoError;
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) code = Code::kUnavailable;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) code = Code::kConflict;
  if ((rc & 0xff) == SQLITE_CORRUPT) code = Code::kDataLoss;
  if ((rc & 0xff) == SQLITE_ERROR) code = Code::kInternal;  // our SQL is wrong
  return Status(code, std::string("catalog: ") + std::string(what) + ": " + sqlite3_errmsg(db));
}

class Statement {
 public:
  Statement(sqlite3* db) : db_(db) {}
  ~Statement() {
    if (stmt_) sqlite3_finalize(stmt_);
  }
  Status Prepare(std::string_view sql, const char** tail) {
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt_, tail) !=
        SQLITE_OK) {
      return SqliteError(db_, "prepare '" + std::string(sql.substr(0, 80)) + "'");
    }
    return Status::Ok();
  }
  Status Bind(const std::vector<Value>& params) {
    if (!stmt_) return Status::Ok();
    if (sqlite3_bind_parameter_count(stmt_) != static_cast<int>(params.size())) {
      return Internal("catalog: parameter count mismatch in '" +
                      std::string(sqlite3_sql(stmt_)).substr(0, 80) + "'");
    }
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i + 1);
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              return sqlite3_bind_null(stmt_, idx);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return sqlite3_bind_int64(stmt_, idx, v);
            } else if constexpr (std::is_same_v<T, double>) {
              return sqlite3_bind_double(stmt_, idx, v);
            } else {
              return sqlite3_bind_text(stmt_, idx, v.data(), static_cast<int>(v.size()),
                                       SQLITE_TRANSIENT);
            }
          },
          params[i]);
      if (rc != SQLITE_OK) return SqliteError(db_, "bind");
    }
    return Status::Ok();
  }
  // Steps to completion, collecting rows when `out` is given.
  Status Run(Rows* out) {
    if (!stmt_) return Status::Ok();
    std::vector<std::string> cols;
    std::vector<std::vector<Value>> rows;
    int n = sqlite3_column_count(stmt_);
    for (int i = 0; i < n; ++i) cols.emplace_back(sqlite3_column_name(stmt_, i));
    for (;;) {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqliteError(db_, "step");
      if (!out) continue;
      std::vector<Value> row;
      row.reserve(n);
      for (int i = 0; i < n; ++i) {
        switch (sqlite3_column_type(stmt_, i)) {
          case SQLITE_NULL:
            row.emplace_back(std::monostate{});
            break;
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt_, i)));
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(stmt_, i));
            break;
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
            row.emplace_back(std::string(p ? p : "", sqlite3_column_bytes(stmt_, i)));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    if (out) *out = Rows(std::move(cols), std::move(rows));
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Runs every statement in `sql`; parameters go to the single statement when given.
Status RunAll(sqlite3* db, std::string_view sql, const std::vector<Value>& params, Rows* out) {
  const char* p = sql.data();
  const char* end = sql.data() + sql.size();
  bool first = true;
  while (p < end) {
    Statement st(db);
    const char* tail = nullptr;
    RETURN_IF_ERROR(st.Prepare(std::string_view(p, end - p), &tail));
    if (first) RETURN_IF_ERROR(st.Bind(params));
    first = false;
    RETURN_IF_ERROR(st.Run(out));
    if (!tail || tail == p) break;
    p = tail;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ';')) ++p;
  }
  return Status::Ok();
}

class SqliteStore;

class SqliteTransaction : public Transaction {
 public:
  SqliteTransaction(sqlite3* db, std::unique_lock<std::mutex> lock)
      : db_(db), lock_(std::move(lock)) {}
  ~SqliteTransaction() override {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status Exec(std::string_view sql, const std::vector<Value>& params) override {
    return RunAll(db_, sql, params, nullptr);
  }
  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params) override {
    Rows rows;
    RETURN_IF_ERROR(RunAll(db_, sql, params, &rows));
    return rows;
  }
  int64_t Changes() override { return sqlite3_changes64(db_); }
  Status Commit() override {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      Status s = SqliteError(db_, "commit");
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      done_ = true;
      return s;
    }
    done_ = true;
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  std::unique_lock<std::mutex> lock_;
  bool done_ = false;
};

class SqliteStore : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close_v2(db_); }

  Result<std::unique_ptr<Transaction>> Begin() override {
    std::unique_lock<std::mutex> lock(mu_);
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqliteError(db_, "begin");
    }
    return std::unique_ptr<Transaction>(new SqliteTransaction(db_, std::move(lock)));
  }
  std::string_view backend() const override { return "sqlite"; }

 private:
  sqlite3* db_;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqlite(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return IoError("catalog: open " + file.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 10000);
  const char* pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";
  if (sqlite3_exec(db, pragmas, nullptr, nullptr, nullptr) != SQLITE_OK) {
    Status s = SqliteError(db, "pragmas");
    sqlite3_close_v2(db);
    return s;
  }
  return std::unique_ptr<Store>(new SqliteStore(db));
}

}  // namespace lakeloop::catalog
