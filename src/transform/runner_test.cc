// Materialisation against a real lake (SQLite catalog, local object store, DuckDB): table and
// incremental builds, merge, backfills, data tests gating the commit, lineage.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/ids.h"
#include "core/json.h"
#include "sql/lake_io.h"
#include "transform/transform.h"

namespace lakeloop::transform {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr Micros kDay = 24LL * 3600 * 1000000;
constexpr Micros kNov1 = 1793491200LL * 1000000;  // 2026-11-01T00:00:00Z

Interval Days(int first, int count = 1) {
  return {kNov1 + first * kDay, kNov1 + (first + count) * kDay};
}

// 24 events per day for three days: one an hour, users 0..2, amount = hour index.
const char* kEvents =
    "SELECT TIMESTAMP '2026-11-01' + to_hours(i) AS ts, i % 3 AS user_id, i AS amount "
    "FROM range(72) t(i)";

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lakeloop-transform-" + RandomHex(6));
    fs::create_directories(dir_ / "lake");
    auto c = catalog::OpenSqlite(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
    ASSERT_TRUE(catalog::Migrate(*catalog_, lake::Lake::Migrations()).ok());
    ASSERT_TRUE(catalog::Migrate(*catalog_, Migrations()).ok());
    store_ = lake::NewLocalObjectStore(dir_ / "lake");
    lake_ = std::make_unique<lake::Lake>(store_.get(), catalog_.get(), lake::LakeOptions{});

    sql::EngineOptions loader;
    loader.sandboxed = false;
    loader.scratch_dir = dir_ / "loader";
    loader.threads = 1;
    auto l = sql::Engine::Open(loader);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    loader_ = std::move(l).value();

    RunnerOptions options;
    options.engine.lake_root = dir_ / "lake";
    options.engine.scratch_dir = dir_ / "scratch";
    options.engine.threads = 1;
    options.lineage_store = catalog_.get();
    auto r = Runner::Open(lake_.get(), options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    runner_ = std::move(r).value();

    // What a user sees: the sandboxed engine following commits.
    sql::EngineOptions reader;
    reader.lake_root = dir_ / "lake";
    reader.scratch_dir = dir_ / "reader";
    reader.threads = 1;
    auto e = sql::Engine::Open(reader);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    reader_ = std::move(e).value();
    views_ = std::make_unique<sql::LakeViews>(reader_.get(), lake_.get());
    ASSERT_TRUE(views_->Attach().ok());
  }

  void TearDown() override {
    runner_.reset();
    views_.reset();
    reader_.reset();
    loader_.reset();
    lake_.reset();
    catalog_.reset();
    fs::remove_all(dir_);
  }

  // Commits the rows of `select` as a lake table (as ingest would).
  void Write(const std::string& table, const std::string& select,
             lake::WriteMode mode = lake::WriteMode::kOverwrite) {
    auto ref = lake::ParseTableRef(table);
    ASSERT_TRUE(ref.ok());
    auto staging = lake_->BeginWrite(*ref);
    ASSERT_TRUE(staging.ok());
    const std::string file = (staging->local_dir / "data_0.parquet").string();
    ASSERT_TRUE(
        loader_->Exec("COPY (" + select + ") TO " + sql::QuoteLiteral(file) + " (FORMAT parquet)")
            .ok());
    auto cols = loader_->Describe("SELECT * FROM read_parquet(" + sql::QuoteLiteral(file) + ")");
    ASSERT_TRUE(cols.ok());
    lake::CommitRequest commit;
    commit.staging = *staging;
    commit.mode = mode;
    commit.files.push_back({"data_0.parquet", 0});
    for (const auto& c : *cols) commit.schema.push_back({c.name, c.type});
    auto snap = lake_->Commit(commit);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  }

  // The rows of a query as compact JSON: [[..],[..]].
  std::string Rows(const std::string& query) {
    sql::QueryRequest request;
    request.sql = query;
    request.limit = 100000;
    auto reply = reader_->Run(request);
    EXPECT_TRUE(reply.ok()) << query << ": " << reply.status().ToString();
    if (!reply.ok()) return "";
    auto body = ParseJsonObject(reply->body);
    return boost::json::serialize(body->at("rows"));
  }

  Graph BuildGraph(std::vector<Model> models) {
    auto g = Graph::Build(runner_->engine(), std::move(models));
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? std::move(g).value() : Graph{};
  }

  static Model M(const std::string& name, const std::string& text, const std::string& yaml = "") {
    auto m = ParseModel(name, text, yaml, name + ".sql", yaml.empty() ? "" : name + ".yaml");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : Model{};
  }

  Result<RunResult> Run(const Graph& g, const std::string& model,
                        std::optional<Interval> interval = std::nullopt) {
    return runner_->Run(g, {model, interval});
  }

  int64_t Version(const std::string& table) {
    auto info = lake_->GetTable(*lake::ParseTableRef(table));
    return info.ok() ? info->current_version : 0;
  }

  size_t StagingObjects(const std::string& table) {
    auto listed = store_->List("_staging/" + table);
    return listed.ok() ? listed->size() : 0;
  }

  fs::path dir_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> store_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<sql::Engine> loader_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<sql::Engine> reader_;
  std::unique_ptr<sql::LakeViews> views_;
};

TEST_F(RunnerTest, ChainedTableModelsBuildInOrderWithLineage) {
  Write("raw.orders",
        "SELECT * FROM (VALUES (1, 10, 5.0), (2, 10, 7.5), (3, 11, -1.0), (4, 12, 20.0)) "
        "t(id, cid, amount)");
  Write("raw.customers", "SELECT * FROM (VALUES (10, 'ann'), (11, 'bob'), (12, 'cy')) t(id, name)");
  Graph g = BuildGraph({
      M("report",
        "SELECT c.name, d.total FROM processed.per_customer d JOIN raw.customers c ON c.id = "
        "d.cid"),
      M("per_customer", "SELECT cid, sum(amount) AS total FROM processed.valid GROUP BY cid"),
      M("valid", "SELECT * FROM raw.orders WHERE amount > 0"),
  });
  ASSERT_THAT(g.Order(), ElementsAre("valid", "per_customer", "report"));
  auto results = runner_->RunAll(g, std::nullopt);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].rows_out, 3);
  EXPECT_EQ((*results)[1].rows_out, 2);
  EXPECT_EQ((*results)[2].rows_out, 2);
  for (const auto& r : *results) {
    EXPECT_TRUE(r.committed());
    EXPECT_EQ(r.version, 1);
    EXPECT_EQ(r.previous_version, 0);
  }
  EXPECT_EQ(Rows("SELECT name, total FROM processed.report ORDER BY name"),
            R"([["ann","12.5"],["cy","20.0"]])");
  EXPECT_THAT((*results)[2].inputs, ElementsAre(InputRead{{"processed", "per_customer"}, 1},
                                                InputRead{{"raw", "customers"}, 1}));

  // A rebuild is an overwrite: version 2, same rows; lineage per version.
  Write("raw.orders", "SELECT * FROM (VALUES (1, 11, 1.0)) t(id, cid, amount)");
  results = runner_->RunAll(g, std::nullopt);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  EXPECT_EQ(Rows("SELECT name, total FROM processed.report"), R"([["bob","1.0"]])");
  EXPECT_EQ(Version("processed.report"), 2);
  auto lineage = LineageOf(*catalog_, {"processed", "valid"});
  ASSERT_TRUE(lineage.ok());
  ASSERT_EQ(lineage->size(), 2u);
  EXPECT_EQ((*lineage)[0].output_version, 1);
  EXPECT_EQ((*lineage)[0].input, (lake::TableRef{"raw", "orders"}));
  EXPECT_EQ((*lineage)[0].input_version, 1);
  EXPECT_EQ((*lineage)[1].output_version, 2);
  EXPECT_EQ((*lineage)[1].input_version, 2);
  EXPECT_EQ((*lineage)[1].model, "valid");
}

