#include "sql/internal/sql_text.h"

#include <gtest/gtest.h>

namespace lakeloop::sql::internal {
namespace {

TEST(SqlTextTest, BlankSql) {
  EXPECT_TRUE(IsBlankSql(""));
  EXPECT_TRUE(IsBlankSql("  ;\n ; -- hi\n /* x /* nested */ */ "));
  EXPECT_FALSE(IsBlankSql("SELECT 1"));
  EXPECT_FALSE(IsBlankSql("/* unterminated"));
}

TEST(SqlTextTest, StripTrailing) {
  EXPECT_EQ(StripTrailing("SELECT 1 ; \n;"), "SELECT 1");
  EXPECT_EQ(StripTrailing("SELECT ';'"), "SELECT ';'");
}

TEST(SqlTextTest, ExplainedStatement) {
  EXPECT_EQ(ExplainedStatement("EXPLAIN SELECT 1"), "SELECT 1");
  EXPECT_EQ(ExplainedStatement(" /*c*/ explain analyze\n-- x\nSELECT 1"), "SELECT 1");
  EXPECT_EQ(ExplainedStatement("EXPLAIN (FORMAT json) SELECT 1"), "SELECT 1");
  EXPECT_EQ(ExplainedStatement("EXPLAIN (SELECT 1)"), "(SELECT 1)");
  EXPECT_EQ(ExplainedStatement("EXPLAIN ANALYZE (FORMAT ')') CREATE TABLE t(a INT)"),
            "CREATE TABLE t(a INT)");
  EXPECT_EQ(ExplainedStatement("EXPLAINX SELECT 1"), std::nullopt);
  EXPECT_EQ(ExplainedStatement("SELECT 1"), std::nullopt);
}

}  // namespace
}  // namespace lakeloop::sql::internal
