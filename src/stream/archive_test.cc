// The archiver against the real RocksDB log, SQLite catalog, local lake and DuckDB.
#include "stream/archive.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <set>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/time.h"
#include "sql/lake_io.h"

namespace lakeloop::stream {
namespace {
namespace fs = std::filesystem;

constexpr char kClicks[] = R"(name: clicks
fields:
  customer_id: {type: integer}
  ts: {type: timestamp}
  event_type: {type: string}
  value: {type: number, required: false}
  event_id: {type: string, required: false}
key: customer_id
time: ts
event_id: event_id
dedup_window: 1h
retention: 1h
allowed_lateness: 5m
max_future_skew: 1m
partitions: 2
)";

const int64_t kT0 = *ParseRfc3339("2026-11-26T10:00:00Z");
constexpr int64_t kMinute = 60'000'000;

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lakeloop-archive-" + RandomHex(6));
    fs::create_directories(dir_ / "lake");
    def_ = *ParseStreamDefinition(kClicks, "streams/clicks.yaml");
    Open();
  }
  void TearDown() override {
    Close();
    fs::remove_all(dir_);
  }
  void Open(ArchiverOptions options = {}) {
    RocksLogOptions lo;
    lo.sync = false;
    lo.now_us = [this] { return clock_.load(); };
    auto log = OpenRocksEventLog((dir_ / "log").string(), lo);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(*log);
    auto c = catalog::OpenSqlite(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok());
    catalog_ = std::move(*c);
    auto migrations = lake::Lake::Migrations();
    for (auto& m : Archiver::Migrations()) migrations.push_back(m);
    ASSERT_TRUE(catalog::Migrate(*catalog_, migrations).ok());
    store_ = lake::NewLocalObjectStore(dir_ / "lake");
    lake_ = std::make_unique<lake::Lake>(store_.get(), catalog_.get(), lake::LakeOptions{});
    ASSERT_TRUE(lake_->Recover().ok());
    sql::EngineOptions eo;
    eo.sandboxed = false;
    eo.scratch_dir = dir_ / "scratch";
    eo.threads = 1;
    auto e = sql::Engine::Open(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    views_ = std::make_unique<sql::LakeViews>(engine_.get(), lake_.get());
    ASSERT_TRUE(views_->Attach().ok());
    options.spool_dir = dir_ / "spool";
    archiver_ = std::make_unique<Archiver>(
        Archiver::Deps{log_.get(), lake_.get(), catalog_.get(), engine_.get()}, options);
    Status s = archiver_->AddStream(def_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Close() {
    archiver_.reset();
    views_.reset();
    engine_.reset();
    lake_.reset();
    store_.reset();
    catalog_.reset();
    log_.reset();
  }

  // Validates and appends NDJSON events; returns how many were accepted.
  size_t Append(const std::vector<std::string>& lines) {
    std::string body;
    for (const auto& l : lines) body += l + "\n";
    auto v = ValidateEvents(def_, body, clock_.load());
    EXPECT_TRUE(v.ok());
    EXPECT_TRUE(v->rejected.empty()) << v->rejected[0].error;
    auto r = log_->Append("clicks", v->accepted);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return v->accepted.size();
  }
  static std::string Ev(int64_t customer, int64_t t_us, const std::string& type = "view",
                        const std::string& extra = "") {
    return "{\"customer_id\": " + std::to_string(customer) + ", \"ts\": \"" + FormatRfc3339(t_us) +
           "\", \"event_type\": \"" + type + "\"" + extra + "}";
  }

  // Rows of a query as compact JSON arrays.
  std::vector<std::string> Query(const std::string& q) {
    sql::QueryRequest req;
    req.sql = q;
    req.limit = 100000;
    auto reply = engine_->Run(req);
    EXPECT_TRUE(reply.ok()) << q << ": " << reply.status().ToString();
    if (!reply.ok()) return {};
    auto body = ParseJsonObject(reply->body);
    std::vector<std::string> out;
    for (const auto& row : body->at("rows").as_array()) out.push_back(boost::json::serialize(row));
    return out;
  }
  int64_t Count(const std::string& q) {
    auto rows = Query(q);
    if (rows.empty()) return -1;
    return std::stoll(rows[0].substr(1, rows[0].size() - 2));
  }
  // Every (partition, offset) of the log is in raw.clicks exactly once.
  void ExpectExactlyOnce(int64_t total) {
    EXPECT_EQ(Count("SELECT count(*) FROM raw.clicks"), total);
    EXPECT_EQ(Count("SELECT count(DISTINCT (_partition, _offset)) FROM raw.clicks"), total);
    auto ends = log_->EndOffsets("clicks");
    ASSERT_TRUE(ends.ok());
    int64_t sum = 0;
    for (size_t p = 0; p < ends->size(); ++p) {
      sum += (*ends)[p];
      // dense: max offset + 1 == count == end offset
      EXPECT_EQ(Count("SELECT count(*) FROM raw.clicks WHERE _partition = " + std::to_string(p) +
                      " AND _offset < " + std::to_string((*ends)[p])),
                (*ends)[p]);
    }
    EXPECT_EQ(sum, total);
  }

  fs::path dir_;
  StreamDefinition def_;
  std::atomic<int64_t> clock_{kT0 + 30 * kMinute};
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> store_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<sql::Engine> engine_;
  std::unique_ptr<sql::LakeViews> views_;
  std::unique_ptr<Archiver> archiver_;
};

TEST_F(ArchiveTest, ArchivesTypedRowsByEventDateAndFlagsLateEvents) {
  // One customer = one partition, in this log order: 10:00, 10:10, 10:02 (late: watermark is
  // 10:05), 10:06 (not late), and two events of another day.
  const int64_t prev_day = kT0 - 11 * 60 * kMinute;  // 2026-11-25T23:00Z
  Append({Ev(1, kT0, "view", ", \"value\": 1.5, \"event_id\": \"a\""), Ev(1, kT0 + 10 * kMinute),
          Ev(1, kT0 + 2 * kMinute, "late"), Ev(1, kT0 + 6 * kMinute, "ok"),
          Ev(2, prev_day, "click", ", \"value\": -2"), Ev(1, prev_day, "late")});
  auto r = archiver_->ArchiveOnce("clicks");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->events, 6);
  EXPECT_EQ(r->late, 2);
  EXPECT_EQ(r->files, 2);
  EXPECT_GT(r->lake_version, 0);
  EXPECT_FALSE(r->more);

  auto files = lake_->SnapshotFiles({"raw", "clicks"});
  std::set<std::string> dates;
  for (const auto& f : *files) dates.insert(f.live_key.substr(0, f.live_key.find("/part-")));
  EXPECT_EQ(dates, (std::set<std::string>{"raw/clicks/event_date=2026-11-25",
                                          "raw/clicks/event_date=2026-11-26"}));
  auto info = lake_->GetTable({"raw", "clicks"});
  EXPECT_EQ(info->partition_by, std::vector<std::string>{"event_date"});
  EXPECT_EQ(info->schema.size(), 9u);

  auto cols = engine_->Describe("SELECT * EXCLUDE (event_date) FROM raw.clicks");
  ASSERT_TRUE(cols.ok());
  std::vector<std::string> types;
  for (const auto& c : *cols) types.push_back(c.name + " " + c.type);
  EXPECT_EQ(types, (std::vector<std::string>{
                       "customer_id BIGINT", "ts TIMESTAMP", "event_type VARCHAR", "value DOUBLE",
                       "event_id VARCHAR", "_partition INTEGER", "_offset BIGINT",
                       "_ingested_at TIMESTAMP", "_late BOOLEAN"}));
  auto rows = Query(
      "SELECT customer_id, strftime(ts, '%Y-%m-%dT%H:%M:%S'), event_type, value, event_id, "
      "_late, CAST(event_date AS VARCHAR), _ingested_at = make_timestamp(" +
      std::to_string(clock_.load()) + ") FROM raw.clicks ORDER BY customer_id, _offset");
  EXPECT_THAT(rows, ::testing::ElementsAre(
                        R"([1,"2026-11-26T10:00:00","view",1.5E0,"a",false,"2026-11-26",true])",
                        R"([1,"2026-11-26T10:10:00","view",null,null,false,"2026-11-26",true])",
                        R"([1,"2026-11-26T10:02:00","late",null,null,true,"2026-11-26",true])",
                        R"([1,"2026-11-26T10:06:00","ok",null,null,false,"2026-11-26",true])",
                        R"([1,"2026-11-25T23:00:00","late",null,null,true,"2026-11-25",true])",
                        R"([2,"2026-11-25T23:00:00","click",-2,null,false,"2026-11-25",true])"));

  // Nothing new: nothing committed.
  auto again = archiver_->ArchiveOnce("clicks");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->events, 0);
  EXPECT_EQ(again->lake_version, 0);

  // The watermark survives a restart: 10:04 is still late for customer 1 (watermark 10:05),
  // 10:05 is not.
  Close();
  Open();
  Append({Ev(1, kT0 + 4 * kMinute, "late2"), Ev(1, kT0 + 5 * kMinute, "ok2")});
  r = archiver_->ArchiveOnce("clicks");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->events, 2);
  EXPECT_EQ(r->late, 1);
  EXPECT_THAT(Query("SELECT event_type, _late FROM raw.clicks WHERE event_type LIKE '%2' ORDER BY "
                    "_offset"),
              ::testing::ElementsAre(R"(["late2",true])", R"(["ok2",false])"));
  auto state = archiver_->State("clicks");
  ASSERT_TRUE(state.ok());
  int32_t p1 = PartitionForKey("1", 2);
  EXPECT_EQ((*state)[p1].late_events, 3);
  EXPECT_EQ((*state)[p1].max_event_time_us, kT0 + 10 * kMinute);
  // The log consumer follows the catalog.
  EXPECT_EQ(*log_->CommittedOffset("archiver", "clicks", p1), (*state)[p1].next_offset);
  ExpectExactlyOnce(8);
}

