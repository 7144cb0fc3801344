#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "ingest/ingest.h"
#include "ingest/internal/cursor.h"
#include "ingest/internal/secrets.h"

namespace lakeloop::ingest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseSourceTest, FilesWithDefaults) {
  auto s = ParseSource("type: files\npath: landing/orders\nformat: csv\nschedule: '*/5 * * * *'\n",
                       "sources/orders.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "orders");  // the file stem
  EXPECT_EQ(s->type, SourceType::kFiles);
  EXPECT_EQ(s->format, sql::FileFormat::kCsv);
  EXPECT_EQ(s->schedule, "*/5 * * * *");
  EXPECT_EQ(s->csv.delimiter, ",");
  EXPECT_TRUE(s->csv.header);
  EXPECT_DOUBLE_EQ(s->max_rejected_share, 0.01);
  EXPECT_EQ(s->on_new_column, OnNewColumn::kFail);
}

TEST(ParseSourceTest, AllFields) {
  auto s = ParseSource(R"(name: shop_orders
type: postgres
description: orders from the shop
dsn: postgresql://app:${PG_PASSWORD}@127.0.0.1:5432/shop
table: public.orders
cursor: updated_at
lookback: 1h
key: [id]
schema:
  amount: DECIMAL(18,2)
required: [id, amount]
max_rejected_share: 0.05
on_new_column: evolve
)",
                       "sources/x.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "shop_orders");
  EXPECT_EQ(s->dsn, "postgresql://app:${PG_PASSWORD}@127.0.0.1:5432/shop");  // never resolved
  EXPECT_EQ(s->table, "public.orders");
  ASSERT_TRUE(s->lookback.has_value());
  EXPECT_TRUE(s->lookback->is_duration);
  EXPECT_EQ(s->lookback->micros, int64_t{3600} * 1000000);
  EXPECT_EQ(s->key, std::vector<std::string>{"id"});
  ASSERT_EQ(s->schema.size(), 1u);
  EXPECT_EQ(s->schema[0].type, "DECIMAL(18,2)");
  EXPECT_EQ(s->required.size(), 2u);
  EXPECT_DOUBLE_EQ(s->max_rejected_share, 0.05);
  EXPECT_EQ(s->on_new_column, OnNewColumn::kEvolve);
}

TEST(ParseSourceTest, ErrorsNameFileAndLine) {
  auto s = ParseSource("type: files\npath: x/*.csv\nformat: csv\npathh: y\n", "sources/a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("sources/a.yaml:4"));
  EXPECT_THAT(s.status().message(), HasSubstr("unknown key 'pathh'"));

  s = ParseSource("type: files\npath: x\nformat: xml\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:3"));

  s = ParseSource("type: sqlite\ndatabase: a.db\n", "a.yaml");  // neither table nor query
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("'table' or 'query'"));

