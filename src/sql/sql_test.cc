// Engine tests: sandbox, statement policy, views, limits, Parquet export, interrupts, concurrency.
#include "sql/sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace lakeloop::sql {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;

class SqlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lakeloop-sql-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    lake_ = root_ / "lake";
    scratch_ = root_ / "scratch";
    fs::create_directories(lake_ / "t");
    fs::create_directories(root_ / "outside");
    fs::create_directories(root_ / "lake2");

    EngineOptions internal_options;
    internal_options.sandboxed = false;
    internal_options.scratch_dir = root_ / "internal-scratch";
    auto internal = Engine::Open(internal_options);
    ASSERT_TRUE(internal.ok()) << internal.status().ToString();
    internal_ = std::move(internal).value();
    // Test data: written through the trusted engine, as ingest would.
    WriteParquet("SELECT range AS id, 'n' || range AS name FROM range(10)",
                 lake_ / "t" / "a.parquet");
    WriteParquet("SELECT 42 AS secret", root_ / "outside" / "x.parquet");
    WriteParquet("SELECT 42 AS secret", root_ / "lake2" / "x.parquet");

    EngineOptions options;
    options.lake_root = lake_;
    options.scratch_dir = scratch_;
    auto engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
  }

  void TearDown() override {
    engine_.reset();
    internal_.reset();
    fs::remove_all(root_);
  }

  void WriteParquet(const std::string& select, const fs::path& path) {
    Status s = internal_->Exec("COPY (" + select + ") TO " + QuoteLiteral(path.string()) +
                               " (FORMAT parquet)");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  Result<QueryReply> Run(const std::string& sql, int64_t limit = 100,
                         Format format = Format::kJson) {
    QueryRequest request;
    request.sql = sql;
    request.limit = limit;
    request.format = format;
    request.timeout_ms = 20000;
    return engine_->Run(request);
  }

  // The single value of a one-row, one-column JSON reply, as JSON text.
  std::string Scalar(const std::string& sql) {
    auto reply = Run(sql);
    EXPECT_TRUE(reply.ok()) << sql << ": " << reply.status().ToString();
    if (!reply.ok()) return "";
    const std::string& body = reply->body;
    const size_t start = body.find("\"rows\":[[") + 9;
    return body.substr(start, body.find("]]", start) - start);
  }

  size_t ScratchFiles() {
    if (!fs::exists(scratch_)) return 0;
    return static_cast<size_t>(std::distance(fs::directory_iterator(scratch_), {}));
  }

  fs::path root_, lake_, scratch_;
  std::unique_ptr<Engine> internal_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(SqlTest, SandboxRefusesFilesOutsideTheLake) {
  for (const std::string& sql : std::vector<std::string>{
           "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_text('/etc/hostname')",
           "SELECT * FROM read_parquet(" + QuoteLiteral((root_ / "outside/x.parquet").string()) +
               ")",
           // A sibling directory sharing lake_root as a string prefix.
           "SELECT * FROM read_parquet(" + QuoteLiteral((root_ / "lake2/x.parquet").string()) + ")",
           "SELECT * FROM read_parquet(" + QuoteLiteral((lake_ / "../outside/x.parquet").string()) +
               ")",
           "SELECT * FROM glob('/etc/*')", "SELECT * FROM read_csv('https://example.com/x.csv')"}) {
    auto reply = Run(sql);
    ASSERT_FALSE(reply.ok()) << sql;
    EXPECT_EQ(reply.status().code(), Code::kSqlError) << sql;
    EXPECT_THAT(reply.status().message(), HasSubstr("Permission Error")) << sql;
  }
  // The same file is readable through the unsandboxed engine: the sandbox is what refused.
  auto reply = internal_->Run({.sql = "SELECT * FROM read_parquet(" +
                                      QuoteLiteral((root_ / "outside/x.parquet").string()) + ")"});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
}

TEST_F(SqlTest, SandboxReadsTheLake) {
  EXPECT_EQ(Scalar("SELECT count(*) FROM read_parquet(" +
                   QuoteLiteral((lake_ / "t/*.parquet").string()) + ")"),
            "10");
}

TEST_F(SqlTest, RunRefusesEverythingButSelectAndExplain) {
  const fs::path evil = lake_ / "evil.parquet";
  const std::string evil_lit = QuoteLiteral(evil.string());
  struct Case {
    std::string sql;
    std::string type;  // expected in the message; empty: any refusal
  };
  const std::vector<Case> cases = {
      {"COPY (SELECT 1) TO '/tmp/lakeloop-sql-test-x'", ""},
      {"COPY (SELECT 1) TO " + evil_lit + " (FORMAT parquet)", "COPY"},
      {"ATTACH " + QuoteLiteral((lake_ / "a.db").string()) + " AS a", "ATTACH"},
      {"INSTALL httpfs", ""},
      {"LOAD httpfs", ""},
      {"CREATE TABLE created AS SELECT 1 AS a", "CREATE"},
      {"CREATE VIEW created AS SELECT 1 AS a", "CREATE"},
      {"SET threads = 8", "SET"},
      {"RESET threads", ""},
      {"PRAGMA enable_profiling", "PRAGMA"},
      {"CALL pragma_version()", "CALL"},
      {"BEGIN TRANSACTION", "TRANSACTION"},
      // Binding EXPORT creates its directory: it must be refused before DuckDB binds it.
      {"EXPORT DATABASE " + QuoteLiteral((lake_ / "exp").string()), "EXPORT"},
      {"EXPLAIN EXPORT DATABASE " + QuoteLiteral((lake_ / "exp").string()), ""},
      {"WITH a AS (SELECT 1) INSERT INTO nowhere SELECT * FROM a", ""},
      {"EXPLAIN ANALYZE COPY (SELECT 1) TO " + evil_lit + " (FORMAT parquet)", "COPY"},
      {"EXPLAIN ANALYZE CREATE TABLE created AS SELECT 1 AS a", "CREATE"},
      {"EXPLAIN ANALYZE (FORMAT json) CREATE TABLE created AS SELECT 1 AS a", ""},
  };
  for (const Case& c : cases) {
    auto reply = Run(c.sql);
    ASSERT_FALSE(reply.ok()) << c.sql;
    EXPECT_THAT(reply.status().code(), AnyOf(Code::kStatementNotAllowed, Code::kSqlError))
        << c.sql << ": " << reply.status().ToString();
    if (!c.type.empty()) {
      EXPECT_EQ(reply.status().code(), Code::kStatementNotAllowed) << c.sql;
      EXPECT_THAT(reply.status().message(), HasSubstr("got " + c.type)) << c.sql;
    }
  }
  EXPECT_FALSE(fs::exists("/tmp/lakeloop-sql-test-x"));
  EXPECT_FALSE(fs::exists(evil));
  EXPECT_FALSE(fs::exists(lake_ / "a.db"));
  EXPECT_FALSE(fs::exists(lake_ / "exp"));
  auto created = Run("SELECT * FROM created");
  EXPECT_EQ(created.status().code(), Code::kSqlError);
  EXPECT_EQ(Scalar("SELECT current_setting('threads')"), "2");

  auto create = Run("CREATE TABLE x(a INTEGER)");
  EXPECT_EQ(create.status().message(),
            "only SELECT and EXPLAIN statements are allowed here; got CREATE");
}

TEST_F(SqlTest, RunRefusesSeveralStatements) {
  for (const char* sql :
       {"SELECT 1; SELECT 2", "SELECT 1; CREATE TABLE sneaky(a INTEGER)", "SELECT 1;;SELECT 2;"}) {
    auto reply = Run(sql);
    ASSERT_FALSE(reply.ok()) << sql;
    EXPECT_EQ(reply.status().code(), Code::kStatementNotAllowed) << sql;
    EXPECT_THAT(reply.status().message(), HasSubstr("exactly one statement"));
  }
  EXPECT_EQ(Run("SELECT * FROM sneaky").status().code(), Code::kSqlError);
}

TEST_F(SqlTest, ConfigurationIsLocked) {
  EXPECT_EQ(engine_->Exec("SET GLOBAL enable_external_access = true").code(), Code::kSqlError);
  EXPECT_EQ(engine_->Exec("SET allowed_directories = ['/']").code(), Code::kSqlError);
  EXPECT_EQ(engine_->Exec("SET autoinstall_known_extensions = true").code(), Code::kSqlError);
  EXPECT_EQ(Scalar("SELECT current_setting('enable_external_access')"), "false");
  EXPECT_EQ(Scalar("SELECT current_setting('lock_configuration')"), "true");
  EXPECT_EQ(Scalar("SELECT current_setting('autoinstall_known_extensions')"), "false");
  EXPECT_EQ(Scalar("SELECT current_setting('autoload_known_extensions')"), "false");
  EXPECT_EQ(Scalar("SELECT current_setting('temp_directory')"),
            "\"" + fs::canonical(scratch_).string() + "\"");
}

TEST_F(SqlTest, EmptyAndBrokenSql) {
  for (const char* sql : {"", "   ", ";", "-- only a comment", "/* x */ ;"}) {
    EXPECT_EQ(Run(sql).status().code(), Code::kInvalidArgument) << "'" << sql << "'";
  }
  EXPECT_EQ(Run(std::string("SELECT 1\0; DROP", 16)).status().code(), Code::kInvalidArgument);
  auto parse = Run("SELEC 1");
  EXPECT_EQ(parse.status().code(), Code::kSqlError);
  EXPECT_THAT(parse.status().message(), HasSubstr("Parser Error"));
  auto bind = Run("SELECT * FROM no_such_table");
  EXPECT_EQ(bind.status().code(), Code::kSqlError);
  EXPECT_THAT(bind.status().message(), HasSubstr("no_such_table"));
  auto runtime = Run("SELECT CAST('x' || range AS INTEGER) FROM range(3)");
  EXPECT_EQ(runtime.status().code(), Code::kSqlError);
  EXPECT_THAT(runtime.status().message(), HasSubstr("Conversion Error"));
}

TEST_F(SqlTest, ExplainRuns) {
  auto reply = Run("EXPLAIN SELECT count(*) FROM range(10)");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->columns.size(), 2u);
  EXPECT_EQ(reply->columns[0].name, "explain_key");
  EXPECT_THAT(reply->body, HasSubstr("RANGE"));
  EXPECT_TRUE(Run("EXPLAIN ANALYZE SELECT 1").ok());
  EXPECT_EQ(Run("EXPLAIN SELECT 1", 10, Format::kParquet).status().code(), Code::kInvalidArgument);
}

