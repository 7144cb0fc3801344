#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "features/features.h"

namespace lakeloop::features {
namespace {

constexpr char kExample[] = R"(name: customer_activity
kind: stream
stream: clicks             # the stream it reads
features:
  - {name: clicks_5m, agg: count, window: 5m, where: {event_type: click}}
  - {name: clicks_1h, agg: count, window: 1h, where: {event_type: click}}
  - {name: cart_adds_1h, agg: count, window: 1h, where: {event_type: add_to_cart}}
  - {name: spend_24h, agg: sum, field: value, window: 24h, where: {event_type: purchase}}
  - {name: distinct_types_1h, agg: count_distinct, field: event_type, window: 1h}
  - {name: last_value_1h, agg: last, field: value, window: 1h}
allowed_lateness: 5m
)";

TEST(DefinitionTest, ParsesTheExample) {
  auto v = ParseFeatureView(kExample, "features/customer_activity.yaml");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->name, "customer_activity");
  EXPECT_EQ(v->kind, ViewKind::kStream);
  EXPECT_EQ(v->stream, "clicks");
  EXPECT_EQ(v->allowed_lateness_us, 300'000'000);
  ASSERT_EQ(v->features.size(), 6u);
  EXPECT_EQ(v->features[3].agg, stream::Agg::kSum);
  EXPECT_EQ(v->features[3].field, "value");
  EXPECT_EQ(v->features[3].window_us, 86'400'000'000);
  ASSERT_EQ(v->features[0].where.size(), 1u);
  EXPECT_EQ(v->features[0].where[0].field, "event_type");
  EXPECT_EQ(std::get<std::string>(v->features[0].where[0].value), "click");
}

TEST(DefinitionTest, WhereValuesKeepTheirTypes) {
  auto v = ParseFeatureView(
      "name: v\nkind: stream\nstream: s\nfeatures:\n"
      "  - {name: a, agg: count, window: 30s, where: {n: 3, b: true, s: \"3\", t: x}}\n",
      "v.yaml");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  const auto& w = v->features[0].where;  // sorted by field
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(std::get<bool>(w[0].value), true);
  EXPECT_EQ(std::get<double>(w[1].value), 3.0);
  EXPECT_EQ(std::get<std::string>(w[2].value), "3");
  EXPECT_EQ(std::get<std::string>(w[3].value), "x");
}

struct BadCase {
  std::string yaml;
  const char* where;  // expected "file:line" prefix
  Code code = Code::kInvalidArgument;
};

TEST(DefinitionTest, ErrorsNameFileAndLine) {
  const std::string head = "name: v\nkind: stream\nstream: s\nfeatures:\n";
  const BadCase cases[] = {
      {"name: v\nkind: stream\nstream: s\ncolour: red\nfeatures: []\n", "f.yaml:4:"},
      {(head + "  - {name: a, agg: median, window: 5m}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 5m}\n  - {name: b, agg: sum, window: 5m}\n"),
       "f.yaml:6:"},
      {(head + "  - {name: a, agg: count, window: 90m}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 5 minutes}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 8d}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 5m, bogus: 1}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 5m}\n  - {name: a, agg: count, window: 1h}\n"),
       "f.yaml:6:"},
      {(head + "  - {name: Bad-Name, agg: count, window: 5m}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, field: x, window: 5m}\n"), "f.yaml:5:"},
      {(head + "  - {name: a, agg: count, window: 5m, where: {x: [1]}}\n"), "f.yaml:5:"},
      {"name: v\nkind: batch\nstream: s\n", "f.yaml:3:"},
      {"name: v\nkind: table\n", "f.yaml:2:"},
      {"name: v\nkind: stream\nstream: s\nallowed_lateness: 2d\nfeatures: []\n", "f.yaml:4:"},
      {"name: v\nkind: stream\nstream: s\nfeatures: [\n", "f.yaml:"},
      {"name: v\nkind: stream\nfeatures: []\n", "f.yaml:1:"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    auto v = ParseFeatureView(c.yaml, "f.yaml");
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), c.code);
    EXPECT_EQ(v.status().message().rfind(c.where, 0), 0u) << v.status().message();
  }
}

TEST(DefinitionTest, LoadsADirectoryAndRejectsDuplicates) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "features_defs";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.yaml") << kExample;
  std::ofstream(dir / "notes.txt") << "ignored";
  auto one = LoadFeatureViews(dir);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->size(), 1u);
  std::ofstream(dir / "b.yml") << kExample;
  auto two = LoadFeatureViews(dir);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().code(), Code::kInvalidArgument);
  EXPECT_NE(two.status().message().find("b.yml:1:"), std::string::npos);
  auto none = LoadFeatureViews(dir / "missing");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lakeloop::features
