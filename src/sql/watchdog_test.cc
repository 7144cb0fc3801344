#include "sql/internal/watchdog.h"

#include <gtest/gtest.h>

#include <thread>

namespace lakeloop::sql::internal {
namespace {

// Waits (bounded) until `done()` holds; no fixed sleeps.
template <typename F>
bool WaitFor(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Idle means blocked on the condition variable: the loop does not run while nothing is queued.
TEST(WatchdogTest, IdleWatchdogDoesNotPoll) {
  Watchdog watchdog;
  ASSERT_TRUE(WaitFor([&] { return watchdog.parked(); }));
  const uint64_t before = watchdog.wakeups();
  // A negative claim needs a window to watch: 10 poll periods without a single wakeup.
  std::this_thread::sleep_for(10 * Watchdog::kPoll);
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
    const uint64_t start = watchdog.wakeups();
    ASSERT_TRUE(watchdog.Add(&ticket));
    // The deadline has passed: the first poll after Add fires; wait for two more polls.
    ASSERT_TRUE(WaitFor([&] { return watchdog.wakeups() >= start + 3; }));
    watchdog.Remove(&ticket);
    EXPECT_EQ(ticket.fired, Watchdog::Fired::kDeadline);
    ASSERT_TRUE(WaitFor([&] { return watchdog.parked(); }));  // nothing registered: parks
    const uint64_t parked = watchdog.wakeups();
    std::this_thread::sleep_for(10 * Watchdog::kPoll);  // the negative claim's window
    EXPECT_EQ(watchdog.wakeups(), parked);
  }
  duckdb_disconnect(&c);
  duckdb_close(&db);
}

}  // namespace
}  // namespace lakeloop::sql::internal
