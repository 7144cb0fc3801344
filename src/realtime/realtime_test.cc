// The realtime wiring on real engines (RocksDB event log and online store, SQLite catalog, local
// lake, DuckDB): stream definitions -> ingest -> online features -> archive; and an apply that
// changes one view leaves the others' processors, state and position alone. Bounded polls only.
#include "realtime/realtime.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>

#include "core/json.h"
#include "core/time.h"
#include "sql/lake_io.h"

namespace lakeloop::realtime {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 20s) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

constexpr const char* kStream = R"(name: clicks
fields:
  customer_id: {type: integer}
  ts: {type: timestamp}
  event_type: {type: string}
  value: {type: number, required: false}
key: customer_id
time: ts
partitions: 2
)";

constexpr const char* kClicksView = R"(name: activity
kind: stream
stream: clicks
features:
  - {name: clicks_1h, agg: count, window: 1h, where: {event_type: click}}
)";

constexpr const char* kSpendView = R"(name: spend
kind: stream
stream: clicks
features:
  - {name: spend_1h, agg: sum, field: value, window: 1h}
)";

class RealtimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("realtime-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(root_);
    project_ = root_ / "project";
    fs::create_directories(project_);
    auto store = catalog::OpenSqlite(root_ / "catalog.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    catalog_ = std::move(store).value();
    auto migrations = lake::Lake::Migrations();
    for (auto& m : catalog::Definitions::Migrations()) migrations.push_back(m);
    for (auto& m : Realtime::Migrations()) migrations.push_back(m);
    ASSERT_TRUE(catalog::Migrate(*catalog_, migrations).ok());
    objects_ = lake::NewLocalObjectStore(root_ / "lake");
    lake_ = std::make_unique<lake::Lake>(objects_.get(), catalog_.get(), lake::LakeOptions{});
    RealtimeOptions ro;
    ro.project = project_;
    ro.log_dir = root_ / "streams";
    ro.scratch = root_ / "tmp";
    ro.archive_interval_ms = 3'600'000;  // the test archives explicitly
    auto r = Realtime::Open(catalog_.get(), lake_.get(), ro);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rt_ = std::move(r).value();
  }

  void TearDown() override {
    if (rt_) rt_->Stop();
    rt_.reset();
    lake_.reset();
    catalog_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void Write(const std::string& rel, const std::string& text) {
    auto p = project_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  }

  std::vector<catalog::Definitions::Change> Apply() {
    auto defs = rt_->ReadDefinitions();
    EXPECT_TRUE(defs.ok()) << defs.status().ToString();
    catalog::Definitions store(catalog_.get());
    auto changes = store.Diff(*defs, rt_->DefinitionKinds());
    EXPECT_TRUE(changes.ok());
    if (changes->empty()) return {};
    EXPECT_TRUE(store.Apply(*changes).ok());
    Status st = rt_->ApplyChanges(*changes);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return *changes;
  }

  // Posts `n` events of `type` for `key`, `value` each; returns what was accepted.
  IngestReport Post(int key, const std::string& type, int n, double value = 1) {
    std::string body = "[";
    for (int i = 0; i < n; ++i) {
      body += std::string(i ? "," : "") + "{\"customer_id\":" + std::to_string(key) + ",\"ts\":\"" +
              FormatRfc3339(NowMicros() - 1'000'000) + "\",\"event_type\":\"" + type +
              "\",\"value\":" + std::to_string(value) + "}";
    }
    body += "]";
    std::promise<Result<IngestReport>> p;
    rt_->Ingest("clicks", body, [&](Result<IngestReport> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : IngestReport{};
  }

  std::optional<double> Feature(const std::string& view, int key) {
    auto v = rt_->Online(view, std::to_string(key), NowMicros());
    if (!v.ok() || v->values.empty()) return std::nullopt;
    return v->values[0].value;
  }

  bool FeatureBecomes(const std::string& view, int key, double want) {
    return Eventually([&] { return Feature(view, key) == want; });
  }

  fs::path root_, project_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> objects_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<Realtime> rt_;
};

TEST_F(RealtimeTest, StreamDefinitionIngestOnlineFeatureArchive) {
  Write("streams/clicks.yaml", kStream);
  Write("features/activity.yaml", kClicksView);
  // Before apply the stream does not exist.
  std::promise<Result<IngestReport>> p;
  rt_->Ingest("clicks", "[]", [&](Result<IngestReport> r) { p.set_value(std::move(r)); });
  EXPECT_EQ(p.get_future().get().status().code(), Code::kNotFound);

  ASSERT_EQ(Apply().size(), 2u);
  EXPECT_EQ(rt_->StreamNames(), std::vector<std::string>{"clicks"});
  IngestReport rep = Post(7, "click", 3);
  EXPECT_EQ(rep.accepted, 3);
  EXPECT_TRUE(rep.rejected.empty());
  Post(7, "view", 2);  // filtered out by the view
  Post(8, "click", 1);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 3));
  ASSERT_TRUE(FeatureBecomes("activity", 8, 1));
  EXPECT_EQ(Feature("activity", 9), 0);  // unknown key: count 0

  // A bad event is rejected by index, the others accepted.
  std::promise<Result<IngestReport>> bad;
  rt_->Ingest("clicks", R"([{"customer_id":"x","ts":"2026-01-01T00:00:00Z","event_type":"c"}])",
              [&](Result<IngestReport> r) { bad.set_value(std::move(r)); });
  auto b = bad.get_future().get();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->accepted, 0);
  EXPECT_EQ(b->rejected.size(), 1u);

  ASSERT_TRUE(rt_->ArchiveNow("clicks").ok());
  auto table = lake_->GetTable({"raw", "clicks"});
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_GT(table->current_version, 0);
  sql::EngineOptions eo;
  eo.sandboxed = true;
  eo.lake_root = root_ / "lake";
  eo.scratch_dir = root_ / "tmp" / "query";
  auto engine = sql::Engine::Open(eo);
  ASSERT_TRUE(engine.ok());
  sql::LakeViews views(engine->get(), lake_.get());
  ASSERT_TRUE(views.Refresh(*table).ok());  // not Attach: no commit listener left behind
  sql::QueryRequest q;
  q.sql = "SELECT count(*) FROM raw.clicks";
  auto reply = (*engine)->Run(q);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(ToJson(ParseJsonObject(reply->body)->at("rows").as_array()[0].as_array()[0]), "6");

  auto js = rt_->StreamJson("clicks");
  ASSERT_TRUE(js.ok());
  auto o = *ParseJsonObject(*js);
  EXPECT_EQ(o.at("events").at("accepted_since_start").as_int64(), 6);
  EXPECT_EQ(o.at("archive").at("archived").as_int64(), 6);
  EXPECT_EQ(o.at("views").as_array()[0].at("view").as_string(), "activity");
}

