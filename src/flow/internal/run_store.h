// flow/internal/run_store: the flow_* catalog tables and every SQL statement flow runs. Stateless
// apart from the store pointer; thread-safe because catalog::Store is.
#pragma once

#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "flow/flow.h"

namespace lakeloop::flow::internal {

std::vector<catalog::Migration> FlowMigrations();

// The outcome of one attempt, as recorded.
struct AttemptResult {
  RunStatus status = RunStatus::kSucceeded;  // kQueued = will be retried
  Code error_code = Code::kOk;
  std::string error;
  RunOutput output;
  Micros started_at = 0;
  Micros finished_at = 0;
  Micros retry_at = 0;  // when status == kQueued
};

class RunStore {
 public:
  explicit RunStore(catalog::Store* store) : store_(store) {}

  Status InsertQueued(const std::vector<RunInfo>& runs);
  // Inserts a new row straight as running (a run no other process can know about).
  Status InsertRunning(const RunInfo& run, const std::string& owner, Micros lease_expires);
  // queued -> running (compare-and-swap). False when another owner (or Cancel) got there first.
  Result<bool> Claim(const std::string& id, int attempt, const std::string& owner, Micros now,
                     Micros lease_expires);
  // Records the attempt and moves the run to its next status (queued for a retry or terminal),
  // only if `owner` still holds it as running.
  Status FinishAttempt(const std::string& id, int attempt, const std::string& owner,
                       const AttemptResult& r);
  // queued -> cancelled. False if not queued.
  Result<bool> CancelQueued(const std::string& id, Micros now, const std::string& why);
  // Cancels every queued run of a backfill; returns how many.
  Result<int64_t> CancelBackfillRest(const std::string& backfill_id, Micros now,
                                     const std::string& why);
  // Renews the leases of `owner`'s running runs and fails other owners' runs whose lease expired.
  Status RenewLeases(const std::string& owner, Micros now, Micros lease_expires);
  // Fails running runs of `owner` or with an expired lease; returns how many.
  // `any_owner`: every running row, whatever its owner or lease (the sole scheduler's start).
  Result<int64_t> FailInterrupted(const std::string& owner, Micros now, bool any_owner = false);
  Result<std::vector<RunInfo>> QueuedRuns();

  // Cron: reads the last handled tick (inserting `now` when the job is new).
  Result<Micros> LoadLastTick(const std::string& job, Micros now);
  // In one transaction: if last_tick is still `expected`, moves it to `tick` and queues `runs`.
  // False when another scheduler moved it first (nothing written).
  Result<bool> AdvanceTick(const std::string& job, Micros expected, Micros tick,
                           const std::vector<RunInfo>& runs, Micros* actual);

  Result<RunInfo> Get(const std::string& id);
  Result<std::vector<RunInfo>> List(const RunFilter& f);
  Result<std::vector<AttemptInfo>> Attempts(const std::string& id);

 private:
  catalog::Store* store_;
};

}  // namespace lakeloop::flow::internal
