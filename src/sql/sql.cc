#include "sql/sql.h"

#include <duckdb.h>

#include <chrono>
#include <mutex>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "core/fs.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/time.h"
#include "sql/internal/encode.h"
#include "sql/internal/handles.h"
#include "sql/internal/sql_text.h"
#include "sql/internal/watchdog.h"

namespace lakeloop::sql {

using internal::Codec;
using internal::DataChunk;
using internal::Extracted;
using internal::LogicalType;
using internal::Prepared;
using internal::QueryResult;
using internal::Watchdog;

namespace {

constexpr size_t kMaxIdleConnections = 16;
// Above this a LIMIT wrapper buys nothing; also keeps limit + 1 from overflowing.
constexpr int64_t kUnboundedLimit = int64_t{1} << 50;

std::string_view StatementTypeName(duckdb_statement_type t) {
  switch (t) {
    case DUCKDB_STATEMENT_TYPE_SELECT:
      return "SELECT";
    case DUCKDB_STATEMENT_TYPE_INSERT:
      return "INSERT";
    case DUCKDB_STATEMENT_TYPE_UPDATE:
      return "UPDATE";
    case DUCKDB_STATEMENT_TYPE_EXPLAIN:
      return "EXPLAIN";
    case DUCKDB_STATEMENT_TYPE_DELETE:
      return "DELETE";
    case DUCKDB_STATEMENT_TYPE_PREPARE:
      return "PREPARE";
    case DUCKDB_STATEMENT_TYPE_CREATE:
      return "CREATE";
    case DUCKDB_STATEMENT_TYPE_EXECUTE:
      return "EXECUTE";
    case DUCKDB_STATEMENT_TYPE_ALTER:
      return "ALTER";
    case DUCKDB_STATEMENT_TYPE_TRANSACTION:
      return "TRANSACTION";
    case DUCKDB_STATEMENT_TYPE_COPY:
      return "COPY";
    case DUCKDB_STATEMENT_TYPE_ANALYZE:
      return "ANALYZE";
    case DUCKDB_STATEMENT_TYPE_VARIABLE_SET:
      return "VARIABLE_SET";
    case DUCKDB_STATEMENT_TYPE_CREATE_FUNC:
      return "CREATE_FUNC";
    case DUCKDB_STATEMENT_TYPE_DROP:
      return "DROP";
    case DUCKDB_STATEMENT_TYPE_EXPORT:
      return "EXPORT";
    case DUCKDB_STATEMENT_TYPE_PRAGMA:
      return "PRAGMA";
    case DUCKDB_STATEMENT_TYPE_VACUUM:
      return "VACUUM";
    case DUCKDB_STATEMENT_TYPE_CALL:
      return "CALL";
    case DUCKDB_STATEMENT_TYPE_SET:
      return "SET";
    case DUCKDB_STATEMENT_TYPE_LOAD:
      return "LOAD";
    case DUCKDB_STATEMENT_TYPE_RELATION:
      return "RELATION";
    case DUCKDB_STATEMENT_TYPE_EXTENSION:
      return "EXTENSION";
    case DUCKDB_STATEMENT_TYPE_LOGICAL_PLAN:
      return "LOGICAL_PLAN";
    case DUCKDB_STATEMENT_TYPE_ATTACH:
      return "ATTACH";
    case DUCKDB_STATEMENT_TYPE_DETACH:
      return "DETACH";
    case DUCKDB_STATEMENT_TYPE_MULTI:
      return "MULTI";
    default:
      return "INVALID";
  }
}

Status SqlError(const char* message) {
  return Status(Code::kSqlError, message != nullptr ? message : "unknown DuckDB error");
}

Status ResultError(duckdb_result* r) {
  if (duckdb_result_error_type(r) == DUCKDB_ERROR_OUT_OF_MEMORY) {
    return Status(Code::kResourceExhausted, duckdb_result_error(r));
  }
  return SqlError(duckdb_result_error(r));
}

Status CheckUserText(std::string_view sql) {
  if (sql.find('\0') != std::string_view::npos) {
    return InvalidArgument("SQL must not contain NUL characters");
  }
  if (internal::IsBlankSql(sql)) return InvalidArgument("SQL is empty");
  return Status::Ok();
}

// Parses `sql` (no binding, so no side effects) and requires exactly one statement.
Status ExtractOne(duckdb_connection c, const std::string& sql, Extracted* extracted) {
  const idx_t n = duckdb_extract_statements(c, sql.c_str(), extracted->out());
  if (n == 0) {
    const char* error = duckdb_extract_statements_error(extracted->get());
    if (error != nullptr) return SqlError(error);
    return InvalidArgument("SQL is empty");
  }
  if (n > 1) {
    return Status(Code::kStatementNotAllowed,
                  "exactly one statement is allowed here; got " + std::to_string(n));
  }
  return Status::Ok();
}

Result<Prepared> PrepareExtracted(duckdb_connection c, const Extracted& extracted) {
  Prepared prepared;
  if (duckdb_prepare_extracted_statement(c, extracted.get(), 0, prepared.out()) == DuckDBError) {
    return SqlError(duckdb_prepare_error(prepared.get()));
  }
  return prepared;
}

// The one statement in `sql`, prepared (bound, not run).
Result<Prepared> PrepareOne(duckdb_connection c, const std::string& sql) {
  Extracted extracted;
  RETURN_IF_ERROR(ExtractOne(c, sql, &extracted));
  return PrepareExtracted(c, extracted);
}

Status NotAllowedName(std::string_view type) {
  return Status(Code::kStatementNotAllowed,
                "only SELECT and EXPLAIN statements are allowed here; got " + std::string(type));
}

Status NotAllowed(duckdb_statement_type t) { return NotAllowedName(StatementTypeName(t)); }

// Removes an export file (and DuckDB's temporary sibling) whatever happens.
class FileGuard {
 public:
  explicit FileGuard(std::filesystem::path path) : path_(std::move(path)) {}
  // The file itself now belongs to someone else (its temporary sibling is still removed).
  void Release() { keep_ = true; }
  ~FileGuard() {
    std::error_code ec;
    if (!keep_) std::filesystem::remove(path_, ec);
    std::filesystem::remove(path_.parent_path() / ("tmp_" + path_.filename().string()), ec);
  }