// Item 12: changing one view restarts only its processor; the other keeps its processor, its
// state and its position (values continue across the apply); a removed view stops.
TEST_F(RealtimeTest, ApplyChangesOnlyTheChangedView) {
  Write("streams/clicks.yaml", kStream);
  Write("features/activity.yaml", kClicksView);
  Write("features/spend.yaml", kSpendView);
  ASSERT_EQ(Apply().size(), 3u);
  Post(7, "click", 3, 2.0);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 3));
  ASSERT_TRUE(FeatureBecomes("spend", 7, 6));
  Micros activity_since = *rt_->ViewRunningSince("activity");
  Micros spend_since = *rt_->ViewRunningSince("spend");

  // Only spend changes (a second feature): its processor is replaced and rebuilt from the log.
  Write("features/spend.yaml",
        std::string(kSpendView) + "  - {name: purchases_1h, agg: count, window: 1h}\n");
  auto changes = Apply();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].definition.name, "spend");
  EXPECT_EQ(*rt_->ViewRunningSince("activity"), activity_since);  // the same processor
  EXPECT_GT(*rt_->ViewRunningSince("spend"), spend_since);        // a new processor
  Post(7, "click", 2, 2.0);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 5));  // continuous: 3 before + 2 after
  ASSERT_TRUE(FeatureBecomes("spend", 7, 10));    // rebuilt from the log: all 5 events
  auto v = rt_->Online("spend", "7", NowMicros());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->values.size(), 2u);
  EXPECT_EQ(v->values[1].value, 5);

  // Removing spend stops it; activity is untouched again.
  fs::remove(project_ / "features" / "spend.yaml");
  ASSERT_EQ(Apply().size(), 1u);
  EXPECT_EQ(rt_->ViewRunningSince("spend").status().code(), Code::kNotFound);
  EXPECT_EQ(rt_->Online("spend", "7", NowMicros()).status().code(), Code::kNotFound);
  EXPECT_EQ(*rt_->ViewRunningSince("activity"), activity_since);
  Post(7, "click", 1);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 6));
}

