// Scheduler behaviour on a real SQLite catalog with a ManualClock: no test waits real minutes and
// none sleeps to wait for threads (waits are on conditions, bounded).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "core/crash_point.h"
#include "core/ids.h"
#include "flow/flow.h"

namespace lakeloop::flow {
namespace {

using namespace std::chrono_literals;
constexpr Micros kSec = 1'000'000;
constexpr Micros kHour = 3600 * kSec;

Micros T(const char* s) { return *ParseRfc3339(s); }

// Waits for `pred` with a bounded timeout (for state that has no event to wait on).
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool Wait(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Records run events; tests wait on counts.
class Events {
 public:
  RunListener Listener() {
    return [this](const RunEvent& e) {
      std::lock_guard<std::mutex> l(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
  }
  int Count(RunEventKind kind, const std::string& job = "") {
    std::lock_guard<std::mutex> l(mu_);
    return CountLocked(kind, job);
  }
  bool WaitCount(RunEventKind kind, int n, const std::string& job = "",
                 std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return CountLocked(kind, job) >= n; });
  }
  std::vector<RunEvent> All() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }

 private:
  int CountLocked(RunEventKind kind, const std::string& job) {
    int n = 0;
    for (const auto& e : events_) n += e.kind == kind && (job.empty() || e.run.job == job);
    return n;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RunEvent> events_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("flow_test_" + NewUuid());
    std::filesystem::create_directories(dir_);
    store_ = OpenStore();
    ASSERT_TRUE(catalog::Migrate(*store_, Scheduler::Migrations()).ok());
  }
  void TearDown() override {
    scheds_.clear();
    extra_stores_.clear();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<catalog::Store> OpenStore() {
    auto s = catalog::OpenSqlite(dir_ / "catalog.db");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }
  // A scheduler on the shared clock; `store` defaults to the fixture's catalog handle.
  Scheduler& NewScheduler(SchedulerOptions o = {}, catalog::Store* store = nullptr) {
    if (!o.clock) o.clock = &clock_;
    if (o.workers == 4) o.workers = 3;
    scheds_.push_back(std::make_unique<Scheduler>(store ? store : store_.get(), o));
    scheds_.back()->AddListener(events_.Listener());
    return *scheds_.back();
  }
  std::vector<RunInfo> Runs(Scheduler& s, const std::string& job) {
    RunFilter f;
    f.job = job;
    auto r = s.ListRuns(f);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::vector<RunInfo>{};
  }
  RunInfo Wait(Scheduler& s, const std::string& id) {
    auto r = s.WaitForRun(id, 10s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : RunInfo{};
  }

  std::filesystem::path dir_;
  std::unique_ptr<catalog::Store> store_;
  std::vector<std::unique_ptr<catalog::Store>> extra_stores_;
  ManualClock clock_{T("2024-06-01T00:30:00Z")};
  Events events_;
  std::vector<std::unique_ptr<Scheduler>> scheds_;
};

TEST_F(SchedulerTest, ManualRunLifecycleIsRecorded) {
  Scheduler& s = NewScheduler();
  RunContext seen;
  ASSERT_TRUE(s.Register(MakeJob("model:daily_revenue",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   seen = ctx;
                                   RunOutput o;
                                   o.rows_in = 10;
                                   o.rows_out = 9;
                                   o.rows_rejected = 1;
                                   o.detail = R"({"k":1})";
                                   o.output_tables = {"processed.daily_revenue"};
                                   return o;
                                 }),
                         {})
                  .ok());
  EXPECT_EQ(s.Register(MakeJob("model:daily_revenue", nullptr), {}).code(), Code::kAlreadyExists);
  // Triggered before Start: queued in the catalog.
  auto id = s.Trigger("model:daily_revenue", R"({"full_refresh":true})");
  ASSERT_TRUE(id.ok());
  auto queued = s.GetRun(*id);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->status, RunStatus::kQueued);
  EXPECT_EQ(queued->trigger, Trigger::kManual);
  EXPECT_EQ(queued->queued_at, clock_.Now());

  ASSERT_TRUE(s.Start().ok());
  RunInfo r = Wait(s, *id);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.attempt, 1);
  EXPECT_EQ(r.rows_in, 10);
  EXPECT_EQ(r.rows_out, 9);
  EXPECT_EQ(r.rows_rejected, 1);
  EXPECT_EQ(r.detail, R"({"k":1})");
  EXPECT_EQ(r.output_tables, std::vector<std::string>{"processed.daily_revenue"});
  EXPECT_EQ(r.params, R"({"full_refresh":true})");
  EXPECT_EQ(r.started_at, clock_.Now());
  EXPECT_EQ(r.finished_at, clock_.Now());
  EXPECT_EQ(r.owner, s.owner());
  EXPECT_FALSE(r.owner.empty());
  EXPECT_EQ(r.error_code, Code::kOk);
  EXPECT_EQ(seen.run_id, *id);
  EXPECT_EQ(seen.trigger, Trigger::kManual);
  EXPECT_EQ(seen.attempt, 1);
  EXPECT_FALSE(seen.has_interval());
  EXPECT_EQ(seen.params, R"({"full_refresh":true})");

