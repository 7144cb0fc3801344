#include "flow/internal/run_store.h"

#include "core/crash_point.h"
#include "core/json.h"

namespace lakeloop::flow::internal {
namespace {

using catalog::Rows;
using catalog::Value;

constexpr std::string_view kColumns =
    "id, job, trigger, status, attempt, max_attempts, interval_start, interval_end, queued_at, "
    "not_before, started_at, finished_at, rows_in, rows_out, rows_rejected, error_code, error, "
    "detail, params, output_tables, backfill_id, scheduled_tick, owner";

constexpr std::string_view kInsert =
    "INSERT INTO flow_runs (id, job, trigger, status, attempt, max_attempts, interval_start, "
    "interval_end, queued_at, not_before, started_at, params, backfill_id, scheduled_tick, owner, "
    "lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

Code CodeFromName(std::string_view name) {
  if (name.empty()) return Code::kOk;
  for (int i = 0; i <= static_cast<int>(Code::kInternal); ++i) {
    if (CodeName(static_cast<Code>(i)) == name) return static_cast<Code>(i);
  }
  return Code::kInternal;
}

std::string TablesJson(const std::vector<std::string>& tables) {
  std::string out;
  JsonWriter w(&out);
  w.BeginArray();
  for (const auto& t : tables) w.String(t);
  w.EndArray();
  return out;
}

std::vector<std::string> ParseTables(const std::string& json) {
  std::vector<std::string> out;
  auto v = ParseJson(json);
  if (!v.ok() || !v->is_array()) return out;
  for (const auto& e : v->as_array()) {
    if (e.is_string()) out.emplace_back(e.as_string().c_str());
  }
  return out;
}

RunInfo FromRow(const Rows& r, size_t i) {
  RunInfo x;
  x.id = r.Text(i, 0);
  x.job = r.Text(i, 1);
  x.trigger = ParseTrigger(r.Text(i, 2)).ok() ? *ParseTrigger(r.Text(i, 2)) : Trigger::kManual;
  auto st = ParseRunStatus(r.Text(i, 3));
  x.status = st.ok() ? *st : RunStatus::kFailed;
  x.attempt = static_cast<int>(r.Int(i, 4));
  x.max_attempts = static_cast<int>(r.Int(i, 5));
  x.interval_start = r.Int(i, 6);
  x.interval_end = r.Int(i, 7);
  x.queued_at = r.Int(i, 8);
  x.not_before = r.Int(i, 9);
  x.started_at = r.Int(i, 10);
  x.finished_at = r.Int(i, 11);
  x.rows_in = r.Int(i, 12);
  x.rows_out = r.Int(i, 13);
  x.rows_rejected = r.Int(i, 14);
  x.error_code = CodeFromName(r.Text(i, 15));
  x.error = r.Text(i, 16);
  x.detail = r.Text(i, 17);
  x.params = r.Text(i, 18);
  x.output_tables = ParseTables(r.Text(i, 19));
  x.backfill_id = r.Text(i, 20);
  x.scheduled_tick = r.Int(i, 21);
  x.owner = r.Text(i, 22);
  return x;
}

std::vector<Value> InsertParams(const RunInfo& r, RunStatus status, const std::string& owner,
                                Micros lease_expires) {
  return {r.id,
          r.job,
          std::string(TriggerName(r.trigger)),
          std::string(RunStatusName(status)),
          int64_t{r.attempt},
          int64_t{r.max_attempts},
          r.interval_start,
          r.interval_end,
          r.queued_at,
          r.not_before,
          status == RunStatus::kRunning ? r.started_at : int64_t{0},
          r.params,
          r.backfill_id,
          r.scheduled_tick,
          owner,
          lease_expires};
}

}  // namespace

std::vector<catalog::Migration> FlowMigrations() {
  return {{"flow", 1,
           "CREATE TABLE flow_runs ("
           " id TEXT PRIMARY KEY, job TEXT NOT NULL, trigger TEXT NOT NULL, status TEXT NOT NULL,"
           " attempt BIGINT NOT NULL, max_attempts BIGINT NOT NULL,"
           " interval_start BIGINT NOT NULL DEFAULT 0, interval_end BIGINT NOT NULL DEFAULT 0,"
           " queued_at BIGINT NOT NULL, not_before BIGINT NOT NULL DEFAULT 0,"
           " started_at BIGINT NOT NULL DEFAULT 0, finished_at BIGINT NOT NULL DEFAULT 0,"
           " rows_in BIGINT NOT NULL DEFAULT 0, rows_out BIGINT NOT NULL DEFAULT 0,"
           " rows_rejected BIGINT NOT NULL DEFAULT 0, error_code TEXT NOT NULL DEFAULT '',"
           " error TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}',"
           " params TEXT NOT NULL DEFAULT '{}', output_tables TEXT NOT NULL DEFAULT '[]',"
           " backfill_id TEXT NOT NULL DEFAULT '', scheduled_tick BIGINT NOT NULL DEFAULT 0,"
           " owner TEXT NOT NULL DEFAULT '', lease_expires_at BIGINT NOT NULL DEFAULT 0);"
           "CREATE INDEX flow_runs_job ON flow_runs (job, queued_at);"
           "CREATE INDEX flow_runs_queued_at ON flow_runs (queued_at);"
           "CREATE INDEX flow_runs_status ON flow_runs (status);"
           "CREATE INDEX flow_runs_backfill ON flow_runs (backfill_id, interval_start);"
           "CREATE TABLE flow_attempts ("
           " run_id TEXT NOT NULL, attempt BIGINT NOT NULL, status TEXT NOT NULL,"
           " started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL,"
           " error_code TEXT NOT NULL, error TEXT NOT NULL, PRIMARY KEY (run_id, attempt));"
           "CREATE TABLE flow_schedule_state ("
           " job TEXT PRIMARY KEY, last_tick BIGINT NOT NULL, updated_at BIGINT NOT NULL)"}};
}

Status RunStore::InsertQueued(const std::vector<RunInfo>& runs) {
  if (runs.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  for (const auto& r : runs) {
    RETURN_IF_ERROR(txn->Exec(kInsert, InsertParams(r, RunStatus::kQueued, "", 0)));
  }
  return txn->Commit();
}

Status RunStore::InsertRunning(const RunInfo& run, const std::string& owner, Micros lease_exp) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(txn->Exec(kInsert, InsertParams(run, RunStatus::kRunning, owner, lease_exp)));
  return txn->Commit();
}

Result<bool> RunStore::Claim(const std::string& id, int attempt, const std::string& owner,
                             Micros now, Micros lease_exp) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE flow_runs SET status = 'running', owner = ?, "
                "lease_expires_at = ?, started_at = ?, attempt = ? "
                "WHERE id = ? AND status = 'queued'",
                {owner, lease_exp, now, int64_t{attempt}, id}));
  bool won = txn->Changes() == 1;
  if (!won) return false;
  RETURN_IF_ERROR(txn->Commit());
  CrashPoint("flow.claimed");
  return true;
}