// A restart (a new Realtime on the same data) resumes each view from its checkpoint.
TEST_F(RealtimeTest, ReopenResumesFromTheCheckpoint) {
  Write("streams/clicks.yaml", kStream);
  Write("features/activity.yaml", kClicksView);
  Apply();
  Post(7, "click", 4);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 4));
  rt_->Stop();
  rt_.reset();
  RealtimeOptions ro;
  ro.project = project_;
  ro.log_dir = root_ / "streams";
  ro.scratch = root_ / "tmp";
  auto r = Realtime::Open(catalog_.get(), lake_.get(), ro);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  rt_ = std::move(r).value();
  EXPECT_EQ(Feature("activity", 7), 4);
  Post(7, "click", 1);
  ASSERT_TRUE(FeatureBecomes("activity", 7, 5));
}

// ---- Batch views: materialization and online retrieval ------------------------------------------

constexpr const char* kEntity = "name: customer\njoin_key: customer_id\ntype: int64\n";
constexpr const char* kDailyView = R"(name: daily
kind: batch
source: processed.daily
entity: customer
timestamp: as_of
ttl: 2d
features:
  - {name: score, type: int64}
  - {name: tier, type: string}
)";
constexpr const char* kService = "name: svc\nfeatures:\n  - daily:*\n";
constexpr int64_t kDay = 86'400'000'000;

std::string Iso(int64_t us) {
  std::string t = FormatRfc3339(us);  // 2026-11-28T12:00:00.000000Z
  t[10] = ' ';
  t.pop_back();
  return t;
}