  // Listeners saw started then finished, after the catalog recorded them.
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 1));
  auto evs = events_.All();
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].kind, RunEventKind::kStarted);
  EXPECT_EQ(evs[1].run.status, RunStatus::kSucceeded);
  EXPECT_EQ(evs[1].output.rows_out, 9);

  RunFilter f;
  f.status = RunStatus::kSucceeded;
  EXPECT_EQ(s.ListRuns(f)->size(), 1u);
  f.status = RunStatus::kFailed;
  EXPECT_EQ(s.ListRuns(f)->size(), 0u);
  f = {};
  f.before = clock_.Now();
  EXPECT_EQ(s.ListRuns(f)->size(), 0u);

  EXPECT_EQ(s.GetRun("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(s.Trigger("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(s.Trigger("model:daily_revenue", "[1]").status().code(), Code::kInvalidArgument);
}

TEST_F(SchedulerTest, RetriesWithExponentialBackoffWithoutHoldingAWorker) {
  SchedulerOptions o;
  o.workers = 1;  // a waiting retry must not hold the only worker
  Scheduler& s = NewScheduler(o);
  std::atomic<int> calls{0};
  std::vector<Trigger> triggers;
  JobSpec spec;
  spec.retry = {3, 10 * kSec, 15 * kSec};
  ASSERT_TRUE(s.Register(MakeJob("flaky",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   triggers.push_back(ctx.trigger);
                                   if (++calls < 3) return Status(Code::kIoError, "source down");
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  std::atomic<int> other{0};
  ASSERT_TRUE(s.Register(MakeJob("other",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   ++other;
                                   return RunOutput{};
                                 }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  Micros t0 = clock_.Now();
  auto id = s.Trigger("flaky");
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kRetrying, 1));
  auto r = s.GetRun(*id);
  EXPECT_EQ(r->status, RunStatus::kQueued);
  EXPECT_EQ(r->attempt, 2);
  EXPECT_EQ(r->not_before, t0 + 10 * kSec);
  EXPECT_EQ(r->error_code, Code::kIoError);

  // 5 s later the retry is not due; another job runs on the only worker meanwhile.
  clock_.Advance(5 * kSec);
  auto o1 = s.Trigger("other");
  ASSERT_TRUE(o1.ok());
  EXPECT_EQ(Wait(s, *o1).status, RunStatus::kSucceeded);
  EXPECT_EQ(calls.load(), 1);

  clock_.Advance(5 * kSec);  // t0 + 10 s: attempt 2 (fails), next wait 20 s capped at 15 s
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kRetrying, 2));
  r = s.GetRun(*id);
  EXPECT_EQ(r->attempt, 3);
  EXPECT_EQ(r->not_before, t0 + 25 * kSec);
  clock_.Advance(15 * kSec);
  RunInfo done = Wait(s, *id);
  EXPECT_EQ(done.status, RunStatus::kSucceeded);
  EXPECT_EQ(done.attempt, 3);
  EXPECT_EQ(done.started_at, t0 + 25 * kSec);
  EXPECT_EQ(triggers, (std::vector<Trigger>{Trigger::kManual, Trigger::kRetry, Trigger::kRetry}));
  auto attempts = s.ListAttempts(*id);
  ASSERT_TRUE(attempts.ok());
  ASSERT_EQ(attempts->size(), 3u);
  EXPECT_EQ((*attempts)[0].status, RunStatus::kFailed);
  EXPECT_EQ((*attempts)[0].error_code, Code::kIoError);
  EXPECT_EQ((*attempts)[1].started_at, t0 + 10 * kSec);
  EXPECT_EQ((*attempts)[2].status, RunStatus::kSucceeded);
}

TEST_F(SchedulerTest, RetriesExhaustedFailTheRun) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.retry = {2, 1 * kSec, 1 * kSec};
  ASSERT_TRUE(s.Register(MakeJob("bad",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   return Status(Code::kInvalidArgument, "bad model");
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto id = s.Trigger("bad");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kRetrying, 1));
  clock_.Advance(kSec);
  RunInfo r = Wait(s, *id);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.attempt, 2);
  EXPECT_EQ(r.error_code, Code::kInvalidArgument);
  EXPECT_EQ(s.ListAttempts(*id)->size(), 2u);
}

TEST_F(SchedulerTest, TimeoutCancelsTheRun) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.timeout = 30 * kSec;
  std::atomic<bool> saw_cancel{false};
  std::atomic<Micros> deadline{0};
  Micros t0 = clock_.Now();
  ASSERT_TRUE(s.Register(MakeJob("slow",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   deadline = ctx.deadline;
                                   while (!ctx.cancelled()) std::this_thread::yield();
                                   saw_cancel = true;
                                   return RunOutput{};  // returning ok after the deadline
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto id = s.Trigger("slow");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  clock_.Advance(29 * kSec);
  clock_.Advance(1 * kSec);
  RunInfo r = Wait(s, *id);
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(deadline.load(), t0 + 30 * kSec);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, Code::kDeadlineExceeded);
}

TEST_F(SchedulerTest, TimeoutAbandonsAJobThatIgnoresCancellation) {
  SchedulerOptions o;
  o.cancel_grace = 5 * kSec;
  Scheduler& s = NewScheduler(o);
  JobSpec spec;
  spec.timeout = 30 * kSec;
  Gate gate;
  std::atomic<int> calls{0};
  ASSERT_TRUE(s.Register(MakeJob("stuck",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   if (++calls == 1) gate.Wait();  // ignores cancellation
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto id = s.Trigger("stuck");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  clock_.Advance(30 * kSec);
  clock_.Advance(5 * kSec);
  RunInfo r = Wait(s, *id);  // recorded while the job is still stuck
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, Code::kDeadlineExceeded);
  // Its slot is free: the next run starts although the first attempt has not returned.
  auto id2 = s.Trigger("stuck");
  EXPECT_EQ(Wait(s, *id2).status, RunStatus::kSucceeded);
  gate.Open();
  s.Stop();  // waits for the abandoned attempt; its late result changes nothing
  EXPECT_EQ(s.GetRun(*id)->status, RunStatus::kFailed);
}

TEST_F(SchedulerTest, ConcurrencyLimitQueuesRunsInOrder) {
  Scheduler& s = NewScheduler();
  Gate gate;
  std::atomic<int> active{0}, max_active{0};
  std::mutex mu;
  std::vector<std::string> order;
  ASSERT_TRUE(s.Register(MakeJob("one_at_a_time",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   int a = ++active;
                                   int m = max_active;
                                   while (a > m && !max_active.compare_exchange_weak(m, a)) {
                                   }
                                   {
                                     std::lock_guard<std::mutex> l(mu);
                                     order.push_back(ctx.run_id);
                                   }
                                   gate.Wait();
                                   --active;
                                   return RunOutput{};
                                 }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(*s.Trigger("one_at_a_time"));
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  EXPECT_EQ(s.GetRun(ids[1])->status, RunStatus::kQueued);
  EXPECT_EQ(s.GetRun(ids[2])->status, RunStatus::kQueued);
  gate.Open();
  for (const auto& id : ids) EXPECT_EQ(Wait(s, id).status, RunStatus::kSucceeded);
  EXPECT_EQ(max_active.load(), 1);
  EXPECT_EQ(order, ids);
}

TEST_F(SchedulerTest, ConcurrencyLimitTwo) {
  Scheduler& s = NewScheduler();
  Gate gate;
  JobSpec spec;
  spec.max_concurrent = 2;
  ASSERT_TRUE(s.Register(MakeJob("two",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   gate.Wait();
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(*s.Trigger("two"));
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 2));
  EXPECT_EQ(s.GetRun(ids[2])->status, RunStatus::kQueued);
  gate.Open();
  for (const auto& id : ids) EXPECT_EQ(Wait(s, id).status, RunStatus::kSucceeded);
}

TEST_F(SchedulerTest, UpstreamCommitsWhilePendingCoalesceIntoOneRun) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.upstream_tables = {"raw.orders", "raw.customers"};
  ASSERT_TRUE(s.Register(MakeJob("model:orders",
                                 [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }),
                         spec)
                  .ok());
  for (int v = 1; v <= 5; ++v) s.NotifyTableCommitted("raw.orders", v);
  s.NotifyTableCommitted("raw.customers", 7);
  s.NotifyTableCommitted("raw.unrelated", 1);
  ASSERT_TRUE(s.Start().ok());
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 1));
  auto runs = Runs(s, "model:orders");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].trigger, Trigger::kUpstream);
  EXPECT_EQ(runs[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(runs[0].params, R"({"table":"raw.orders","version":1})");
  EXPECT_EQ(s.stats().notifications_coalesced, 5);
}

TEST_F(SchedulerTest, UpstreamCommitsDuringARunLeadToExactlyOneFollowUp) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.upstream_tables = {"raw.orders"};
  Gate gate;
  std::atomic<int> calls{0};
  ASSERT_TRUE(s.Register(MakeJob("model:orders",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   if (++calls == 1) gate.Wait();
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  s.NotifyTableCommitted("raw.orders", 1);
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  for (int v = 2; v <= 6; ++v) s.NotifyTableCommitted("raw.orders", v);
  // The follow-up waits visibly in the catalog.
  RunFilter f;
  f.status = RunStatus::kQueued;
  ASSERT_TRUE(Eventually([&] { return s.ListRuns(f)->size() == 1; }));
  gate.Open();
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 2));
  auto runs = Runs(s, "model:orders");
  ASSERT_EQ(runs.size(), 2u);
  for (const auto& r : runs) EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(calls.load(), 2);
  auto st = s.stats();
  EXPECT_EQ(st.notifications_coalesced, 4);
  EXPECT_EQ(st.runs_started, 2);
}

TEST_F(SchedulerTest, BackfillRunsIntervalsInOrder) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.max_concurrent = 3;  // order comes from the backfill, not from the limit
  std::mutex mu;
  std::vector<std::pair<Micros, Micros>> seen;
  std::atomic<int> active{0};
  std::atomic<bool> overlapped{false};
  ASSERT_TRUE(s.Register(MakeJob("source:orders",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   if (++active > 1) overlapped = true;
                                   EXPECT_EQ(ctx.trigger, Trigger::kBackfill);
                                   {
                                     std::lock_guard<std::mutex> l(mu);
                                     seen.emplace_back(ctx.interval_start, ctx.interval_end);
                                   }
                                   --active;
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  Micros d0 = T("2024-05-01T00:00:00Z"), day = 24 * kHour;
  auto bid = s.Backfill("source:orders", d0, d0 + 2 * day + day / 2, day);
  ASSERT_TRUE(bid.ok());
  RunFilter f;
  f.backfill_id = *bid;
  auto runs = s.ListRuns(f);
  ASSERT_EQ(runs->size(), 3u);
  for (const auto& r : *runs) EXPECT_EQ(Wait(s, r.id).status, RunStatus::kSucceeded);
  EXPECT_FALSE(overlapped);
  EXPECT_EQ(seen,
            (std::vector<std::pair<Micros, Micros>>{
                {d0, d0 + day}, {d0 + day, d0 + 2 * day}, {d0 + 2 * day, d0 + 2 * day + day / 2}}));
  EXPECT_EQ(s.Backfill("source:orders", d0, d0, day).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s.Backfill("source:orders", d0, d0 + day, 0).status().code(), Code::kInvalidArgument);
}

TEST_F(SchedulerTest, BackfillStopsAtAFailure) {
  Scheduler& s = NewScheduler();
  Micros d0 = T("2024-05-01T00:00:00Z"), day = 24 * kHour;
  std::atomic<int> calls{0};
  ASSERT_TRUE(s.Register(MakeJob("source:orders",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   ++calls;
                                   if (ctx.interval_start == d0 + day) {
                                     return Status(Code::kIoError, "partition unreadable");
                                   }
                                   return RunOutput{};
                                 }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto bid = s.Backfill("source:orders", d0, d0 + 3 * day, day);
  ASSERT_TRUE(bid.ok());
  RunFilter f;
  f.backfill_id = *bid;
  auto runs = *s.ListRuns(f);
  ASSERT_EQ(runs.size(), 3u);
  std::sort(runs.begin(), runs.end(),
            [](const RunInfo& a, const RunInfo& b) { return a.interval_start < b.interval_start; });
  EXPECT_EQ(Wait(s, runs[0].id).status, RunStatus::kSucceeded);
  EXPECT_EQ(Wait(s, runs[1].id).status, RunStatus::kFailed);
  RunInfo third = Wait(s, runs[2].id);
  EXPECT_EQ(third.status, RunStatus::kCancelled);
  EXPECT_EQ(third.started_at, 0);
  EXPECT_EQ(calls.load(), 2);
}

TEST_F(SchedulerTest, CronRunsOnTimeWithTheIntervalItEnds) {
  Scheduler& s = NewScheduler();
  JobSpec spec;
  spec.schedule = "@hourly";
  spec.catch_up = CatchUp::kNone;  // an on-time tick is due, not missed
  ASSERT_TRUE(
      s.Register(MakeJob("hourly", [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }),
                 spec)
          .ok());
  ASSERT_TRUE(s.Start().ok());
  ASSERT_TRUE(Eventually([&] { return s.NextTick("hourly") == T("2024-06-01T01:00:00Z"); }));
  clock_.Set(T("2024-06-01T01:00:00Z"));
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 1));
  auto runs = Runs(s, "hourly");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].trigger, Trigger::kSchedule);
  EXPECT_EQ(runs[0].scheduled_tick, T("2024-06-01T01:00:00Z"));
  EXPECT_EQ(runs[0].interval_start, T("2024-06-01T00:00:00Z"));
  EXPECT_EQ(runs[0].interval_end, T("2024-06-01T01:00:00Z"));
  EXPECT_EQ(s.NextTick("hourly"), T("2024-06-01T02:00:00Z"));
}

// Runs an @hourly job at 01:00, stops (the process is "down" until 04:30: ticks 02:00, 03:00 and
// 04:00 are missed), then starts a new scheduler with the policy; returns the ticks it ran.
class CatchUpTest : public SchedulerTest {
 protected:
  std::vector<Micros> RunWithDowntime(CatchUp policy, int cap = 100) {
    JobSpec spec;
    spec.schedule = "@hourly";
    spec.catch_up = policy;
    spec.max_catch_up_runs = cap;
    auto job = [](RunContext&) -> Result<RunOutput> { return RunOutput{}; };
    {
      Scheduler& s1 = NewScheduler();
      EXPECT_TRUE(s1.Register(MakeJob("hourly", job), spec).ok());
      EXPECT_TRUE(s1.Start().ok());
      clock_.Set(T("2024-06-01T01:00:00Z"));
      EXPECT_TRUE(events_.WaitCount(RunEventKind::kFinished, 1));
      s1.Stop();
    }
    clock_.Set(T("2024-06-01T04:30:00Z"));
    Scheduler& s2 = NewScheduler();
    EXPECT_TRUE(s2.Register(MakeJob("hourly", job), spec).ok());
    EXPECT_TRUE(s2.Start().ok());
    EXPECT_TRUE(Eventually([&] { return s2.NextTick("hourly") == T("2024-06-01T05:00:00Z"); }));
    std::vector<Micros> ticks;
    auto runs = Runs(s2, "hourly");
    std::sort(runs.begin(), runs.end(), [](const RunInfo& a, const RunInfo& b) {
      return a.scheduled_tick < b.scheduled_tick;
    });
    for (const auto& r : runs) {
      RunInfo done = Wait(s2, r.id);
      EXPECT_EQ(done.status, RunStatus::kSucceeded);
      if (done.scheduled_tick != T("2024-06-01T01:00:00Z")) {
        EXPECT_EQ(done.interval_end, done.scheduled_tick);
        EXPECT_EQ(done.interval_start, done.scheduled_tick - kHour);
        ticks.push_back(done.scheduled_tick);
      }
    }
    // Execution order follows tick order.
    std::vector<Micros> started;
    for (const auto& e : events_.All()) {
      if (e.kind == RunEventKind::kStarted && e.run.scheduled_tick > T("2024-06-01T01:00:00Z")) {
        started.push_back(e.run.scheduled_tick);
      }
    }
    EXPECT_EQ(started, ticks);
    return ticks;
  }
};

TEST_F(CatchUpTest, NoneSkipsMissedTicks) {
  EXPECT_EQ(RunWithDowntime(CatchUp::kNone), std::vector<Micros>{});
}

TEST_F(CatchUpTest, LatestRunsOnceForTheLastMissedTick) {
  EXPECT_EQ(RunWithDowntime(CatchUp::kLatest), std::vector<Micros>{T("2024-06-01T04:00:00Z")});
}

TEST_F(CatchUpTest, AllRunsEveryMissedTickInOrder) {
  EXPECT_EQ(RunWithDowntime(CatchUp::kAll),
            (std::vector<Micros>{T("2024-06-01T02:00:00Z"), T("2024-06-01T03:00:00Z"),
                                 T("2024-06-01T04:00:00Z")}));
}

TEST_F(CatchUpTest, AllIsCappedToTheLatestTicks) {
  EXPECT_EQ(RunWithDowntime(CatchUp::kAll, 2),
            (std::vector<Micros>{T("2024-06-01T03:00:00Z"), T("2024-06-01T04:00:00Z")}));
}

TEST_F(SchedulerTest, CancelQueuedAndRunning) {
  Scheduler& s = NewScheduler();
  ASSERT_TRUE(s.Register(MakeJob("waits",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   while (!ctx.cancelled()) std::this_thread::yield();
                                   return Status(Code::kCancelled, "stopped early");
                                 }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto running = *s.Trigger("waits");
  auto queued = *s.Trigger("waits");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  ASSERT_TRUE(s.Cancel(queued).ok());
  EXPECT_EQ(s.GetRun(queued)->status, RunStatus::kCancelled);
  ASSERT_TRUE(s.Cancel(running).ok());
  RunInfo r = Wait(s, running);
  EXPECT_EQ(r.status, RunStatus::kCancelled);
  EXPECT_EQ(r.error_code, Code::kCancelled);
  EXPECT_EQ(s.Cancel(running).code(), Code::kConflict);
  EXPECT_EQ(s.Cancel("nope").code(), Code::kNotFound);
  EXPECT_EQ(events_.Count(RunEventKind::kStarted), 1);  // the queued one never started
}

TEST_F(SchedulerTest, StopInterruptsRunningRunsAndKeepsQueuedOnes) {
  Scheduler& s = NewScheduler();
  ASSERT_TRUE(s.Register(MakeJob("waits",
                                 [&](RunContext& ctx) -> Result<RunOutput> {
                                   while (!ctx.cancelled()) std::this_thread::yield();
                                   return RunOutput{};
                                 }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto running = *s.Trigger("waits");
  auto queued = *s.Trigger("waits");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  s.Stop();
  RunInfo r = *s.GetRun(running);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, Code::kUnavailable);
  EXPECT_EQ(s.GetRun(queued)->status, RunStatus::kQueued);
  EXPECT_EQ(s.Trigger("waits").status().code(), Code::kUnavailable);
  // The next scheduler adopts the queued run.
  Scheduler& s2 = NewScheduler();
  ASSERT_TRUE(
      s2.Register(MakeJob("waits", [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }),
                  {})
          .ok());
  ASSERT_TRUE(s2.Start().ok());
  ASSERT_TRUE(Eventually([&] { return s2.GetRun(queued)->status == RunStatus::kSucceeded; }));
}

// kill -9 while a run is running; the restarted scheduler marks it failed and the job runs again.
TEST_F(SchedulerTest, RecoverMarksRunsInterruptedByACrashFailed) {
  store_.reset();
  pid_t pid = fork();
  if (pid == 0) {
    setenv("LAKELOOP_CRASH_AT", "flow.claimed", 1);
    ReloadCrashPoints();
    auto store = OpenStore();
    SystemClock clock;
    SchedulerOptions o;
    o.clock = &clock;
    Scheduler s(store.get(), o);
    (void)s.Register(
        MakeJob("source:orders", [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }), {});
    (void)s.Start();
    auto id = s.Trigger("source:orders");
    (void)s.WaitForRun(*id, 10s);
    _exit(3);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "crash point not reached";
  unsetenv("LAKELOOP_CRASH_AT");
  ReloadCrashPoints();
  store_ = OpenStore();

  // The restarted process has another owner; it is the catalog's only scheduler (it holds the
  // data directory's lock), so the crashed process's running row is failed at once.
  SchedulerOptions sole;
  sole.sole_scheduler = true;
  Scheduler& s = NewScheduler(sole);
  auto before = Runs(s, "source:orders");
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].status, RunStatus::kRunning);
  ASSERT_TRUE(s.Register(MakeJob("source:orders",
                                 [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }),
                         {})
                  .ok());
  ASSERT_TRUE(s.Start().ok());  // Recover()
  RunInfo r = *s.GetRun(before[0].id);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, Code::kUnavailable);
  EXPECT_NE(r.error.find("interrupted by a restart"), std::string::npos);
  EXPECT_EQ(s.ListAttempts(r.id)->size(), 1u);
  auto again = s.Trigger("source:orders");
  EXPECT_EQ(Wait(s, *again).status, RunStatus::kSucceeded);
}

TEST_F(SchedulerTest, RecoverLeavesALiveOwnersRunAlone) {
  Scheduler& other = NewScheduler([] {
    SchedulerOptions o;
    o.owner = "other-host";
    return o;
  }());
  Gate gate;
  ASSERT_TRUE(other
                  .Register(MakeJob("j",
                                    [&](RunContext&) -> Result<RunOutput> {
                                      gate.Wait();
                                      return RunOutput{};
                                    }),
                            {})
                  .ok());
  ASSERT_TRUE(other.Start().ok());
  auto id = *other.Trigger("j");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  extra_stores_.push_back(OpenStore());
  Scheduler& me = NewScheduler({}, extra_stores_.back().get());
  ASSERT_TRUE(me.Recover().ok());
  EXPECT_EQ(me.GetRun(id)->status, RunStatus::kRunning);  // lease still valid
  gate.Open();
  EXPECT_EQ(Wait(other, id).status, RunStatus::kSucceeded);
}

// Two processes' worth of schedulers (two catalog handles on one SQLite file) see the same cron
// ticks: each tick runs exactly once.
TEST_F(SchedulerTest, TwoSchedulersOnOneCatalogRunATickOnce) {
  std::atomic<int> calls_a{0}, calls_b{0};
  JobSpec spec;
  spec.schedule = "@hourly";
  extra_stores_.push_back(OpenStore());
  SchedulerOptions oa, ob;
  oa.owner = "a";
  ob.owner = "b";
  Scheduler& a = NewScheduler(oa);
  Scheduler& b = NewScheduler(ob, extra_stores_.back().get());
  ASSERT_TRUE(a.Register(MakeJob("hourly",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   ++calls_a;
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(b.Register(MakeJob("hourly",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   ++calls_b;
                                   return RunOutput{};
                                 }),
                         spec)
                  .ok());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  for (int h = 1; h <= 5; ++h) {
    Micros tick = T("2024-06-01T00:00:00Z") + h * kHour;
    clock_.Set(tick);
    ASSERT_TRUE(
        Eventually([&] { return a.NextTick("hourly") > tick && b.NextTick("hourly") > tick; }));
    ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, h));
    auto runs = Runs(a, "hourly");
    ASSERT_EQ(runs.size(), static_cast<size_t>(h));
    EXPECT_EQ(runs[0].scheduled_tick, tick);
  }
  EXPECT_EQ(calls_a + calls_b, 5);
  EXPECT_EQ(a.stats().ticks_fired + b.stats().ticks_fired, 5);
  EXPECT_EQ(a.stats().ticks_taken_by_peer + b.stats().ticks_taken_by_peer, 5);
}

// A queued run known to two schedulers (one triggered it, the other adopted it at start) is
// claimed by exactly one of them.
TEST_F(SchedulerTest, TwoSchedulersClaimAQueuedRunOnce) {
  for (int round = 0; round < 5; ++round) {
    scheds_.clear();
    extra_stores_.clear();
    extra_stores_.push_back(OpenStore());
    std::atomic<int> calls{0};
    SchedulerOptions oa, ob;
    oa.owner = "a";
    ob.owner = "b";
    Scheduler& a = NewScheduler(oa);
    Scheduler& b = NewScheduler(ob, extra_stores_.back().get());
    for (Scheduler* s : {&a, &b}) {
      ASSERT_TRUE(s->Register(MakeJob("j",
                                      [&](RunContext&) -> Result<RunOutput> {
                                        ++calls;
                                        return RunOutput{};
                                      }),
                              {})
                      .ok());
    }
    auto id = *a.Trigger("j");
    ASSERT_TRUE(b.Start().ok());  // adopts the queued row
    ASSERT_TRUE(a.Start().ok());
    ASSERT_TRUE(Eventually([&] { return a.GetRun(id)->status == RunStatus::kSucceeded; }));
    (void)a.WaitForRun(id, 10s);
    (void)b.WaitForRun(id, 10s);
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(a.stats().runs_started + b.stats().runs_started, 1);
  }
}

// Item 9: each scheduler has its own owner by default (host:pid:random), so two of them sharing a
// catalog never mistake the other's run for their own; a queued run still runs once.
TEST_F(SchedulerTest, DefaultOwnersAreUniqueAndAJobRunsOnce) {
  extra_stores_.push_back(OpenStore());
  Scheduler& a = NewScheduler();
  Scheduler& b = NewScheduler({}, extra_stores_.back().get());
  EXPECT_NE(a.owner(), b.owner());
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::string prefix = std::string(host) + ":" + std::to_string(getpid()) + ":";
  EXPECT_EQ(a.owner().rfind(prefix, 0), 0u) << a.owner();
  EXPECT_GT(a.owner().size(), prefix.size());
  std::atomic<int> calls{0};
  for (Scheduler* s : {&a, &b}) {
    ASSERT_TRUE(s->Register(MakeJob("j",
                                    [&](RunContext&) -> Result<RunOutput> {
                                      ++calls;
                                      return RunOutput{};
                                    }),
                            {})
                    .ok());
  }
  auto id = *a.Trigger("j");
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(Eventually([&] { return a.GetRun(id)->status == RunStatus::kSucceeded; }));
  (void)a.WaitForRun(id, 10s);
  (void)b.WaitForRun(id, 10s);
  EXPECT_EQ(calls.load(), 1);
  std::string owner = a.GetRun(id)->owner;
  EXPECT_TRUE(owner == a.owner() || owner == b.owner()) << owner;
  // A's Recover does not take B's live run for one of its own (different owners).
  EXPECT_EQ(a.stats().runs_started + b.stats().runs_started, 1);
}

// Jobs are added to a running scheduler: manual, upstream and cron triggers all reach them.
TEST_F(SchedulerTest, RegisterAfterStartRunsTheNewJob) {
  Scheduler& s = NewScheduler();
  ASSERT_TRUE(s.Start().ok());
  std::atomic<int> calls{0};
  auto fn = [&](RunContext&) -> Result<RunOutput> {
    ++calls;
    return RunOutput{};
  };
  JobSpec up;
  up.upstream_tables = {"raw.orders"};
  ASSERT_TRUE(s.Register(MakeJob("model:new", fn), up).ok());
  EXPECT_EQ(s.Register(MakeJob("model:new", fn), up).code(), Code::kAlreadyExists);
  EXPECT_EQ(Wait(s, *s.Trigger("model:new")).status, RunStatus::kSucceeded);
  s.NotifyTableCommitted("raw.orders", 1);
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 2, "model:new"));
  JobSpec hourly;
  hourly.schedule = "@hourly";
  hourly.catch_up = CatchUp::kNone;
  ASSERT_TRUE(s.Register(MakeJob("source:cron", fn), hourly).ok());
  EXPECT_EQ(s.NextTick("source:cron"), T("2024-06-01T01:00:00Z"));
  clock_.Set(T("2024-06-01T01:00:00Z"));
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 1, "source:cron"));
  EXPECT_EQ(s.JobNames(), (std::vector<std::string>{"model:new", "source:cron"}));
}

// Removing one job leaves another job's running run alone; the removed job's run in flight
// finishes and is recorded, its queued run is cancelled, and nothing triggers it any more.
TEST_F(SchedulerTest, RemoveJobWhileRunning) {
  Scheduler& s = NewScheduler();
  Gate gate_a, gate_b;
  ASSERT_TRUE(s.Register(MakeJob("a",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   gate_a.Wait();
                                   RunOutput o;
                                   o.rows_out = 1;
                                   return o;
                                 }),
                         {})
                  .ok());
  JobSpec bspec;
  bspec.upstream_tables = {"raw.t"};
  bspec.schedule = "@hourly";
  ASSERT_TRUE(s.Register(MakeJob("b",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   gate_b.Wait();
                                   return Internal("fails; would be retried");
                                 }),
                         [&] {
                           bspec.retry.max_attempts = 3;
                           return bspec;
                         }())
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto a_run = *s.Trigger("a");
  auto b_run = *s.Trigger("b");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 2));
  auto b_queued = *s.Trigger("b");  // waits for b's slot
  ASSERT_TRUE(s.RemoveJob("b").ok());
  EXPECT_EQ(s.RemoveJob("b").code(), Code::kNotFound);
  EXPECT_EQ(s.GetRun(b_queued)->status, RunStatus::kCancelled);
  EXPECT_EQ(s.GetRun(b_queued)->error, "the job was removed");
  EXPECT_EQ(s.Trigger("b").status().code(), Code::kNotFound);
  EXPECT_EQ(s.JobNames(), std::vector<std::string>{"a"});
  s.NotifyTableCommitted("raw.t", 2);
  clock_.Set(T("2024-06-01T05:00:00Z"));  // b's cron would be due
  gate_b.Open();
  RunInfo b = Wait(s, b_run);
  EXPECT_EQ(b.status, RunStatus::kFailed);  // recorded, not retried
  EXPECT_EQ(b.attempt, 1);
  EXPECT_EQ(s.GetRun(a_run)->status, RunStatus::kRunning);  // a was never touched
  gate_a.Open();
  EXPECT_EQ(Wait(s, a_run).status, RunStatus::kSucceeded);
  EXPECT_EQ(Runs(s, "b").size(), 2u);  // no upstream, cron or retry run appeared
  // The name can be registered again.
  ASSERT_TRUE(
      s.Register(MakeJob("b", [](RunContext&) -> Result<RunOutput> { return RunOutput{}; }), {})
          .ok());
  EXPECT_EQ(Wait(s, *s.Trigger("b")).status, RunStatus::kSucceeded);
}