Status RunStore::FinishAttempt(const std::string& id, int attempt, const std::string& owner,
                               const AttemptResult& r) {
  RunStatus attempt_status = r.status == RunStatus::kQueued ? RunStatus::kFailed : r.status;
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(txn->Exec(
      "INSERT INTO flow_attempts (run_id, attempt, status, started_at, finished_at, error_code, "
      "error) VALUES (?, ?, ?, ?, ?, ?, ?)",
      {id, int64_t{attempt}, std::string(RunStatusName(attempt_status)), r.started_at,
       r.finished_at,
       r.error_code == Code::kOk ? std::string() : std::string(CodeName(r.error_code)), r.error}));
  if (r.status == RunStatus::kQueued) {
    RETURN_IF_ERROR(txn->Exec(
        "UPDATE flow_runs SET status = 'queued', attempt = ?, not_before = ?, owner = '', "
        "lease_expires_at = 0, error_code = ?, error = ? WHERE id = ? AND status = 'running' AND "
        "owner = ?",
        {int64_t{attempt + 1}, r.retry_at, std::string(CodeName(r.error_code)), r.error, id,
         owner}));
  } else {
    std::string detail = r.output.detail.empty() ? "{}" : r.output.detail;
    RETURN_IF_ERROR(
        txn->Exec("UPDATE flow_runs SET status = ?, finished_at = ?, rows_in = ?, rows_out = ?, "
                  "rows_rejected = ?, error_code = ?, error = ?, detail = ?, output_tables = ?, "
                  "lease_expires_at = 0 WHERE id = ? AND status = 'running' AND owner = ?",
                  {std::string(RunStatusName(r.status)), r.finished_at, r.output.rows_in,
                   r.output.rows_out, r.output.rows_rejected,
                   r.error_code == Code::kOk ? std::string() : std::string(CodeName(r.error_code)),
                   r.error, detail, TablesJson(r.output.output_tables), id, owner}));
  }
  if (txn->Changes() != 1) {
    return Conflict("flow: run " + id + " is no longer running under " + owner);
  }
  return txn->Commit();
}

