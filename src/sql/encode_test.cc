// Encoder tests: the JSON golden file covering every DuckDB type, CSV quoting, and type text.
#include "sql/internal/encode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sql/sql.h"

namespace lakeloop::sql {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::filesystem::path kTestdata = LAKELOOP_SQL_TESTDATA;

std::unique_ptr<Engine> InternalEngine() {
  EngineOptions options;
  options.sandboxed = false;
  auto engine = Engine::Open(options);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  return std::move(engine).value();
}

// testdata/all_types.json was written by hand: one value per line, newlines are not part of it.
TEST(EncodeTest, JsonGoldenCoversEveryType) {
  auto engine = InternalEngine();
  std::string golden = Slurp(kTestdata / "all_types.json");
  golden.erase(std::remove(golden.begin(), golden.end(), '\n'), golden.end());
  QueryRequest request;
  request.sql = Slurp(kTestdata / "all_types.sql");
  auto reply = engine->Run(request);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->body, golden);
  EXPECT_EQ(reply->content_type, "application/json");
  EXPECT_EQ(reply->row_count, 2);
  EXPECT_FALSE(reply->truncated);
}

// Our type text must be DuckDB's own: compare with DESCRIBE for every column of the golden query.
TEST(EncodeTest, TypeTextMatchesDuckDbDescribe) {
  auto engine = InternalEngine();
  const std::string sql = Slurp(kTestdata / "all_types.sql");
  auto columns = engine->Describe(sql);
  ASSERT_TRUE(columns.ok()) << columns.status().ToString();
  QueryRequest request;
  request.sql = "SELECT column_name, column_type FROM (DESCRIBE " + sql + ")";
  request.format = Format::kCsv;
  auto reply = engine->Run(request);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  std::string expected = "column_name,column_type\r\n";
  for (const Column& c : *columns) {
    std::string line;
    internal::AppendCsvText(c.name, &line);
    line.push_back(',');
    internal::AppendCsvText(c.type, &line);
    expected += line + "\r\n";
  }
  EXPECT_EQ(reply->body, expected);
  EXPECT_EQ(columns->size(), 64u);
}

TEST(EncodeTest, StructFieldNamesAreQuotedLikeDuckDb) {
  auto engine = InternalEngine();
  const std::string sql = R"(SELECT {'select': 1, 'Mixed Case': 2, 'a"b': 3, 'ok_1': 4} AS s)";
  auto columns = engine->Describe(sql);
  ASSERT_TRUE(columns.ok()) << columns.status().ToString();
  EXPECT_EQ((*columns)[0].type,
            R"(STRUCT("select" INTEGER, "Mixed Case" INTEGER, "a""b" INTEGER, ok_1 INTEGER))");
  // And the text parses back into the same type.
  auto again = engine->Describe("SELECT CAST(NULL AS " + (*columns)[0].type + ") AS s");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *columns);
}

TEST(EncodeTest, CsvQuotingNullsAndNestedValues) {
  auto engine = InternalEngine();
  QueryRequest request;
  request.format = Format::kCsv;
  request.sql = R"(SELECT 'a,b' AS "x,y", '' AS empty, NULL::VARCHAR AS nul, 'q"q' AS q,
      'two' || chr(10) || 'lines' AS nl, [1, NULL] AS list, {'k': 'v'} AS st, 1.5::DOUBLE AS d,
      union_value(str := 'u')::UNION(num INTEGER, str VARCHAR) AS u, 9007199254740993 AS big,
      'NaN'::DOUBLE AS nan, true AS t)";
  auto reply = engine->Run(request);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(reply->body,
            "\"x,y\",empty,nul,q,nl,list,st,d,u,big,nan,t\r\n"
            "\"a,b\",\"\",,\"q\"\"q\",\"two\nlines\",\"[1,null]\",\"{\"\"k\"\":\"\"v\"\"}\",1.5,u,"
            "9007199254740993,NaN,true\r\n");
}

TEST(EncodeTest, Base64) {
  std::string out;
  internal::AppendBase64("", &out);
  EXPECT_EQ(out, "");
  for (auto [in, want] : std::vector<std::pair<std::string, std::string>>{{"f", "Zg=="},
                                                                          {"fo", "Zm8="},
                                                                          {"foo", "Zm9v"},
                                                                          {"foob", "Zm9vYg=="},
                                                                          {"fooba", "Zm9vYmE="},
                                                                          {"foobar", "Zm9vYmFy"}}) {
    out.clear();
    internal::AppendBase64(in, &out);
    EXPECT_EQ(out, want);
  }
}

}  // namespace
}  // namespace lakeloop::sql