// Replacing a job keeps its run in flight on the old Job; later runs use the new one, and the new
// spec's upstream tables replace the old ones.
TEST_F(SchedulerTest, ReplaceJobKeepsTheRunningRun) {
  Scheduler& s = NewScheduler();
  Gate gate;
  JobSpec v1spec;
  v1spec.upstream_tables = {"raw.old"};
  ASSERT_TRUE(s.Register(MakeJob("m",
                                 [&](RunContext&) -> Result<RunOutput> {
                                   gate.Wait();
                                   RunOutput o;
                                   o.rows_out = 1;
                                   return o;
                                 }),
                         v1spec)
                  .ok());
  ASSERT_TRUE(s.Start().ok());
  auto first = *s.Trigger("m");
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kStarted, 1));
  JobSpec v2spec;
  v2spec.upstream_tables = {"raw.new"};
  auto v2 = [](RunContext&) -> Result<RunOutput> {
    RunOutput o;
    o.rows_out = 2;
    return o;
  };
  EXPECT_EQ(s.ReplaceJob(MakeJob("nope", v2), v2spec).code(), Code::kNotFound);
  ASSERT_TRUE(s.ReplaceJob(MakeJob("m", v2), v2spec).ok());
  EXPECT_EQ(s.GetRun(first)->status, RunStatus::kRunning);
  gate.Open();
  RunInfo r1 = Wait(s, first);
  EXPECT_EQ(r1.status, RunStatus::kSucceeded);
  EXPECT_EQ(r1.rows_out, 1);  // the old job finished its run
  EXPECT_EQ(Wait(s, *s.Trigger("m")).rows_out, 2);
  s.NotifyTableCommitted("raw.old", 1);  // no longer an input
  s.NotifyTableCommitted("raw.new", 1);
  ASSERT_TRUE(events_.WaitCount(RunEventKind::kFinished, 3, "m"));
  auto runs = Runs(s, "m");
  ASSERT_EQ(runs.size(), 3u);
  int upstream = 0;
  for (const auto& r : runs) {
    if (r.trigger != Trigger::kUpstream) continue;
    ++upstream;
    EXPECT_NE(r.params.find("raw.new"), std::string::npos) << r.params;
    EXPECT_EQ(r.rows_out, 2);
  }
  EXPECT_EQ(upstream, 1);
}

