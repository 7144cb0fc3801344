// The feature store's definitions (entities, batch views, services), their cross-checks, the batch
// row encoding and online retrieval through the plan on a real RocksDB online store.
#include "features/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "features/features.h"

namespace lakeloop::features {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kDay = 86'400'000'000;

constexpr char kEntity[] = "name: customer\njoin_key: customer_id\ntype: int64\n";
constexpr char kBatch[] = R"(name: customer_daily
kind: batch
source: processed.customer_daily
entity: customer
timestamp: as_of
ttl: 3d
features:
  - {name: plan, type: string}
  - {name: orders_30d, type: int64}
  - {name: spend_30d, type: double, column: spend}
)";
constexpr char kStream[] = R"(name: activity
kind: stream
stream: clicks
entity: customer_id
features:
  - {name: clicks_5m, agg: count, window: 5m}
)";
constexpr char kService[] = R"(name: churn
features:
  - customer_daily:orders_30d
  - customer_daily:plan
  - activity:*
)";

Registry Example() {
  Registry r;
  r.entities.push_back(ParseEntity(kEntity, "entities/customer.yaml").value());
  r.views.push_back(ParseFeatureView(kBatch, "features/customer_daily.yaml").value());
  r.views.push_back(ParseFeatureView(kStream, "features/activity.yaml").value());
  r.services.push_back(ParseFeatureService(kService, "feature_services/churn.yaml").value());
  return r;
}

TEST(StoreDefinitionTest, ParsesEntityBatchViewAndService) {
  auto e = ParseEntity(kEntity, "e.yaml");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->join_key, "customer_id");
  EXPECT_EQ(e->type, ValueType::kInt64);
  auto v = ParseFeatureView(kBatch, "v.yaml");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->kind, ViewKind::kBatch);
  EXPECT_EQ(v->source, "processed.customer_daily");
  EXPECT_EQ(v->entity, "customer");
  EXPECT_EQ(v->timestamp_column, "as_of");
  EXPECT_EQ(v->ttl_us, 3 * kDay);
  ASSERT_EQ(v->features.size(), 3u);
  EXPECT_EQ(v->features[0].type, ValueType::kString);
  EXPECT_EQ(v->features[0].column, "plan");
  EXPECT_EQ(v->features[2].column, "spend");
  EXPECT_EQ(v->features[2].line, 10);
  auto s = ParseFeatureService(kService, "s.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->features.size(), 3u);
  EXPECT_EQ(s->features[2].view, "activity");
  EXPECT_EQ(s->features[2].feature, "*");
  EXPECT_EQ(s->features[1].line, 4);
}

TEST(StoreDefinitionTest, ErrorsNameFileAndLine) {
  struct Case {
    std::string yaml;
    const char* where;
    int what;  // 0 view, 1 entity, 2 service
  };
  const Case cases[] = {
      {"name: v\nkind: batch\nsource: nozone\nentity: c\ntimestamp: t\nfeatures: [{name: a, "
       "type: int64}]\n",
       "f.yaml:3:", 0},
      {"name: v\nkind: batch\nsource: a.b\nentity: c\ntimestamp: t\nfeatures:\n  - {name: a, "
       "type: decimal}\n",
       "f.yaml:7:", 0},
      {"name: v\nkind: batch\nsource: a.b\nentity: c\ntimestamp: t\nttl: 3 days\nfeatures: "
       "[{name: a, type: int64}]\n",
       "f.yaml:6:", 0},
      {"name: v\nkind: batch\nsource: a.b\nentity: c\nfeatures: [{name: a, type: int64}]\n",
       "f.yaml:1:", 0},
      {"name: v\nkind: batch\nsource: a.b\nentity: c\ntimestamp: t\nwindow: 5m\nfeatures: []\n",
       "f.yaml:6:", 0},
      {"name: c\njoin_key: id\ntype: float\n", "f.yaml:3:", 1},
      {"name: c\n", "f.yaml:1:", 1},
      {"name: s\nfeatures:\n  - a:b\n  - nocolon\n", "f.yaml:4:", 2},
      {"name: s\nfeatures:\n  - a:b\n  - a:b\n", "f.yaml:4:", 2},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    Status st = c.what == 0   ? ParseFeatureView(c.yaml, "f.yaml").status()
                : c.what == 1 ? ParseEntity(c.yaml, "f.yaml").status()
                              : ParseFeatureService(c.yaml, "f.yaml").status();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_EQ(st.message().rfind(c.where, 0), 0u) << st.message();
  }
}

