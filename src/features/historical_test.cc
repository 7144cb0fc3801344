// DatasetBuilder on real engines (SQLite catalog, local lake, sandboxed DuckDB, RocksDB log):
// rows keep their order and get the replayed values, builds are versions of datasets.<name>,
// ownership is enforced, bad requests are refused with nothing committed.
#include "features/historical.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/time.h"
#include "features/internal/pit_replay.h"
#include "features/internal/test_util.h"
#include "sql/lake_io.h"
#include "stream/archive.h"
#include "stream/definition.h"

namespace lakeloop::features {
namespace {

using testing::kBase;
using testing::kHour;
using testing::kMin;
namespace fs = std::filesystem;
namespace json = boost::json;

class HistoricalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::path(::testing::TempDir()) /
           ("historical_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "lake");
    auto c = catalog::OpenSqlite(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok());
    catalog_ = std::move(c).value();
    auto migrations = lake::Lake::Migrations();
    for (auto& m : catalog::Definitions::Migrations()) migrations.push_back(m);
    for (auto& m : DatasetBuilder::Migrations()) migrations.push_back(m);
    ASSERT_TRUE(catalog::Migrate(*catalog_, migrations).ok());
    objects_ = lake::NewLocalObjectStore(dir_ / "lake");
    lake_ = std::make_unique<lake::Lake>(objects_.get(), catalog_.get(), lake::LakeOptions{});
    sql::EngineOptions eo;
    eo.sandboxed = true;
    eo.lake_root = dir_ / "lake";
    eo.scratch_dir = dir_ / "scratch";
    eo.threads = 1;
    eo.memory_limit = "512MB";
    auto e = sql::Engine::Open(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
    views_ = std::make_unique<sql::LakeViews>(engine_.get(), lake_.get());
    ASSERT_TRUE(views_->Attach().ok());
    stream::RocksLogOptions o;
    o.sync = false;
    auto log = stream::OpenRocksEventLog((dir_ / "log").string(), o);
    ASSERT_TRUE(log.ok());
    log_ = std::move(log).value();
    ASSERT_TRUE(log_->RegisterStream({.name = "s", .partitions = 2}).ok());
    // The view as `apply` records it.
    catalog::Definitions defs(catalog_.get());
    catalog::Definitions::Change ch{
        catalog::Definitions::ChangeKind::kCreate,
        {"feature_view", "diff", testing::DiffViewYaml(), "features/diff.yaml", "abc", 0}};
    ASSERT_TRUE(defs.Apply({ch}).ok());
    auto v = ParseFeatureView(testing::DiffViewYaml(), "diff.yaml");
    ASSERT_TRUE(v.ok());
    view_ = *v;
    builder_ = std::make_unique<DatasetBuilder>(DatasetBuilder::Deps{
        lake_.get(), catalog_.get(), log_.get(), engine_.get(), dir_ / "scratch"});
  }
  void TearDown() override {
    builder_.reset();
    views_.reset();
    engine_.reset();
    log_.reset();
    lake_.reset();
    objects_.reset();
    catalog_.reset();
    fs::remove_all(dir_);
  }

  json::value Query(const std::string& sql) {
    sql::QueryRequest q;
    q.sql = sql;
    q.limit = 100000;
    auto r = engine_->Run(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? json::parse(r->body) : json::value();
  }

  fs::path dir_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> objects_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<sql::Engine> engine_;
  std::unique_ptr<sql::LakeViews> views_;
  std::unique_ptr<stream::EventLog> log_;
  FeatureView view_;
  std::unique_ptr<DatasetBuilder> builder_;
};

TEST_F(HistoricalTest, BuildsVersionsWithReplayedValuesInRowOrder) {
  testing::Reference ref(2, 5 * kMin);
  testing::EventGen gen(5, 20, 2);
  ref.Append(*log_, "s", gen.Next(2000));
  // 300 entity rows (keys with and without events) in a deliberately unsorted order.
  std::mt19937_64 rng(3);
  std::vector<std::string> keys;
  std::vector<int64_t> times;
  std::string values;
  for (int i = 0; i < 300; ++i) {
    keys.push_back("k" + std::to_string(rng() % 22));
    times.push_back(kBase + static_cast<int64_t>(rng() % (30 * kHour)));
    times.back() -= times.back() % 1000;  // millisecond literals below
    if (i) values += ", ";
    values += "(" + std::to_string(i) + ", '" + keys.back() + "', make_timestamp(" +
              std::to_string(times.back()) + "), " + std::to_string(i % 2) + ")";
  }
  HistoricalRequest req;
  req.name = "train";
  req.entities_sql = "SELECT * FROM (VALUES " + values +
                     ") t(id, entity_key, event_timestamp, label) ORDER BY entity_key DESC";
  req.features = {"diff:sum_1h", "diff:count_distinct_24h", "diff:last_5m"};
  req.created_by = "test";
  auto b = builder_->Build(req);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->status, "succeeded");
  EXPECT_EQ(b->build, 1);
  EXPECT_EQ(b->rows, 300);
  ASSERT_EQ(b->schema.size(), 7u);
  EXPECT_EQ(b->schema[4].name, "diff__sum_1h");

  auto want = internal::ReplayStreamView(*log_, view_, keys, times);
  ASSERT_TRUE(want.ok());
  auto idx = [&](const std::string& n) {
    for (size_t f = 0; f < view_.features.size(); ++f) {
      if (view_.features[f].name == n) return f;
    }
    return size_t{0};
  };
  json::value got =
      Query("SELECT id, diff__sum_1h, diff__count_distinct_24h, diff__last_5m FROM datasets.train");
  const auto& rows = got.at("rows").as_array();
  ASSERT_EQ(rows.size(), 300u);
  std::vector<std::string> names = {"sum_1h", "count_distinct_24h", "last_5m"};
  int64_t prev_key_order = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r].as_array();
    const auto id = static_cast<size_t>(row[0].to_number<int64_t>());
    // The entity query's order (entity_key DESC) is kept.
    if (r > 0) {
      EXPECT_LE(keys[id], keys[prev_key_order]);
    }
    prev_key_order = static_cast<int64_t>(id);
    for (size_t j = 0; j < names.size(); ++j) {
      std::optional<double> w = want->values[idx(names[j])][id];
      if (!want->has_state[id]) w.reset();  // missing, never 0
      if (!w) {
        EXPECT_TRUE(row[j + 1].is_null()) << id << " " << names[j];
      } else {
        ASSERT_FALSE(row[j + 1].is_null()) << id << " " << names[j];
        EXPECT_EQ(row[j + 1].to_number<double>(), *w) << id << " " << names[j];
      }
    }
  }