  s = ParseSource("type: files\npath: x.csv\ncsv:\n  delimiter: ';'\n  quote: x\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:5"));

  s = ParseSource("type: sqlite\ndatabase: a.db\ntable: t\nlookback: 1h\n", "a.yaml");
  ASSERT_FALSE(s.ok());  // lookback without cursor
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:4"));

  s = ParseSource("type: sqlite\ndatabase: a.db\ntable: t\ncursor: c\nlookback: 1 week\n",
                  "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:5"));

  s = ParseSource("type: files\npath: x.csv\ndsn: postgresql://h/db\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("not valid for type files"));

  s = ParseSource("type: files\n  path: [\n", "broken.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("broken.yaml:"));

  s = ParseSource("name: Bad-Name\ntype: files\npath: x.csv\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:1"));

  s = ParseSource("type: files\npath: x.csv\nschema:\n  _loaded_at: TIMESTAMP\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("reserved"));

  s = ParseSource("type: files\npath: x.csv\nmax_rejected_share: 2\n", "a.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("a.yaml:3"));
}

TEST(ParseSourceTest, CursorTypeAndPostgresTimeouts) {
  auto s = ParseSource(
      "type: sqlite\ndatabase: a.db\ntable: t\ncursor: ts\ncursor_type: unix_millis\n"
      "lookback: 1h\n",
      "sources/t.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->cursor_type, "unix_millis");
  auto pg = ParseSource(
      "type: postgres\ndsn: postgresql://app@h/db\ntable: t\nconnect_timeout: 3s\n"
      "statement_timeout: 2m\n",
      "sources/p.yaml");
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  EXPECT_EQ(pg->connect_timeout_ms, 3000);
  EXPECT_EQ(pg->statement_timeout_ms, 120000);
  auto defaults = ParseSource("type: postgres\ndsn: postgresql://app@h/db\ntable: t\n", "p.yaml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->connect_timeout_ms, 10000);
  EXPECT_EQ(defaults->statement_timeout_ms, 300000);
  struct Bad {
    std::string yaml, want;
  } bad[] = {
      {"type: sqlite\ndatabase: a.db\ntable: t\ncursor: ts\ncursor_type: epoch\n",
       "t.yaml:5: cursor_type must be timestamp, text_timestamp"},
      {"type: sqlite\ndatabase: a.db\ntable: t\ncursor_type: integer\n", "needs a 'cursor'"},
      {"type: sqlite\ndatabase: a.db\ntable: t\nstatement_timeout: 5s\n",
       "key 'statement_timeout' is not valid for type sqlite"},
      {"type: postgres\ndsn: postgresql://app@h/db\ntable: t\nconnect_timeout: 10\n",
       "t.yaml:4: 'connect_timeout' must be a duration"},
  };
  for (const auto& b : bad) {
    auto r = ParseSource(b.yaml, "sources/t.yaml");
    ASSERT_FALSE(r.ok()) << b.yaml;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(b.want)) << r.status().message();
  }
}

// Which kind a cursor column gets, declared or not (values decide text and unix-number columns).
TEST(CursorPlanTest, KindsFromDeclarationTypeAndValues) {
  using internal::CursorKind;
  auto spec = [](const std::string& extra) {
    auto s = ParseSource("type: sqlite\ndatabase: a.db\ntable: t\ncursor: c\n" + extra, "t.yaml");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : SourceSpec{};
  };
  auto plan = [](const SourceSpec& s, const std::string& type,
                 std::optional<std::string> stored = std::nullopt) {
    auto p = internal::PlanCursor(s, type, stored);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : internal::CursorPlan{};
  };
  EXPECT_EQ(plan(spec("lookback: 1h\n"), "TIMESTAMP").kind, CursorKind::kNative);
  EXPECT_EQ(plan(spec("lookback: 5\n"), "BIGINT").kind, CursorKind::kNative);
  EXPECT_EQ(plan(spec("cursor_type: timestamp\n"), "VARCHAR").kind, CursorKind::kTextTimestamp);
  EXPECT_EQ(plan(spec("cursor_type: unix_millis\n"), "VARCHAR").type, "TIMESTAMP");
  EXPECT_EQ(plan(spec(""), "VARCHAR", "unix_seconds").kind, CursorKind::kUnixSeconds);
  // Undecided until values are seen: text, and numbers behind a duration lookback.
  auto text = plan(spec("lookback: 1h\n"), "VARCHAR");
  EXPECT_FALSE(text.decided);
  EXPECT_EQ(internal::DecideCursor(spec("lookback: 1h\n"), text, 10, 9, std::nullopt)->kind,
            CursorKind::kTextTimestamp);
  EXPECT_EQ(internal::DecideCursor(spec(""), plan(spec(""), "VARCHAR"), 10, 2, std::nullopt)->kind,
            CursorKind::kText);
  auto unix = plan(spec("lookback: 1h\n"), "BIGINT");
  EXPECT_FALSE(unix.decided);
  EXPECT_EQ(internal::DecideCursor(spec("lookback: 1h\n"), unix, 3, 0, 1.7e9)->kind,
            CursorKind::kUnixSeconds);
  EXPECT_EQ(internal::DecideCursor(spec("lookback: 1h\n"), unix, 3, 0, 1.7e12)->kind,
            CursorKind::kUnixMillis);
  EXPECT_EQ(internal::DecideCursor(spec("lookback: 1h\n"), unix, 3, 0, 42).status().code(),
            Code::kInvalidArgument);
  // The lookback must fit the kind.
  auto native_ts = plan(spec("lookback: 5\n"), "TIMESTAMP");
  auto s = internal::CheckLookback(spec("lookback: 5\n"), native_ts);
  EXPECT_THAT(s.message(), HasSubstr("as a duration"));
  EXPECT_EQ(internal::PlanCursor(spec(""), "BOOLEAN", std::nullopt).status().code(),
            Code::kInvalidArgument);
}

TEST(ParseSourceTest, LiteralPasswordsAreRefused) {
  for (const char* dsn : {"postgresql://app:hunter2@127.0.0.1/shop",
                          "host=127.0.0.1 user=app password=hunter2 dbname=shop",
                          "postgresql://app@127.0.0.1/shop?password=hunter2"}) {
    auto s = ParseSource(std::string("type: postgres\ndsn: '") + dsn + "'\ntable: t\n", "p.yaml");
    ASSERT_FALSE(s.ok()) << dsn;
    EXPECT_THAT(s.status().message(), HasSubstr("${ENV_VAR}"));
    EXPECT_THAT(s.status().message(), Not(HasSubstr("hunter2")));
  }
  for (const char* dsn : {"postgresql://app:${PG_PW}@127.0.0.1/shop",
                          "host=127.0.0.1 user=app password=${PG_PW} dbname=shop",
                          "postgresql://app@127.0.0.1/shop"}) {
    auto s = ParseSource(std::string("type: postgres\ndsn: '") + dsn + "'\ntable: t\n", "p.yaml");
    EXPECT_TRUE(s.ok()) << dsn << ": " << s.status().ToString();
  }
}

TEST(SecretsTest, ResolveAndMask) {
  setenv("INGEST_TEST_SECRET", "s3cr3t-value", 1);
  auto r = internal::ResolveEnv("postgresql://a:${INGEST_TEST_SECRET}@h/db", "dsn");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "postgresql://a:s3cr3t-value@h/db");
  EXPECT_EQ(internal::Mask("failed for postgresql://a:s3cr3t-value@h/db", r->secrets),
            "failed for postgresql://a:***@h/db");
  unsetenv("INGEST_TEST_MISSING");
  auto missing = internal::ResolveEnv("x ${INGEST_TEST_MISSING} y", "dsn");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("INGEST_TEST_MISSING is not set"));
}

TEST(LoadSourcesTest, ReadsFolderAndRefusesDuplicates) {
  auto dir = std::filesystem::temp_directory_path() / ("ingest-src-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.yaml") << "type: files\npath: a.csv\n";
  std::ofstream(dir / "b.yml") << "type: files\npath: b.json\n";
  auto s = LoadSources(dir);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[1].format, sql::FileFormat::kJson);
  std::ofstream(dir / "c.yaml") << "name: a\ntype: files\npath: c.csv\n";
  s = LoadSources(dir);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("also defined in"));
  EXPECT_TRUE(LoadSources(dir / "missing").ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lakeloop::ingest
