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

bool Watchdog::Add(Ticket* ticket) {
  ticket->started_us = NowMicros();
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return false;
    // While the thread is polling it will see the ticket within kPoll; waking it per query would
    // cost a context switch on every short query.
    wake = parked_;
    parked_ = false;
    active_.push_back(ticket);
  }
  if (wake) cv_.notify_one();
  return true;
}

void Watchdog::InterruptAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    for (Ticket* t : active_) {
      t->fired = Fired::kShutdown;
      duckdb_interrupt(t->connection);
    }
  }
  cv_.notify_all();
}

std::vector<std::string> Watchdog::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const Ticket* t : active_) out.push_back(t->what);
  return out;
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
      if (t->fired == Fired::kShutdown) {
        // Again at every poll: an interrupt that landed before DuckDB started the query may
        // have been cleared when it started.
        duckdb_interrupt(t->connection);
        continue;
      }
      if (t->fired != Fired::kNone) continue;
      std::error_code ec;
      if (t->cancelled != nullptr && t->cancelled->load(std::memory_order_relaxed)) {
        t->fired = Fired::kCancelled;
      } else if (now >= t->deadline) {
        t->fired = Fired::kDeadline;
      } else if (t->max_file_bytes > 0 && !t->watch_file.empty() &&
                 static_cast<int64_t>(std::filesystem::file_size(t->watch_file, ec)) >
                     t->max_file_bytes &&
                 !ec) {
        t->fired = Fired::kTooLarge;
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
