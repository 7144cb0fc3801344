// The scheduler: in-memory run queues and timers over the flow_* catalog tables (run_store).
// One mutex (mu_) guards all in-memory state; catalog I/O is never done while holding it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/json.h"
#include "flow/flow.h"
#include "flow/internal/run_store.h"

namespace lakeloop::flow {

// ---- Names, clocks, MakeJob ---------------------------------------------------------------------

namespace {
constexpr std::string_view kTriggerNames[] = {"manual", "schedule", "upstream", "backfill",
                                              "retry"};
constexpr std::string_view kStatusNames[] = {"queued", "running", "succeeded", "failed",
                                             "cancelled"};
}  // namespace

std::string_view TriggerName(Trigger t) { return kTriggerNames[static_cast<int>(t)]; }
Result<Trigger> ParseTrigger(std::string_view name) {
  for (int i = 0; i < 5; ++i) {
    if (kTriggerNames[i] == name) return static_cast<Trigger>(i);
  }
  return InvalidArgument("flow: unknown trigger '" + std::string(name) + "'");
}
std::string_view RunStatusName(RunStatus s) { return kStatusNames[static_cast<int>(s)]; }
Result<RunStatus> ParseRunStatus(std::string_view name) {
  for (int i = 0; i < 5; ++i) {
    if (kStatusNames[i] == name) return static_cast<RunStatus>(i);
  }
  return InvalidArgument("flow: unknown run status '" + std::string(name) + "'");
}

Micros SystemClock::Now() { return NowMicros(); }
std::optional<std::chrono::microseconds> SystemClock::RealWait(Micros deadline) {
  constexpr Micros kMaxWait = 60'000'000;  // re-evaluate at least every minute
  Micros d = deadline == INT64_MAX ? kMaxWait : deadline - NowMicros();
  return std::chrono::microseconds(std::clamp<Micros>(d, 0, kMaxWait));
}

int ManualClock::Subscribe(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  subs_.emplace_back(next_token_, std::move(fn));
  return next_token_++;
}
void ManualClock::Unsubscribe(int token) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(subs_, [&](const auto& s) { return s.first == token; });
}
void ManualClock::Set(Micros t) {
  now_.store(t);
  std::lock_guard<std::mutex> lock(mu_);  // held while calling: Unsubscribe waits for callbacks
  for (auto& s : subs_) s.second();
}

namespace {
class FunctionJob : public Job {
 public:
  FunctionJob(std::string name, std::function<Result<RunOutput>(RunContext&)> fn)
      : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  Result<RunOutput> Run(RunContext& ctx) override { return fn_(ctx); }

 private:
  std::string name_;
  std::function<Result<RunOutput>(RunContext&)> fn_;
};
}  // namespace

std::unique_ptr<Job> MakeJob(std::string name, std::function<Result<RunOutput>(RunContext&)> fn) {
  return std::make_unique<FunctionJob>(std::move(name), std::move(fn));
}

std::string UniqueOwner() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) std::snprintf(host, 8, "host");
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + NewUuid().substr(0, 8);
}

// ---- SchedulerImpl ------------------------------------------------------------------------------

namespace internal {

// One attempt in flight. Fields other than `cancel` are guarded by SchedulerImpl::mu_.
struct Execution {
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  int attempt = 1;
  bool started = false;
  Micros started_at = 0;
  Micros deadline = 0;       // 0 = no timeout
  Micros hard_deadline = 0;  // once timed out: abandon the attempt after this
  bool timed_out = false;
  bool shutdown = false;
  bool done = false;  // the outcome was taken (by the worker, or by the dispatcher abandoning it)
};

struct RunState {
  RunInfo info;
  bool in_catalog = false;  // the row exists (else the worker inserts it as running)
  bool ready = false;       // in its job's ready queue
  bool cancel_requested = false;
  std::shared_ptr<Execution> exec;  // set while an attempt is in flight
};

struct JobEntry {
  std::shared_ptr<Job> job;
  JobSpec spec;
  std::optional<Cron> cron;
  int running = 0;  // slots taken (claiming or running)
  std::deque<std::string> ready;
  std::string pending_upstream;  // an upstream run not started yet: absorbs notifications
  bool tick_loaded = false;
  Micros last_tick = 0;  // every tick <= last_tick has been handled (by some scheduler)
  Micros next_tick = 0;
  // RemoveJob was called while a run was in flight: the entry stays (no cron, no triggers, no
  // retries) until its last run returns, then it is erased.
  bool removed = false;
};

struct BackfillState {
  std::string job;
  std::vector<std::string> ids;  // in interval order
  size_t next = 0;               // index of the run allowed to start
  bool stopped = false;
};

Micros Backoff(const RetryPolicy& p, int attempt) {
  Micros d = std::max<Micros>(p.backoff_base, 0);
  for (int i = 1; i < attempt && d < p.backoff_max; ++i) d *= 2;
  return std::min(d, p.backoff_max);
}

class SchedulerImpl {
 public:
  SchedulerImpl(catalog::Store* store, SchedulerOptions options)
      : runs_db_(store), options_(std::move(options)) {
    if (options_.owner.empty()) options_.owner = UniqueOwner();
    if (!options_.clock) {
      own_clock_ = std::make_unique<SystemClock>();
      options_.clock = own_clock_.get();
    }
    clock_ = options_.clock;
    if (!options_.pool) {
      own_pool_ = std::make_unique<ThreadPool>("flow", options_.workers);
      options_.pool = own_pool_.get();
    }
    pool_ = options_.pool;
    clock_token_ = clock_->Subscribe([this] { Wake(); });
  }