TEST_F(SqlTest, StatementType) {
  EXPECT_EQ(engine_->StatementType("SELECT 1").value(), "SELECT");
  EXPECT_EQ(engine_->StatementType("  FROM range(3)").value(), "SELECT");
  EXPECT_EQ(engine_->StatementType("EXPLAIN SELECT 1").value(), "EXPLAIN");
  EXPECT_EQ(engine_->StatementType("CREATE TABLE x(a INTEGER)").value(), "CREATE");
  EXPECT_EQ(engine_->StatementType("INSERT INTO x VALUES (1)").value(), "INSERT");
  EXPECT_EQ(engine_->StatementType("/* c */ (WITH a AS (SELECT 1) SELECT * FROM a)").value(),
            "SELECT");
  EXPECT_EQ(engine_->StatementType("INSTALL httpfs").value(), "LOAD");
  EXPECT_EQ(engine_->StatementType("BEGIN").value(), "TRANSACTION");
  EXPECT_EQ(engine_->StatementType("SET threads = 1").value(), "SET");
  EXPECT_EQ(engine_->StatementType("SELECT 1; SELECT 2").status().code(),
            Code::kStatementNotAllowed);
  EXPECT_EQ(engine_->StatementType("SELEC 1").status().code(), Code::kSqlError);
  EXPECT_EQ(engine_->StatementType("").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Run("SELECT * FROM x").status().code(), Code::kSqlError);  // nothing was created
}