  // A second build of the name is a new version; the first stays readable and pinned.
  req.features = {"diff:count_1h"};
  auto b2 = builder_->Build(req);
  ASSERT_TRUE(b2.ok()) << b2.status().ToString();
  EXPECT_EQ(b2->build, 2);
  EXPECT_GT(b2->lake_version, b->lake_version);
  json::value old =
      Query("SELECT count(*) FROM datasets_snapshots.train_v" + std::to_string(b->lake_version));
  EXPECT_EQ(old.at("rows").at(0).at(0).to_number<int64_t>(), 300);
  auto pins = lake_->ListPins(lake::TableRef{"datasets", "train"});
  ASSERT_TRUE(pins.ok());
  EXPECT_EQ(pins->size(), 2u);
  auto builds = builder_->Builds("train");
  ASSERT_TRUE(builds.ok());
  ASSERT_EQ(builds->size(), 2u);
  EXPECT_NE(
      builds->at(1).lineage_json.find("\"kind\":\"feature_view\",\"name\":\"diff\",\"sha256\""),
      std::string::npos);
}

TEST_F(HistoricalTest, BatchViewsJoinAsOfWithinTtlLikeABruteForceReference) {
  // processed.daily: 30 customers x every ~day, some missing days, timestamps with ties to rows.
  sql::EngineOptions lo;
  lo.sandboxed = false;
  lo.scratch_dir = dir_ / "loader";
  auto loader = sql::Engine::Open(lo);
  ASSERT_TRUE(loader.ok());
  std::mt19937_64 rng(9);
  const fs::path csv = dir_ / "daily.csv";
  std::vector<int64_t> as_of;
  {
    std::ofstream out(csv);
    out << "customer_id,as_of,orders,spend\n";
    for (int c = 0; c < 30; ++c) {
      for (int d = 0; d < 40; ++d) {
        if (rng() % 3 == 0) continue;
        const int64_t t = kBase + d * 24 * kHour;
        as_of.push_back(t);
        out << c << "," << FormatRfc3339(t) << "," << (c * 100 + d) << "," << (d * 0.5) << "\n";
      }
    }
  }
  sql::LoadRequest load;
  load.table = {"processed", "daily"};
  load.file = csv;
  auto snap = sql::LoadFile(**loader, *lake_, load);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  catalog::Definitions defs(catalog_.get());
  using CK = catalog::Definitions::ChangeKind;
  ASSERT_TRUE(
      defs.Apply({{CK::kCreate,
                   {"entity", "customer", "name: customer\njoin_key: customer_id\ntype: int64\n",
                    "entities/customer.yaml", "", 0}},
                  {CK::kCreate,
                   {"feature_view", "daily",
                    "name: daily\nkind: batch\nsource: processed.daily\nentity: "
                    "customer\ntimestamp: as_of\nttl: 3d\nfeatures:\n  - {name: "
                    "orders, type: int64}\n  - {name: spend, type: double}\n",
                    "features/daily.yaml", "", 0}},
                  {CK::kCreate,
                   {"feature_service", "svc", "name: svc\nfeatures:\n  - daily:*\n",
                    "feature_services/svc.yaml", "", 0}}})
          .ok());
  // 1000 entity rows at random times, a tenth exactly on a row's timestamp, unknown customers too.
  std::string values;
  for (int i = 0; i < 1000; ++i) {
    int64_t t = kBase - 2 * 24 * kHour + static_cast<int64_t>(rng() % (45 * 24 * kHour));
    if (i % 10 == 0) t = as_of[rng() % as_of.size()];
    t -= t % 1000;
    if (i) values += ", ";
    values += "(" + std::to_string(i) + ", " + std::to_string(rng() % 33) + ", make_timestamp(" +
              std::to_string(t) + "))";
  }
  const std::string entities =
      "SELECT * FROM (VALUES " + values + ") t(id, customer_id, event_timestamp)";
  HistoricalRequest req;
  req.name = "batch";
  req.entities_sql = entities;
  req.feature_service = "svc";
  auto b = builder_->Build(req);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->rows, 1000);
  // The reference: no ASOF, a correlated subquery for the latest row at or before t, then TTL.
  json::value diff = Query(
      "WITH e AS (" + entities +
      "), ref AS (SELECT e.id, (SELECT struct_pack(a := d.as_of, o := "
      "d.orders, s := d.spend) FROM processed.daily d WHERE d.customer_id = e.customer_id AND "
      "d.as_of <= e.event_timestamp ORDER BY d.as_of DESC LIMIT 1) AS r, e.event_timestamp AS t "
      "FROM e) SELECT count(*) FILTER (WHERE ref.r IS NOT NULL AND ref.r.a >= ref.t - INTERVAL 3 "
      "DAY), count(*) FILTER (WHERE (CASE WHEN ref.r.a >= ref.t - INTERVAL 3 DAY THEN ref.r.o END) "
      "IS DISTINCT FROM x.daily__orders OR (CASE WHEN ref.r.a >= ref.t - INTERVAL 3 DAY THEN "
      "ref.r.s END) IS DISTINCT FROM x.daily__spend), count(*) FROM ref JOIN datasets.batch x "
      "USING (id)");
  const auto& row = diff.at("rows").at(0).as_array();
  EXPECT_GT(row[0].to_number<int64_t>(), 300);  // rows that found a value within TTL
  EXPECT_EQ(row[1].to_number<int64_t>(), 0);    // rows that differ from the reference
  EXPECT_EQ(row[2].to_number<int64_t>(), 1000);
  json::value cols = Query("SELECT * FROM datasets.batch LIMIT 0");
  EXPECT_EQ(cols.at("columns").as_array().size(), 5u);  // id, customer_id, event_timestamp, 2
}