TEST_F(ArchiveTest, BoundedBatchesSayThereIsMore) {
  Close();
  ArchiverOptions o;
  o.max_batch_events = 4;  // 2 per partition
  Open(o);
  std::vector<std::string> evs;
  for (int i = 0; i < 20; ++i) evs.push_back(Ev(i, kT0 + i * kMinute));
  Append(evs);
  int rounds = 0;
  for (;; ++rounds) {
    auto r = archiver_->ArchiveOnce("clicks");
    ASSERT_TRUE(r.ok());
    EXPECT_LE(r->events, 4);
    if (!r->more && r->events == 0) break;
    ASSERT_LT(rounds, 20);
  }
  EXPECT_GE(rounds, 5);
  ExpectExactlyOnce(20);
}

// ArchiveAll stops at its round limit and says so, with what is left; a later call finishes.
TEST_F(ArchiveTest, ArchiveAllReportsWhatIsLeft) {
  Close();
  ArchiverOptions o;
  o.max_batch_events = 4;  // 2 per partition
  Open(o);
  std::vector<std::string> evs;
  for (int i = 0; i < 20; ++i) evs.push_back(Ev(i, kT0 + i * kMinute));
  Append(evs);
  auto part = archiver_->ArchiveAll("clicks", 2);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_FALSE(part->done);
  EXPECT_EQ(part->rounds, 2);
  EXPECT_LE(part->events, 8);
  EXPECT_GT(part->remaining, 0);
  EXPECT_EQ(part->events + part->remaining, 20);
  auto rest = archiver_->ArchiveAll("clicks", 100);
  ASSERT_TRUE(rest.ok());
  EXPECT_TRUE(rest->done);
  EXPECT_EQ(rest->events, part->remaining);
  EXPECT_EQ(rest->remaining, 0);
  ExpectExactlyOnce(20);
  EXPECT_EQ(archiver_->ArchiveAll("nope", 1).status().code(), Code::kNotFound);
}