 private:
  std::filesystem::path path_;
  bool keep_ = false;
};

}  // namespace

std::string QuoteIdentifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out.push_back('"');
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteLiteral(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('\'');
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

void InterruptGroup::InterruptAll() {
  interrupted_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, m] : members_) m.interrupt();
}

std::vector<std::string> InterruptGroup::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (auto& [id, m] : members_) {
    for (auto& q : m.running()) out.push_back(std::move(q));
  }
  return out;
}

int64_t InterruptGroup::Join(Member member) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t id = next_id_++;
  if (interrupted()) member.interrupt();
  members_.emplace_back(id, std::move(member));
  return id;
}

void InterruptGroup::Leave(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(members_, [id](const auto& m) { return m.first == id; });
}

ScratchFile::~ScratchFile() {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

class Engine::Impl {
 public:
  ~Impl() {
    if (group_ != nullptr) group_->Leave(group_id_);
    for (duckdb_connection c : idle_) duckdb_disconnect(&c);
    if (db_ != nullptr) duckdb_close(&db_);
  }

  Status Open(const EngineOptions& options);
  Result<QueryReply> Run(const QueryRequest& request);
  int64_t OldestStart() { return watchdog_.OldestStart(NowMicros()); }
  Result<std::string> StatementType(std::string_view sql);
  Status Exec(std::string_view sql, const ExecOptions& options);
  Result<int64_t> ExecWithParams(std::string_view sql, const std::vector<NamedParam>& params,
                                 const ExecOptions& options);
  void InterruptAll() { watchdog_.InterruptAll(); }
  std::vector<std::string> Running() { return watchdog_.Running(); }
  void JoinGroup(std::shared_ptr<InterruptGroup> group, InterruptGroup::Member member) {
    group_ = std::move(group);
    group_id_ = group_->Join(std::move(member));
  }
  Result<std::vector<Column>> Describe(std::string_view sql);
  Status ReplaceView(const std::string& schema, const std::string& name,
                     const std::vector<std::string>& files, const std::vector<Column>& columns,
                     const ViewOptions& options);
  Status DropView(const std::string& schema, const std::string& name);

 private:
  // A pooled connection, returned on destruction (or closed, once interrupted: an interrupt that
  // raced with the end of a query must not hit the next one).
  class Lease {
   public:
    explicit Lease(Impl* impl) : impl_(impl), c_(impl->Acquire()) {}
    ~Lease() {
      if (c_ != nullptr) impl_->Release(c_, discard_);
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    duckdb_connection get() const { return c_; }
    void Discard() { discard_ = true; }

   private:
    Impl* impl_;
    duckdb_connection c_;
    bool discard_ = false;
  };

  duckdb_connection Acquire() {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!idle_.empty()) {
        duckdb_connection c = idle_.back();
        idle_.pop_back();
        return c;
      }
    }
    duckdb_connection c = nullptr;
    if (duckdb_connect(db_, &c) == DuckDBError) return nullptr;
    return c;
  }

  void Release(duckdb_connection c, bool discard) {
    if (!discard) {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (idle_.size() < kMaxIdleConnections) {
        idle_.push_back(c);
        return;
      }
    }
    duckdb_disconnect(&c);
  }

  Status Query(duckdb_connection c, const std::string& sql) {
    QueryResult result;
    if (duckdb_query(c, sql.c_str(), result.out()) == DuckDBError) {
      return ResultError(result.get());
    }
    return Status::Ok();
  }

  std::vector<Column> ColumnsOf(duckdb_prepared_statement p, std::vector<Codec>* codecs) {
    const idx_t n = duckdb_prepared_statement_column_count(p);
    std::vector<Column> columns;
    columns.reserve(n);
    for (idx_t i = 0; i < n; ++i) {
      LogicalType type(duckdb_prepared_statement_column_logical_type(p, i));
      // The C API hands out a copy of the name, ours to free.
      const char* name = duckdb_prepared_statement_column_name(p, i);
      columns.push_back({name ? name : "", internal::TypeToSql(type.get(), keywords_)});
      duckdb_free(const_cast<char*>(name));
      if (codecs != nullptr) codecs->push_back(internal::BuildCodec(type.get()));
    }
    return columns;
  }

  // The deadline a query gets: the request's, capped by the engine's max_query_ms.
  int64_t TimeoutFor(int64_t requested) const {
    const int64_t cap = options_.max_query_ms;
    if (requested <= 0) return cap > 0 ? cap : 0;
    return cap > 0 ? std::min(requested, cap) : requested;
  }

  // Registers a query with the watchdog (kUnavailable once InterruptAll ran).
  Status Watch(Watchdog::Ticket* ticket, duckdb_connection c, int64_t timeout_ms,
               std::shared_ptr<std::atomic<bool>> cancelled, std::string_view sql) {
    ticket->connection = c;
    if (timeout_ms > 0) {
      ticket->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    }
    ticket->cancelled = std::move(cancelled);
    ticket->what = options_.name + ": " + std::string(sql.substr(0, 120));
    if (!watchdog_.Add(ticket)) {
      return Unavailable("the server is shutting down; no new queries are started");
    }
    return Status::Ok();
  }

  // Unregisters; a query the watchdog fired on fails with the reason, and its connection is
  // closed rather than pooled.
  Status Unwatch(Watchdog::Ticket* ticket, Lease* lease, Status result, int64_t timeout_ms) {
    watchdog_.Remove(ticket);
    if (ticket->fired == Watchdog::Fired::kNone) return result;
    lease->Discard();
    if (result.ok()) return result;
    switch (ticket->fired) {
      case Watchdog::Fired::kCancelled:
        return Status(Code::kCancelled, "query cancelled: the client went away");
      case Watchdog::Fired::kShutdown:
        return Unavailable("query interrupted: the server is shutting down");
      case Watchdog::Fired::kTooLarge:
        return Status(Code::kPayloadTooLarge,
                      "the Parquet export grew past " + std::to_string(ticket->max_file_bytes) +
                          " bytes; the limit is " + std::to_string(ticket->max_file_bytes) +
                          " (limits.export_max_bytes in lakeloop.yaml)");
      default: {
        std::string m = "query exceeded its time limit of " + std::to_string(timeout_ms) + " ms";
        if (!options_.timeout_key.empty()) m += " (" + options_.timeout_key + ")";
        return Status(Code::kDeadlineExceeded, m);
      }
    }
  }

  Result<QueryReply> RunOn(duckdb_connection c, const QueryRequest& request,
                           Watchdog::Ticket* ticket);
  Result<QueryReply> ExportParquet(duckdb_connection c, const QueryRequest& request,
                                   std::vector<Column> columns, Watchdog::Ticket* ticket);
  Status CheckExplained(duckdb_connection c, std::string_view sql);

  EngineOptions options_;
  std::filesystem::path scratch_;
  duckdb_database db_ = nullptr;
  std::unordered_set<std::string> keywords_;
  std::mutex pool_mu_;
  std::vector<duckdb_connection> idle_;
  std::mutex ddl_mu_;  // view DDL is serialised: concurrent CREATE OR REPLACE would conflict
  Watchdog watchdog_;
  std::shared_ptr<InterruptGroup> group_;
  int64_t group_id_ = -1;
};