TEST_F(RunnerTest, IncrementalAppendProcessesOnlyTheNewInterval) {
  Write("raw.events", kEvents);
  Graph g = BuildGraph({M("events", "SELECT * FROM raw.events WHERE ts >= $start AND ts < $end",
                          "materialized: incremental\ntime_column: ts\n")});
  auto first = Run(g, "events", Days(0));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->rows_out, 24);
  EXPECT_EQ(first->version, 1);
  const std::string day0 =
      Rows("SELECT count(*), sum(amount), min(ts), max(ts) FROM processed.events");
  auto files_v1 = lake_->SnapshotFiles({"processed", "events"});
  ASSERT_TRUE(files_v1.ok());

  auto second = Run(g, "events", Days(1));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->rows_out, 24);
  EXPECT_EQ(second->total_rows, 48);
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(second->previous_version, 1);
  auto snap = lake_->GetSnapshot({"processed", "events"}, 2);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->operation, "append");
  EXPECT_EQ(snap->added_rows, 24);
  // The first interval's rows and files are untouched.
  EXPECT_EQ(Rows("SELECT count(*), sum(amount), min(ts), max(ts) FROM processed.events WHERE ts < "
                 "TIMESTAMP '2026-11-02'"),
            day0);
  auto files_v2 = lake_->SnapshotFiles({"processed", "events"});
  ASSERT_TRUE(files_v2.ok());
  ASSERT_EQ(files_v2->size(), 2u);
  EXPECT_EQ((*files_v2)[0].key, (*files_v1)[0].key);
  EXPECT_EQ(Rows("SELECT count(*) FROM processed.events WHERE ts >= TIMESTAMP '2026-11-03'"),
            "[[0]]");
}

