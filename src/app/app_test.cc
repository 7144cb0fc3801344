// The composition root on real engines: the data directory's lock, apply as a loop over the
// registered definition kinds (dry run, create/update/delete, errors of every kind together), the
// one scheduler's identity and its recovery of runs a crashed process left running.
#include "app/app.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "core/time.h"

namespace lakeloop::app {
namespace {
namespace fs = std::filesystem;

class AppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("app-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(root_);
    paths_.project = root_ / "project";
    paths_.data = root_ / "data";
    fs::create_directories(paths_.project);
    config_.sql.threads = 1;
    config_.server.worker_threads = 2;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Write(const std::string& rel, const std::string& text) {
    auto p = paths_.project / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  }
  std::unique_ptr<App> Open(Mode mode = Mode::kOneShot) {
    auto a = App::Open(paths_, config_, mode);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? std::move(a).value() : nullptr;
  }
  void WriteProject() {
    Write("sources/orders.yaml", "type: files\npath: data/orders/*.csv\nformat: csv\n");
    Write("data/orders/day1.csv", "order_id,amount\n1,10\n2,20\n");
    Write("models/order_count.sql", "SELECT count(*) AS n FROM raw.orders");
    Write("streams/clicks.yaml",
          "name: clicks\nfields:\n  customer_id: {type: integer}\n  ts: {type: timestamp}\n"
          "key: customer_id\ntime: ts\n");
    Write("features/activity.yaml",
          "name: activity\nkind: stream\nstream: clicks\nfeatures:\n"
          "  - {name: n_1h, agg: count, window: 1h}\n");
  }

  fs::path root_;
  Paths paths_;
  Config config_;
};

TEST_F(AppTest, ASecondOwnerOfTheDataDirectoryIsRefused) {
  auto first = Open(Mode::kServer);
  ASSERT_TRUE(first);
  auto second = App::Open(paths_, config_, Mode::kOneShot);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kConflict);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos)
      << second.status().message();
  // A reader beside the owner is fine; it has no batch, realtime or scheduler.
  auto reader = Open(Mode::kReadOnly);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->batch(), nullptr);
  EXPECT_EQ(reader->scheduler(), nullptr);
  EXPECT_EQ(reader->Apply(false).status().code(), Code::kInternal);
  first.reset();  // releases the lock
  EXPECT_TRUE(Open(Mode::kOneShot));
}

TEST_F(AppTest, ApplyIsOneLoopOverEveryDefinitionKind) {
  WriteProject();
  auto app = Open();
  ASSERT_TRUE(app);
  auto dry = app->Apply(/*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_TRUE(dry->dry_run);
  std::vector<std::string> seen;
  for (const auto& c : dry->changes) seen.push_back(c.action + " " + c.kind + " " + c.name);
  EXPECT_EQ(seen,
            (std::vector<std::string>{"create source orders", "create model order_count",
                                      "create stream clicks", "create feature_view activity"}));
  EXPECT_TRUE(app->scheduler()->JobNames().empty());  // a dry run changes nothing
  ASSERT_TRUE(app->Apply(false).ok());
  EXPECT_EQ(app->scheduler()->JobNames(),
            (std::vector<std::string>{"model:order_count", "source:orders"}));
  EXPECT_EQ(app->realtime()->StreamNames(), std::vector<std::string>{"clicks"});
  EXPECT_TRUE(app->Apply(false)->changes.empty());  // nothing changed

  // One model changes, the view goes: exactly those two, with the delete's note.
  Write("models/order_count.sql", "SELECT count(*) * 2 AS n FROM raw.orders");
  fs::remove(paths_.project / "features" / "activity.yaml");
  auto second = app->Apply(false);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_EQ(second->changes.size(), 2u);
  EXPECT_EQ(second->changes[0].action + " " + second->changes[0].name, "update order_count");
  EXPECT_EQ(second->changes[1].action + " " + second->changes[1].name, "delete activity");
  EXPECT_EQ(second->changes[1].note,
            "features.activity is kept; online values are no longer updated");
  auto runs = app->batch()->Build();
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
  EXPECT_EQ(runs->back().rows_out, 1);
}

TEST_F(AppTest, ErrorsOfEveryKindAreReportedTogetherAndNothingIsApplied) {
  WriteProject();
  Write("sources/bad.yaml", "type: nonsense\n");
  Write("features/bad.yaml", "name: bad\nkind: stream\nstream: nowhere\nfeatures: []\n");
  auto app = Open();
  ASSERT_TRUE(app);
  auto r = app->Apply(false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  const std::string& msg = r.status().message();
  EXPECT_EQ(msg.rfind("the project has errors; nothing was applied:", 0), 0u) << msg;
  EXPECT_NE(msg.find("sources/bad.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("features/bad.yaml"), std::string::npos) << msg;
  EXPECT_TRUE(app->scheduler()->JobNames().empty());
  EXPECT_TRUE(app->realtime()->StreamNames().empty());
}

// Item 9: the process's scheduler has an owner of its own (host:pid:random), and because it is
// the only scheduler of the locked data directory's catalog, a run that a crashed process (with
// another owner and a lease still valid) left `running` is marked failed when the app opens.
TEST_F(AppTest, TheSchedulerOwnsItsRunsAndRecoversACrashedProcesssRuns) {
  {
    auto app = Open();
    ASSERT_TRUE(app);
    const std::string& owner = app->scheduler()->owner();
    EXPECT_NE(owner.find(":" + std::to_string(getpid()) + ":"), std::string::npos) << owner;
    auto other = Open(Mode::kReadOnly);
    ASSERT_TRUE(other);
  }
  {
    auto store = catalog::OpenSqlite(paths_.catalog());
    ASSERT_TRUE(store.ok());
    auto txn = (*store)->Begin();
    ASSERT_TRUE(txn.ok());
    Micros now = NowMicros();
    ASSERT_TRUE((*txn)
                    ->Exec("INSERT INTO flow_runs (id, job, trigger, status, attempt, "
                           "max_attempts, queued_at, started_at, owner, lease_expires_at) VALUES "
                           "('r1', 'source:orders', 'manual', 'running', 1, 1, ?, ?, "
                           "'crashed-host:1:deadbeef', ?)",
                           {now, now, now + 3'600'000'000})
                    .ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  auto app = Open();
  ASSERT_TRUE(app);
  auto r = app->scheduler()->GetRun("r1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, flow::RunStatus::kFailed);
  EXPECT_EQ(r->error_code, Code::kUnavailable);
  EXPECT_EQ(r->error, "interrupted by a restart");
}

}  // namespace
}  // namespace lakeloop::app