Status Engine::Impl::Open(const EngineOptions& options) {
  options_ = options;
  if (options.threads < 1) return InvalidArgument("threads must be at least 1");
  std::filesystem::path lake;
  std::error_code ec;
  if (!options.scratch_dir.empty()) {
    RETURN_IF_ERROR(CreateDirs(options.scratch_dir));
    scratch_ = std::filesystem::canonical(options.scratch_dir, ec);
    if (ec) return IoError("scratch_dir " + options.scratch_dir.string() + ": " + ec.message());
  }
  if (options.sandboxed) {
    if (options.lake_root.empty() || scratch_.empty()) {
      return InvalidArgument("a sandboxed engine needs lake_root and scratch_dir");
    }
    lake = std::filesystem::weakly_canonical(options.lake_root, ec);
    if (ec) return IoError("lake_root " + options.lake_root.string() + ": " + ec.message());
  }

  duckdb_config config = nullptr;
  if (duckdb_create_config(&config) == DuckDBError) return Internal("duckdb_create_config failed");
  std::vector<std::pair<std::string, std::string>> settings = {
      {"threads", std::to_string(options.threads)},
      {"memory_limit", options.memory_limit},
      // Nothing is ever downloaded: parquet, json and icu are built into our libduckdb.
      {"autoinstall_known_extensions", "false"},
      {"autoload_known_extensions", "false"},
      {"allow_community_extensions", "false"},
  };
  if (!scratch_.empty()) settings.emplace_back("temp_directory", scratch_.string());
  for (const auto& [name, value] : settings) {
    if (duckdb_set_config(config, name.c_str(), value.c_str()) == DuckDBError) {
      duckdb_destroy_config(&config);
      return InvalidArgument("DuckDB rejected setting " + name + "='" + value + "'");
    }
  }
  char* error = nullptr;
  const duckdb_state opened = duckdb_open_ext(nullptr, &db_, config, &error);
  duckdb_destroy_config(&config);
  if (opened == DuckDBError) {
    std::string message = error != nullptr ? error : "unknown error";
    if (error != nullptr) duckdb_free(error);
    db_ = nullptr;
    return Internal("cannot open DuckDB: " + message);
  }

  Lease lease(this);
  if (lease.get() == nullptr) return Internal("cannot connect to DuckDB");
  if (options.sandboxed) {
    // Order matters: the directories first, then no other file access, then no more changes.
    // allowed_directories is a list, which duckdb_set_config cannot express; SET GLOBAL changes
    // the same database config, and no other connection exists yet.
    auto dir = [](const std::filesystem::path& p) { return QuoteLiteral(p.string() + "/"); };
    RETURN_IF_ERROR(Query(lease.get(), "SET GLOBAL allowed_directories = [" + dir(lake) + ", " +
                                           dir(scratch_) + "]"));
    RETURN_IF_ERROR(Query(lease.get(), "SET GLOBAL enable_external_access = false"));
    RETURN_IF_ERROR(Query(lease.get(), "SET GLOBAL lock_configuration = true"));
  }

  // Keywords decide when a struct field name must be quoted in type text.
  QueryResult result;
  if (duckdb_query(lease.get(), "SELECT keyword_name FROM duckdb_keywords()", result.out()) ==
      DuckDBError) {
    return ResultError(result.get());
  }
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(*result.get()));
    if (chunk.get() == nullptr) break;
    duckdb_vector vec = duckdb_data_chunk_get_vector(chunk.get(), 0);
    auto* strings = static_cast<duckdb_string_t*>(duckdb_vector_get_data(vec));
    for (idx_t i = 0; i < duckdb_data_chunk_get_size(chunk.get()); ++i) {
      std::string word(duckdb_string_t_data(&strings[i]), duckdb_string_t_length(strings[i]));
      for (char& ch : word) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      keywords_.insert(std::move(word));
    }
  }
  return Status::Ok();
}