TEST(StoreDefinitionTest, RegistryChecksReferences) {
  EXPECT_TRUE(CheckRegistry(Example()).empty());
  Registry r = Example();
  r.services[0].features.push_back(ParseFeatureRef("customer_daily:nope").value());
  r.services[0].features.back().line = 6;
  r.services[0].features.push_back(ParseFeatureRef("ghost:*").value());
  r.services[0].features.back().line = 7;
  r.views[0].entity = "shopper";
  auto errors = CheckRegistry(r);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].rfind("features/customer_daily.yaml:1: ", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("shopper"), std::string::npos);
  EXPECT_EQ(errors[1].rfind("feature_services/churn.yaml:6: ", 0), 0u) << errors[1];
  EXPECT_EQ(errors[2].rfind("feature_services/churn.yaml:7: ", 0), 0u) << errors[2];
}

TEST(StoreDefinitionTest, RetypingOrRemovingAServicesFeatureIsIncompatible) {
  const Registry before = Example();
  // Unchanged, or a change to a feature no service uses: fine.
  EXPECT_TRUE(CheckCompatibility(before, before).empty());
  Registry other = Example();
  other.views[0].features[2].type = ValueType::kString;  // spend_30d: unused
  EXPECT_TRUE(CheckCompatibility(before, other).empty());
  // Retyped: refused, naming the service's file and line.
  Registry retyped = Example();
  retyped.views[0].features[1].type = ValueType::kDouble;  // orders_30d
  auto errors = CheckCompatibility(before, retyped);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind("feature_services/churn.yaml:3: ", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("int64 to double"), std::string::npos) << errors[0];
  // Removed: a named reference is unknown (CheckRegistry), a star reference is incompatible.
  Registry removed = Example();
  removed.views[0].features.erase(removed.views[0].features.begin() + 1);
  auto missing = CheckRegistry(removed);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].rfind("feature_services/churn.yaml:3: ", 0), 0u) << missing[0];
  Registry star = Example();
  star.views[1].features.push_back(star.views[1].features[0]);
  star.views[1].features.back().name = "clicks_1h";
  Registry star_removed = Example();
  auto star_errors = CheckCompatibility(star, star_removed);
  ASSERT_EQ(star_errors.size(), 1u);
  EXPECT_EQ(star_errors[0].rfind("feature_services/churn.yaml:5: ", 0), 0u) << star_errors[0];
}

TEST(StoreDefinitionTest, BatchRowRoundTrips) {
  BatchRow row;
  row.event_time_us = 1'700'000'000'000'000;
  row.values = {std::monostate{}, int64_t{-3}, 2.5, std::string("pro"), true, TimestampValue{123}};
  auto back = DecodeBatchRow(EncodeBatchRow(row));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->event_time_us, row.event_time_us);
  EXPECT_EQ(back->values, row.values);
  EXPECT_EQ(back->schema, row.schema);
  // The schema changes with what values depend on, not with the TTL.
  auto v = ParseFeatureView(kBatch, "v.yaml").value();
  auto w = v;
  w.ttl_us = 0;
  EXPECT_EQ(BatchSchema(v), BatchSchema(w));
  w.features[2].column = "spend_total";
  EXPECT_NE(BatchSchema(v), BatchSchema(w));
  EXPECT_FALSE(DecodeBatchRow("\x01xx").ok());
}

TEST(StoreDefinitionTest, ColumnTypesFit) {
  EXPECT_TRUE(ColumnFits(ValueType::kInt64, "BIGINT"));
  EXPECT_FALSE(ColumnFits(ValueType::kInt64, "DOUBLE"));
  EXPECT_TRUE(ColumnFits(ValueType::kDouble, "DECIMAL(18,2)"));
  EXPECT_TRUE(ColumnFits(ValueType::kTimestamp, "TIMESTAMP"));
  EXPECT_FALSE(ColumnFits(ValueType::kString, "BIGINT"));
  EXPECT_TRUE(ColumnFits(ValueType::kBool, "BOOLEAN"));
}

class OnlinePlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("store_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    stream::RocksLogOptions o;
    o.sync = false;
    log_ = stream::OpenRocksEventLog((dir_ / "log").string(), o).value();
    store_ = OpenRocksOnlineStore(log_.get()).value();
  }
  void TearDown() override {
    store_.reset();
    log_.reset();
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::unique_ptr<stream::EventLog> log_;
  std::unique_ptr<OnlineStore> store_;
};