// Jobs added and removed from several threads while runs go on: every run ends, nothing hangs.
TEST_F(SchedulerTest, ConcurrentAddRemoveAndTriggers) {
  Scheduler& s = NewScheduler();
  ASSERT_TRUE(s.Start().ok());
  auto fn = [](RunContext&) -> Result<RunOutput> { return RunOutput{}; };
  ASSERT_TRUE(s.Register(MakeJob("stable", fn), {}).ok());
  std::vector<std::thread> threads;
  std::atomic<int> stable_ok{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        std::string name = "j" + std::to_string(t) + "_" + std::to_string(i % 3);
        JobSpec spec;
        spec.upstream_tables = {"raw.x"};
        if (s.Register(MakeJob(name, fn), spec).ok()) {
          (void)s.Trigger(name);
          s.NotifyTableCommitted("raw.x", i);
          if (i % 2) (void)s.ReplaceJob(MakeJob(name, fn), {});
          EXPECT_TRUE(s.RemoveJob(name).ok());
        }
        auto id = s.Trigger("stable");
        if (id.ok() && s.WaitForRun(*id, 10s)->status == RunStatus::kSucceeded) ++stable_ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(stable_ok.load(), 90);
  EXPECT_EQ(s.JobNames(), std::vector<std::string>{"stable"});
  s.Stop();
  RunFilter f;
  f.limit = 100000;
  f.status = RunStatus::kRunning;
  EXPECT_TRUE(s.ListRuns(f)->empty());
}

}  // namespace
}  // namespace lakeloop::flow