Status Engine::Impl::CheckExplained(duckdb_connection c, std::string_view sql) {
  // EXPLAIN ANALYZE runs its statement: only a SELECT may be explained.
  auto inner = internal::ExplainedStatement(sql);
  if (!inner.has_value() || internal::IsBlankSql(*inner)) {
    return Status(Code::kStatementNotAllowed, "EXPLAIN is allowed only for a SELECT statement");
  }
  const std::string keyword = internal::FirstKeyword(*inner);
  if (!internal::IsQueryKeyword(keyword)) {
    return Status(Code::kStatementNotAllowed,
                  "EXPLAIN is allowed only for a SELECT statement; got " +
                      std::string(internal::StatementTypeForKeyword(keyword)));
  }
  auto prepared = PrepareOne(c, std::string(*inner));
  if (!prepared.ok()) return prepared.status();
  if (duckdb_prepared_statement_type(prepared->get()) != DUCKDB_STATEMENT_TYPE_SELECT) {
    return Status(
        Code::kStatementNotAllowed,
        "EXPLAIN is allowed only for a SELECT statement; got " +
            std::string(StatementTypeName(duckdb_prepared_statement_type(prepared->get()))));
  }
  return Status::Ok();
}

Result<QueryReply> Engine::Impl::Run(const QueryRequest& request) {
  RETURN_IF_ERROR(CheckUserText(request.sql));
  if (request.limit < 0) return InvalidArgument("limit must not be negative");
  if (request.cancelled != nullptr && request.cancelled->load()) {
    return Status(Code::kCancelled, "query cancelled before it started");
  }
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  Watchdog::Ticket ticket;
  const int64_t timeout_ms = TimeoutFor(request.timeout_ms);
  if (request.format == Format::kParquet && request.max_bytes > 0 && !scratch_.empty()) {
    // The export's file, watched so a result growing past the cap is interrupted early.
    ticket.watch_file = scratch_ / ("export-" + NewUuid() + ".parquet");
    ticket.max_file_bytes = request.max_bytes;
  }
  RETURN_IF_ERROR(Watch(&ticket, lease.get(), timeout_ms, request.cancelled, request.sql));
  Result<QueryReply> reply = [&]() -> Result<QueryReply> {
    ASSIGN_OR_RETURN(QueryReply r, RunOn(lease.get(), request, &ticket));
    return r;
  }();
  Status s = Unwatch(&ticket, &lease, reply.status(), timeout_ms);
  if (!s.ok()) return s;
  return reply;
}

