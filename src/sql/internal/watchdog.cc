#include "sql/internal/watchdog.h"

#include <algorithm>

#include "core/time.h"

namespace lakeloop::sql::internal {

Watchdog::Watchdog() : thread_([this] { Loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t Watchdog::OldestStart(int64_t now_us) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t oldest = now_us;
  for (const Ticket* t : active_) oldest = std::min(oldest, t->started_us);
  return oldest;
}

void Watchdog::Add(Ticket* ticket) {
  ticket->started_us = NowMicros();
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // While the thread is polling it will see the ticket within kPoll; waking it per query would
    // cost a context switch on every short query.
    wake = parked_;
    parked_ = false;
    active_.push_back(ticket);
  }
  if (wake) cv_.notify_one();
}

void Watchdog::Remove(Ticket* ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(active_.begin(), active_.end(), ticket);
  if (it != active_.end()) {
    *it = active_.back();
    active_.pop_back();
  }
}

void Watchdog::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    if (active_.empty()) {
      parked_ = true;
      cv_.wait(lock, [this] { return stop_ || !active_.empty(); });
      parked_ = false;
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    auto next = now + kPoll;
    for (Ticket* t : active_) {
      if (t->fired != Fired::kNone) continue;
      if (t->cancelled != nullptr && t->cancelled->load(std::memory_order_relaxed)) {
        t->fired = Fired::kCancelled;
      } else if (now >= t->deadline) {
        t->fired = Fired::kDeadline;
      } else {
        next = std::min(next, t->deadline);
        continue;
      }
      // Only sets a flag inside DuckDB; the query thread notices it between tasks.
      duckdb_interrupt(t->connection);
    }
    cv_.wait_until(lock, next);
  }
}

}  // namespace lakeloop::sql::internal
