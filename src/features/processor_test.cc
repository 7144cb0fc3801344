// End-to-end tests of the StreamProcessor on a real RocksDB EventLog: fresh reads, a differential
// test of every aggregation against a brute-force reference, restart consistency, the feature log.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>

#include "catalog/catalog.h"
#include "core/json.h"
#include "features/features.h"
#include "features/internal/test_util.h"
#include "lake/lake.h"
#include "sql/sql.h"

namespace lakeloop::features {
namespace {

using testing::kBase;
using testing::kHour;
using testing::kMin;
using testing::kSec;
namespace fs = std::filesystem;

constexpr int64_t kWait = 30'000'000;

class ProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::path(::testing::TempDir()) /
           ("features_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    OpenLog();
  }
  void TearDown() override {
    proc_.reset();
    store_.reset();
    log_.reset();
    engine_.reset();
    lake_.reset();
    objects_.reset();
    catalog_.reset();
    fs::remove_all(dir_);
  }

  void OpenLog() {
    stream::RocksLogOptions o;
    o.sync = false;
    auto log = stream::OpenRocksEventLog((dir_ / "log").string(), o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
    auto store = OpenRocksOnlineStore(log_.get());
    ASSERT_TRUE(store.ok());
    store_ = std::move(store).value();
  }

  void Close() {
    proc_.reset();
    store_.reset();
    log_.reset();
  }

  void OpenLake() {
    auto c = catalog::OpenSqlite(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok());
    catalog_ = std::move(c).value();
    auto migrations = lake::Lake::Migrations();
    for (auto& m : Migrations()) migrations.push_back(m);
    ASSERT_TRUE(catalog::Migrate(*catalog_, migrations).ok());
    objects_ = lake::NewLocalObjectStore(dir_ / "lake");
    lake_ = std::make_unique<lake::Lake>(objects_.get(), catalog_.get(), lake::LakeOptions{});
    sql::EngineOptions eo;
    eo.sandboxed = false;
    eo.scratch_dir = dir_ / "scratch";
    auto e = sql::Engine::Open(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
  }

  FeatureView View(const std::string& yaml) {
    auto v = ParseFeatureView(yaml, "test.yaml");
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : FeatureView{};
  }

  void StartProcessor(const std::vector<FeatureView>& views, ProcessorOptions o = {}) {
    if (lake_) {
      o.lake = lake_.get();
      o.catalog = catalog_.get();
      o.loader = engine_.get();
      o.scratch_dir = dir_ / "spool";
    }
    auto p = StreamProcessor::Create(log_.get(), store_.get(), views, o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    proc_ = std::move(p).value();
    ASSERT_TRUE(proc_->Start().ok());
  }

  void WaitAll(const std::string& stream) {
    proc_->Notify(stream);
    auto ends = log_->EndOffsets(stream);
    ASSERT_TRUE(ends.ok());
    Status s = proc_->WaitApplied(stream, *ends, kWait);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  fs::path dir_;
  std::unique_ptr<stream::EventLog> log_;
  std::unique_ptr<OnlineStore> store_;
  std::unique_ptr<StreamProcessor> proc_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> objects_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<sql::Engine> engine_;
};

constexpr char kClicksView[] = R"(name: customer_activity
kind: stream
stream: clicks
features:
  - {name: clicks_5m, agg: count, window: 5m, where: {event_type: click}}
  - {name: clicks_1h, agg: count, window: 1h, where: {event_type: click}}
  - {name: spend_24h, agg: sum, field: value, window: 24h, where: {event_type: purchase}}
  - {name: distinct_types_1h, agg: count_distinct, field: event_type, window: 1h}
  - {name: last_value_1h, agg: last, field: value, window: 1h}
  - {name: clicks_30s, agg: count, window: 30s, where: {event_type: click}}
allowed_lateness: 5m
)";

stream::Event Ev(const std::string& key, int64_t t, const std::string& type, double value) {
  return {key, t, "", "{\"event_type\":\"" + type + "\",\"value\":" + std::to_string(value) + "}"};
}

TEST_F(ProcessorTest, FreshReadsRightAfterAppend) {
  ASSERT_TRUE(log_->RegisterStream({.name = "clicks", .partitions = 2}).ok());
  StartProcessor({View(kClicksView)});
  const int64_t t0 = kBase;
  ASSERT_TRUE(
      log_->Append("clicks",
                   {Ev("alice", t0, "click", 1), Ev("alice", t0 + 10 * kSec, "click", 2),
                    Ev("alice", t0 + 20 * kSec, "purchase", 30.5), Ev("bob", t0, "click", 1),
                    Ev("alice", t0 - 10 * kMin, "click", 1)})  // late
          .ok());
  WaitAll("clicks");
  auto v = proc_->Get("customer_activity", "alice", t0 + 20 * kSec);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(v->values.size(), 6u);
  EXPECT_EQ(v->values[0].name, "clicks_5m");
  EXPECT_EQ(v->values[0].value, 2.0);
  EXPECT_EQ(v->values[1].value, 2.0);
  EXPECT_EQ(v->values[2].value, 30.5);
  EXPECT_NEAR(*v->values[3].value, 2.0, 0.01);
  EXPECT_EQ(v->values[4].value, 30.5);
  EXPECT_TRUE(v->values[0].exact);
  // Decay: an hour later the 5m and 1h windows are empty, the 24h one still holds the purchase.
  auto later = proc_->Get("customer_activity", "alice", t0 + 2 * kHour);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->values[0].value, 0.0);
  EXPECT_EQ(later->values[1].value, 0.0);
  EXPECT_EQ(later->values[2].value, 30.5);
  EXPECT_FALSE(later->values[4].value.has_value());
  // Unknown key: zeros and nulls; unknown view: kNotFound.
  auto none = proc_->Get("customer_activity", "nobody", t0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->values[0].value, 0.0);
  EXPECT_EQ(none->values[3].value, 0.0);
  EXPECT_FALSE(none->values[4].value.has_value());
  EXPECT_EQ(proc_->Get("nope", "alice", t0).status().code(), Code::kNotFound);
  auto many = proc_->GetMany("customer_activity", {"bob", "nobody", "alice"}, t0 + 20 * kSec);
  ASSERT_TRUE(many.ok());
  ASSERT_EQ(many->size(), 3u);
  EXPECT_EQ((*many)[0].values[0].value, 1.0);
  EXPECT_EQ((*many)[1].values[0].value, 0.0);
  EXPECT_EQ((*many)[2].values[0].value, 2.0);
  auto stats = proc_->Stats("customer_activity");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events_applied, 4);
  EXPECT_EQ(stats->late_events, 1);
  for (const auto& p : stats->partitions) EXPECT_EQ(p.lag, 0);
  // The consumer offset moved with the state.
  auto consumers = log_->ListConsumers("clicks");
  ASSERT_TRUE(consumers.ok());
  ASSERT_EQ(consumers->size(), 1u);
  EXPECT_EQ((*consumers)[0].consumer, "features.customer_activity");
  EXPECT_TRUE((*consumers)[0].durable);
}

TEST_F(ProcessorTest, DifferentialAgainstBruteForce) {
  constexpr int kParts = 3;
  ASSERT_TRUE(log_->RegisterStream({.name = "s", .partitions = kParts}).ok());
  const FeatureView view = View(testing::DiffViewYaml());
  ProcessorOptions o;
  o.max_records_per_poll = 97;  // many batches, keys spread over them
  o.max_cached_keys = 7;        // states go through the store too
  StartProcessor({view}, o);
  testing::EventGen gen(42, 25, kParts);
  testing::Reference ref(kParts, 5 * kMin);
  int compared = 0;
  for (int chunk = 0; chunk < 4; ++chunk) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    ref.Append(*log_, "s", gen.Next(800));
    WaitAll("s");
    compared += ref.Check(*proc_, view, 7 + chunk);
  }
  EXPECT_GT(compared, 10000);
  auto stats = proc_->Stats("diff");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events_applied, ref.applied());
  EXPECT_EQ(stats->late_events, ref.late());
  EXPECT_GT(ref.late(), 20);
  EXPECT_GT(stats->invalid_events, 0);
}

