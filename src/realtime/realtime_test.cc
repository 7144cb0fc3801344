// The realtime wiring on real engines (RocksDB event log and online store, SQLite catalog, local
// lake, DuckDB): stream definitions -> ingest -> online features -> archive; and an apply that
// changes one view leaves the others' processors, state and position alone. Bounded polls only.
#include "realtime/realtime.h"

#include <gtest/gtest.h>
#include <unistd.h>

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

}  // namespace
}  // namespace lakeloop::realtime