class BatchViewTest : public RealtimeTest {
 protected:
  void Commit(const std::string& csv) {
    if (!loader_) {
      sql::EngineOptions eo;
      eo.sandboxed = false;
      eo.lake_root = root_ / "lake";
      eo.scratch_dir = root_ / "loader";
      eo.threads = 1;
      loader_ = sql::Engine::Open(eo).value();
    }
    auto file = root_ / ("commit" + std::to_string(commits_++) + ".csv");
    std::ofstream(file) << "customer_id,as_of,score,tier\n" << csv;
    sql::LoadRequest req;
    req.table = {"processed", "daily"};
    req.file = file;
    auto snap = sql::LoadFile(*loader_, *lake_, req);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  }
  features::OnlineResponse Get(std::vector<int64_t> keys, int64_t at) {
    features::OnlineRequest req;
    req.feature_service = "svc";
    req.join_key = "customer_id";
    req.keys = std::move(keys);
    req.read_time_us = at;
    auto r = rt_->OnlineFeatures(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : features::OnlineResponse{};
  }
  std::unique_ptr<sql::Engine> loader_;
  int commits_ = 0;
};

// The newest row per entity within the TTL is loaded; the next run loads only rows at or after
// the watermark (an older row committed later never replaces a newer one); reads past the TTL are
// expired; entities never loaded are missing.
TEST_F(BatchViewTest, MaterializesIncrementallyWithinTheTtl) {
  const int64_t now = NowMicros();
  Commit("1," + Iso(now - 3 * kDay) + ",10,old\n" +    // customer 1: outside the TTL ...
         "1," + Iso(now - kDay) + ",11,gold\n" +       // ... and its newest row
         "2," + Iso(now - 5 * kDay) + ",20,stale\n" +  // customer 2: only outside the TTL
         "3," + Iso(now - kDay) + ",30,silver\n");
  Write("entities/customer.yaml", kEntity);
  Write("features/daily.yaml", kDailyView);
  Write("feature_services/svc.yaml", kService);
  auto defs = rt_->ReadDefinitions();
  ASSERT_TRUE(defs.ok()) << defs.status().ToString();
  ASSERT_TRUE(rt_->CheckReferences(*defs).ok());
  Apply();

  // Before any materialization: missing.
  auto r0 = Get({1}, now);
  ASSERT_EQ(r0.values.size(), 1u);
  EXPECT_EQ(r0.values[0][0].status, features::FeatureStatus::kMissing);

  auto m1 = rt_->Materialize("daily", false);
  ASSERT_TRUE(m1.ok()) << m1.status().ToString();
  EXPECT_TRUE(m1->full);  // the first run of a definition loads everything
  EXPECT_EQ(m1->rows_loaded, 2);
  auto r1 = Get({1, 2, 3}, now);
  ASSERT_EQ(r1.features, (std::vector<std::string>{"daily:score", "daily:tier"}));
  EXPECT_EQ(std::get<int64_t>(r1.values[0][0].value), 11);
  EXPECT_EQ(std::get<std::string>(r1.values[0][1].value), "gold");
  EXPECT_EQ(r1.values[0][0].status, features::FeatureStatus::kPresent);
  EXPECT_EQ(r1.values[1][0].status, features::FeatureStatus::kMissing);
  EXPECT_EQ(std::get<int64_t>(r1.values[2][0].value), 30);

  // A newer row for 1 and an older one for 3 (below the watermark: ignored).
  Commit("1," + Iso(now - 3'600'000'000) + ",12,platinum\n" + "3," + Iso(now - 2 * kDay + 1) +
         ",31,late\n");
  auto m2 = rt_->Materialize("daily", false);
  ASSERT_TRUE(m2.ok()) << m2.status().ToString();
  EXPECT_FALSE(m2->full);
  EXPECT_EQ(m2->rows_loaded, 2);  // 1's new row and 3's row at the old watermark
  auto r2 = Get({1, 3}, now);
  EXPECT_EQ(std::get<int64_t>(r2.values[0][0].value), 12);
  EXPECT_EQ(r2.values[0][0].event_time_us, now - 3'600'000'000);
  EXPECT_EQ(std::get<int64_t>(r2.values[1][0].value), 30);
  // A third run with nothing new loads only the rows at the watermark.
  auto m3 = rt_->Materialize("daily", false);
  ASSERT_TRUE(m3.ok());
  EXPECT_EQ(m3->rows_loaded, 1);

  // Read 1.5 days later: 3's row (1 day old then 2.5) is past the 2d TTL, 1's is not.
  auto r3 = Get({1, 3}, now + kDay + kDay / 2);
  EXPECT_EQ(r3.values[0][0].status, features::FeatureStatus::kPresent);
  EXPECT_EQ(r3.values[1][0].status, features::FeatureStatus::kExpired);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r3.values[1][0].value));

  // --full drops what the table no longer justifies and reloads.
  auto m4 = rt_->Materialize("daily", true);
  ASSERT_TRUE(m4.ok());
  EXPECT_TRUE(m4->full);
  EXPECT_EQ(m4->rows_loaded, 2);
  EXPECT_EQ(rt_->Materialize("nope", false).status().code(), Code::kNotFound);
}

// Apply checks a batch view against its source table's schema, and its source must exist.
TEST_F(BatchViewTest, ApplyChecksTheSourceTable) {
  Write("entities/customer.yaml", kEntity);
  Write("features/daily.yaml", kDailyView);
  auto defs = rt_->ReadDefinitions();
  ASSERT_TRUE(defs.ok()) << defs.status().ToString();
  Status missing = rt_->CheckReferences(*defs);
  ASSERT_EQ(missing.code(), Code::kInvalidArgument);
  EXPECT_NE(missing.message().find("features/daily.yaml:1: batch view 'daily' reads "
                                   "processed.daily, which no source or model defines"),
            std::string::npos)
      << missing.message();
  // A model of that name counts (it is built later).
  auto with_model = *defs;
  with_model.push_back({"model", "daily", "SELECT 1", "models/daily.sql"});
  EXPECT_TRUE(rt_->CheckReferences(with_model).ok());
  // Once the table exists, types are checked: tier is VARCHAR, not int64.
  Commit("1," + Iso(NowMicros()) + ",10,gold\n");
  std::string retyped = kDailyView;
  retyped.replace(retyped.find("{name: tier, type: string}"), 26, "{name: tier, type: int64}");
  Write("features/daily.yaml", retyped);
  defs = rt_->ReadDefinitions();
  ASSERT_TRUE(defs.ok());
  Status bad = rt_->CheckReferences(*defs);
  ASSERT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("features/daily.yaml:9: feature 'tier' is int64 but "
                               "processed.daily.tier is VARCHAR"),
            std::string::npos)
      << bad.message();
}