TEST_F(ProcessorTest, RestartContinuesWithoutDoubleCounting) {
  constexpr int kParts = 3;
  ASSERT_TRUE(log_->RegisterStream({.name = "s", .partitions = kParts}).ok());
  const FeatureView view = View(testing::DiffViewYaml());
  ProcessorOptions o;
  o.max_records_per_poll = 50;
  testing::EventGen gen(7, 30, kParts);
  testing::Reference ref(kParts, 5 * kMin);
  StartProcessor({view}, o);
  ref.Append(*log_, "s", gen.Next(700));
  WaitAll("s");
  ref.Append(*log_, "s", gen.Next(700));
  // Stop mid-stream (whatever was applied by now), close everything, reopen.
  proc_->Notify("s");
  Close();
  OpenLog();
  ref.Append(*log_, "s", gen.Next(700));
  StartProcessor({view}, o);
  WaitAll("s");
  EXPECT_GT(ref.Check(*proc_, view, 3), 1000);
  auto stats = proc_->Stats("diff");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events_applied, ref.applied());
  EXPECT_EQ(stats->late_events, ref.late());
  // A changed definition rebuilds the state from the log: still the reference.
  Close();
  OpenLog();
  FeatureView changed =
      View(testing::DiffViewYaml() + "  - {name: extra, agg: max, field: value, window: 2h}\n");
  StartProcessor({changed}, o);
  WaitAll("s");
  EXPECT_GT(ref.Check(*proc_, view, 4), 1000);
  stats = proc_->Stats("diff");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events_applied, ref.applied());
}

