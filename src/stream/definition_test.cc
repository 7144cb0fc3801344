#include "stream/definition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/ids.h"
#include "core/time.h"

namespace lakeloop::stream {
namespace {

using ::testing::HasSubstr;

constexpr char kClicks[] = R"(name: clicks
fields:
  customer_id: {type: integer}
  ts: {type: timestamp}
  event_type: {type: string}
  value: {type: number, required: false}
  event_id: {type: string, required: false}
key: customer_id            # entity key field
time: ts
event_id: event_id
dedup_window: 1h
retention: 7d
allowed_lateness: 5m
max_future_skew: 1m
partitions: 4
)";

StreamDefinition Clicks() {
  auto d = ParseStreamDefinition(kClicks, "streams/clicks.yaml");
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return *d;
}

TEST(StreamDefinitionTest, ParsesTheExample) {
  StreamDefinition d = Clicks();
  EXPECT_EQ(d.name, "clicks");
  ASSERT_EQ(d.fields.size(), 5u);
  EXPECT_EQ(d.fields[0].name, "customer_id");
  EXPECT_EQ(d.fields[0].type, FieldType::kInteger);
  EXPECT_TRUE(d.fields[0].required);
  EXPECT_EQ(d.fields[3].type, FieldType::kNumber);
  EXPECT_FALSE(d.fields[3].required);
  EXPECT_EQ(d.key_field, "customer_id");
  EXPECT_EQ(d.time_field, "ts");
  EXPECT_EQ(d.event_id_field, "event_id");
  EXPECT_EQ(d.dedup_window_us, 3'600'000'000);
  EXPECT_EQ(d.retention_us, 7 * 86'400'000'000);
  EXPECT_EQ(d.allowed_lateness_us, 300'000'000);
  EXPECT_EQ(d.max_future_skew_us, 60'000'000);
  EXPECT_EQ(d.partitions, 4);
  EXPECT_FALSE(d.allow_additional_fields);
  StreamOptions o = d.ToStreamOptions();
  EXPECT_EQ(o.name, "clicks");
  EXPECT_EQ(o.partitions, 4);
  EXPECT_EQ(o.dedup_window_us, 3'600'000'000);
  EXPECT_EQ(o.retention_us, 7 * 86'400'000'000);
}

TEST(StreamDefinitionTest, ErrorsNameFileLineAndReason) {
  struct Case {
    std::string yaml;
    std::string where;  // file:line:column prefix
    std::string reason;
  };
  const std::string base = "name: s\nfields:\n  id: {type: integer}\n  t: {type: timestamp}\n";
  std::vector<Case> cases = {
      {base + "key: id\ntime: t\ncolour: red\n", "s.yaml:7:1:", "unknown key 'colour'"},
      {"name: s\nfields:\n  id: {type: integer, size: 3}\n  t: timestamp\nkey: id\ntime: t\n",
       "s.yaml:3:23:", "unknown key 'size'"},
      {"name: s\nfields:\n  id: {type: int}\n  t: timestamp\nkey: id\ntime: t\n",
       "s.yaml:3:14:", "unknown type 'int'"},
      {base + "key: nope\ntime: t\n", "s.yaml:5:6:", "key 'nope' is not one of the fields"},
      {base + "key: id\ntime: id\n", "s.yaml:6:7:", "must be of type timestamp"},
      {base + "key: id\ntime: t\nretention: 7 days\n", "s.yaml:7:12:", "not a duration"},
      {base + "key: id\ntime: t\npartitions: 0\n", "s.yaml:7:13:", "from 1 to 1024"},
      {base + "key: id\ntime: t\nadditional_fields: maybe\n", "s.yaml:7:20:", "reject or allow"},
      {base + "time: t\n", "s.yaml:1:1:", "needs 'key'"},
      {"name: s\nfields:\n  Id: integer\n", "s.yaml:3:3:", "field name 'Id'"},
      {"name: s\nfields:\n  _x: integer\n", "s.yaml:3:3:", "reserved"},
      {"name: Clicks\n", "s.yaml:1:7:", "lower-case identifier"},
      {"name: s\nfields: [a, b\n", "s.yaml:", ""},  // YAML syntax
      {base + "key: id\ntime: t\nkey: id\n", "s.yaml:7:1:", "duplicate key 'key'"},
      {"name: s\nfields:\n  id: {type: integer, required: false}\n  t: timestamp\nkey: id\n"
       "time: t\n",
       "s.yaml:5:6:", "cannot be required: false"},
  };
  for (const auto& c : cases) {
    auto d = ParseStreamDefinition(c.yaml, "s.yaml");
    ASSERT_FALSE(d.ok()) << c.yaml;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(d.status().message(), ::testing::StartsWith(c.where)) << c.yaml;
    EXPECT_THAT(d.status().message(), HasSubstr(c.reason)) << c.yaml;
  }
}

TEST(StreamDefinitionTest, LoadsADirectory) {
  auto dir = std::filesystem::temp_directory_path() / ("lakeloop-defs-" + RandomHex(6)) / "streams";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "clicks.yaml") << kClicks;
  std::ofstream(dir / "README.md") << "not a definition";
  auto defs = LoadStreamDefinitions(dir);
  ASSERT_TRUE(defs.ok()) << defs.status().ToString();
  ASSERT_EQ(defs->size(), 1u);
  EXPECT_EQ(defs->front().origin, "streams/clicks.yaml");
  std::ofstream(dir / "orders.yaml") << "name: orders\nfields:\n  id: integer\n  t: tstamp\n";
  auto bad = LoadStreamDefinitions(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), ::testing::StartsWith("streams/orders.yaml:4:"));
  std::filesystem::remove(dir / "orders.yaml");
  std::ofstream(dir / "other.yaml") << kClicks;  // names "clicks"
  EXPECT_THAT(LoadStreamDefinitions(dir).status().message(), HasSubstr("must match"));
  EXPECT_TRUE(LoadStreamDefinitions(dir / "missing")->empty());
  std::filesystem::remove_all(dir.parent_path());
}

TEST(StreamDefinitionTest, Durations) {
  EXPECT_EQ(*ParseDuration("250ms"), 250'000);
  EXPECT_EQ(*ParseDuration("90s"), 90'000'000);
  EXPECT_EQ(*ParseDuration("0"), 0);
  EXPECT_FALSE(ParseDuration("5").ok());
  EXPECT_FALSE(ParseDuration("-5m").ok());
  EXPECT_FALSE(ParseDuration("1w").ok());
}

// ---- validation ---------------------------------------------------------------------------------

const int64_t kNow = *ParseRfc3339("2026-11-26T12:00:00Z");

TEST(ValidateEventsTest, GoodAndBadEventsAreJudgedOneByOne) {
  StreamDefinition d = Clicks();
  std::string body =
      R"({"customer_id": 42, "ts": "2026-11-26T10:00:00.5+01:00", "event_type": "view", "value": 3, "event_id": "e1"})"
      "\n"
      "{this is not json\n"
      "\n"  // blank lines are skipped and not counted
      R"({"customer_id": "42", "ts": "2026-11-26T09:00:00Z", "event_type": "view"})"
      "\n"
      R"({"ts": "2026-11-26T09:00:00Z", "event_type": "view"})"
      "\n"
      R"({"customer_id": 7, "event_type": "view"})"
      "\n"
      R"({"customer_id": 7, "ts": "2026-11-26T12:05:00Z", "event_type": "view"})"
      "\n"
      R"({"customer_id": 7, "ts": "2026-11-26T09:00:00Z", "event_type": "view", "colour": "red"})"
      "\n"
      R"({"customer_id": 7, "ts": 1795683600000, "event_type": "click", "value": 0.25})"
      "\n"
      R"({"customer_id": 7.5, "ts": "2026-11-26T09:00:00Z", "event_type": "view"})"
      "\n"
      R"({"customer_id": 8, "ts": "2026-11-26T09:00:00", "event_type": "view"})"
      "\r\n"
      R"([1, 2])";
  auto r = ValidateEvents(d, body, kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->accepted.size(), 2u);
  EXPECT_EQ(r->accepted_index, (std::vector<size_t>{0, 7}));
  const Event& e0 = r->accepted[0];
  EXPECT_EQ(e0.key, "42");
  EXPECT_EQ(e0.event_id, "e1");
  EXPECT_EQ(e0.event_time_us, *ParseRfc3339("2026-11-26T09:00:00.5Z"));
  EXPECT_EQ(e0.payload,
            R"({"customer_id":42,"ts":"2026-11-26T09:00:00.500000Z","event_type":"view",)"
            R"("value":3,"event_id":"e1"})");
  const Event& e1 = r->accepted[1];
  EXPECT_EQ(e1.key, "7");
  EXPECT_EQ(e1.event_id, "");
  EXPECT_EQ(e1.event_time_us, 1795683600000LL * 1000);
  EXPECT_EQ(e1.payload,
            R"({"customer_id":7,"ts":"2026-11-26T09:00:00.000000Z","event_type":"click",)"
            R"("value":0.25})");
  std::map<size_t, std::string> rejected;
  for (const auto& x : r->rejected) rejected[x.index] = x.error;
  ASSERT_EQ(rejected.size(), 9u);
  EXPECT_THAT(rejected[1], HasSubstr("not JSON"));
  EXPECT_THAT(rejected[2], HasSubstr("field 'customer_id': expected an integer, got a string"));
  EXPECT_THAT(rejected[3], HasSubstr("missing required field 'customer_id'"));
  EXPECT_THAT(rejected[4], HasSubstr("missing required field 'ts'"));
  EXPECT_THAT(rejected[5], HasSubstr("ahead of the server clock"));
  EXPECT_THAT(rejected[5], HasSubstr("max_future_skew (60000 ms)"));
  EXPECT_THAT(rejected[6], HasSubstr("unknown field 'colour'"));
  EXPECT_THAT(rejected[8], HasSubstr("not integral"));
  EXPECT_THAT(rejected[9], HasSubstr("RFC 3339"));
  EXPECT_THAT(rejected[10], HasSubstr("must be a JSON object"));
}

TEST(ValidateEventsTest, ArrayBodiesAndWholeBodyErrors) {
  StreamDefinition d = Clicks();
  auto r = ValidateEvents(
      d,
      R"([{"customer_id": 1, "ts": "2026-11-26T09:00:00Z", "event_type": "a"}, 5,)"
      R"( {"customer_id": 2, "ts": "2026-11-26T09:00:00Z", "event_type": "b", "value": null}])",
      kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted_index, (std::vector<size_t>{0, 2}));
  ASSERT_EQ(r->rejected.size(), 1u);
  EXPECT_EQ(r->rejected[0].index, 1u);
  EXPECT_EQ(r->accepted[1].payload,
            R"({"customer_id":2,"ts":"2026-11-26T09:00:00.000000Z","event_type":"b"})");

  EXPECT_EQ(ValidateEvents(d, "[{\"a\": 1}", kNow).status().code(), Code::kMalformedRequest);
  EXPECT_EQ(ValidateEvents(d, "42", kNow).status().code(), Code::kMalformedRequest);
  EXPECT_EQ(ValidateEvents(d, "  \n", kNow).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateEvents(d, "[]", kNow).status().code(), Code::kInvalidArgument);
}

TEST(ValidateEventsTest, TypesLimitsAndAdditionalFields) {
  StreamDefinition d = Clicks();
  auto one = [&](const std::string& json) { return ValidateEvents(d, json, kNow); };
  // Integral floats are integers; big ids are rejected; the event id has a limit.
  auto r = one(R"({"customer_id": 1e3, "ts": "2026-11-26T09:00:00Z", "event_type": "a"})");
  ASSERT_EQ(r->accepted.size(), 1u);
  EXPECT_EQ(r->accepted[0].key, "1000");
  r = one(
      R"({"customer_id": 18446744073709551615, "ts": "2026-11-26T09:00:00Z", "event_type": "a"})");
  ASSERT_EQ(r->rejected.size(), 1u);
  std::string long_id(kMaxEventIdBytes + 1, 'x');
  r = one(R"({"customer_id": 1, "ts": "2026-11-26T09:00:00Z", "event_type": "a", "event_id": ")" +
          long_id + "\"}");
  ASSERT_EQ(r->rejected.size(), 1u);
  EXPECT_THAT(r->rejected[0].error, HasSubstr("event id has 513 bytes"));
  r = one(R"({"customer_id": 1, "ts": "2026-11-26T09:00:00Z", "event_type": true})");
  EXPECT_THAT(r->rejected[0].error, HasSubstr("expected a string, got a boolean"));
  r = one(R"({"customer_id": 1, "ts": "2026-11-26T09:00:00Z", "event_type": "a", "value": "3"})");
  EXPECT_THAT(r->rejected[0].error, HasSubstr("expected a number"));
  // Within the skew: accepted.
  r = one(R"({"customer_id": 1, "ts": "2026-11-26T12:00:59Z", "event_type": "a"})");
  EXPECT_EQ(r->accepted.size(), 1u);
  // String keys; additional fields kept when allowed.
  StreamDefinition s = *ParseStreamDefinition(
      "name: s\nfields:\n  user: string\n  at: timestamp\n  ok: {type: boolean, required: false}\n"
      "key: user\ntime: at\nadditional_fields: allow\n",
      "s.yaml");
  r = ValidateEvents(
      s, R"({"user": "ü\"1", "extra": {"a": [1]}, "at": "2026-11-26T09:00:00Z", "ok": false})",
      kNow);
  ASSERT_EQ(r->accepted.size(), 1u) << r->rejected[0].error;
  EXPECT_EQ(r->accepted[0].key, "ü\"1");
  EXPECT_EQ(r->accepted[0].payload,
            R"({"user":"ü\"1","at":"2026-11-26T09:00:00.000000Z","ok":false,"extra":{"a":[1]}})");
  r = ValidateEvents(s, R"({"user": "", "at": "2026-11-26T09:00:00Z"})", kNow);
  EXPECT_THAT(r->rejected[0].error, HasSubstr("must not be empty"));
}

}  // namespace
}  // namespace lakeloop::stream