TEST_F(HistoricalTest, ReplaysWhatRetentionTrimmedFromTheArchive) {
  // A stream whose payloads carry the key and time fields, archived to raw.s2, then trimmed.
  const std::string stream_yaml =
      "name: s2\nfields:\n  k: {type: string}\n  ts: {type: timestamp}\n"
      "  event_type: {type: string}\n  value: {type: number, required: false}\n"
      "key: k\ntime: ts\nretention: 1h\nallowed_lateness: 5m\npartitions: 2\n";
  auto def = stream::ParseStreamDefinition(stream_yaml, "streams/s2.yaml");
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  ASSERT_TRUE(catalog::Migrate(*catalog_, stream::Archiver::Migrations()).ok());
  sql::EngineOptions lo;
  lo.sandboxed = false;
  lo.scratch_dir = dir_ / "archiver";
  auto loader = sql::Engine::Open(lo);
  ASSERT_TRUE(loader.ok());
  stream::ArchiverOptions ao;
  ao.spool_dir = dir_ / "spool";
  stream::Archiver archiver({log_.get(), lake_.get(), catalog_.get(), loader->get()}, ao);
  ASSERT_TRUE(archiver.AddStream(*def).ok());
  catalog::Definitions defs(catalog_.get());
  using CK = catalog::Definitions::ChangeKind;
  ASSERT_TRUE(defs.Apply({{CK::kCreate, {"stream", "s2", stream_yaml, "streams/s2.yaml", "", 0}},
                          {CK::kCreate,
                           {"feature_view", "diff2", testing::DiffViewYaml("diff2", "s2"),
                            "features/diff2.yaml", "", 0}}})
                  .ok());
  testing::EventGen gen(21, 15, 2);
  std::vector<stream::Event> events;
  for (const auto& e : gen.Next(1500)) {
    if (!e.valid_json) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", e.value);
    events.push_back({e.key, e.t, "",
                      "{\"k\":\"" + e.key + "\",\"ts\":\"" + FormatRfc3339(e.t) +
                          "\",\"event_type\":\"" + e.type + "\",\"value\":" + buf + "}"});
  }
  for (size_t i = 0; i < events.size(); i += 200) {
    std::vector<stream::Event> batch(
        events.begin() + static_cast<int64_t>(i),
        events.begin() + static_cast<int64_t>(std::min(events.size(), i + 200)));
    ASSERT_TRUE(log_->Append("s2", batch).ok());
  }
  auto drained = archiver.ArchiveAll("s2", 100);
  ASSERT_TRUE(drained.ok()) << drained.status().ToString();
  ASSERT_TRUE(drained->done);
  // The rows and what the complete log gives them, before retention trims it.
  std::mt19937_64 rng(4);
  std::vector<std::string> keys;
  std::vector<int64_t> times;
  std::string values;
  for (int i = 0; i < 200; ++i) {
    keys.push_back("k" + std::to_string(rng() % 15));
    times.push_back(events[rng() % events.size()].event_time_us +
                    static_cast<int64_t>(rng() % (2 * kHour)));
    times.back() -= times.back() % 1000;
    if (i) values += ", ";
    values += "(" + std::to_string(i) + ", '" + keys.back() + "', make_timestamp(" +
              std::to_string(times.back()) + "))";
  }
  auto v2 = ParseFeatureView(testing::DiffViewYaml("diff2", "s2"), "diff2.yaml");
  ASSERT_TRUE(v2.ok());
  auto want = internal::ReplayStreamView(*log_, *v2, keys, times);
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(want->complete);
  ASSERT_GT(want->events_late, 0);
  auto trimmed = log_->Trim(NowMicros() + 10 * kHour);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status().ToString();
  auto offsets = log_->Offsets("s2");
  ASSERT_TRUE(offsets.ok());
  ASSERT_GT((*offsets)[0].begin, 0);
  auto without = internal::ReplayStreamView(*log_, *v2, keys, times);
  ASSERT_TRUE(without.ok());
  EXPECT_FALSE(without->complete);

  HistoricalRequest req;
  req.name = "archived";
  req.entities_sql = "SELECT * FROM (VALUES " + values + ") t(id, entity_key, event_timestamp)";
  for (const auto& f : v2->features) req.features.push_back("diff2:" + f.name);
  auto b = builder_->Build(req);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_NE(b->lineage_json.find("\"complete\":true"), std::string::npos) << b->lineage_json;
  EXPECT_NE(b->lineage_json.find("\"archive\":{\"table\":\"raw.s2\""), std::string::npos);
  json::value got = Query("SELECT * EXCLUDE (entity_key, event_timestamp) FROM datasets.archived");
  const auto& rows = got.at("rows").as_array();
  ASSERT_EQ(rows.size(), 200u);
  int differ_without = 0;
  for (const auto& rv : rows) {
    const auto& row = rv.as_array();
    const auto id = static_cast<size_t>(row[0].to_number<int64_t>());
    for (size_t f = 0; f < v2->features.size(); ++f) {
      std::optional<double> w = want->values[f][id];
      if (!want->has_state[id]) w.reset();
      SCOPED_TRACE(std::to_string(id) + " " + v2->features[f].name);
      if (!w) {
        EXPECT_TRUE(row[f + 1].is_null());
      } else {
        ASSERT_FALSE(row[f + 1].is_null());
        EXPECT_NEAR(row[f + 1].to_number<double>(), *w, 1e-9 * std::max(1.0, std::abs(*w)));
      }
      differ_without += without->values[f][id] != want->values[f][id];
    }
  }
  EXPECT_GT(differ_without, 0);  // the archive made a difference
}

