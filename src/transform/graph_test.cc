// Dependencies from DuckDB's parse tree; the model graph: order, cycles, downstream.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/ids.h"
#include "transform/transform.h"

namespace lakeloop::transform {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class GraphTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = fs::temp_directory_path() / ("lakeloop-graph-" + RandomHex(6));
    sql::EngineOptions options;
    options.sandboxed = false;
    options.scratch_dir = scratch_;
    options.threads = 1;
    auto engine = sql::Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
  }
  void TearDown() override {
    engine_.reset();
    fs::remove_all(scratch_);
  }

  // "zone.table" of every table `sql` reads.
  std::vector<std::string> Tables(const std::string& text) {
    auto refs = AnalyzeSql(*engine_, text);
    EXPECT_TRUE(refs.ok()) << text << ": " << refs.status().ToString();
    std::vector<std::string> out;
    if (refs.ok()) {
      for (const auto& t : refs->tables) out.push_back(t.ToString());
    }
    return out;
  }

  static Model M(const std::string& name, const std::string& text, std::string yaml = "") {
    auto m = ParseModel(name, text, yaml, name + ".sql", yaml.empty() ? "" : name + ".yaml");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : Model{};
  }

  fs::path scratch_;
  std::unique_ptr<sql::Engine> engine_;
};

TEST_F(GraphTest, PlainJoinsAndModelReferences) {
  EXPECT_THAT(Tables("SELECT o.id, c.name FROM raw.orders o JOIN raw.customers c ON o.cid = c.id "
                     "LEFT JOIN processed.daily d USING (id)"),
              ElementsAre("processed.daily", "raw.customers", "raw.orders"));
  EXPECT_THAT(Tables("SELECT 1 AS x"), IsEmpty());
  EXPECT_THAT(Tables("SELECT * FROM range(3)"), IsEmpty());  // a table function is no table
}

