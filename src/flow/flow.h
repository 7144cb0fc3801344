// flow: lakeloop's scheduler (replaces Airflow/MWAA). Jobs behind one small interface, run on a
// thread pool when a cron tick comes due, when an upstream table commits (data-aware), when asked
// (manual), or once per interval of a backfill; with retries and exponential backoff, timeouts that
// cancel, a concurrency limit per job, and the run history in the catalog (flow_runs).
//
// Exactly-once across processes sharing one catalog: a run only executes after its owner won a
// compare-and-swap in one catalog transaction (a queued row -> running with an owner and a lease
// expiry that is renewed while it runs; a cron tick -> flow_schedule_state.last_tick). See
// README.md for the threads and the invariants.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "core/time.h"

namespace lakeloop::flow {

namespace internal {
class SchedulerImpl;
}

// ---- Vocabulary ---------------------------------------------------------------------------------

// Why a run exists. Wire names: manual, schedule, upstream, backfill, retry. A run row keeps the
// trigger that created it; an attempt after the first sees kRetry in RunContext::trigger.
enum class Trigger { kManual, kSchedule, kUpstream, kBackfill, kRetry };
std::string_view TriggerName(Trigger t);
Result<Trigger> ParseTrigger(std::string_view name);

// queued -> running -> succeeded | failed | cancelled; running -> queued again when a failed
// attempt will be retried (attempt + 1, not before the backoff).
enum class RunStatus { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
std::string_view RunStatusName(RunStatus s);
Result<RunStatus> ParseRunStatus(std::string_view name);
inline bool IsTerminal(RunStatus s) {
  return s == RunStatus::kSucceeded || s == RunStatus::kFailed || s == RunStatus::kCancelled;
}

// ---- Clock --------------------------------------------------------------------------------------

// Time as the scheduler sees it (cron ticks, backoffs, timeouts, leases, recorded timestamps), in
// UTC micros. Injected so tests can jump across hours without waiting. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Micros Now() = 0;
  // How long (real time) to block when nothing happens before clock time `deadline`;
  // std::nullopt = until woken (a fake clock wakes its subscribers when it moves).
  virtual std::optional<std::chrono::microseconds> RealWait(Micros deadline) = 0;
  // `fn` is called (on the thread that moves the clock) after each move. Returns a token.
  virtual int Subscribe(std::function<void()> fn) = 0;
  virtual void Unsubscribe(int token) = 0;
};

// The wall clock (NowMicros). Subscribers are never called.
class SystemClock : public Clock {
 public:
  Micros Now() override;
  std::optional<std::chrono::microseconds> RealWait(Micros deadline) override;
  int Subscribe(std::function<void()>) override { return 0; }
  void Unsubscribe(int) override {}
};

// A clock that only moves when told to; for tests. Thread-safe.
class ManualClock : public Clock {
 public:
  explicit ManualClock(Micros start) : now_(start) {}
  Micros Now() override { return now_.load(); }
  std::optional<std::chrono::microseconds> RealWait(Micros) override { return std::nullopt; }
  int Subscribe(std::function<void()> fn) override;
  void Unsubscribe(int token) override;
  void Set(Micros t);
  void Advance(Micros d) { Set(now_.load() + d); }

 private:
  std::atomic<Micros> now_;
  std::mutex mu_;
  int next_token_ = 1;
  std::vector<std::pair<int, std::function<void()>>> subs_;
};

// ---- Cron ---------------------------------------------------------------------------------------

// A 5-field cron expression in UTC: minute hour day-of-month month day-of-week, each `*`, a value,
// a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (= a-max/n), or a comma list of those; months
// jan..dec and days sun..sat by name; day-of-week 7 = Sunday. Macros: @hourly @daily (@midnight)
// @weekly @monthly @yearly (@annually). Day matching follows Vixie cron: when both day fields are
// restricted (neither starts with `*`) a day matches if EITHER matches; otherwise both must.
// Immutable; thread-safe.
class Cron {
 public:
  // The first tick strictly after `t` (ticks are whole minutes).
  Micros NextAfter(Micros t) const;
  // The last tick strictly before `t`.
  Micros PrevBefore(Micros t) const;
  const std::string& text() const { return text_; }

 private:
  friend Result<Cron> ParseCron(std::string_view text);
  bool DayMatches(int64_t days_since_epoch, unsigned month, unsigned day) const;
  bool Matches(int64_t minute_since_epoch) const;
  std::string text_;
  uint64_t minutes_ = 0;  // bit i = minute i
  uint32_t hours_ = 0;
  uint32_t doms_ = 0;    // bit 1..31
  uint16_t months_ = 0;  // bit 1..12
  uint8_t dows_ = 0;     // bit 0..6, 0 = Sunday
  bool dom_star_ = false;
  bool dow_star_ = false;
};

// kInvalidArgument naming the field ("cron 'x': hour: 24 is out of range 0-23"). Expressions that
// can never fire (e.g. "0 0 30 2 *") are refused too.
Result<Cron> ParseCron(std::string_view text);

// ---- Jobs ---------------------------------------------------------------------------------------

// What a job sees while it runs. The job should poll cancelled() between units of work and return
// soon after it turns true (timeout, Cancel, or the scheduler stopping).
struct RunContext {
  std::string run_id;
  std::string job;
  Trigger trigger = Trigger::kManual;  // kRetry for attempts after the first
  int attempt = 1;                     // 1-based
  // The logical interval [interval_start, interval_end) for schedule and backfill runs; both 0
  // (empty) for manual and upstream runs.
  Micros interval_start = 0;
  Micros interval_end = 0;
  std::string params = "{}";  // JSON object: Trigger's params; {"table","version"} for upstream
  Micros deadline = 0;        // clock time after which the run is cancelled; 0 = none
  std::shared_ptr<const std::atomic<bool>> cancel_flag;