TEST_F(HistoricalTest, StartRunsInTheBackgroundAndStopsWithTheBuilder) {
  testing::Reference ref(2, 5 * kMin);
  testing::EventGen gen(6, 10, 2);
  ref.Append(*log_, "s", gen.Next(500));
  HistoricalRequest req;
  req.name = "bg";
  req.entities_sql = "SELECT 'k' || (i % 10) AS entity_key, make_timestamp(" +
                     std::to_string(kBase) +
                     " + i * 1000000) AS event_timestamp FROM range(2000) t(i)";
  req.features = {"diff:count_1h"};
  // A bad request fails at once, as Build would.
  HistoricalRequest bad = req;
  bad.features = {"diff:nope"};
  EXPECT_EQ(builder_->Start(bad).status().code(), Code::kNotFound);
  auto started = builder_->Start(req);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(started->build, 1);
  EXPECT_TRUE(started->status == "running" || started->status == "succeeded");
  // Poll (bounded) until it is done.
  const Micros deadline = NowMicros() + 60'000'000;
  std::string status = started->status;
  while (status == "running" && NowMicros() < deadline) {
    auto b = builder_->GetBuild("bg", 1);
    ASSERT_TRUE(b.ok());
    status = b->status;
  }
  EXPECT_EQ(status, "succeeded");
  // A build still running when the builder goes is cancelled and says so.
  auto second = builder_->Start(req);
  ASSERT_TRUE(second.ok());
  builder_.reset();
  catalog::Rows rows = *catalog_->Query("SELECT status FROM dataset_builds WHERE build = 2");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NE(rows.Text(0, 0), "running");
}