TEST_F(RunnerTest, MergeReplacesRowsWithTheSameKey) {
  Write("raw.changes",
        "SELECT * FROM (VALUES (1, 'a', TIMESTAMP '2026-11-01 01:00'), (2, 'b', TIMESTAMP "
        "'2026-11-01 02:00'), (3, 'c', TIMESTAMP '2026-11-01 03:00'), (2, 'b2', TIMESTAMP "
        "'2026-11-02 01:00'), (4, 'd', TIMESTAMP '2026-11-02 02:00')) t(id, name, updated_at)");
  Graph g = BuildGraph(
      {M("users",
         "SELECT id, name, updated_at FROM raw.changes WHERE updated_at >= $start AND "
         "updated_at < $end",
         "materialized: incremental\nstrategy: merge\nunique_key: [id]\ntime_column: updated_at\n"
         "tests:\n  - unique: id\n")});
  auto first = Run(g, "users", Days(0));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->total_rows, 3);
  auto second = Run(g, "users", Days(1));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->committed());
  EXPECT_EQ(second->rows_out, 2);
  EXPECT_EQ(second->total_rows, 4);
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(lake_->GetSnapshot({"processed", "users"}, 2)->operation, "overwrite");
  EXPECT_EQ(Rows("SELECT id, name FROM processed.users ORDER BY id"),
            R"([[1,"a"],[2,"b2"],[3,"c"],[4,"d"]])");
  // A merge reads its own previous snapshot: lineage says so.
  EXPECT_THAT(second->inputs, UnorderedElementsAre(InputRead{{"raw", "changes"}, 1},
                                                   InputRead{{"processed", "users"}, 1}));
  EXPECT_TRUE(fs::is_empty(dir_ / "scratch"));  // the merge input is removed
  // Re-running the same interval is idempotent.
  auto again = Run(g, "users", Days(1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Rows("SELECT id, name FROM processed.users ORDER BY id"),
            R"([[1,"a"],[2,"b2"],[3,"c"],[4,"d"]])");
}

TEST_F(RunnerTest, BackfillByDayEqualsOneBuildOverAllDays) {
  Write("raw.events", kEvents);
  const std::string sql =
      "SELECT date_trunc('day', ts) AS day, user_id, count(*) AS n, sum(amount) AS total "
      "FROM raw.events WHERE ts >= $start AND ts < $end GROUP BY ALL";
  Graph g = BuildGraph({M("daily_a", sql, "materialized: incremental\n"),
                        M("daily_b", sql, "materialized: incremental\n")});
  for (int day = 0; day < 3; ++day) {
    auto r = Run(g, "daily_a", Days(day));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->version, day + 1);
  }
  auto once = Run(g, "daily_b", Days(0, 3));
  ASSERT_TRUE(once.ok()) << once.status().ToString();
  const std::string a = Rows("SELECT * FROM processed.daily_a ORDER BY ALL");
  EXPECT_EQ(a, Rows("SELECT * FROM processed.daily_b ORDER BY ALL"));
  EXPECT_EQ(Rows("SELECT count(*), sum(n), sum(total) FROM processed.daily_a"),
            R"([[9,"72",2556]])");
}