  bool cancelled() const { return cancel_flag && cancel_flag->load(std::memory_order_relaxed); }
  bool has_interval() const { return interval_end > interval_start; }
};

struct RunOutput {
  int64_t rows_in = 0;
  int64_t rows_out = 0;
  int64_t rows_rejected = 0;
  std::string detail = "{}";               // free-form JSON, stored as given
  std::vector<std::string> output_tables;  // "zone.table" the run committed
};

// A unit of scheduled work. Run is called on a pool thread, possibly concurrently for one job when
// JobSpec::max_concurrent > 1. An error Status fails the attempt (retried per RetryPolicy).
class Job {
 public:
  virtual ~Job() = default;
  virtual std::string name() const = 0;  // e.g. "source:orders", "model:daily_revenue"
  virtual Result<RunOutput> Run(RunContext& ctx) = 0;
};

// A Job from a function (tests, small glue jobs).
std::unique_ptr<Job> MakeJob(std::string name, std::function<Result<RunOutput>(RunContext&)> fn);

// "<hostname>:<pid>:<8 random hex>": a scheduler owner no other process has.
std::string UniqueOwner();

// What to do, on start or after a stall, with cron ticks that passed without a run.
enum class CatchUp {
  kNone,    // skip them; the next run is the next future tick
  kLatest,  // one run for the most recent missed tick
  kAll,  // one run per missed tick, oldest first, at most JobSpec::max_catch_up_runs (the latest)
};

struct RetryPolicy {
  int max_attempts = 1;              // 1 = no retry
  Micros backoff_base = 10'000'000;  // attempt n+1 waits base * 2^(n-1) ...
  Micros backoff_max = 600'000'000;  // ... capped here
};

struct JobSpec {
  std::string schedule;                      // cron text; empty = not scheduled
  std::vector<std::string> upstream_tables;  // "zone.table": a commit enqueues a run (coalesced)
  RetryPolicy retry;
  Micros timeout = 0;      // per attempt; 0 = none
  int max_concurrent = 1;  // runs of this job at once in this process
  CatchUp catch_up = CatchUp::kLatest;
  int max_catch_up_runs = 100;
};

// ---- Run history --------------------------------------------------------------------------------

// One row of flow_runs. Timestamps are clock micros; 0 = not yet.
struct RunInfo {
  std::string id;
  std::string job;
  Trigger trigger = Trigger::kManual;
  RunStatus status = RunStatus::kQueued;
  int attempt = 1;
  int max_attempts = 1;
  Micros interval_start = 0;
  Micros interval_end = 0;
  Micros queued_at = 0;
  Micros not_before = 0;  // a retry waits until then
  Micros started_at = 0;  // of the latest attempt
  Micros finished_at = 0;
  int64_t rows_in = 0;
  int64_t rows_out = 0;
  int64_t rows_rejected = 0;
  Code error_code = Code::kOk;  // kDeadlineExceeded for a timeout, kUnavailable when interrupted
  std::string error;
  std::string detail = "{}";
  std::string params = "{}";
  std::vector<std::string> output_tables;
  std::string backfill_id;    // "" unless part of a backfill
  Micros scheduled_tick = 0;  // the cron tick of a schedule run
  std::string owner;          // the scheduler that runs (ran) it
};

struct RunFilter {
  std::string job;  // "" = all
  std::optional<RunStatus> status;
  std::string backfill_id;  // "" = all
  int limit = 100;
  Micros before = 0;  // queued_at < before (paging); 0 = no bound
};

// One attempt of a run, from flow_attempts.
struct AttemptInfo {
  int attempt = 1;
  RunStatus status = RunStatus::kFailed;
  Micros started_at = 0;
  Micros finished_at = 0;
  Code error_code = Code::kOk;
  std::string error;
};

enum class RunEventKind {
  kStarted,   // an attempt began (after the catalog recorded it)
  kRetrying,  // an attempt failed; the run is queued again (run.not_before)
  kFinished,  // terminal: run.status is succeeded, failed or cancelled
};

struct RunEvent {
  RunEventKind kind;
  RunInfo run;       // as recorded in the catalog
  RunOutput output;  // what the job returned (kFinished with kSucceeded)
};

// Called on a pool thread (or the dispatcher) with no scheduler lock held; may call back into the
// Scheduler (e.g. NotifyTableCommitted). Should be quick.
using RunListener = std::function<void(const RunEvent&)>;

// ---- Scheduler ----------------------------------------------------------------------------------

struct SchedulerOptions {
  Clock* clock = nullptr;      // not owned; nullptr = a SystemClock owned by the scheduler
  ThreadPool* pool = nullptr;  // not owned; nullptr = own pool of `workers` threads
  size_t workers = 4;
  // Identity in flow_runs.owner; "" = UniqueOwner() (host:pid:random), so two processes sharing
  // a catalog never take each other's runs for their own.
  std::string owner;
  // No other scheduler uses this catalog (the process holds the data directory's lock and the
  // catalog is embedded in it): Recover() marks every `running` row failed, whatever its owner,
  // since none can still be running. Otherwise only this owner's rows and expired leases.
  bool sole_scheduler = false;
  Micros lease = 60'000'000;        // a running run's lease; renewed every lease/3
  Micros cancel_grace = 5'000'000;  // after a timeout, wait this long for the job to return
  int max_backfill_runs = 10'000;
  // With CatchUp::kNone a tick up to this late is due, not missed, and still runs.
  Micros misfire_grace = 60'000'000;
};

struct SchedulerStats {
  int64_t runs_started = 0;
  int64_t runs_finished = 0;
  int64_t attempts_failed = 0;
  int64_t notifications = 0;
  int64_t notifications_coalesced = 0;
  int64_t ticks_fired = 0;          // cron ticks this scheduler turned into runs
  int64_t ticks_taken_by_peer = 0;  // evaluations another scheduler had already handled
  int64_t claims_lost = 0;          // queued runs another scheduler started first
};

// Owns one dispatcher thread (cron, retry and timeout timers, starting runs) and runs jobs on the
// pool. Thread-safe: every method may be called from any thread, including from a job or a
// listener. Destruction stops it (Stop()).
class Scheduler {
 public:
  // `store` must outlive the scheduler; Migrations() must have been applied.
  Scheduler(catalog::Store* store, SchedulerOptions options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  static std::vector<catalog::Migration> Migrations();

  // kAlreadyExists for a second job of one name; kInvalidArgument for a bad spec or cron. May be
  // called before or after Start (a running scheduler loads the job's cron state at once).
  Status Register(std::unique_ptr<Job> job, JobSpec spec);
  // Swaps the Job and JobSpec of a registered job (kNotFound otherwise), e.g. when its definition
  // changed. A run in flight finishes with the Job it started with; queued runs, retries and
  // backfills run the new one. The cron state is kept when the schedule text is unchanged.
  Status ReplaceJob(std::unique_ptr<Job> job, JobSpec spec);
  // Unregisters a job (kNotFound if unknown): its queued runs, pending retries and the rest of
  // its backfills are recorded cancelled ("the job was removed"); a run in flight finishes and
  // its outcome is recorded (no retry). Other jobs are untouched.
  Status RemoveJob(std::string_view job);
  // Registered job names, sorted.
  std::vector<std::string> JobNames();
  const std::string& owner() const;
  // Recover(), then loads cron state (catching up per policy), adopts queued runs of registered
  // jobs, and starts the dispatcher. Runs triggered before Start wait for it.
  Status Start();
  // Stops dispatching; cancels running attempts (recorded failed, kUnavailable "interrupted by
  // shutdown") and waits for them to return. Queued runs stay queued in the catalog. Idempotent.
  void Stop();
  // Marks `running` runs owned by this owner, or whose lease expired, as failed ("interrupted by
  // a restart"). Called by Start(); public for tools.
  Status Recover();

  // A manual run; the row is queued in the catalog before this returns. `params` is a JSON object.
  Result<std::string> Trigger(std::string_view job, std::string params = "{}");
  // A table committed: each job listing it in upstream_tables gets a run, unless one is already
  // queued (it absorbs the notification). A run in progress thus leads to exactly one follow-up.
  void NotifyTableCommitted(std::string_view table, int64_t version);
  // One run per interval [from + k*step, min(from + (k+1)*step, to)), all queued now, executed in
  // order, each after the previous succeeded; a failure (after retries) cancels the rest.
  // Returns the backfill id (RunFilter::backfill_id).
  Result<std::string> Backfill(std::string_view job, Micros from, Micros to, Micros step,
                               std::string params = "{}");
  // Queued -> cancelled now; running -> the cancel flag is set and the run ends cancelled.
  Status Cancel(std::string_view run_id);

  Result<RunInfo> GetRun(std::string_view run_id);
  Result<std::vector<RunInfo>> ListRuns(const RunFilter& filter);
  Result<std::vector<AttemptInfo>> ListAttempts(std::string_view run_id);
  // Blocks until the run is terminal in this scheduler (retries included) or `timeout` passes
  // (kDeadlineExceeded), then returns its row.
  Result<RunInfo> WaitForRun(std::string_view run_id, std::chrono::milliseconds timeout);

  void AddListener(RunListener listener);
  // The next cron tick this scheduler will evaluate for `job` (0 if not scheduled / not started).
  Micros NextTick(std::string_view job);
  SchedulerStats stats();

 private:
  std::unique_ptr<internal::SchedulerImpl> impl_;
};

}  // namespace lakeloop::flow