// kill -9 at the archiver's crash points and inside the lake commit, then restart: every event is
// in the lake exactly once, and the log consumer catches up with the catalog.
class ArchiveCrashTest : public ArchiveTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ArchiveCrashTest, RestartArchivesEachEventExactlyOnce) {
  std::vector<std::string> evs;
  for (int i = 0; i < 10; ++i) evs.push_back(Ev(i, kT0 + i * kMinute));
  Append(evs);
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  evs.clear();
  for (int i = 0; i < 7; ++i) evs.push_back(Ev(100 + i, kT0 + i * kMinute));
  Append(evs);
  Close();
  pid_t pid = fork();
  if (pid == 0) {
    setenv("LAKELOOP_CRASH_AT", GetParam(), 1);
    ReloadCrashPoints();
    Open();
    auto r = archiver_->ArchiveOnce("clicks");
    _exit(r.ok() ? 0 : 3);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "crash point not reached: " << st;
  Open();
  auto state = archiver_->State("clicks");
  ASSERT_TRUE(state.ok());
  // AddStream (in Open) brought the log consumer up to the catalog.
  for (int p = 0; p < 2; ++p) {
    if ((*state)[p].next_offset < 0) continue;
    EXPECT_EQ(*log_->CommittedOffset("archiver", "clicks", p), (*state)[p].next_offset);
  }
  auto r = archiver_->ArchiveOnce("clicks");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Append({Ev(1000, kT0), Ev(1001, kT0)});
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  ExpectExactlyOnce(19);
}

INSTANTIATE_TEST_SUITE_P(Points, ArchiveCrashTest,
                         ::testing::Values("stream.archive.before_commit",
                                           "lake.commit.before_catalog",
                                           "lake.commit.after_catalog", "lake.roll.moved_file",
                                           "stream.archive.after_commit"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '.' ? '_' : c;
                           return n;
                         });

// Without a crash: the lake commit happened but the log commit did not (simulated by rolling the
// log consumer back): the catalog wins, nothing is archived twice.
TEST_F(ArchiveTest, LaggingLogOffsetsDoNotDuplicate) {
  Append({Ev(1, kT0), Ev(2, kT0), Ev(3, kT0)});
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  for (int p = 0; p < 2; ++p) ASSERT_TRUE(log_->CommitOffset("archiver", "clicks", p, 0).ok());
  auto r = archiver_->ArchiveOnce("clicks");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->events, 0);
  ExpectExactlyOnce(3);
}