Result<QueryReply> Engine::Impl::RunOn(duckdb_connection c, const QueryRequest& request,
                                       Watchdog::Ticket* ticket) {
  Extracted extracted;
  RETURN_IF_ERROR(ExtractOne(c, request.sql, &extracted));
  // Refuse by the leading keyword before DuckDB binds anything (binding can have side effects).
  const std::string keyword = internal::FirstKeyword(request.sql);
  const bool explain = keyword == "EXPLAIN";
  if (!explain && !internal::IsQueryKeyword(keyword)) {
    return NotAllowedName(internal::StatementTypeForKeyword(keyword));
  }
  if (explain) RETURN_IF_ERROR(CheckExplained(c, request.sql));

  std::vector<Codec> codecs;
  std::vector<Column> columns;
  Prepared prepared;
  if (explain || request.format == Format::kParquet || request.limit >= kUnboundedLimit) {
    ASSIGN_OR_RETURN(prepared, PrepareExtracted(c, extracted));
    const duckdb_statement_type type = duckdb_prepared_statement_type(prepared.get());
    if (type != (explain ? DUCKDB_STATEMENT_TYPE_EXPLAIN : DUCKDB_STATEMENT_TYPE_SELECT)) {
      return NotAllowed(type);
    }
    columns = ColumnsOf(prepared.get(), &codecs);
    if (request.format == Format::kParquet) {
      if (explain) return InvalidArgument("Parquet export needs a SELECT statement");
      return ExportParquet(c, request, std::move(columns), ticket);
    }
  } else {
    // The C API materialises whole results unless one uses its deprecated streaming calls, so a
    // query runs wrapped in LIMIT limit+1: a billion-row query produces limit+1 rows. The user
    // text parsed as exactly one statement, so its quotes, comments and parentheses are
    // balanced and it is exactly the subquery; a subquery can only be a query. Duplicate column
    // names come back deduplicated by DuckDB ("a", "a_1").
    std::string wrapped = "SELECT * FROM (\n";
    wrapped.append(internal::StripTrailing(request.sql));
    wrapped.append("\n) LIMIT ");
    wrapped.append(std::to_string(request.limit + 1));
    auto limited = PrepareOne(c, wrapped);
    if (limited.ok() &&
        duckdb_prepared_statement_type(limited->get()) == DUCKDB_STATEMENT_TYPE_SELECT) {
      prepared = std::move(limited).value();
    } else {
      // DuckDB did not take the wrapped text (e.g. a comment after a ';', or a bind error): the
      // original statement gives the right error, or runs as is.
      ASSIGN_OR_RETURN(prepared, PrepareExtracted(c, extracted));
      const duckdb_statement_type type = duckdb_prepared_statement_type(prepared.get());
      if (type != DUCKDB_STATEMENT_TYPE_SELECT) return NotAllowed(type);
    }
    columns = ColumnsOf(prepared.get(), &codecs);
  }
  duckdb_prepared_statement to_run = prepared.get();

  QueryResult result;
  if (duckdb_execute_prepared(to_run, result.out()) == DuckDBError) {
    return ResultError(result.get());
  }

  QueryReply reply;
  std::string& body = reply.body;
  std::string scratch;
  const size_t ncols = columns.size();
  std::vector<duckdb_vector> vectors(ncols);
  const bool json = request.format == Format::kJson;
  JsonWriter w(&body);
  if (json) {
    reply.content_type = "application/json";
    w.BeginObject().Key("columns").BeginArray();
    for (const Column& col : columns) {
      w.BeginObject().Key("name").String(col.name).Key("type").String(col.type).EndObject();
    }
    w.EndArray().Key("rows").BeginArray();
  } else {
    reply.content_type = "text/csv; charset=utf-8";
    for (size_t i = 0; i < ncols; ++i) {
      if (i > 0) body.push_back(',');
      internal::AppendCsvText(columns[i].name, &body);
    }
    body.append("\r\n");
  }
  int64_t rows = 0;
  while (!reply.truncated) {
    DataChunk chunk(duckdb_fetch_chunk(*result.get()));
    if (chunk.get() == nullptr) break;
    const idx_t size = duckdb_data_chunk_get_size(chunk.get());
    for (size_t i = 0; i < ncols; ++i) {
      vectors[i] = duckdb_data_chunk_get_vector(chunk.get(), i);
    }
    for (idx_t r = 0; r < size; ++r) {
      if (rows == request.limit) {
        reply.truncated = true;
        break;
      }
      if (json) {
        w.BeginArray();
        for (size_t i = 0; i < ncols; ++i) {
          internal::WriteJsonValue(codecs[i], vectors[i], r, &w, &scratch);
        }
        w.EndArray();
      } else {
        for (size_t i = 0; i < ncols; ++i) {
          if (i > 0) body.push_back(',');
          internal::AppendCsvField(codecs[i], vectors[i], r, &body, &scratch);
        }
        body.append("\r\n");
      }
      ++rows;
    }
  }
  if (json) {
    w.EndArray().Key("row_count").Int(rows).Key("truncated").Bool(reply.truncated).EndObject();
  }
  reply.row_count = rows;
  reply.columns = std::move(columns);
  return reply;
}

