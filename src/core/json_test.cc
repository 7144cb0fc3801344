#include "core/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace lakeloop {
namespace {

TEST(JsonTest, WriterInsertsCommasAndEscapes) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject()
      .Key("a")
      .Int(1)
      .Key("b")
      .BeginArray()
      .String("x\"y\n")
      .Null()
      .Bool(true)
      .EndArray();
  w.Key("c").Double(0.5).Key("d").Double(std::nan("")).Key("e").Raw("{}").EndObject();
  EXPECT_EQ(out, R"({"a":1,"b":["x\"y\n",null,true],"c":0.5,"d":null,"e":{}})");
}

TEST(JsonTest, ControlCharactersAreEscaped) {
  std::string out;
  JsonWriter::AppendEscaped(&out, std::string("a\x01z", 3));
  EXPECT_EQ(out, "\"a\\u0001z\"");
}

TEST(JsonTest, DoublesAreShortest) {
  std::string out;
  JsonWriter w(&out);
  w.BeginArray().Double(0.873).Double(4.0).Double(1e300).EndArray();
  EXPECT_EQ(out, "[0.873,4,1e+300]");
}

TEST(JsonTest, ParseErrorsAreMalformedRequest) {
  EXPECT_EQ(ParseJson("{").status().code(), Code::kMalformedRequest);
  EXPECT_EQ(ParseJsonObject("[1]").status().code(), Code::kMalformedRequest);
  auto o = ParseJsonObject(R"({"sql": "SELECT 1", "limit": 5})");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->at("limit").as_int64(), 5);
}

TEST(JsonTest, ToJsonRoundTrips) {
  auto v = ParseJson(R"({"a":[1,2.5,"s",null,true],"b":{"c":18446744073709551615}})");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(ToJson(*v), R"({"a":[1,2.5,"s",null,true],"b":{"c":18446744073709551615}})");
}

}  // namespace
}  // namespace lakeloop