TEST_F(SqlTest, LimitAndTruncation) {
  auto reply = Run("SELECT range AS n FROM range(10)", 3);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->body, R"({"columns":[{"name":"n","type":"BIGINT"}],"rows":[[0],[1],[2]],)"
                         R"("row_count":3,"truncated":true})");
  EXPECT_EQ(reply->row_count, 3);
  EXPECT_TRUE(reply->truncated);

  reply = Run("SELECT range AS n FROM range(3)", 3);
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->truncated);
  EXPECT_EQ(reply->row_count, 3);

  reply = Run("SELECT range AS n FROM range(3)", 0);
  ASSERT_TRUE(reply.ok());
  EXPECT_THAT(reply->body, HasSubstr(R"("rows":[],"row_count":0,"truncated":true)"));

  reply = Run("SELECT range AS n FROM range(10);  ", 2, Format::kCsv);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->body, "n\r\n0\r\n1\r\n");
  EXPECT_TRUE(reply->truncated);

  // Order survives the LIMIT wrapper; duplicate column names come back deduplicated.
  reply = Run("SELECT range AS a, range AS a FROM range(100000) ORDER BY range DESC -- c", 2);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_THAT(reply->body, HasSubstr(R"("rows":[[99999,99999],[99998,99998]])"));
  EXPECT_EQ(reply->columns[1].name, "a_1");

  EXPECT_EQ(Run("SELECT 1", -1).status().code(), Code::kInvalidArgument);
}

