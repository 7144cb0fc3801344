// Cron parsing and NextAfter/PrevBefore against hand-computed ticks (checked with a
// minute-by-minute Python brute force).
#include <gtest/gtest.h>

#include "flow/flow.h"

namespace lakeloop::flow {
namespace {

Micros T(const char* rfc3339) {
  auto t = ParseRfc3339(rfc3339);
  EXPECT_TRUE(t.ok()) << rfc3339;
  return t.ok() ? *t : 0;
}

std::string Next(const char* expr, const char* after) {
  auto c = ParseCron(expr);
  EXPECT_TRUE(c.ok()) << expr << ": " << c.status().ToString();
  if (!c.ok()) return "";
  return FormatRfc3339(c->NextAfter(T(after)));
}

std::vector<std::string> NextN(const char* expr, const char* after, int n) {
  auto c = ParseCron(expr);
  EXPECT_TRUE(c.ok()) << expr;
  std::vector<std::string> out;
  Micros t = T(after);
  for (int i = 0; i < n && c.ok(); ++i) {
    t = c->NextAfter(t);
    out.push_back(FormatRfc3339(t).substr(0, 16));
  }
  return out;
}

std::string Prev(const char* expr, const char* before) {
  auto c = ParseCron(expr);
  EXPECT_TRUE(c.ok()) << expr;
  return c.ok() ? FormatRfc3339(c->PrevBefore(T(before))) : "";
}

TEST(CronTest, StepsAndRanges) {
  EXPECT_EQ(Next("*/15 * * * *", "2024-03-10T10:07:00Z"), "2024-03-10T10:15:00.000000Z");
  EXPECT_EQ(Next("*/15 * * * *", "2024-03-10T10:45:00Z"), "2024-03-10T11:00:00.000000Z");
  // Strictly after, and seconds are ignored.
  EXPECT_EQ(Next("*/15 * * * *", "2024-03-10T10:14:59.999Z"), "2024-03-10T10:15:00.000000Z");
  EXPECT_EQ(NextN("1-30/5 * * * *", "2024-03-10T10:00:00Z", 7),
            (std::vector<std::string>{"2024-03-10T10:01", "2024-03-10T10:06", "2024-03-10T10:11",
                                      "2024-03-10T10:16", "2024-03-10T10:21", "2024-03-10T10:26",
                                      "2024-03-10T11:01"}));
  EXPECT_EQ(NextN("0,30 8-9 * * *", "2024-03-10T08:30:00Z", 3),
            (std::vector<std::string>{"2024-03-10T09:00", "2024-03-10T09:30", "2024-03-11T08:00"}));
  EXPECT_EQ(Next("10/20 * * * *", "2024-03-10T10:31:00Z"), "2024-03-10T10:50:00.000000Z");
}

TEST(CronTest, MonthEndsAndLeapYears) {
  EXPECT_EQ(Next("30 23 * * *", "2024-12-31T23:30:00Z"), "2025-01-01T23:30:00.000000Z");
  EXPECT_EQ(Next("0 0 * * *", "2024-12-31T12:00:00Z"), "2025-01-01T00:00:00.000000Z");
  // The 31st skips 30-day months (and February).
  EXPECT_EQ(Next("0 0 31 * *", "2024-04-01T00:00:00Z"), "2024-05-31T00:00:00.000000Z");
  EXPECT_EQ(Next("0 0 31 * *", "2024-01-31T00:00:00Z"), "2024-03-31T00:00:00.000000Z");
  // Feb 29 only in leap years; 2100 is not one.
  EXPECT_EQ(Next("0 12 29 2 *", "2023-03-01T00:00:00Z"), "2024-02-29T12:00:00.000000Z");
  EXPECT_EQ(Next("0 12 29 2 *", "2024-02-29T12:00:00Z"), "2028-02-29T12:00:00.000000Z");
  EXPECT_EQ(Next("0 12 29 2 *", "2097-01-01T00:00:00Z"), "2104-02-29T12:00:00.000000Z");
  EXPECT_EQ(Next("0 0 1 * *", "2024-02-29T00:00:00Z"), "2024-03-01T00:00:00.000000Z");
  EXPECT_EQ(Next("59 23 28-31 2 *", "2023-02-28T23:59:00Z"), "2024-02-28T23:59:00.000000Z");
  EXPECT_EQ(Next("59 23 28-31 2 *", "2024-02-28T23:59:00Z"), "2024-02-29T23:59:00.000000Z");
}

TEST(CronTest, DayOfMonthOrDayOfWeekLikeVixie) {
  // Both restricted: the 13th OR any Friday.
  EXPECT_EQ(NextN("0 0 13 * 5", "2024-09-01T00:00:00Z", 7),
            (std::vector<std::string>{"2024-09-06T00:00", "2024-09-13T00:00", "2024-09-20T00:00",
                                      "2024-09-27T00:00", "2024-10-04T00:00", "2024-10-11T00:00",
                                      "2024-10-13T00:00"}));
  // A field starting with '*' counts as unrestricted: AND (odd days that are Fridays).
  EXPECT_EQ(NextN("0 0 */2 * 5", "2024-09-01T00:00:00Z", 4),
            (std::vector<std::string>{"2024-09-13T00:00", "2024-09-27T00:00", "2024-10-11T00:00",
                                      "2024-10-25T00:00"}));
  EXPECT_EQ(NextN("0 0 13 * *", "2024-09-01T00:00:00Z", 2),
            (std::vector<std::string>{"2024-09-13T00:00", "2024-10-13T00:00"}));
}

TEST(CronTest, NamesAndSunday7) {
  EXPECT_EQ(Next("0 9 * JAN,jul Mon-Fri", "2024-01-01T00:00:00Z"), "2024-01-01T09:00:00.000000Z");
  EXPECT_EQ(Next("0 9 * jan,jul mon-fri", "2024-01-31T09:00:00Z"), "2024-07-01T09:00:00.000000Z");
  EXPECT_EQ(Next("0 0 * * 7", "2024-06-01T00:00:00Z"), "2024-06-02T00:00:00.000000Z");
  EXPECT_EQ(Next("0 0 * * sun", "2024-06-01T00:00:00Z"), "2024-06-02T00:00:00.000000Z");
  EXPECT_EQ(Next("0 0 * * 5-7", "2024-06-02T00:00:00Z"), "2024-06-07T00:00:00.000000Z");
}

TEST(CronTest, Macros) {
  EXPECT_EQ(Next("@hourly", "2024-06-01T10:00:00Z"), "2024-06-01T11:00:00.000000Z");
  EXPECT_EQ(Next("@daily", "2024-06-01T10:00:00Z"), "2024-06-02T00:00:00.000000Z");
  EXPECT_EQ(Next("@weekly", "2024-06-01T10:00:00Z"), "2024-06-02T00:00:00.000000Z");  // Sunday
  EXPECT_EQ(Next("@monthly", "2024-06-01T10:00:00Z"), "2024-07-01T00:00:00.000000Z");
  EXPECT_EQ(Next("@yearly", "2024-06-01T10:00:00Z"), "2025-01-01T00:00:00.000000Z");
  EXPECT_EQ(Next("@annually", "2024-06-01T10:00:00Z"), "2025-01-01T00:00:00.000000Z");
}

TEST(CronTest, PrevBefore) {
  EXPECT_EQ(Prev("*/15 * * * *", "2024-03-10T10:15:00Z"), "2024-03-10T10:00:00.000000Z");
  EXPECT_EQ(Prev("*/15 * * * *", "2024-03-10T10:15:00.000001Z"), "2024-03-10T10:15:00.000000Z");
  EXPECT_EQ(Prev("0 0 31 * *", "2024-05-01T00:00:00Z"), "2024-03-31T00:00:00.000000Z");
  EXPECT_EQ(Prev("0 12 29 2 *", "2028-01-01T00:00:00Z"), "2024-02-29T12:00:00.000000Z");
  EXPECT_EQ(Prev("@yearly", "2025-01-01T00:00:00Z"), "2024-01-01T00:00:00.000000Z");
  EXPECT_EQ(Prev("0 0 13 * 5", "2024-10-13T00:00:00Z"), "2024-10-11T00:00:00.000000Z");
  // Round trip over a year of a busy expression.
  auto c = ParseCron("*/7 */5 1-10,20 * mon,thu");
  ASSERT_TRUE(c.ok());
  Micros t = T("2024-01-01T00:00:00Z");
  for (int i = 0; i < 2000; ++i) {
    Micros n = c->NextAfter(t);
    ASSERT_GT(n, t);
    ASSERT_EQ(c->PrevBefore(n + 1), n);
    ASSERT_LE(c->PrevBefore(n), t);
    t = n;
  }
}

TEST(CronTest, ErrorsNameTheField) {
  struct Case {
    const char* expr;
    const char* field;
  } cases[] = {
      {"60 * * * *", "minute"},
      {"* 24 * * *", "hour"},
      {"* * 0 * *", "day-of-month"},
      {"* * 32 * *", "day-of-month"},
      {"* * * 13 *", "month"},
      {"* * * foo *", "month"},
      {"* * * * 8", "day-of-week"},
      {"* * * * mon-xyz", "day-of-week"},
      {"5-1 * * * *", "minute"},
      {"*/0 * * * *", "minute"},
      {"1,,2 * * * *", "minute"},
      {"* */x * * *", "hour"},
      {"0 0 30 2 *", "day-of-month"},
      {"* * * *", "5 fields"},
      {"* * * * * *", "5 fields"},
      {"@often", "macro"},
      {"", "5 fields"},
  };
  for (const auto& c : cases) {
    auto r = ParseCron(c.expr);
    ASSERT_FALSE(r.ok()) << c.expr;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.expr;
    EXPECT_NE(r.status().message().find(c.field), std::string::npos)
        << c.expr << " -> " << r.status().message();
  }
  // Feb 30 never fires, but with a day-of-week too it does (OR semantics).
  EXPECT_TRUE(ParseCron("0 0 30 2 mon").ok());
}

}  // namespace
}  // namespace lakeloop::flow