TEST_F(OnlinePlanTest, BatchValuesAreTypedWithStatusesAndOneRowPerKey) {
  const int64_t now = 1'800'000'000'000'000;
  const uint64_t schema = BatchSchema(Example().views[0]);
  BatchRow fresh{now - kDay, {std::string("pro"), int64_t{4}, 12.5}, schema};
  BatchRow stale{now - 4 * kDay, {std::string("free"), int64_t{0}, 0.0}, schema};
  // Loaded with another definition (here: the columns swapped): read as missing, never mislabeled.
  BatchRow other{now - kDay, {int64_t{4}, std::string("pro"), 12.5}, schema + 1};
  ASSERT_TRUE(store_->Put("customer_daily", "4", EncodeBatchRow(other)).ok());
  ASSERT_TRUE(store_->Put("customer_daily", "1", EncodeBatchRow(fresh)).ok());
  ASSERT_TRUE(store_->Put("customer_daily", "2", EncodeBatchRow(stale)).ok());
  auto plan = OnlinePlan::Build(Example(), store_.get(), {});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();

  OnlineRequest req;
  req.features = {"customer_daily:plan", "customer_daily:orders_30d"};
  req.join_key = "customer_id";
  req.keys = std::vector<int64_t>{1, 2, 3, 4};
  req.read_time_us = now;
  auto got = (*plan)->Get(req);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->features,
            (std::vector<std::string>{"customer_daily:plan", "customer_daily:orders_30d"}));
  ASSERT_EQ(got->values.size(), 4u);
  EXPECT_EQ(got->values[3][0].status, FeatureStatus::kMissing);
  EXPECT_EQ(got->values[0][0].status, FeatureStatus::kPresent);
  EXPECT_EQ(std::get<std::string>(got->values[0][0].value), "pro");
  EXPECT_EQ(std::get<int64_t>(got->values[0][1].value), 4);
  EXPECT_EQ(got->values[0][1].event_time_us, now - kDay);
  // Older than the 3d TTL: expired, no value.
  EXPECT_EQ(got->values[1][0].status, FeatureStatus::kExpired);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(got->values[1][0].value));
  // Unknown entity: missing, never zero.
  EXPECT_EQ(got->values[2][1].status, FeatureStatus::kMissing);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(got->values[2][1].value));

  // The service: its features in order (activity:* expanded); a stream view without a running
  // processor answers missing.
  OnlineRequest svc;
  svc.feature_service = "churn";
  svc.join_key = "customer_id";
  svc.keys = std::vector<int64_t>{1};
  svc.read_time_us = now;
  auto s = (*plan)->Get(svc);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->features, (std::vector<std::string>{"customer_daily:orders_30d",
                                                   "customer_daily:plan", "activity:clicks_5m"}));
  EXPECT_EQ(s->values[0][0].status, FeatureStatus::kPresent);
  EXPECT_EQ(s->values[0][2].status, FeatureStatus::kMissing);
}

TEST_F(OnlinePlanTest, BadRequestsAreRefusedWithCodes) {
  auto plan = OnlinePlan::Build(Example(), store_.get(), {}).value();
  auto ask = [&](auto fill) {
    OnlineRequest r;
    r.join_key = "customer_id";
    r.keys = std::vector<int64_t>{1};
    fill(r);
    return plan->Get(r).status().code();
  };
  EXPECT_EQ(ask([](OnlineRequest& r) { r.feature_service = "nope"; }), Code::kNotFound);
  EXPECT_EQ(ask([](OnlineRequest& r) { r.features = {"customer_daily:nope"}; }), Code::kNotFound);
  EXPECT_EQ(ask([](OnlineRequest& r) { r.features = {"ghost:x"}; }), Code::kNotFound);
  EXPECT_EQ(ask([](OnlineRequest& r) { r.features = {"no_colon"}; }), Code::kInvalidArgument);
  EXPECT_EQ(ask([](OnlineRequest&) {}), Code::kInvalidArgument);  // neither
  EXPECT_EQ(ask([](OnlineRequest& r) {
              r.features = {"customer_daily:plan"};
              r.feature_service = "churn";
            }),
            Code::kInvalidArgument);  // both
  EXPECT_EQ(ask([](OnlineRequest& r) {
              r.features = {"customer_daily:plan"};
              r.join_key = "user_id";
            }),
            Code::kInvalidArgument);
  EXPECT_EQ(ask([](OnlineRequest& r) {
              r.features = {"customer_daily:plan"};
              r.keys = std::vector<std::string>{"1"};
            }),
            Code::kInvalidArgument);  // wrong key type
  EXPECT_EQ(ask([](OnlineRequest& r) {
              r.features = {"customer_daily:plan"};
              r.keys = std::vector<int64_t>{};
            }),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace lakeloop::features