TEST_F(ArchiveTest, RetentionNeverDeletesUnarchivedEvents) {
  Append({Ev(1, kT0), Ev(2, kT0), Ev(3, kT0), Ev(4, kT0)});
  clock_ += 3 * 60 * kMinute;  // past the 1h retention
  auto trimmed = log_->Trim(clock_.load());
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->records_deleted, 0);  // the archiver has not archived them
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  Append({Ev(5, kT0 + 3 * 60 * kMinute), Ev(6, kT0 + 3 * 60 * kMinute)});
  clock_ += 3 * 60 * kMinute;
  trimmed = log_->Trim(clock_.load());
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->records_deleted, 4);  // archived ones go, the two new ones stay
  auto ranges = log_->Offsets("clicks");
  int64_t kept = 0;
  for (const auto& r : *ranges) kept += r.end - r.begin;
  EXPECT_EQ(kept, 2);
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  EXPECT_EQ(Count("SELECT count(*) FROM raw.clicks"), 6);
  EXPECT_EQ(log_->Trim(clock_.load())->records_deleted, 2);
}

TEST_F(ArchiveTest, CompactionMergesSmallFilesAndKeepsRows) {
  Close();
  ArchiverOptions o;
  o.compact_min_files = 3;
  Open(o);
  for (int i = 0; i < 5; ++i) {
    Append({Ev(i, kT0 + i * kMinute), Ev(50 + i, kT0 - 11 * 60 * kMinute)});
    ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  }
  Append({Ev(99, kT0 - 48 * 60 * kMinute)});  // 2026-11-24: a single file, left alone
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  const std::string all = "SELECT * FROM raw.clicks ORDER BY _partition, _offset";
  auto before_rows = Query(all);
  ASSERT_EQ(before_rows.size(), 11u);
  auto before = lake_->SnapshotFiles({"raw", "clicks"});
  ASSERT_EQ(before->size(), 11u);
  int64_t version = lake_->GetTable({"raw", "clicks"})->current_version;

  auto c = archiver_->CompactOnce("clicks");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->dates, 2);
  EXPECT_EQ(c->files_removed, 10);
  EXPECT_EQ(c->files_added, 2);
  auto after = lake_->SnapshotFiles({"raw", "clicks"});
  EXPECT_EQ(after->size(), 3u);
  EXPECT_EQ(Query(all), before_rows);
  // Time travel to the version before compaction reads the old files.
  EXPECT_EQ(Count("SELECT count(*) FROM raw_snapshots.clicks_v" + std::to_string(version)), 11);
  // Nothing more to do; archiving continues on top.
  EXPECT_EQ(archiver_->CompactOnce("clicks")->lake_version, 0);
  Append({Ev(7, kT0)});
  ASSERT_TRUE(archiver_->ArchiveOnce("clicks").ok());
  ExpectExactlyOnce(12);
}

TEST_F(ArchiveTest, BackgroundThreadArchivesAndStopFlushes) {
  Close();
  ArchiverOptions o;
  o.interval_ms = 20;
  Open(o);
  ASSERT_TRUE(archiver_->Start().ok());
  Append({Ev(1, kT0), Ev(2, kT0)});
  for (int i = 0; i < 500; ++i) {
    auto st = archiver_->State("clicks");
    int64_t done = 0;
    for (const auto& p : *st) done += std::max<int64_t>(0, p.next_offset);
    if (done == 2) break;
    usleep(10'000);  // polling a condition with a bounded wait
  }
  Append({Ev(3, kT0)});
  archiver_->Stop();  // flushes the last event
  ExpectExactlyOnce(3);
}

}  // namespace
}  // namespace lakeloop::stream
