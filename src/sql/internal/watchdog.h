// sql/internal/watchdog: one thread that interrupts running queries whose deadline passed or whose
// cancel flag was set. Idle (blocked on a condition variable) while no query runs; polls every
// kPoll only while at least one query is registered.
#pragma once

#include <duckdb.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lakeloop::sql::internal {

class Watchdog {
 public:
  static constexpr std::chrono::milliseconds kPoll{10};

  // kShutdown: InterruptAll; kTooLarge: the watched file grew past its cap.
  enum class Fired { kNone, kDeadline, kCancelled, kShutdown, kTooLarge };

  // One running query. Owned by the caller; registered for the duration of the query.
  struct Ticket {
    duckdb_connection connection = nullptr;
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    std::shared_ptr<std::atomic<bool>> cancelled;
    // Written under the watchdog mutex; read by the owner after Remove().
    Fired fired = Fired::kNone;
    // Wall-clock start (UTC micros), set by Add: the lake keeps files a running query may read.
    int64_t started_us = 0;
    // Optional: interrupt (kTooLarge) once this file is larger than max_file_bytes.
    std::filesystem::path watch_file;
    int64_t max_file_bytes = 0;
    std::string what;  // for the shutdown log: the start of the SQL
  };

  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Returns false (and does not register) after InterruptAll.
  bool Add(Ticket* ticket);
  // After Remove returns the watchdog never touches the ticket's connection again.
  void Remove(Ticket* ticket);
  // Start time of the oldest registered query; `now_us` when none runs.
  int64_t OldestStart(int64_t now_us);
  // Interrupts every registered query (kShutdown), now and at every poll, and refuses new ones.
  void InterruptAll();
  std::vector<std::string> Running();
  // Number of loop iterations so far (tests check that an idle watchdog does not spin).
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }
  // True while the thread sits in its untimed wait (nothing registered); for tests.
  bool parked() {
    std::lock_guard<std::mutex> lock(mu_);
    return parked_;
  }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Ticket*> active_;
  bool stop_ = false;
  bool shutdown_ = false;
  bool parked_ = false;  // in the untimed wait: Add must wake the thread
  std::atomic<uint64_t> wakeups_{0};
  std::thread thread_;
};

}  // namespace lakeloop::sql::internal