Result<QueryReply> Engine::Impl::ExportParquet(duckdb_connection c, const QueryRequest& request,
                                               std::vector<Column> columns,
                                               Watchdog::Ticket* ticket) {
  if (scratch_.empty()) return InvalidArgument("Parquet export needs a scratch_dir");
  const std::filesystem::path path = ticket->watch_file.empty()
                                         ? scratch_ / ("export-" + NewUuid() + ".parquet")
                                         : ticket->watch_file;
  auto file = std::make_shared<ScratchFile>();
  file->path = path;
  FileGuard guard(path);
  // The user text was prepared above as exactly one SELECT, so its quotes, comments and
  // parentheses are balanced; the newlines end any trailing line comment. The wrapped text must
  // still be exactly one COPY, else nothing runs. With a row cap, one row past it is enough to
  // know the result is over it.
  std::string copy = "COPY (\n";
  if (request.max_rows > 0) copy.append("SELECT * FROM (\n");
  copy.append(internal::StripTrailing(request.sql));
  if (request.max_rows > 0) {
    copy.append("\n) LIMIT ");
    copy.append(std::to_string(std::min(request.max_rows, kUnboundedLimit) + 1));
  }
  copy.append("\n) TO ");
  copy.append(QuoteLiteral(path.string()));
  copy.append(" (FORMAT parquet)");
  ASSIGN_OR_RETURN(Prepared prepared, PrepareOne(c, copy));
  if (duckdb_prepared_statement_type(prepared.get()) != DUCKDB_STATEMENT_TYPE_COPY) {
    return Status(Code::kStatementNotAllowed, "the query cannot be exported as Parquet");
  }
  QueryResult result;
  if (duckdb_execute_prepared(prepared.get(), result.out()) == DuckDBError) {
    return ResultError(result.get());
  }
  QueryReply reply;
  reply.row_count = static_cast<int64_t>(duckdb_rows_changed(result.get()));
  if (request.max_rows > 0 && reply.row_count > request.max_rows) {
    return Status(Code::kPayloadTooLarge,
                  "the Parquet export has more than " + std::to_string(request.max_rows) +
                      " rows; the limit is " + std::to_string(request.max_rows) +
                      " (limits.export_max_rows in lakeloop.yaml); add a LIMIT or a filter");
  }
  std::error_code ec;
  reply.file_bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) return IoError("export file " + path.string() + ": " + ec.message());
  if (request.max_bytes > 0 && reply.file_bytes > request.max_bytes) {
    return Status(Code::kPayloadTooLarge,
                  "the Parquet export is " + std::to_string(reply.file_bytes) +
                      " bytes; the limit is " + std::to_string(request.max_bytes) +
                      " (limits.export_max_bytes in lakeloop.yaml); add a LIMIT or a filter");
  }
  if (request.parquet_to_file) {
    guard.Release();
    reply.file = std::move(file);  // the caller streams it; removed with the last reference
  } else {
    ASSIGN_OR_RETURN(reply.body, ReadFile(path));
  }
  reply.content_type = "application/vnd.apache.parquet";
  reply.columns = std::move(columns);
  return reply;
}