// Only limit+1 rows are produced: ten billion rows would not finish inside the timeout (the
// behaviour asserted is "answers, truncated" rather than an elapsed time; speed is in bench/).
TEST_F(SqlTest, HugeResultIsNotMaterialised) {
  QueryRequest request;
  request.sql = "SELECT a.range AS x FROM range(100000) a, range(100000) b";
  request.limit = 5;
  request.timeout_ms = 60000;
  auto reply = engine_->Run(request);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->row_count, 5);
  EXPECT_TRUE(reply->truncated);
}

TEST_F(SqlTest, TimeoutInterruptsTheQuery) {
  QueryRequest request;
  request.sql = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = 7";
  request.timeout_ms = 200;
  // The join takes minutes: only the interrupt makes it answer, with the timeout's code.
  auto reply = engine_->Run(request);
  EXPECT_EQ(reply.status().code(), Code::kDeadlineExceeded) << reply.status().ToString();
  EXPECT_EQ(Scalar("SELECT 41 + 1"), "42");  // the engine is fine afterwards
}

TEST_F(SqlTest, CancelFlagInterruptsTheQuery) {
  QueryRequest request;
  request.sql = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = 7";
  request.timeout_ms = 60000;
  request.cancelled = std::make_shared<std::atomic<bool>>(false);
  auto flag = request.cancelled;
  bool saw_running = false;
  std::thread canceller([&] {
    // Cancel once the query runs: OldestRunningQueryStart() stays at its start while it runs
    // (it is "now", moving, when nothing runs). Bounded: the flag is set after 30 s regardless.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int64_t last = -1;
    while (std::chrono::steady_clock::now() < deadline) {
      const int64_t start = engine_->OldestRunningQueryStart();
      if (start == last) {
        saw_running = true;
        break;
      }
      last = start;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // poll period
    }
    flag->store(true);
  });
  // Without the interrupt the join would run into the 60 s timeout (kDeadlineExceeded).
  auto reply = engine_->Run(request);
  canceller.join();
  EXPECT_TRUE(saw_running);
  EXPECT_EQ(reply.status().code(), Code::kCancelled) << reply.status().ToString();
  // Already cancelled: nothing runs.
  EXPECT_EQ(engine_->Run(request).status().code(), Code::kCancelled);
  EXPECT_EQ(Scalar("SELECT 41 + 1"), "42");
}