Result<bool> RunStore::CancelQueued(const std::string& id, Micros now, const std::string& why) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE flow_runs SET status = 'cancelled', finished_at = ?, "
                "error_code = 'cancelled', error = ? WHERE id = ? AND status = 'queued'",
                {now, why, id}));
  bool done = txn->Changes() == 1;
  RETURN_IF_ERROR(txn->Commit());
  return done;
}

Result<int64_t> RunStore::CancelBackfillRest(const std::string& backfill_id, Micros now,
                                             const std::string& why) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE flow_runs SET status = 'cancelled', finished_at = ?, "
                "error_code = 'cancelled', error = ? WHERE backfill_id = ? AND "
                "status = 'queued'",
                {now, why, backfill_id}));
  int64_t n = txn->Changes();
  RETURN_IF_ERROR(txn->Commit());
  return n;
}

Status RunStore::RenewLeases(const std::string& owner, Micros now, Micros lease_exp) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE flow_runs SET lease_expires_at = ? WHERE owner = ? AND "
                "status = 'running'",
                {lease_exp, owner}));
  RETURN_IF_ERROR(txn->Exec(
      "UPDATE flow_runs SET status = 'failed', finished_at = ?, error_code = 'unavailable', "
      "error = 'interrupted: the lease of its scheduler expired' WHERE status = 'running' AND "
      "owner <> ? AND lease_expires_at < ?",
      {now, owner, now}));
  return txn->Commit();
}

Result<int64_t> RunStore::FailInterrupted(const std::string& owner, Micros now, bool any_owner) {
  // With any_owner every running row qualifies (the lease is compared with the far future).
  Micros expired_before = any_owner ? INT64_MAX : now;
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(txn->Exec(
      "INSERT INTO flow_attempts (run_id, attempt, status, started_at, finished_at, error_code, "
      "error) SELECT id, attempt, 'failed', started_at, ?, 'unavailable', "
      "'interrupted by a restart' FROM flow_runs WHERE status = 'running' AND "
      "(owner = ? OR lease_expires_at < ?)",
      {now, owner, expired_before}));
  RETURN_IF_ERROR(txn->Exec(
      "UPDATE flow_runs SET status = 'failed', finished_at = ?, error_code = 'unavailable', "
      "error = 'interrupted by a restart', lease_expires_at = 0 WHERE status = 'running' AND "
      "(owner = ? OR lease_expires_at < ?)",
      {now, owner, expired_before}));
  int64_t n = txn->Changes();
  RETURN_IF_ERROR(txn->Commit());
  return n;
}