TEST_F(RunnerTest, FailingErrorTestKeepsThePreviousSnapshot) {
  Write("raw.people", "SELECT * FROM (VALUES (1, 'ann'), (2, 'bob')) t(id, name)");
  Graph g = BuildGraph(
      {M("people", "SELECT * FROM raw.people", "tests:\n  - not_null: name\n  - unique: id\n")});
  auto good = Run(g, "people");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ASSERT_TRUE(good->committed());
  const std::string before = Rows("SELECT * FROM processed.people ORDER BY id");

  Write("raw.people",
        "SELECT * FROM (VALUES (1, 'ann'), (2, NULL), (3, NULL), (3, 'x')) t(id, name)");
  auto bad = Run(g, "people");
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  EXPECT_EQ(bad->outcome, Outcome::kTestsFailed);
  EXPECT_EQ(bad->version, 1);
  EXPECT_EQ(bad->rows_out, 4);
  EXPECT_THAT(bad->Failed(Severity::kError), ElementsAre("not_null(name)", "unique(id)"));
  ASSERT_EQ(bad->tests.size(), 2u);
  EXPECT_EQ(bad->tests[0].failing_rows, 2);
  EXPECT_THAT(bad->tests[0].samples_json, HasSubstr(R"([2,null])"));
  EXPECT_EQ(bad->tests[1].failing_rows, 1);
  EXPECT_THAT(bad->tests[1].samples_json, HasSubstr(R"([3,2])"));  // id 3, twice
  EXPECT_EQ(Version("processed.people"), 1);
  EXPECT_EQ(Rows("SELECT * FROM processed.people ORDER BY id"), before);
  EXPECT_EQ(StagingObjects("processed/people"), 0u);
  // Nothing recorded for the aborted run.
  EXPECT_EQ(LineageOf(*catalog_, {"processed", "people"})->size(), 1u);
}

TEST_F(RunnerTest, WarnTestCommitsAndReports) {
  Write("raw.people", "SELECT * FROM (VALUES (1, 'ann'), (2, NULL)) t(id, name)");
  Graph g = BuildGraph({M("people", "SELECT * FROM raw.people",
                          "tests:\n  - not_null: name\n    severity: warn\n  - min_rows: 1\n")});
  auto r = Run(g, "people");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->committed());
  EXPECT_EQ(r->version, 1);
  EXPECT_THAT(r->Failed(Severity::kWarn), ElementsAre("not_null(name)"));
  EXPECT_THAT(r->Failed(Severity::kError), IsEmpty());
  EXPECT_EQ(r->tests[0].failing_rows, 1);
  EXPECT_TRUE(r->tests[1].passed);
  EXPECT_EQ(Rows("SELECT count(*) FROM processed.people"), "[[2]]");
}

// Every test kind passes on good data and catches the bad data made for it (and only it).
TEST_F(RunnerTest, EachTestKindCatchesBadData) {
  Write("raw.customers", "SELECT * FROM (VALUES (10), (11)) t(id)");
  Graph g = BuildGraph({M("items", "SELECT * FROM raw.items",
                          "tests:\n"
                          "  - not_null: id\n"
                          "  - unique: [id]\n"
                          "  - accepted_values: {column: status, values: [open, closed]}\n"
                          "  - relationships: {column: cust_id, to: raw.customers, field: id}\n"
                          "  - min_rows: 2\n"
                          "  - sql: SELECT * FROM processed.items WHERE id < 0\n"
                          "    name: no_negative_ids\n")});
  auto items = [](const std::string& values) {
    return "SELECT * FROM (VALUES " + values + ") t(id, status, cust_id)";
  };
  Write("raw.items", items("(1, 'open', 10), (2, 'closed', 11), (3, 'open', NULL)"));
  auto good = Run(g, "items");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ASSERT_TRUE(good->committed());
  ASSERT_EQ(good->tests.size(), 6u);
  for (const auto& t : good->tests) EXPECT_TRUE(t.passed) << t.name << " " << t.error;

  struct Bad {
    std::string values;
    std::string failing;
  };
  const std::vector<Bad> bad = {
      {"(NULL, 'open', 10), (2, 'closed', 11)", "not_null(id)"},
      {"(1, 'open', 10), (1, 'closed', 11)", "unique(id)"},
      {"(1, 'weird', 10), (2, 'closed', 11)", "accepted_values(status)"},
      {"(1, 'open', 99), (2, 'closed', 11)", "relationships(cust_id -> raw.customers.id)"},
      {"(1, 'open', 10)", "min_rows(2)"},
      {"(-1, 'open', 10), (2, 'closed', 11)", "no_negative_ids"},
  };
  for (const auto& b : bad) {
    Write("raw.items", items(b.values));
    auto r = Run(g, "items");
    ASSERT_TRUE(r.ok()) << b.failing << ": " << r.status().ToString();
    EXPECT_EQ(r->outcome, Outcome::kTestsFailed) << b.failing;
    EXPECT_THAT(r->Failed(Severity::kError), ElementsAre(b.failing));
    EXPECT_EQ(Version("processed.items"), 1) << b.failing;
    for (const auto& t : r->tests) EXPECT_TRUE(t.error.empty()) << t.name << ": " << t.error;
  }
  EXPECT_EQ(Rows("SELECT count(*) FROM processed.items"), "[[3]]");
}