TEST_F(SqlTest, ParquetExport) {
  auto reply = Run("SELECT range AS id, 'v' || range AS v FROM range(1000);", 10, Format::kParquet);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->content_type, "application/vnd.apache.parquet");
  EXPECT_EQ(reply->row_count, 1000);  // the full result, not the limit
  ASSERT_GT(reply->body.size(), 8u);
  EXPECT_EQ(reply->body.substr(0, 4), "PAR1");
  EXPECT_EQ(reply->body.substr(reply->body.size() - 4), "PAR1");
  EXPECT_EQ(reply->columns, (std::vector<Column>{{"id", "BIGINT"}, {"v", "VARCHAR"}}));
  EXPECT_EQ(ScratchFiles(), 0u);
  // Round trip: the bytes are a Parquet file with the rows.
  const fs::path copy = lake_ / "roundtrip.parquet";
  std::ofstream(copy, std::ios::binary) << reply->body;
  EXPECT_EQ(Scalar("SELECT count(*) || '/' || sum(id) FROM read_parquet(" +
                   QuoteLiteral(copy.string()) + ")"),
            "\"1000/499500\"");
}

TEST_F(SqlTest, ParquetExportLeavesNoFilesOnErrors) {
  EXPECT_EQ(Run("SELECT CAST('x' || range AS INTEGER) FROM range(5000)", 10, Format::kParquet)
                .status()
                .code(),
            Code::kSqlError);
  EXPECT_EQ(Run("SELECT 1) TO '/tmp/lakeloop-sql-test-y' (FORMAT csv); --", 10, Format::kParquet)
                .status()
                .code(),
            Code::kSqlError);
  EXPECT_EQ(
      Run("SELECT 1 /* ) TO '/tmp/lakeloop-sql-test-y' */", 10, Format::kParquet).status().code(),
      Code::kOk);
  EXPECT_FALSE(fs::exists("/tmp/lakeloop-sql-test-y"));
  QueryRequest slow;
  slow.sql = "SELECT a.range FROM range(100000) a, range(100000) b WHERE a.range + b.range = 7";
  slow.format = Format::kParquet;
  slow.timeout_ms = 200;
  EXPECT_EQ(engine_->Run(slow).status().code(), Code::kDeadlineExceeded);
  EXPECT_EQ(ScratchFiles(), 0u);
}

TEST_F(SqlTest, ParquetExportCaps) {
  QueryRequest q;
  q.format = Format::kParquet;
  q.timeout_ms = 20000;
  q.max_rows = 100;
  q.sql = "SELECT range AS id FROM range(1000)";
  auto reply = engine_->Run(q);
  EXPECT_EQ(reply.status().code(), Code::kPayloadTooLarge);
  EXPECT_THAT(reply.status().message(), HasSubstr("limits.export_max_rows"));
  q.sql = "SELECT range AS id FROM range(100)";
  reply = engine_->Run(q);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->row_count, 100);
  // Bytes: a result whose file grows past the cap is interrupted (or refused at the end).
  q.max_rows = 0;
  q.max_bytes = 100000;
  q.sql = "SELECT range AS id, md5(range::VARCHAR) AS h FROM range(2000000)";
  reply = engine_->Run(q);
  EXPECT_EQ(reply.status().code(), Code::kPayloadTooLarge);
  EXPECT_THAT(reply.status().message(), HasSubstr("limits.export_max_bytes"));
  EXPECT_EQ(ScratchFiles(), 0u);
  EXPECT_EQ(Scalar("SELECT 41 + 1"), "42");
  // parquet_to_file: the reply names a file, removed with the last reference.
  q.max_bytes = 0;
  q.parquet_to_file = true;
  q.sql = "SELECT range AS id FROM range(10)";
  reply = engine_->Run(q);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_NE(reply->file, nullptr);
  EXPECT_TRUE(reply->body.empty());
  EXPECT_TRUE(fs::exists(reply->file->path));
  EXPECT_EQ(reply->file_bytes, static_cast<int64_t>(fs::file_size(reply->file->path)));
  EXPECT_EQ(
      Scalar("SELECT count(*) FROM read_parquet(" + QuoteLiteral(reply->file->path.string()) + ")"),
      "10");
  fs::path path = reply->file->path;
  reply = Status(Code::kInternal, "drop");
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(SqlTest, EngineTimeLimitCapsEveryQuery) {
  EngineOptions o;
  o.sandboxed = false;
  o.scratch_dir = root_ / "capped";
  o.max_query_ms = 200;
  o.timeout_key = "limits.loads_query_timeout_ms";
  auto engine = Engine::Open(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const std::string slow =
      "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range = 7";
  // The trusted path, which asks for no deadline, gets the engine's.
  Status s = (*engine)->Exec("CREATE TABLE x AS " + slow);
  EXPECT_EQ(s.code(), Code::kDeadlineExceeded) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("limits.loads_query_timeout_ms"));
  EXPECT_EQ((*engine)->ExecWithParams("CREATE TABLE y AS " + slow, {}).status().code(),
            Code::kDeadlineExceeded);
  QueryRequest q;
  q.sql = slow;
  q.timeout_ms = 0;
  EXPECT_EQ((*engine)->Run(q).status().code(), Code::kDeadlineExceeded);
  // Nothing was created; the engine still works.
  EXPECT_TRUE((*engine)->Exec("CREATE TABLE z AS SELECT 1 AS v").ok());
  EXPECT_FALSE((*engine)->Exec("SELECT * FROM x").ok());
  // A cancel flag interrupts the trusted path too.
  ExecOptions eo;
  eo.cancelled = std::make_shared<std::atomic<bool>>(true);
  EXPECT_EQ((*engine)->Exec("CREATE TABLE w AS " + slow, eo).code(), Code::kCancelled);
}