Result<std::vector<RunInfo>> RunStore::QueuedRuns() {
  ASSIGN_OR_RETURN(Rows r, store_->Query("SELECT " + std::string(kColumns) +
                                         " FROM flow_runs WHERE status = 'queued' "
                                         "ORDER BY queued_at, interval_start, id"));
  std::vector<RunInfo> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(FromRow(r, i));
  return out;
}

Result<Micros> RunStore::LoadLastTick(const std::string& job, Micros now) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  ASSIGN_OR_RETURN(Rows r,
                   txn->Query("SELECT last_tick FROM flow_schedule_state WHERE job = ?", {job}));
  if (!r.empty()) return r.Int(0, 0);  // read-only: the rollback is fine
  RETURN_IF_ERROR(
      txn->Exec("INSERT INTO flow_schedule_state (job, last_tick, updated_at) VALUES (?, ?, ?)",
                {job, now, now}));
  RETURN_IF_ERROR(txn->Commit());
  return now;
}

Result<bool> RunStore::AdvanceTick(const std::string& job, Micros expected, Micros tick,
                                   const std::vector<RunInfo>& runs, Micros* actual) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE flow_schedule_state SET last_tick = ?, updated_at = ? "
                "WHERE job = ? AND last_tick = ?",
                {tick, tick, job, expected}));
  if (txn->Changes() != 1) {
    ASSIGN_OR_RETURN(Rows r,
                     txn->Query("SELECT last_tick FROM flow_schedule_state WHERE job = ?", {job}));
    *actual = r.empty() ? expected : r.Int(0, 0);
    return false;
  }
  for (const auto& run : runs) {
    RETURN_IF_ERROR(txn->Exec(kInsert, InsertParams(run, RunStatus::kQueued, "", 0)));
  }
  RETURN_IF_ERROR(txn->Commit());
  *actual = tick;
  return true;
}

Result<RunInfo> RunStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(
      Rows r,
      store_->Query("SELECT " + std::string(kColumns) + " FROM flow_runs WHERE id = ?", {id}));
  if (r.empty()) return NotFound("flow: no run " + id);
  return FromRow(r, 0);
}

Result<std::vector<RunInfo>> RunStore::List(const RunFilter& f) {
  std::string sql = "SELECT " + std::string(kColumns) + " FROM flow_runs WHERE 1 = 1";
  std::vector<Value> params;
  if (!f.job.empty()) {
    sql += " AND job = ?";
    params.emplace_back(f.job);
  }
  if (f.status) {
    sql += " AND status = ?";
    params.emplace_back(std::string(RunStatusName(*f.status)));
  }
  if (!f.backfill_id.empty()) {
    sql += " AND backfill_id = ?";
    params.emplace_back(f.backfill_id);
  }
  if (f.before > 0) {
    sql += " AND queued_at < ?";
    params.emplace_back(f.before);
  }
  sql += " ORDER BY queued_at DESC, interval_start DESC, id DESC LIMIT ?";
  params.emplace_back(int64_t{f.limit > 0 ? f.limit : 100});
  ASSIGN_OR_RETURN(Rows r, store_->Query(sql, params));
  std::vector<RunInfo> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(FromRow(r, i));
  return out;
}

Result<std::vector<AttemptInfo>> RunStore::Attempts(const std::string& id) {
  ASSIGN_OR_RETURN(Rows r, store_->Query("SELECT attempt, status, started_at, finished_at, "
                                         "error_code, error FROM flow_attempts WHERE run_id = ? "
                                         "ORDER BY attempt",
                                         {id}));
  std::vector<AttemptInfo> out;
  for (size_t i = 0; i < r.size(); ++i) {
    AttemptInfo a;
    a.attempt = static_cast<int>(r.Int(i, 0));
    auto st = ParseRunStatus(r.Text(i, 1));
    a.status = st.ok() ? *st : RunStatus::kFailed;
    a.started_at = r.Int(i, 2);
    a.finished_at = r.Int(i, 3);
    a.error_code = CodeFromName(r.Text(i, 4));
    a.error = r.Text(i, 5);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace lakeloop::flow::internal