Result<std::string> Engine::Impl::StatementType(std::string_view sql) {
  RETURN_IF_ERROR(CheckUserText(sql));
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  Extracted extracted;
  RETURN_IF_ERROR(ExtractOne(lease.get(), std::string(sql), &extracted));
  const std::string keyword = internal::FirstKeyword(sql);
  if (keyword == "EXPLAIN") return std::string("EXPLAIN");
  if (!internal::IsQueryKeyword(keyword)) {
    // Not bound: binding some statements has side effects.
    return std::string(internal::StatementTypeForKeyword(keyword));
  }
  ASSIGN_OR_RETURN(Prepared prepared, PrepareExtracted(lease.get(), extracted));
  return std::string(StatementTypeName(duckdb_prepared_statement_type(prepared.get())));
}

Status Engine::Impl::Exec(std::string_view sql, const ExecOptions& options) {
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  Watchdog::Ticket ticket;
  const int64_t timeout_ms = TimeoutFor(options.timeout_ms);
  RETURN_IF_ERROR(Watch(&ticket, lease.get(), timeout_ms, options.cancelled, sql));
  Status s = Query(lease.get(), std::string(sql));
  return Unwatch(&ticket, &lease, s, timeout_ms);
}

Result<int64_t> Engine::Impl::ExecWithParams(std::string_view sql,
                                             const std::vector<NamedParam>& params,
                                             const ExecOptions& options) {
  RETURN_IF_ERROR(CheckUserText(sql));
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  ASSIGN_OR_RETURN(Prepared prepared, PrepareOne(lease.get(), std::string(sql)));
  for (const NamedParam& p : params) {
    idx_t index = 0;
    if (duckdb_bind_parameter_index(prepared.get(), &index, p.name.c_str()) == DuckDBError) {
      continue;  // the statement does not use this name
    }
    duckdb_state bound = DuckDBError;
    if (const auto* i = std::get_if<int64_t>(&p.value)) {
      bound = duckdb_bind_int64(prepared.get(), index, *i);
    } else if (const auto* s = std::get_if<std::string>(&p.value)) {
      bound = duckdb_bind_varchar_length(prepared.get(), index, s->data(), s->size());
    } else if (const auto* t = std::get_if<Timestamp>(&p.value)) {
      bound = duckdb_bind_timestamp(prepared.get(), index, duckdb_timestamp{t->micros});
    }
    if (bound == DuckDBError) return InvalidArgument("cannot bind parameter $" + p.name);
  }
  Watchdog::Ticket ticket;
  const int64_t timeout_ms = TimeoutFor(options.timeout_ms);
  RETURN_IF_ERROR(Watch(&ticket, lease.get(), timeout_ms, options.cancelled, sql));
  QueryResult result;
  Status s;
  if (duckdb_execute_prepared(prepared.get(), result.out()) == DuckDBError) {
    s = ResultError(result.get());
  }
  RETURN_IF_ERROR(Unwatch(&ticket, &lease, s, timeout_ms));
  return static_cast<int64_t>(duckdb_rows_changed(result.get()));
}

Result<std::vector<Column>> Engine::Impl::Describe(std::string_view sql) {
  RETURN_IF_ERROR(CheckUserText(sql));
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  Extracted extracted;
  RETURN_IF_ERROR(ExtractOne(lease.get(), std::string(sql), &extracted));
  const std::string keyword = internal::FirstKeyword(sql);
  if (!internal::IsQueryKeyword(keyword)) {
    return Status(Code::kStatementNotAllowed,
                  "only a query can be described; got " +
                      std::string(internal::StatementTypeForKeyword(keyword)));
  }
  // Binding can be slow too (a file's schema is read); it is registered so the shutdown
  // deadline sees and interrupts it like any query.
  Watchdog::Ticket ticket;
  const int64_t timeout_ms = TimeoutFor(0);
  RETURN_IF_ERROR(Watch(&ticket, lease.get(), timeout_ms, nullptr, sql));
  Result<Prepared> prepared = PrepareExtracted(lease.get(), extracted);
  RETURN_IF_ERROR(Unwatch(&ticket, &lease, prepared.status(), timeout_ms));
  return ColumnsOf(prepared->get(), nullptr);
}