TEST_F(SqlTest, InterruptGroupStopsRunningQueriesAndRefusesNewOnes) {
  auto group = std::make_shared<InterruptGroup>();
  EngineOptions o;
  o.sandboxed = false;
  o.scratch_dir = root_ / "grouped";
  o.interrupt_group = group;
  o.name = "loads";
  auto engine = Engine::Open(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  Status result;
  std::thread runner([&] {
    result = (*engine)->Exec(
        "CREATE TABLE x AS SELECT count(*) FROM range(1000000) a, range(1000000) b "
        "WHERE a.range + b.range = 7");
  });
  // Wait (bounded) until the query is registered as running.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (group->Running().empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(group->Running().size(), 1u);
  EXPECT_THAT(group->Running()[0], HasSubstr("loads: CREATE TABLE x"));
  group->InterruptAll();
  runner.join();
  EXPECT_EQ(result.code(), Code::kUnavailable) << result.ToString();
  EXPECT_EQ((*engine)->Exec("SELECT 1").code(), Code::kUnavailable);
  // An engine opened after the group was interrupted refuses queries at once.
  o.scratch_dir = root_ / "late";
  auto late = Engine::Open(o);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ((*late)->Exec("SELECT 1").code(), Code::kUnavailable);
  // Other engines are not affected.
  EXPECT_EQ(Scalar("SELECT 41 + 1"), "42");
}

TEST_F(SqlTest, Views) {
  const std::vector<Column> columns = {{"id", "BIGINT"}, {"name", "VARCHAR"}};
  ASSERT_TRUE(engine_->ReplaceView("lake", "t", {(lake_ / "t/a.parquet").string()}, columns).ok());
  EXPECT_EQ(Scalar("SELECT count(*) FROM lake.t"), "10");
  EXPECT_EQ(engine_->Describe("SELECT * FROM lake.t").value(), columns);

  // No files: a typed empty relation keeps names and types.
  const std::vector<Column> typed = {{"id", "BIGINT"},
                                     {"amount", "DECIMAL(18,3)"},
                                     {"Mixed \"Name\"", "STRUCT(a INTEGER, b VARCHAR)"},
                                     {"at", "TIMESTAMP WITH TIME ZONE"},
                                     {"tags", "VARCHAR[]"}};
  ASSERT_TRUE(engine_->ReplaceView("lake", "t", {}, typed).ok());
  EXPECT_EQ(engine_->Describe("SELECT * FROM lake.t").value(), typed);
  EXPECT_EQ(Scalar("SELECT count(*) FROM lake.t"), "0");

  // Many files.
  std::vector<std::string> files;
  for (int i = 0; i < 60; ++i) {
    const fs::path p = lake_ / "many" / ("part-" + std::to_string(i) + ".parquet");
    fs::create_directories(p.parent_path());
    WriteParquet("SELECT " + std::to_string(i) + " AS k FROM range(10)", p);
    files.push_back(p.string());
  }
  ASSERT_TRUE(engine_->ReplaceView("lake", "many", files, {{"k", "INTEGER"}}).ok());
  EXPECT_EQ(Scalar("SELECT count(*) || '/' || sum(k) FROM lake.many"), "\"600/17700\"");

  // Files outside the lake are refused by the sandbox, and the old view stays.
  EXPECT_EQ(
      engine_->ReplaceView("lake", "many", {(root_ / "outside/x.parquet").string()}, {}).code(),
      Code::kSqlError);
  EXPECT_EQ(Scalar("SELECT count(*) FROM lake.many"), "600");

  ASSERT_TRUE(engine_->DropView("lake", "many").ok());
  EXPECT_EQ(Run("SELECT * FROM lake.many").status().code(), Code::kSqlError);
  EXPECT_TRUE(engine_->DropView("lake", "many").ok());  // idempotent
  EXPECT_EQ(engine_->ReplaceView("lake", "empty", {}, {}).code(), Code::kInvalidArgument);
}

TEST_F(SqlTest, ViewIdentifiersCannotInject) {
  const std::string schema = "we\"ird";
  const std::string name = "x\" AS SELECT 1; DROP VIEW lake.t; --";
  ASSERT_TRUE(engine_->ReplaceView("lake", "t", {(lake_ / "t/a.parquet").string()}, {}).ok());
  ASSERT_TRUE(engine_->ReplaceView(schema, name, {(lake_ / "t/a.parquet").string()}, {}).ok());
  EXPECT_EQ(Scalar("SELECT count(*) FROM " + QuoteIdentifier(schema) + "." + QuoteIdentifier(name)),
            "10");
  EXPECT_EQ(Scalar("SELECT count(*) FROM lake.t"), "10");
  // A file name cannot break out of its literal either.
  EXPECT_EQ(engine_->ReplaceView("lake", "u", {"x'); CREATE TABLE pwn(a INT); --"}, {}).code(),
            Code::kSqlError);
  // Nor can a column type add statements.
  EXPECT_FALSE(
      engine_->ReplaceView("lake", "u", {}, {{"a", "INTEGER); CREATE TABLE pwn(a INT); --"}}).ok());
  EXPECT_EQ(Run("SELECT * FROM pwn").status().code(), Code::kSqlError);
}

TEST_F(SqlTest, ExecRunsTrustedStatements) {
  ASSERT_TRUE(internal_->Exec("CREATE TABLE a(x INTEGER); INSERT INTO a VALUES (1), (2);").ok());
  auto reply = internal_->Run({.sql = "SELECT sum(x) AS s FROM a"});
  ASSERT_TRUE(reply.ok());
  EXPECT_THAT(reply->body, HasSubstr(R"([["3"]])"));  // sum(INTEGER) is a HUGEINT
  EXPECT_EQ(internal_->Exec("CREATE TABLE a(x INTEGER)").code(), Code::kSqlError);
}

TEST_F(SqlTest, ExecWithParamsBindsNamedParameters) {
  const fs::path out = lake_ / "t" / "params.parquet";
  auto rows = engine_->ExecWithParams(
      "COPY (SELECT * FROM range(10) t(i) WHERE i >= $lo AND $name = 'x' AND "
      "$ts = TIMESTAMP '2026-11-26 00:00:00') TO " +
          QuoteLiteral(out.string()) + " (FORMAT parquet)",
      {{"lo", int64_t{7}},
       {"name", std::string("x")},
       {"ts", Timestamp{1795651200000000}},  // 2026-11-26T00:00:00Z
       {"unused", int64_t{1}}});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, 3);
  EXPECT_EQ(Scalar("SELECT count(*) FROM " + QuoteLiteral(out.string())), "3");
  // A parameter the statement uses but nobody gave; several statements; a DuckDB error.
  EXPECT_EQ(engine_->ExecWithParams("SELECT $missing", {}).status().code(), Code::kSqlError);
  EXPECT_EQ(engine_->ExecWithParams("SELECT 1; SELECT 2", {}).status().code(),
            Code::kStatementNotAllowed);
  EXPECT_EQ(engine_->ExecWithParams("SELECT nope", {}).status().code(), Code::kSqlError);
  // The sandbox still applies.
  EXPECT_FALSE(
      engine_
          ->ExecWithParams(
              "COPY (SELECT 1) TO " + QuoteLiteral((root_ / "outside" / "y.parquet").string()), {})
          .ok());
}