  ~SchedulerImpl() {
    Stop();
    clock_->Unsubscribe(clock_token_);
  }

  // Checks a job and its spec; fills `e.cron`.
  static Status Validate(const std::unique_ptr<Job>& job, JobSpec& spec, JobEntry& e) {
    if (!job) return InvalidArgument("flow: null job");
    std::string name = job->name();
    if (name.empty()) return InvalidArgument("flow: a job needs a name");
    if (spec.max_concurrent < 1) return InvalidArgument("flow: " + name + ": max_concurrent < 1");
    if (spec.retry.max_attempts < 1) {
      return InvalidArgument("flow: " + name + ": retry.max_attempts < 1");
    }
    if (spec.max_catch_up_runs < 1) spec.max_catch_up_runs = 1;
    if (!spec.schedule.empty()) {
      auto cron = ParseCron(spec.schedule);
      if (!cron.ok()) return cron.status().WithContext("flow: " + name);
      e.cron = *cron;
    }
    return Status::Ok();
  }

  // Register (`replace` false) or ReplaceJob (`replace` true).
  Status Put(std::unique_ptr<Job> job, JobSpec spec, bool replace) {
    JobEntry e;
    RETURN_IF_ERROR(Validate(job, spec, e));
    std::string name = job->name();
    bool started;
    bool load_schedule = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(name);
      bool live = it != jobs_.end() && !it->second.removed;
      if (replace && !live) return NotFound("flow: no job " + name);
      if (!replace && live) return AlreadyExists("flow: job " + name + " is registered");
      started = started_;
      if (it == jobs_.end()) {
        e.job = std::shared_ptr<Job>(std::move(job));
        e.spec = std::move(spec);
        it = jobs_.emplace(name, std::move(e)).first;
        load_schedule = true;
      } else {
        // In place: runs in flight keep the Job they started with (Execute holds a reference);
        // queued runs, retries and backfills run the new one. The slot count stays.
        JobEntry& j = it->second;
        UnindexTables(name, j);
        bool same_cron = j.cron && e.cron && j.cron->text() == e.cron->text() && !j.removed;
        j.job = std::shared_ptr<Job>(std::move(job));
        j.spec = std::move(spec);
        j.cron = e.cron;
        j.removed = false;
        if (!same_cron) {
          j.tick_loaded = false;
          load_schedule = true;
        }
      }
      for (const auto& t : it->second.spec.upstream_tables) by_table_[t].push_back(name);
    }
    if (started && load_schedule) RETURN_IF_ERROR(LoadSchedule(name));
    if (started) Wake();
    return Status::Ok();
  }

  Status Register(std::unique_ptr<Job> job, JobSpec spec) {
    return Put(std::move(job), std::move(spec), /*replace=*/false);
  }
  Status ReplaceJob(std::unique_ptr<Job> job, JobSpec spec) {
    return Put(std::move(job), std::move(spec), /*replace=*/true);
  }