// Reads never fail or see half a plan while applies swap it: each read holds the plan it started
// with.
TEST_F(BatchViewTest, ReadsDuringAppliesSeeAWholePlan) {
  const int64_t now = NowMicros();
  Commit("1," + Iso(now - kDay) + ",11,gold\n");
  Write("entities/customer.yaml", kEntity);
  Write("features/daily.yaml", kDailyView);
  Write("feature_services/svc.yaml", "name: svc\nfeatures:\n  - daily:score\n");
  Apply();
  ASSERT_TRUE(rt_->Materialize("daily", false).ok());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0}, bad{0};
  std::thread reader([&] {
    features::OnlineRequest req;
    req.feature_service = "svc";
    req.join_key = "customer_id";
    req.keys = std::vector<int64_t>{1};
    while (!stop.load()) {
      req.read_time_us = NowMicros();
      auto r = rt_->OnlineFeatures(req);
      if (!r.ok() || r->values.size() != 1 || r->values[0].size() != 1 ||
          r->values[0][0].status != features::FeatureStatus::kPresent ||
          std::get<int64_t>(r->values[0][0].value) != 11) {
        ++bad;
      }
      ++reads;
    }
  });
  for (int i = 0; i < 6; ++i) {
    // Changes that leave the stored values valid: the TTL and the service's description.
    std::string v = kDailyView;
    v.replace(v.find("ttl: 2d"), 7, i % 2 == 0 ? "ttl: 3d" : "ttl: 2d");
    Write("features/daily.yaml", v);
    Write("feature_services/svc.yaml",
          "name: svc\ndescription: v" + std::to_string(i) + "\nfeatures:\n  - daily:score\n");
    Apply();
  }
  ASSERT_TRUE(Eventually([&] { return reads.load() > 100; }));
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);

  // A change the values depend on (a new feature): the old rows read as missing, never under the
  // new definition's names, until the next materialization reloads them in place.
  Write("features/daily.yaml",
        std::string(kDailyView) + "  - {name: extra, type: string, column: tier}\n");
  Apply();
  auto before = Get({1}, now);
  EXPECT_EQ(before.values[0][0].status, features::FeatureStatus::kMissing);
  auto m = rt_->Materialize("daily", false);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->full);
  auto after = Get({1}, now);
  ASSERT_EQ(after.values[0].size(), 1u);
  EXPECT_EQ(std::get<int64_t>(after.values[0][0].value), 11);
}

}  // namespace
}  // namespace lakeloop::realtime