TEST_F(SqlTest, Describe) {
  auto columns = engine_->Describe("SELECT 1::DECIMAL(18,3) AS x, {'a': 1, 'b': 'x'} AS s");
  ASSERT_TRUE(columns.ok()) << columns.status().ToString();
  EXPECT_EQ(*columns,
            (std::vector<Column>{{"x", "DECIMAL(18,3)"}, {"s", "STRUCT(a INTEGER, b VARCHAR)"}}));
  EXPECT_EQ(engine_->Describe("SELECT 1; SELECT 2").status().code(), Code::kStatementNotAllowed);
  EXPECT_EQ(engine_->Describe("SELECT nope").status().code(), Code::kSqlError);
}

TEST_F(SqlTest, QuoteHelpers) {
  EXPECT_EQ(QuoteIdentifier("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(QuoteIdentifier("select"), "\"select\"");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(Scalar("SELECT " + QuoteLiteral("a'b\\c") + " AS " + QuoteIdentifier("x\"y")),
            "\"a'b\\\\c\"");
}

TEST_F(SqlTest, OpenValidatesOptions) {
  EngineOptions options;  // sandboxed without directories
  EXPECT_EQ(Engine::Open(options).status().code(), Code::kInvalidArgument);
  options.sandboxed = false;
  options.memory_limit = "lots";
  EXPECT_EQ(Engine::Open(options).status().code(), Code::kInvalidArgument);
}

// Readers query the very view that another thread keeps replacing: each answer is exactly one of
// the two snapshots (never an error, never a mix), and the last replacement wins.
TEST_F(SqlTest, ConcurrentQueriesAndViewChanges) {
  WriteParquet("SELECT range AS id, 'n' || range AS name FROM range(10, 30)",
               lake_ / "t" / "b.parquet");
  const std::vector<std::string> one = {(lake_ / "t/a.parquet").string()};
  const std::vector<std::string> two = {(lake_ / "t/a.parquet").string(),
                                        (lake_ / "t/b.parquet").string()};
  ASSERT_TRUE(engine_->ReplaceView("lake", "t", one, {}).ok());
  const std::string query = "SELECT count(*) || ':' || sum(id) AS v FROM lake.t";
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::atomic<int> saw_one{0}, saw_two{0};
  std::atomic<bool> replacing{true};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100 || (replacing.load() && i < 100000); ++i) {
        auto reply = Run(query);
        if (!reply.ok()) {
          ++failures;
        } else if (reply->body.find("[[\"10:45\"]]") != std::string::npos) {
          ++saw_one;
        } else if (reply->body.find("[[\"30:435\"]]") != std::string::npos) {
          ++saw_two;
        } else {
          ++failures;
        }
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 40; ++i) {
      if (!engine_->ReplaceView("lake", "t", i % 2 == 0 ? two : one, {}).ok()) ++failures;
    }
    replacing = false;
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(saw_one.load() + saw_two.load(), 0);
  EXPECT_EQ(Scalar(query), "\"10:45\"");  // the 40th replacement (i = 39) is `one`
}

}  // namespace
}  // namespace lakeloop::sql