TEST_F(RunnerTest, RowsOutsideTheIntervalFailTheTimeColumnCheck) {
  Write("raw.events", kEvents);
  Graph g = BuildGraph({M("leaky", "SELECT * FROM raw.events WHERE ts < $end",
                          "materialized: incremental\ntime_column: ts\n")});
  auto r = Run(g, "leaky", Days(1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->outcome, Outcome::kTestsFailed);
  EXPECT_THAT(r->Failed(Severity::kError), ElementsAre("time_column_in_interval(ts)"));
  EXPECT_EQ(r->tests[0].failing_rows, 24);
  EXPECT_EQ(Version("processed.leaky"), 0);
}

TEST_F(RunnerTest, PartitionedIncrementalModel) {
  Write("raw.events", kEvents);
  Graph g = BuildGraph({M("by_day",
                          "SELECT strftime(ts, '%Y-%m-%d') AS dt, ts, amount FROM raw.events "
                          "WHERE ts >= $start AND ts < $end",
                          "materialized: incremental\npartition_by: [dt]\n")});
  for (int day = 0; day < 2; ++day) {
    auto r = Run(g, "by_day", Days(day));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->rows_out, 24);
  }
  auto files = lake_->SnapshotFiles({"processed", "by_day"});
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 2u);
  EXPECT_THAT((*files)[0].key, HasSubstr("processed/by_day/dt=2026-11-0"));
  EXPECT_EQ(Rows("SELECT count(*), count(DISTINCT dt) FROM processed.by_day"), "[[48,2]]");
}

TEST_F(RunnerTest, ErrorsCommitNothing) {
  Write("raw.t", "SELECT 1 AS x");
  Graph g = BuildGraph({M("missing_input", "SELECT * FROM raw.nope"),
                        M("bad_runtime", "SELECT CAST('x' AS INTEGER) AS y FROM raw.t"),
                        M("inc", "SELECT * FROM raw.t", "materialized: incremental\n")});
  auto missing = Run(g, "missing_input");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  auto runtime = Run(g, "bad_runtime");
  EXPECT_EQ(runtime.status().code(), Code::kSqlError);
  EXPECT_THAT(runtime.status().message(), HasSubstr("model bad_runtime"));
  EXPECT_EQ(Version("processed.bad_runtime"), 0);
  EXPECT_EQ(StagingObjects("processed/bad_runtime"), 0u);
  EXPECT_EQ(Run(g, "inc").status().code(), Code::kInvalidArgument);  // no interval
  EXPECT_EQ(Run(g, "bad_runtime", Days(0)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Run(g, "nope").status().code(), Code::kNotFound);
  // RunAll stops at the first error, naming the model.
  auto all = runner_->RunAll(g, Days(0));
  EXPECT_FALSE(all.ok());
}

TEST_F(RunnerTest, UserSqlStaysInTheSandbox) {
  Write("raw.t", "SELECT 1 AS x");
  Graph g =
      BuildGraph({M("peek", "SELECT * FROM raw.t, read_csv('/etc/hostname', header = false)")});
  auto r = Run(g, "peek");
  EXPECT_EQ(r.status().code(), Code::kSqlError);
  EXPECT_THAT(r.status().message(), HasSubstr("Permission Error"));
  EXPECT_EQ(Version("processed.peek"), 0);
}

}  // namespace
}  // namespace lakeloop::transform