TEST_F(ProcessorTest, FeatureLogLandsInTheLakeExactlyOnce) {
  OpenLake();
  constexpr int kParts = 2;
  ASSERT_TRUE(log_->RegisterStream({.name = "clicks", .partitions = kParts}).ok());
  const FeatureView view = View(kClicksView);
  ProcessorOptions o;
  o.log_flush_interval_us = 3600LL * kSec;  // flush only when asked (and on Stop)
  o.max_records_per_poll = 64;
  StartProcessor({view}, o);
  testing::EventGen gen(11, 10, kParts);
  testing::Reference ref(kParts, 5 * kMin);
  auto events = gen.Next(500);
  for (auto& e : events) {
    if (e.type == "view") e.key = "k\"odd,key";  // quoting survives
  }
  ref.Append(*log_, "clicks", events);
  WaitAll("clicks");
  ASSERT_TRUE(proc_->FlushLog().ok());
  ASSERT_TRUE(proc_->FlushLog().ok());  // nothing new: no empty commit
  // More events, then Stop flushes; a restart must not log anything twice.
  ref.Append(*log_, "clicks", gen.Next(300));
  WaitAll("clicks");
  Close();
  OpenLog();
  StartProcessor({view}, o);
  ASSERT_TRUE(proc_->FlushLog().ok());

  auto files = lake_->SnapshotFiles({"features", "customer_activity"});
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  std::string list;
  for (const auto& f : *files) {
    list += (list.empty() ? "" : ", ") + sql::QuoteLiteral(objects_->Locate(f.key));
  }
  auto query = [&](const std::string& sql) {
    sql::QueryRequest q;
    q.sql = sql;
    q.timeout_ms = 0;
    auto r = engine_->Run(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return ParseJsonObject(r->body)->at("rows").as_array();
  };
  const std::string from = " FROM read_parquet([" + list + "])";
  auto rows =
      query("SELECT count(*), count(DISTINCT (_partition, _offset)), min(event_time)" + from);
  EXPECT_EQ(rows.at(0).as_array().at(0).to_number<int64_t>(), ref.applied());
  EXPECT_EQ(rows.at(0).as_array().at(1).to_number<int64_t>(), ref.applied());
  // The last logged row of a key equals a read at that event's time when it is the key's newest.
  for (const std::string key : {"k1", "k2", "k\"odd,key"}) {
    auto last =
        query("SELECT epoch_us(event_time), clicks_5m, clicks_1h, spend_24h, last_value_1h" + from +
              " WHERE entity_key = " + sql::QuoteLiteral(key) +
              " ORDER BY event_time DESC, _offset DESC LIMIT 1");
    ASSERT_EQ(last.size(), 1u) << key;
    const auto& row = last.at(0).as_array();
    const int64_t t = row.at(0).to_number<int64_t>();
    EXPECT_EQ(t, ref.KeyMax(key));
    auto got = proc_->Get("customer_activity", key, t);
    ASSERT_TRUE(got.ok());
    EXPECT_DOUBLE_EQ(row.at(1).to_number<double>(), *got->values[0].value) << key;
    EXPECT_DOUBLE_EQ(row.at(2).to_number<double>(), *got->values[1].value) << key;
    EXPECT_DOUBLE_EQ(row.at(3).to_number<double>(), *got->values[2].value) << key;
    EXPECT_DOUBLE_EQ(row.at(4).to_number<double>(), *got->values[4].value) << key;
  }
  auto stats = proc_->Stats("customer_activity");
  ASSERT_TRUE(stats.ok());
  for (const auto& p : stats->partitions) EXPECT_EQ(p.logged_offset, p.applied_offset);
}

TEST_F(ProcessorTest, CreateRejectsUnknownStreamsAtStart) {
  auto p = StreamProcessor::Create(log_.get(), store_.get(), {View(kClicksView)});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->Start().code(), Code::kNotFound);
  EXPECT_EQ((*p)->WaitApplied("other", {0}, 1000).code(), Code::kNotFound);
}

}  // namespace
}  // namespace lakeloop::features
