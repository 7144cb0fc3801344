#include "sql/internal/watchdog.h"

#include <gtest/gtest.h>

#include <thread>

namespace lakeloop::sql::internal {
namespace {

// Idle means blocked on the condition variable: the loop does not run while nothing is queued.
TEST(WatchdogTest, IdleWatchdogDoesNotPoll) {
  Watchdog watchdog;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (watchdog.wakeups() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  const uint64_t before = watchdog.wakeups();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // 10 poll periods
  EXPECT_EQ(watchdog.wakeups(), before);
}

// With a ticket registered it polls, interrupts once the deadline passed, and parks again after.
TEST(WatchdogTest, FiresPastDeadlineThenParks) {
  duckdb_database db;
  ASSERT_EQ(duckdb_open(nullptr, &db), DuckDBSuccess);
  duckdb_connection c;
  ASSERT_EQ(duckdb_connect(db, &c), DuckDBSuccess);
  {
    Watchdog watchdog;
    Watchdog::Ticket ticket;
    ticket.connection = c;
    ticket.deadline = std::chrono::steady_clock::now();
    watchdog.Add(&ticket);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // >= several poll periods
    watchdog.Remove(&ticket);
    EXPECT_EQ(ticket.fired, Watchdog::Fired::kDeadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // one last tick, then parked
    const uint64_t parked = watchdog.wakeups();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(watchdog.wakeups(), parked);
  }
  duckdb_disconnect(&c);
  duckdb_close(&db);
}

}  // namespace
}  // namespace lakeloop::sql::internal