  Status RemoveJob(std::string_view job_name) {
    std::string name(job_name);
    std::vector<std::string> cancel_rows;
    std::set<std::string> stop_backfills;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(name);
      if (it == jobs_.end() || it->second.removed) return NotFound("flow: no job " + name);
      JobEntry& j = it->second;
      UnindexTables(name, j);
      j.removed = true;
      j.cron.reset();
      j.tick_loaded = false;
      std::vector<std::string> drop;
      for (auto& [id, rs] : runs_) {
        if (rs.info.job != name || rs.exec) continue;  // a run in flight finishes
        if (!rs.info.backfill_id.empty()) {
          stop_backfills.insert(rs.info.backfill_id);
        } else if (rs.in_catalog) {
          cancel_rows.push_back(id);
        }
        drop.push_back(id);
      }
      for (const auto& id : drop) DropQueued(id);
      for (const auto& bid : stop_backfills) {
        auto b = backfills_.find(bid);
        if (b == backfills_.end()) continue;
        b->second.stopped = true;
        bool in_flight = false;
        for (const auto& r : b->second.ids) in_flight |= runs_.count(r) > 0;
        if (!in_flight) backfills_.erase(b);  // else AdvanceBackfillLocked ends it
      }
      if (j.running == 0) jobs_.erase(it);
      ++wake_gen_;
      done_cv_.notify_all();
    }
    cv_.notify_all();
    Micros now = clock_->Now();
    for (const auto& id : cancel_rows) {
      auto r = runs_db_.CancelQueued(id, now, "the job was removed");
      if (!r.ok()) return r.status();
    }
    for (const auto& bid : stop_backfills) {
      auto r = runs_db_.CancelBackfillRest(bid, now, "the job was removed");
      if (!r.ok()) return r.status();
    }
    return Status::Ok();
  }

  std::vector<std::string> JobNames() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [n, j] : jobs_) {
      if (!j.removed) out.push_back(n);
    }
    return out;
  }

  const std::string& owner() const { return options_.owner; }

  Status Start() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (started_) return Status::Ok();
      if (stop_) return Unavailable("flow: scheduler stopped");
    }
    RETURN_IF_ERROR(Recover());
    std::vector<std::string> names;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [n, j] : jobs_) names.push_back(n);
    }
    for (const auto& n : names) RETURN_IF_ERROR(LoadSchedule(n));
    RETURN_IF_ERROR(AdoptQueued());
    std::lock_guard<std::mutex> lock(mu_);
    started_ = true;
    dispatcher_ = std::thread([this] { Loop(); });
    return Status::Ok();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ && !dispatcher_.joinable() && inflight_ == 0) return;
      stop_ = true;
      for (auto& [id, rs] : runs_) {
        if (rs.exec) {
          rs.exec->shutdown = true;
          rs.exec->cancel->store(true);
        }
      }
      ++wake_gen_;
    }
    cv_.notify_all();
    if (dispatcher_.joinable()) dispatcher_.join();
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [this] { return inflight_ == 0; });
    }
    if (own_pool_) own_pool_->Shutdown();
  }

  Status Recover() {
    ASSIGN_OR_RETURN(int64_t n, runs_db_.FailInterrupted(options_.owner, clock_->Now(),
                                                         options_.sole_scheduler));
    if (n > 0) spdlog::warn("flow: {} run(s) interrupted by a restart marked failed", n);
    return Status::Ok();
  }

  Result<std::string> TriggerRun(std::string_view job, std::string params) {
    if (params.empty()) params = "{}";
    if (auto p = ParseJsonObject(params); !p.ok()) {
      return InvalidArgument("flow: params must be a JSON object: " + p.status().message());
    }
    RunInfo r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return Unavailable("flow: scheduler stopped");
      auto it = jobs_.find(std::string(job));
      if (it == jobs_.end() || it->second.removed) {
        return NotFound("flow: no job " + std::string(job));
      }
      r = NewRun(it->first, it->second, Trigger::kManual, clock_->Now());
    }
    r.params = std::move(params);
    RETURN_IF_ERROR(runs_db_.InsertQueued({r}));
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = jobs_.find(r.job);
      if (it == jobs_.end() || it->second.removed) {  // removed meanwhile
        lock.unlock();
        (void)runs_db_.CancelQueued(r.id, clock_->Now(), "the job was removed");
        return NotFound("flow: no job " + r.job);
      }
      RunState& rs = runs_[r.id];
      rs.info = r;
      rs.in_catalog = true;
      rs.ready = true;
      it->second.ready.push_back(r.id);
      ++wake_gen_;
    }
    cv_.notify_all();
    return r.id;
  }

  void NotifyTableCommitted(std::string_view table, int64_t version) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      ++stats_.notifications;
      auto t = by_table_.find(std::string(table));
      if (t == by_table_.end()) return;
      Micros now = clock_->Now();
      for (const auto& name : t->second) {
        JobEntry& j = jobs_[name];
        if (!j.pending_upstream.empty()) {
          auto p = runs_.find(j.pending_upstream);
          if (p != runs_.end() && p->second.ready) {
            ++stats_.notifications_coalesced;
            continue;
          }
        }
        RunInfo r = NewRun(name, j, Trigger::kUpstream, now);
        std::string params;
        JsonWriter w(&params);
        w.BeginObject().Key("table").String(table).Key("version").Int(version).EndObject();
        r.params = std::move(params);
        RunState& rs = runs_[r.id];
        rs.info = std::move(r);
        rs.ready = true;
        j.ready.push_back(rs.info.id);
        j.pending_upstream = rs.info.id;
      }
      ++wake_gen_;
    }
    cv_.notify_all();
  }

  Result<std::string> Backfill(std::string_view job, Micros from, Micros to, Micros step,
                               std::string params) {
    if (step <= 0 || to <= from) {
      return InvalidArgument("flow: backfill needs from < to and step > 0");
    }
    if ((to - from + step - 1) / step > options_.max_backfill_runs) {
      return InvalidArgument("flow: backfill of more than " +
                             std::to_string(options_.max_backfill_runs) + " intervals");
    }
    if (params.empty()) params = "{}";
    if (auto p = ParseJsonObject(params); !p.ok()) {
      return InvalidArgument("flow: params must be a JSON object: " + p.status().message());
    }
    std::string bid = NewUuid();
    std::vector<RunInfo> runs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return Unavailable("flow: scheduler stopped");
      auto it = jobs_.find(std::string(job));
      if (it == jobs_.end() || it->second.removed) {
        return NotFound("flow: no job " + std::string(job));
      }
      Micros now = clock_->Now();
      for (Micros s = from; s < to; s += step) {
        RunInfo r = NewRun(it->first, it->second, Trigger::kBackfill, now);
        r.interval_start = s;
        r.interval_end = std::min(s + step, to);
        r.backfill_id = bid;
        r.params = params;
        runs.push_back(std::move(r));
      }
    }
    RETURN_IF_ERROR(runs_db_.InsertQueued(runs));
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = jobs_.find(std::string(job));
      if (it == jobs_.end() || it->second.removed) {  // removed meanwhile
        lock.unlock();
        (void)runs_db_.CancelBackfillRest(bid, clock_->Now(), "the job was removed");
        return NotFound("flow: no job " + std::string(job));
      }
      BackfillState& bf = backfills_[bid];
      bf.job = std::string(job);
      for (auto& r : runs) {
        bf.ids.push_back(r.id);
        RunState& rs = runs_[r.id];
        rs.info = std::move(r);
        rs.in_catalog = true;
      }
      MakeReady(bf.ids[0]);
      ++wake_gen_;
    }
    cv_.notify_all();
    return bid;
  }

  Status Cancel(std::string_view run_id) {
    std::string id(run_id);
    std::vector<std::string> to_cancel;  // queued rows to mark cancelled
    std::string stop_backfill;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = runs_.find(id);
      if (it != runs_.end()) {
        RunState& rs = it->second;
        if (rs.exec) {
          rs.cancel_requested = true;
          rs.exec->cancel->store(true);
          return Status::Ok();
        }
        if (!rs.info.backfill_id.empty()) {
          stop_backfill = rs.info.backfill_id;
          auto b = backfills_.find(stop_backfill);
          if (b != backfills_.end()) {
            b->second.stopped = true;
            for (const auto& bid_run : b->second.ids) {
              auto r = runs_.find(bid_run);
              if (r != runs_.end() && !r->second.exec) DropQueued(bid_run);
            }
          }
        } else {
          if (rs.in_catalog) to_cancel.push_back(id);
          DropQueued(id);
        }
        done_cv_.notify_all();
      } else {
        to_cancel.push_back(id);
      }
    }
    Micros now = clock_->Now();
    if (!stop_backfill.empty()) {
      return runs_db_.CancelBackfillRest(stop_backfill, now, "cancelled").status();
    }
    ASSIGN_OR_RETURN(bool done, runs_db_.CancelQueued(id, now, "cancelled"));
    if (done) return Status::Ok();
    ASSIGN_OR_RETURN(RunInfo r, runs_db_.Get(id));
    if (IsTerminal(r.status)) return Conflict("flow: run " + id + " already finished");
    return Conflict("flow: run " + id + " is running in another scheduler (" + r.owner + ")");
  }

  Result<RunInfo> WaitForRun(std::string_view run_id, std::chrono::milliseconds timeout) {
    std::string id(run_id);
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!done_cv_.wait_for(lock, timeout, [&] { return !runs_.count(id); })) {
        return Status(Code::kDeadlineExceeded, "flow: run " + id + " still active");
      }
    }
    return runs_db_.Get(id);
  }

  void AddListener(RunListener l) {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listeners_.push_back(std::move(l));
  }

  Micros NextTick(std::string_view job) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(std::string(job));
    if (it == jobs_.end() || !it->second.tick_loaded) return 0;
    return it->second.next_tick;
  }

  SchedulerStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  RunStore& db() { return runs_db_; }

 private:
  RunInfo NewRun(const std::string& name, const JobEntry& j, Trigger trigger, Micros now) {
    RunInfo r;
    r.id = NewUuid();
    r.job = name;
    r.trigger = trigger;
    r.status = RunStatus::kQueued;
    r.attempt = 1;
    r.max_attempts = j.spec.retry.max_attempts;
    r.queued_at = now;
    return r;
  }

  void Wake() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++wake_gen_;
    }
    cv_.notify_all();
  }

  // mu_ held. Queues a known run for dispatch (retries go first).
  void MakeReady(const std::string& id, bool front = false) {
    RunState& rs = runs_[id];
    rs.ready = true;
    auto& q = jobs_[rs.info.job].ready;
    if (front)
      q.push_front(id);
    else
      q.push_back(id);
  }

  // mu_ held. Forgets a run that is not in flight.
  void DropQueued(const std::string& id) {
    auto it = runs_.find(id);
    if (it == runs_.end()) return;
    auto j = jobs_.find(it->second.info.job);
    if (j != jobs_.end()) {
      std::erase(j->second.ready, id);
      if (j->second.pending_upstream == id) j->second.pending_upstream.clear();
    }
    retry_timers_.erase({it->second.info.not_before, id});
    runs_.erase(it);
  }

  // mu_ held. Removes `name` from the upstream-table index.
  void UnindexTables(const std::string& name, const JobEntry& j) {
    for (const auto& t : j.spec.upstream_tables) {
      auto it = by_table_.find(t);
      if (it == by_table_.end()) continue;
      std::erase(it->second, name);
      if (it->second.empty()) by_table_.erase(it);
    }
  }

  Status LoadSchedule(const std::string& name) {
    std::optional<Cron> cron;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(name);
      if (it != jobs_.end()) cron = it->second.cron;
    }
    if (!cron) return Status::Ok();
    ASSIGN_OR_RETURN(Micros last, runs_db_.LoadLastTick(name, clock_->Now()));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(name);
    // Removed or rescheduled meanwhile: whoever changed it loads its own schedule.
    if (it == jobs_.end() || !it->second.cron || it->second.cron->text() != cron->text()) {
      return Status::Ok();
    }
    JobEntry& j = it->second;
    j.last_tick = last;
    j.next_tick = cron->NextAfter(last);
    j.tick_loaded = true;
    return Status::Ok();
  }

  // Takes over queued rows of registered jobs (left by a previous process, or by Stop).
  Status AdoptQueued() {
    ASSIGN_OR_RETURN(std::vector<RunInfo> rows, runs_db_.QueuedRuns());
    std::lock_guard<std::mutex> lock(mu_);
    Micros now = clock_->Now();
    std::map<std::string, std::vector<RunInfo>> backfills;
    for (auto& r : rows) {
      if (!jobs_.count(r.job) || runs_.count(r.id)) continue;
      if (!r.backfill_id.empty()) {
        if (!backfills_.count(r.backfill_id)) backfills[r.backfill_id].push_back(std::move(r));
        continue;
      }
      AdoptOne(std::move(r), now);
    }
    for (auto& [bid, list] : backfills) {
      std::sort(list.begin(), list.end(), [](const RunInfo& a, const RunInfo& b) {
        return a.interval_start < b.interval_start;
      });
      BackfillState& bf = backfills_[bid];
      bf.job = list[0].job;
      for (const auto& r : list) bf.ids.push_back(r.id);
      for (size_t i = 0; i < list.size(); ++i) {
        RunState& rs = runs_[list[i].id];
        rs.info = list[i];
        rs.in_catalog = true;
      }
      std::string first = bf.ids[0];
      RunState& rs = runs_[first];
      if (rs.info.not_before > now)
        retry_timers_.insert({rs.info.not_before, first});
      else
        MakeReady(first);
    }
    return Status::Ok();
  }

  void AdoptOne(RunInfo r, Micros now) {
    std::string id = r.id;
    RunState& rs = runs_[id];
    rs.info = std::move(r);
    rs.in_catalog = true;
    if (rs.info.not_before > now)
      retry_timers_.insert({rs.info.not_before, id});
    else
      MakeReady(id);
  }

  // ---- dispatcher ----

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      uint64_t seen = wake_gen_;
      Micros now = clock_->Now();

      // 1. Cron ticks due (catalog I/O outside the lock, then re-evaluate).
      std::vector<std::string> due;
      for (auto& [name, j] : jobs_) {
        if (j.cron && j.tick_loaded && j.next_tick <= now) due.push_back(name);
      }
      if (!due.empty()) {
        lock.unlock();
        for (const auto& name : due) FireTicks(name, now);
        lock.lock();
        continue;
      }

      // 2. Retries whose backoff passed.
      while (!retry_timers_.empty() && retry_timers_.begin()->first <= now) {
        std::string id = retry_timers_.begin()->second;
        retry_timers_.erase(retry_timers_.begin());
        if (runs_.count(id)) MakeReady(id, /*front=*/true);
      }

      // 3. Timeouts: cancel at the deadline; abandon after the grace period.
      std::vector<std::pair<std::string, std::shared_ptr<Execution>>> abandon;
      for (auto& [id, rs] : runs_) {
        auto& e = rs.exec;
        if (!e || !e->started || e->done || e->deadline == 0) continue;
        if (!e->timed_out && now >= e->deadline) {
          e->timed_out = true;
          e->hard_deadline = e->deadline + options_.cancel_grace;
          e->cancel->store(true);
        }
        if (e->timed_out && now >= e->hard_deadline) {
          e->done = true;
          abandon.emplace_back(id, e);
        }
      }
      if (!abandon.empty()) {
        std::vector<std::pair<std::string, AttemptResult>> results;
        for (auto& [id, e] : abandon) {
          results.emplace_back(id, Decide(runs_[id], *e, Status(Code::kDeadlineExceeded, ""), now,
                                          /*abandoned=*/true));
        }
        lock.unlock();
        for (size_t i = 0; i < abandon.size(); ++i) {
          Complete(abandon[i].first, abandon[i].second, std::move(results[i].second));
        }
        lock.lock();
        continue;
      }

      // 4. Start what the concurrency limits allow.
      for (auto& [name, j] : jobs_) {
        while (j.running < j.spec.max_concurrent && !j.ready.empty()) {
          std::string id = j.ready.front();
          j.ready.pop_front();
          auto it = runs_.find(id);
          if (it == runs_.end()) continue;
          RunState& rs = it->second;
          rs.ready = false;
          if (j.pending_upstream == id) j.pending_upstream.clear();
          auto e = std::make_shared<Execution>();
          e->attempt = rs.info.attempt;
          rs.exec = e;
          ++j.running;
          ++inflight_;
          if (!pool_->Submit([this, id, e] { Execute(id, e); })) {
            --j.running;
            --inflight_;
            rs.exec.reset();
            MakeReady(id, true);
            break;
          }
        }
      }

      // 5. Runs that must wait for a slot become visible (queued rows).
      std::vector<RunInfo> persist;
      for (auto& [name, j] : jobs_) {
        for (const auto& id : j.ready) {
          RunState& rs = runs_[id];
          if (!rs.in_catalog) persist.push_back(rs.info);
        }
      }
      if (!persist.empty() && now >= persist_retry_at_) {
        lock.unlock();
        Status st = runs_db_.InsertQueued(persist);
        std::vector<std::string> orphans;
        lock.lock();
        if (!st.ok()) {
          spdlog::error("flow: recording queued runs: {}", st.ToString());
          persist_retry_at_ = now + 1'000'000;
        } else {
          for (const auto& r : persist) {
            auto it = runs_.find(r.id);
            if (it == runs_.end())
              orphans.push_back(r.id);  // cancelled meanwhile
            else
              it->second.in_catalog = true;
          }
        }
        if (!orphans.empty()) {
          lock.unlock();
          for (const auto& id : orphans) (void)runs_db_.CancelQueued(id, now, "cancelled");
          lock.lock();
        }
        continue;
      }

      // 6. Leases of running runs.
      if (now >= next_renew_) {
        lock.unlock();
        Status st = runs_db_.RenewLeases(options_.owner, now, now + options_.lease);
        if (!st.ok()) spdlog::error("flow: renewing leases: {}", st.ToString());
        lock.lock();
        next_renew_ = now + std::max<Micros>(options_.lease / 3, 1000);
        continue;
      }

      // 7. Sleep until the next timer or a wake-up.
      Micros wake = next_renew_;
      for (auto& [name, j] : jobs_) {
        if (j.cron && j.tick_loaded) wake = std::min(wake, j.next_tick);
      }
      if (!retry_timers_.empty()) wake = std::min(wake, retry_timers_.begin()->first);
      if (persist_retry_at_ > now) wake = std::min(wake, persist_retry_at_);
      for (auto& [id, rs] : runs_) {
        auto& e = rs.exec;
        if (!e || !e->started || e->done || e->deadline == 0) continue;
        wake = std::min(wake, e->timed_out ? e->hard_deadline : e->deadline);
      }
      auto pred = [&] { return stop_ || wake_gen_ != seen; };
      auto real = clock_->RealWait(wake);
      if (real)
        cv_.wait_for(lock, *real, pred);
      else
        cv_.wait(lock, pred);
    }
  }

  // Handles the ticks of `name` in (last_tick, now] per the catch-up policy, claiming them with a
  // compare-and-swap on flow_schedule_state so that one scheduler among those sharing the catalog
  // turns them into runs.
  void FireTicks(const std::string& name, Micros now) {
    for (int round = 0; round < 3; ++round) {
      Cron cron;
      JobSpec spec;
      Micros last;
      RunInfo proto;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = jobs_.find(name);
        if (it == jobs_.end() || !it->second.cron || !it->second.tick_loaded) return;
        JobEntry& j = it->second;
        cron = *j.cron;
        spec = j.spec;
        last = j.last_tick;
        proto = NewRun(name, j, Trigger::kSchedule, now);
      }
      Micros latest = cron.PrevBefore(now + 1);  // the last tick <= now
      std::vector<Micros> ticks;
      if (latest > last) {
        switch (spec.catch_up) {
          case CatchUp::kNone:
            if (now - latest <= options_.misfire_grace) ticks.push_back(latest);
            break;
          case CatchUp::kLatest:
            ticks.push_back(latest);
            break;
          case CatchUp::kAll:
            for (Micros t = latest;
                 t > last && static_cast<int>(ticks.size()) < spec.max_catch_up_runs;
                 t = cron.PrevBefore(t)) {
              ticks.push_back(t);
            }
            std::reverse(ticks.begin(), ticks.end());
            break;
        }
      }
      std::vector<RunInfo> runs;
      for (Micros t : ticks) {
        RunInfo r = proto;
        r.id = NewUuid();
        r.scheduled_tick = t;
        r.interval_start = cron.PrevBefore(t);
        r.interval_end = t;
        runs.push_back(std::move(r));
      }
      Micros actual = last;
      Result<bool> won = latest > last ? runs_db_.AdvanceTick(name, last, latest, runs, &actual)
                                       : Result<bool>(true);
      std::unique_lock<std::mutex> lock(mu_);
      // The claimed tick's runs are in the catalog: make them ready here (mu_ held).
      auto adopt = [&] {
        for (auto& r : runs) {
          std::string id = r.id;
          RunState& rs = runs_[id];
          rs.info = std::move(r);
          rs.in_catalog = true;
          MakeReady(id);
        }
      };
      auto jt = jobs_.find(name);
      if (jt == jobs_.end() || !jt->second.cron || jt->second.cron->text() != cron.text()) {
        // Removed or rescheduled while the tick was being claimed: the runs it queued run (the
        // job still exists) or are cancelled (it was removed).
        if (!won.ok() || !*won) return;
        if (jt != jobs_.end() && !jt->second.removed) {
          adopt();
          return;
        }
        lock.unlock();
        for (const auto& r : runs) (void)runs_db_.CancelQueued(r.id, now, "the job was removed");
        return;
      }
      JobEntry& j = jt->second;
      if (!won.ok()) {
        spdlog::error("flow: cron tick of {}: {}", name, won.status().ToString());
        j.next_tick = now + 1'000'000;  // try again in a second
        return;
      }
      j.last_tick = std::max(j.last_tick, actual);
      if (*won) {
        stats_.ticks_fired += static_cast<int64_t>(runs.size());
        adopt();
        j.next_tick = cron.NextAfter(std::max(now, j.last_tick));
        return;
      }
      ++stats_.ticks_taken_by_peer;
      if (j.last_tick >= latest) {
        j.next_tick = cron.NextAfter(std::max(now, j.last_tick));
        return;
      }
      // A peer handled only older ticks: evaluate again from where it left off.
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = jobs_.find(name); it != jobs_.end()) it->second.next_tick = now + 1'000'000;
  }

  // Decides the outcome of an attempt. mu_ held.
  AttemptResult Decide(const RunState& rs, const Execution& e, const Result<RunOutput>& res,
                       Micros finished, bool abandoned) {
    AttemptResult a;
    a.started_at = e.started_at;
    a.finished_at = finished;
    const JobSpec& spec = jobs_[rs.info.job].spec;
    if (e.shutdown) {
      a.status = RunStatus::kFailed;
      a.error_code = Code::kUnavailable;
      a.error = "interrupted by shutdown";
    } else if (e.timed_out) {
      a.status = RunStatus::kFailed;
      a.error_code = Code::kDeadlineExceeded;
      a.error = "timed out after " + std::to_string(spec.timeout / 1000) + " ms" +
                (abandoned ? " (the job did not return after cancellation)" : "");
    } else if (rs.cancel_requested) {
      a.status = RunStatus::kCancelled;
      a.error_code = Code::kCancelled;
      a.error = "cancelled";
    } else if (!res.ok()) {
      a.status = RunStatus::kFailed;
      a.error_code = res.status().code();
      a.error = res.status().message();
    } else {
      a.status = RunStatus::kSucceeded;
      a.output = res.value();
    }
    if (a.status == RunStatus::kFailed && !e.shutdown && e.attempt < rs.info.max_attempts &&
        !jobs_[rs.info.job].removed) {
      a.status = RunStatus::kQueued;
      a.retry_at = finished + Backoff(spec.retry, e.attempt);
    }
    return a;
  }

  // ---- workers ----

  void Execute(const std::string& id, std::shared_ptr<Execution> e) {
    RunInfo info;
    std::shared_ptr<Job> job;
    Micros timeout = 0;
    bool in_catalog = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = runs_.find(id);
      if (stop_ || it == runs_.end()) {
        if (it != runs_.end()) it->second.exec.reset();  // stays queued for the next start
        ReleaseSlot(it == runs_.end() ? std::string() : it->second.info.job);
        FinishTask();
        return;
      }
      info = it->second.info;
      in_catalog = it->second.in_catalog;
      JobEntry& j = jobs_[info.job];
      job = j.job;
      timeout = j.spec.timeout;
    }
    Micros now = clock_->Now();
    Micros lease = now + options_.lease;
    info.started_at = now;
    info.status = RunStatus::kRunning;
    info.owner = options_.owner;
    Status st;
    bool won = true;
    if (in_catalog) {
      auto r = runs_db_.Claim(id, e->attempt, options_.owner, now, lease);
      if (!r.ok())
        st = r.status();
      else
        won = *r;
    } else {
      st = runs_db_.InsertRunning(info, options_.owner, lease);
    }
    if (!st.ok() || !won) {
      if (!st.ok()) spdlog::error("flow: starting run {}: {}", id, st.ToString());
      std::lock_guard<std::mutex> lock(mu_);
      if (!won) ++stats_.claims_lost;  // on an error the row stays as it was (adopted later)
      AdvanceBackfillLocked(info, /*succeeded=*/false);
      runs_.erase(id);
      ReleaseSlot(info.job);
      done_cv_.notify_all();
      FinishTask();
      return;
    }
    RunContext ctx;
    {
      std::lock_guard<std::mutex> lock(mu_);
      RunState& rs = runs_[id];
      rs.in_catalog = true;
      rs.info.status = RunStatus::kRunning;
      rs.info.started_at = now;
      rs.info.owner = options_.owner;
      e->started = true;
      e->started_at = now;
      e->deadline = timeout > 0 ? now + timeout : 0;
      ++stats_.runs_started;
      ++wake_gen_;
      ctx.deadline = e->deadline;
    }
    cv_.notify_all();
    Emit({RunEventKind::kStarted, info, {}});

    ctx.run_id = id;
    ctx.job = info.job;
    ctx.attempt = e->attempt;
    ctx.trigger = e->attempt > 1 ? Trigger::kRetry : info.trigger;
    ctx.interval_start = info.interval_start;
    ctx.interval_end = info.interval_end;
    ctx.params = info.params;
    ctx.cancel_flag = e->cancel;
    Result<RunOutput> res = Status(Code::kInternal, "flow: job did not run");
    try {
      res = job->Run(ctx);
    } catch (const std::exception& ex) {
      res = Internal(std::string("flow: job threw: ") + ex.what());
    } catch (...) {
      res = Internal("flow: job threw");
    }
    CrashPoint("flow.job_returned");
    Micros finished = clock_->Now();
    AttemptResult a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (e->done) {  // abandoned after a timeout; its outcome was recorded already
        FinishTask();
        return;
      }
      e->done = true;
      a = Decide(runs_[id], *e, res, finished, false);
    }
    Complete(id, e, std::move(a));
    std::lock_guard<std::mutex> lock(mu_);
    FinishTask();
  }

  // Records an attempt's outcome, tells the listeners, then updates the queues. Not under mu_.
  void Complete(const std::string& id, const std::shared_ptr<Execution>& e, AttemptResult a) {
    RunInfo info;
    std::string cancel_rest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      RunState& rs = runs_[id];
      info = rs.info;
      if (a.status != RunStatus::kQueued && a.status != RunStatus::kSucceeded &&
          !info.backfill_id.empty()) {
        cancel_rest = info.backfill_id;
      }
    }
    Status st = runs_db_.FinishAttempt(id, e->attempt, options_.owner, a);
    if (!st.ok()) spdlog::error("flow: recording run {}: {}", id, st.ToString());
    CrashPoint("flow.finished");
    Micros now = clock_->Now();
    if (!cancel_rest.empty()) {
      auto n = runs_db_.CancelBackfillRest(cancel_rest, now, "an earlier interval failed");
      if (!n.ok()) spdlog::error("flow: stopping backfill: {}", n.status().ToString());
    }
    info.status = a.status;
    info.error_code = a.error_code;
    info.error = a.error;
    if (a.status == RunStatus::kQueued) {
      info.attempt = e->attempt + 1;
      info.not_before = a.retry_at;
    } else {
      info.finished_at = a.finished_at;
      info.rows_in = a.output.rows_in;
      info.rows_out = a.output.rows_out;
      info.rows_rejected = a.output.rows_rejected;
      info.detail = a.output.detail.empty() ? "{}" : a.output.detail;
      info.output_tables = a.output.output_tables;
    }
    Emit({a.status == RunStatus::kQueued ? RunEventKind::kRetrying : RunEventKind::kFinished, info,
          a.output});
    bool cancel_retry = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      RunState& rs = runs_[id];
      rs.exec.reset();
      rs.info = info;
      if (a.status == RunStatus::kQueued) {
        ++stats_.attempts_failed;
        if (rs.cancel_requested) {  // cancelled as the attempt ended: no retry
          cancel_retry = true;
          runs_.erase(id);
        } else {
          retry_timers_.insert({info.not_before, id});
        }
      } else {
        if (a.status == RunStatus::kFailed) ++stats_.attempts_failed;
        ++stats_.runs_finished;
        AdvanceBackfillLocked(info, a.status == RunStatus::kSucceeded);
        runs_.erase(id);
      }
      ReleaseSlot(info.job);
      done_cv_.notify_all();
    }
    if (cancel_retry) (void)runs_db_.CancelQueued(id, clock_->Now(), "cancelled");
  }

  // mu_ held. After a backfill run ended: the next interval may start, or the rest is dropped.
  void AdvanceBackfillLocked(const RunInfo& info, bool succeeded) {
    if (info.backfill_id.empty()) return;
    auto b = backfills_.find(info.backfill_id);
    if (b == backfills_.end()) return;
    BackfillState& bf = b->second;
    if (succeeded && !bf.stopped && bf.next + 1 < bf.ids.size()) {
      ++bf.next;
      if (runs_.count(bf.ids[bf.next])) {
        MakeReady(bf.ids[bf.next]);
        return;
      }
    }
    for (size_t i = bf.next + 1; i < bf.ids.size(); ++i) DropQueued(bf.ids[i]);
    backfills_.erase(b);
  }

  // mu_ held.
  void ReleaseSlot(const std::string& job) {
    if (auto it = jobs_.find(job); it != jobs_.end()) {
      --it->second.running;
      if (it->second.removed && it->second.running == 0) jobs_.erase(it);
    }
    ++wake_gen_;
    cv_.notify_all();
  }
  // mu_ held. The last thing a pool task does.
  void FinishTask() {
    --inflight_;
    done_cv_.notify_all();
  }

  void Emit(const RunEvent& ev) {
    std::vector<RunListener> ls;
    {
      std::lock_guard<std::mutex> lock(listeners_mu_);
      ls = listeners_;
    }
    for (auto& l : ls) l(ev);
  }

  RunStore runs_db_;
  SchedulerOptions options_;
  std::unique_ptr<Clock> own_clock_;
  Clock* clock_;
  std::unique_ptr<ThreadPool> own_pool_;
  ThreadPool* pool_;
  int clock_token_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;       // wakes the dispatcher
  std::condition_variable done_cv_;  // runs ended, tasks drained
  uint64_t wake_gen_ = 0;
  bool started_ = false;
  bool stop_ = false;
  int64_t inflight_ = 0;  // pool tasks not finished
  std::map<std::string, JobEntry> jobs_;
  std::unordered_map<std::string, std::vector<std::string>> by_table_;
  std::unordered_map<std::string, RunState> runs_;  // active (not terminal) runs
  std::set<std::pair<Micros, std::string>> retry_timers_;
  std::unordered_map<std::string, BackfillState> backfills_;
  Micros next_renew_ = 0;
  Micros persist_retry_at_ = 0;
  SchedulerStats stats_;
  std::thread dispatcher_;

  std::mutex listeners_mu_;
  std::vector<RunListener> listeners_;
};

}  // namespace internal

