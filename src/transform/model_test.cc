// Model files: sql + yaml parsing, validation errors with file:line, all-or-nothing loading.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/ids.h"
#include "transform/transform.h"

namespace lakeloop::transform {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Result<Model> Parse(const std::string& yaml, const std::string& name = "orders_daily") {
  return ParseModel(name, "SELECT 1 AS x", yaml, "models/" + name + ".sql",
                    yaml.empty() ? fs::path() : fs::path("models/" + name + ".yaml"));
}

TEST(ModelTest, DefaultsWithoutYaml) {
  auto m = Parse("");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->materialized, Materialization::kTable);
  EXPECT_TRUE(m->tests.empty());
  EXPECT_EQ(m->output().ToString(), "processed.orders_daily");
}

TEST(ModelTest, ParsesEverything) {
  auto m = Parse(R"(materialized: incremental
strategy: merge
unique_key: [order_id, line]
time_column: ts
partition_by: dt
tests:
  - not_null: order_id
  - unique: [order_id, line]
    severity: warn
  - accepted_values: {column: status, values: [open, 'closed', 3]}
  - relationships: {column: customer_id, to: raw.customers, field: id}
  - relationships: {column: sku, to: products, field: sku}
  - min_rows: 10
  - sql: "SELECT * FROM processed.orders_daily WHERE amount < 0"
    name: no_negative_amounts
    severity: error
)");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->materialized, Materialization::kIncremental);
  EXPECT_EQ(m->strategy, Strategy::kMerge);
  EXPECT_THAT(m->unique_key, ElementsAre("order_id", "line"));
  EXPECT_EQ(m->time_column, "ts");
  EXPECT_THAT(m->partition_by, ElementsAre("dt"));
  ASSERT_EQ(m->tests.size(), 7u);
  EXPECT_EQ(m->tests[0].kind, TestKind::kNotNull);
  EXPECT_EQ(m->tests[0].name, "not_null(order_id)");
  EXPECT_EQ(m->tests[0].line, 7);
  EXPECT_EQ(m->tests[0].severity, Severity::kError);
  EXPECT_EQ(m->tests[1].kind, TestKind::kUnique);
  EXPECT_THAT(m->tests[1].columns, ElementsAre("order_id", "line"));
  EXPECT_EQ(m->tests[1].severity, Severity::kWarn);
  EXPECT_THAT(m->tests[2].values, ElementsAre("open", "closed", "3"));
  EXPECT_EQ(m->tests[3].to, "raw.customers");
  EXPECT_EQ(m->tests[3].field, "id");
  EXPECT_EQ(m->tests[4].to, "products");
  EXPECT_EQ(m->tests[5].min_rows, 10);
  EXPECT_EQ(m->tests[6].kind, TestKind::kSql);
  EXPECT_EQ(m->tests[6].name, "no_negative_amounts");
}

// Each bad definition is refused with the file and the line of the offending node.
TEST(ModelTest, ErrorsNameFileAndLine) {
  struct Case {
    std::string yaml;
    std::string where;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"materialized: view\n", "orders_daily.yaml:1", "materialized must be table or incremental"},
      {"materialized: table\ncolour: red\n", "orders_daily.yaml:2", "unknown key 'colour'"},
      {"materialized: incremental\nstrategy: merge\n", "orders_daily.yaml:2", "needs unique_key"},
      {"materialized: table\nstrategy: append\n", "orders_daily.yaml:2", "incremental models only"},
      {"tests:\n  - not_null: id\n  - unique: id\n    severity: fatal\n", "orders_daily.yaml:4",
       "severity must be error or warn"},
      {"tests:\n  - not_null: id\n  - nonsense: id\n", "orders_daily.yaml:3", "unknown test"},
      {"tests:\n  - not_null: id\n    unique: id\n", "orders_daily.yaml:2", "exactly one kind"},
      {"tests:\n  - accepted_values: {column: s}\n", "orders_daily.yaml:2",
       "needs column and values"},
      {"tests:\n  - relationships: {column: a, to: 'x y', field: b}\n", "orders_daily.yaml:2",
       "relationships.to"},
      {"tests:\n  - min_rows: -3\n", "orders_daily.yaml:2", "non-negative integer"},
      {"tests:\n  - not_null: [a, b]\n", "orders_daily.yaml:2", "must be a column name"},
      {"tests:\n  - not_null: a\n  - not_null: a\n", "orders_daily.yaml:3", "duplicate test name"},
      {"tests: {not_null: a}\n", "orders_daily.yaml:1", "tests must be a list"},
      {"materialized: table\n  bad: [indent\n", "orders_daily.yaml:", ""},  // syntax error
  };
  for (const auto& c : cases) {
    auto m = Parse(c.yaml);
    ASSERT_FALSE(m.ok()) << c.yaml;
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(m.status().message(), HasSubstr(c.where)) << c.yaml;
    EXPECT_THAT(m.status().message(), HasSubstr(c.reason)) << c.yaml;
  }
  // Name and SQL problems name the .sql file.
  auto bad_name = ParseModel("Orders", "SELECT 1", "", "models/Orders.sql", "");
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad_name.status().message(), HasSubstr("models/Orders.sql"));
  auto empty = ParseModel("x", "  \n", "", "models/x.sql", "");
  EXPECT_THAT(empty.status().message(), HasSubstr("empty"));
}

class LoadModelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lakeloop-models-" + RandomHex(6));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  fs::path dir_;
};

TEST_F(LoadModelsTest, LoadsSqlAndSiblingYamlSortedByName) {
  Write("b.sql", "SELECT * FROM processed.a");
  Write("a.sql", "SELECT * FROM raw.t");
  Write("a.yml", "tests:\n  - not_null: id\n");
  Write("notes.txt", "ignored");
  auto models = LoadModels(dir_);
  ASSERT_TRUE(models.ok()) << models.status().ToString();
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].name, "a");
  EXPECT_EQ((*models)[0].tests.size(), 1u);
  EXPECT_EQ((*models)[0].yaml_file, dir_ / "a.yml");
  EXPECT_EQ((*models)[1].name, "b");
  EXPECT_TRUE((*models)[1].yaml_file.empty());
}

TEST_F(LoadModelsTest, NothingLoadsWhenOneIsBadAndEveryErrorIsReported) {
  Write("good.sql", "SELECT 1 AS x");
  Write("bad.sql", "SELECT 1 AS x");
  Write("bad.yaml", "materialized: table\nstrategy: merge\n");
  Write("orphan.yaml", "materialized: table\n");
  Write("Upper.sql", "SELECT 1");
  auto models = LoadModels(dir_);
  ASSERT_FALSE(models.ok());
  EXPECT_EQ(models.status().code(), Code::kInvalidArgument);
  const std::string& msg = models.status().message();
  EXPECT_THAT(msg, HasSubstr((dir_ / "bad.yaml").string() + ":2:"));
  EXPECT_THAT(msg, HasSubstr((dir_ / "orphan.yaml").string() + ": no orphan.sql"));
  EXPECT_THAT(msg, HasSubstr((dir_ / "Upper.sql").string()));
  EXPECT_EQ(LoadModels(dir_ / "missing").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace lakeloop::transform