TEST_F(HistoricalTest, RefusesBadRequestsAndOthersNames) {
  HistoricalRequest ok;
  ok.name = "d";
  ok.entities_sql = "SELECT 'k1' AS entity_key, TIMESTAMP '2024-01-01' AS event_timestamp";
  ok.features = {"diff:count_1h"};
  auto code = [&](HistoricalRequest r) { return builder_->Build(r).status().code(); };
  HistoricalRequest r = ok;
  r.features = {"nope:count_1h"};
  EXPECT_EQ(code(r), Code::kNotFound);
  r.features = {"diff:nope"};
  EXPECT_EQ(code(r), Code::kNotFound);
  r.features = {"diff"};
  EXPECT_EQ(code(r), Code::kInvalidArgument);
  r.features = {"diff:count_1h", "diff:count_1h"};
  EXPECT_EQ(code(r), Code::kInvalidArgument);
  r.features.clear();
  r.feature_service = "nope";
  EXPECT_EQ(code(r), Code::kNotFound);
  r.features = {"diff:count_1h"};
  EXPECT_EQ(code(r), Code::kInvalidArgument);  // both
  r = ok;
  r.features.clear();
  EXPECT_EQ(code(r), Code::kInvalidArgument);  // neither
  r = ok;
  r.name = "Bad-Name";
  EXPECT_EQ(code(r), Code::kInvalidArgument);
  r = ok;
  r.entities_sql = "SELECT 'k1' AS entity_key, 1 AS t";
  EXPECT_EQ(code(r), Code::kInvalidArgument);  // no event_timestamp
  r.entities_sql = "SELECT 'k1' AS customer_id, TIMESTAMP '2024-01-01' AS event_timestamp";
  EXPECT_EQ(code(r), Code::kInvalidArgument);  // no entity key column
  r.entities_sql = "DROP TABLE x";
  EXPECT_EQ(code(r), Code::kStatementNotAllowed);
  r.entities_sql = "SELECT * FROM read_csv('/etc/passwd')";
  EXPECT_NE(code(r), Code::kOk);  // the sandbox
  r = ok;
  r.entities_sql.clear();
  r.entities_table = "raw.missing";
  EXPECT_EQ(code(r), Code::kNotFound);
  // A name someone else owns.
  ASSERT_TRUE(lake_->RegisterOwner({"datasets", "taken"}, {"model", "taken"}).ok());
  r = ok;
  r.name = "taken";
  EXPECT_EQ(code(r), Code::kConflict);
  // Nothing was committed by any of them.
  auto tables = lake_->ListTables();
  ASSERT_TRUE(tables.ok());
  for (const auto& t : *tables) EXPECT_EQ(t.current_version, 0) << t.ref.ToString();
  EXPECT_TRUE(builder_->Build(ok).ok());
}

}  // namespace
}  // namespace lakeloop::features