// ---- Scheduler ----------------------------------------------------------------------------------

Scheduler::Scheduler(catalog::Store* store, SchedulerOptions options)
    : impl_(std::make_unique<internal::SchedulerImpl>(store, std::move(options))) {}
Scheduler::~Scheduler() = default;
std::vector<catalog::Migration> Scheduler::Migrations() { return internal::FlowMigrations(); }
Status Scheduler::Register(std::unique_ptr<Job> job, JobSpec spec) {
  return impl_->Register(std::move(job), std::move(spec));
}
Status Scheduler::ReplaceJob(std::unique_ptr<Job> job, JobSpec spec) {
  return impl_->ReplaceJob(std::move(job), std::move(spec));
}
Status Scheduler::RemoveJob(std::string_view job) { return impl_->RemoveJob(job); }
std::vector<std::string> Scheduler::JobNames() { return impl_->JobNames(); }
const std::string& Scheduler::owner() const { return impl_->owner(); }
Status Scheduler::Start() { return impl_->Start(); }
void Scheduler::Stop() { impl_->Stop(); }
Status Scheduler::Recover() { return impl_->Recover(); }
Result<std::string> Scheduler::Trigger(std::string_view job, std::string params) {
  return impl_->TriggerRun(job, std::move(params));
}
void Scheduler::NotifyTableCommitted(std::string_view table, int64_t version) {
  impl_->NotifyTableCommitted(table, version);
}
Result<std::string> Scheduler::Backfill(std::string_view job, Micros from, Micros to, Micros step,
                                        std::string params) {
  return impl_->Backfill(job, from, to, step, std::move(params));
}
Status Scheduler::Cancel(std::string_view run_id) { return impl_->Cancel(run_id); }
Result<RunInfo> Scheduler::GetRun(std::string_view run_id) {
  return impl_->db().Get(std::string(run_id));
}
Result<std::vector<RunInfo>> Scheduler::ListRuns(const RunFilter& filter) {
  return impl_->db().List(filter);
}
Result<std::vector<AttemptInfo>> Scheduler::ListAttempts(std::string_view run_id) {
  return impl_->db().Attempts(std::string(run_id));
}
Result<RunInfo> Scheduler::WaitForRun(std::string_view run_id, std::chrono::milliseconds timeout) {
  return impl_->WaitForRun(run_id, timeout);
}
void Scheduler::AddListener(RunListener listener) { impl_->AddListener(std::move(listener)); }
Micros Scheduler::NextTick(std::string_view job) { return impl_->NextTick(job); }
SchedulerStats Scheduler::stats() { return impl_->stats(); }

}  // namespace lakeloop::flow