Status Engine::Impl::ReplaceView(const std::string& schema, const std::string& name,
                                 const std::vector<std::string>& files,
                                 const std::vector<Column>& columns, const ViewOptions& options) {
  auto has_nul = [](std::string_view s) { return s.find('\0') != std::string_view::npos; };
  if (schema.empty() || name.empty() || has_nul(schema) || has_nul(name)) {
    return InvalidArgument("view schema and name must be non-empty and without NUL");
  }
  std::string body;
  if (!files.empty()) {
    body = "SELECT * FROM read_parquet([";
    for (size_t i = 0; i < files.size(); ++i) {
      if (has_nul(files[i])) return InvalidArgument("file path contains NUL");
      if (i > 0) body.append(", ");
      body.append(QuoteLiteral(files[i]));
    }
    body.append("], hive_partitioning = ");
    body.append(options.hive_partitioning ? "true" : "false");
    if (options.union_by_name) body.append(", union_by_name = true");
    body.append(")");
  } else {
    if (columns.empty()) return InvalidArgument("a view without files needs its columns");
    body = "SELECT ";
    for (size_t i = 0; i < columns.size(); ++i) {
      if (has_nul(columns[i].name) || has_nul(columns[i].type) || columns[i].type.empty()) {
        return InvalidArgument("bad column '" + columns[i].name + "'");
      }
      if (i > 0) body.append(", ");
      body.append("CAST(NULL AS " + columns[i].type + ") AS " + QuoteIdentifier(columns[i].name));
    }
    body.append(" WHERE false");
  }
  std::lock_guard<std::mutex> ddl(ddl_mu_);
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  // Each statement is prepared alone and must be a CREATE: a column type cannot smuggle in more.
  for (const std::string& sql : {"CREATE SCHEMA IF NOT EXISTS " + QuoteIdentifier(schema),
                                 "CREATE OR REPLACE VIEW " + QuoteIdentifier(schema) + "." +
                                     QuoteIdentifier(name) + " AS " + body}) {
    ASSIGN_OR_RETURN(Prepared prepared, PrepareOne(lease.get(), sql));
    if (duckdb_prepared_statement_type(prepared.get()) != DUCKDB_STATEMENT_TYPE_CREATE) {
      return InvalidArgument("view definition is not a single CREATE statement");
    }
    QueryResult result;
    if (duckdb_execute_prepared(prepared.get(), result.out()) == DuckDBError) {
      return ResultError(result.get());
    }
  }
  return Status::Ok();
}

Status Engine::Impl::DropView(const std::string& schema, const std::string& name) {
  std::lock_guard<std::mutex> ddl(ddl_mu_);
  Lease lease(this);
  if (lease.get() == nullptr) return Unavailable("cannot connect to DuckDB");
  return Query(lease.get(),
               "DROP VIEW IF EXISTS " + QuoteIdentifier(schema) + "." + QuoteIdentifier(name));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  RETURN_IF_ERROR(impl->Open(options));
  if (options.interrupt_group != nullptr) {
    Impl* raw = impl.get();
    impl->JoinGroup(options.interrupt_group,
                    {[raw] { raw->InterruptAll(); }, [raw] { return raw->Running(); }});
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Result<QueryReply> Engine::Run(const QueryRequest& request) { return impl_->Run(request); }
Result<std::string> Engine::StatementType(std::string_view sql) {
  return impl_->StatementType(sql);
}
Status Engine::Exec(std::string_view sql) { return impl_->Exec(sql, {}); }
Status Engine::Exec(std::string_view sql, const ExecOptions& options) {
  return impl_->Exec(sql, options);
}
Result<int64_t> Engine::ExecWithParams(std::string_view sql,
                                       const std::vector<NamedParam>& params) {
  return impl_->ExecWithParams(sql, params, {});
}
Result<int64_t> Engine::ExecWithParams(std::string_view sql, const std::vector<NamedParam>& params,
                                       const ExecOptions& options) {
  return impl_->ExecWithParams(sql, params, options);
}
void Engine::InterruptAll() { impl_->InterruptAll(); }
Result<std::vector<Column>> Engine::Describe(std::string_view sql) { return impl_->Describe(sql); }
Status Engine::ReplaceView(const std::string& schema, const std::string& name,
                           const std::vector<std::string>& files,
                           const std::vector<Column>& columns, const ViewOptions& options) {
  return impl_->ReplaceView(schema, name, files, columns, options);
}
Status Engine::DropView(const std::string& schema, const std::string& name) {
  return impl_->DropView(schema, name);
}

int64_t Engine::OldestRunningQueryStart() { return impl_->OldestStart(); }

}  // namespace lakeloop::sql
