#include "core/time.h"

#include <gtest/gtest.h>

namespace lakeloop {
namespace {

TEST(TimeTest, FormatsUtcWithMicros) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatRfc3339(1764148630123456), "2025-11-26T09:17:10.123456Z");
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999999Z");
}

TEST(TimeTest, ParsesOffsetsAndFractions) {
  EXPECT_EQ(*ParseRfc3339("2025-11-26T09:17:10.123456Z"), 1764148630123456);
  EXPECT_EQ(*ParseRfc3339("2025-11-26T10:17:10.123456+01:00"), 1764148630123456);
  EXPECT_EQ(*ParseRfc3339("2025-11-26T09:17:10Z"), 1764148630000000);
  EXPECT_EQ(*ParseRfc3339("2025-11-26T09:17:10.5Z"), 1764148630500000);
  EXPECT_EQ(*ParseRfc3339("2025-11-26"), 1764115200000000);
}

TEST(TimeTest, RejectsGarbage) {
  for (const char* s : {"", "2025", "2025-13-01", "2025-11-26T09:17:10", "2025-11-26T09:17Z",
                        "2025-11-26T09:17:10Zjunk", "yesterday"}) {
    EXPECT_EQ(ParseRfc3339(s).status().code(), Code::kInvalidArgument) << s;
  }
}

TEST(TimeTest, RoundTrips) {
  for (Micros t : {Micros{0}, Micros{1}, Micros{951782400000001}, Micros{4102444800999999}}) {
    EXPECT_EQ(*ParseRfc3339(FormatRfc3339(t)), t);
  }
}

}  // namespace
}  // namespace lakeloop