TEST_F(GraphTest, CtesAreNotDependencies) {
  EXPECT_THAT(Tables("WITH orders AS (SELECT * FROM raw.orders), big AS (SELECT * FROM orders "
                     "WHERE amount > 10) SELECT * FROM big JOIN orders USING (id)"),
              ElementsAre("raw.orders"));
  // A recursive CTE reads itself.
  EXPECT_THAT(Tables("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3)"
                     " SELECT * FROM t, raw.x"),
              ElementsAre("raw.x"));
  // A CTE is only in scope below where it is defined.
  auto out_of_scope =
      AnalyzeSql(*engine_, "SELECT * FROM (WITH x AS (SELECT 1 AS a) SELECT * FROM x) s, x");
  EXPECT_EQ(out_of_scope.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(out_of_scope.status().message(), HasSubstr("'x' is not qualified"));
}

TEST_F(GraphTest, SubqueriesAndSetOperations) {
  EXPECT_THAT(Tables("SELECT id, (SELECT max(v) FROM raw.scalar) AS m FROM (SELECT * FROM "
                     "raw.inner_t) i WHERE id IN (SELECT id FROM raw.in_list) AND EXISTS "
                     "(SELECT 1 FROM raw.exists_t e WHERE e.id = i.id)"),
              ElementsAre("raw.exists_t", "raw.in_list", "raw.inner_t", "raw.scalar"));
  EXPECT_THAT(Tables("SELECT id FROM raw.a UNION SELECT id FROM raw.b EXCEPT SELECT id FROM "
                     "processed.c INTERSECT SELECT id FROM raw.d"),
              ElementsAre("processed.c", "raw.a", "raw.b", "raw.d"));
}

TEST_F(GraphTest, QuotedIdentifiersAndParameters) {
  EXPECT_THAT(Tables(R"(SELECT * FROM "RAW"."Orders" JOIN raw."customers" USING (id))"),
              ElementsAre("raw.customers", "raw.orders"));
  auto refs = AnalyzeSql(*engine_, "SELECT * FROM raw.e WHERE ts >= $start AND ts < $end");
  ASSERT_TRUE(refs.ok());
  EXPECT_THAT(refs->parameters, ElementsAre("end", "start"));
  // A quoted name that is no lake identifier.
  EXPECT_EQ(AnalyzeSql(*engine_, R"(SELECT * FROM raw."my table")").status().code(),
            Code::kInvalidArgument);
}

TEST_F(GraphTest, RefusesWhatIsNotOneQualifiedSelect) {
  auto unqualified = AnalyzeSql(*engine_, "SELECT * FROM orders");
  EXPECT_EQ(unqualified.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(unqualified.status().message(), HasSubstr("raw.orders"));
  EXPECT_EQ(AnalyzeSql(*engine_, "SELECT 1; SELECT 2").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(AnalyzeSql(*engine_, "INSERT INTO raw.t VALUES (1)").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(AnalyzeSql(*engine_, "SELECT * FROM db.raw.t").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(AnalyzeSql(*engine_, "").status().code(), Code::kInvalidArgument);
  auto syntax = AnalyzeSql(*engine_, "SELECT a,\n  b\nFROM raw.t\nWHER x = 1");
  EXPECT_EQ(syntax.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(syntax.status().message(), HasSubstr("line 4"));
  // A trailing semicolon is fine.
  EXPECT_THAT(Tables("SELECT * FROM raw.t;\n"), ElementsAre("raw.t"));
}

TEST_F(GraphTest, TopologicalOrderAndDownstream) {
  std::vector<Model> models = {
      M("report", "SELECT * FROM processed.daily JOIN processed.customers_clean USING (cid)"),
      M("daily", "SELECT cid, count(*) AS n FROM processed.orders_clean GROUP BY cid"),
      M("orders_clean", "SELECT * FROM raw.orders WHERE amount > 0"),
      M("customers_clean", "SELECT * FROM raw.customers"),
      M("unrelated", "SELECT * FROM raw.other"),
  };
  auto g = Graph::Build(*engine_, models);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_THAT(g->Order(),
              ElementsAre("customers_clean", "orders_clean", "daily", "report", "unrelated"));
  EXPECT_THAT(g->Find("daily")->inputs, ElementsAre(lake::TableRef{"processed", "orders_clean"}));
  EXPECT_THAT(g->Downstream({"raw", "orders"}), ElementsAre("orders_clean", "daily", "report"));
  EXPECT_THAT(g->Downstream({"raw", "customers"}), ElementsAre("customers_clean", "report"));
  EXPECT_THAT(g->Downstream({"processed", "daily"}), ElementsAre("report"));
  EXPECT_THAT(g->Downstream({"raw", "nothing"}), IsEmpty());
}

TEST_F(GraphTest, TestInputsOrderTheGraph) {
  std::vector<Model> models = {
      M("orders", "SELECT * FROM raw.orders",
        "tests:\n  - relationships: {column: cid, to: customers, field: id}\n"
        "  - sql: SELECT * FROM processed.orders o WHERE NOT EXISTS (SELECT 1 FROM raw.audit a)\n"),
      M("customers", "SELECT * FROM raw.customers"),
  };
  auto g = Graph::Build(*engine_, models);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_THAT(g->Order(), ElementsAre("customers", "orders"));
  EXPECT_THAT(g->Find("orders")->test_inputs, ElementsAre(lake::TableRef{"processed", "customers"},
                                                          lake::TableRef{"raw", "audit"}));
  // Tests do not make a model downstream of what they read.
  EXPECT_THAT(g->Downstream({"processed", "customers"}), IsEmpty());
}

TEST_F(GraphTest, CyclesAreNamed) {
  auto g = Graph::Build(*engine_,
                        {M("a", "SELECT * FROM processed.c"), M("b", "SELECT * FROM processed.a"),
                         M("c", "SELECT * FROM processed.b JOIN raw.x USING (id)"),
                         M("d", "SELECT * FROM processed.a")});
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(g.status().message(), HasSubstr("cycle: "));
  for (const char* name : {"a", "b", "c"}) EXPECT_THAT(g.status().message(), HasSubstr(name));
  EXPECT_THAT(g.status().message(), ::testing::Not(HasSubstr("d")));
  auto self = Graph::Build(*engine_, {M("s", "SELECT * FROM processed.s")});
  EXPECT_THAT(self.status().message(), HasSubstr("cycle: s -> s"));
}

TEST_F(GraphTest, BuildErrorsNameTheFile) {
  auto bad_sql = Graph::Build(*engine_, {M("a", "SELECT * FROM t")});
  EXPECT_THAT(bad_sql.status().message(), HasSubstr("a.sql: "));
  auto params = Graph::Build(*engine_, {M("a", "SELECT * FROM raw.t WHERE ts >= $start")});
  EXPECT_THAT(params.status().message(), HasSubstr("incremental models only"));
  auto unknown_param = Graph::Build(
      *engine_, {M("a", "SELECT * FROM raw.t WHERE ts >= $since", "materialized: incremental\n")});
  EXPECT_THAT(unknown_param.status().message(), HasSubstr("unknown parameter $since"));
  auto no_target = Graph::Build(
      *engine_,
      {M("a", "SELECT 1 AS x",
         "tests:\n  - not_null: x\n  - relationships: {column: x, to: nope, field: y}\n")});
  EXPECT_THAT(no_target.status().message(), HasSubstr("a.yaml:3"));
  EXPECT_THAT(no_target.status().message(), HasSubstr("no model named 'nope'"));
  auto bad_test_sql =
      Graph::Build(*engine_, {M("a", "SELECT 1 AS x", "tests:\n  - sql: DELETE FROM raw.t\n")});
  EXPECT_THAT(bad_test_sql.status().message(), HasSubstr("a.yaml:2"));
  auto dup = Graph::Build(*engine_, {M("a", "SELECT 1 AS x"), M("a", "SELECT 2 AS x")});
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lakeloop::transform
