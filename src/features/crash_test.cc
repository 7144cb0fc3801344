// kill -9 consistency: a child process (this binary re-executed) runs the processor over events
// already in the log and dies at a crash point around the atomic state+offset write; the parent
// appends more, repeats, and finally checks every aggregate against the brute-force reference
// (no event counted twice, none lost) and the applied/late counters.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "features/features.h"
#include "features/internal/test_util.h"

namespace lakeloop::features {
namespace {

namespace fs = std::filesystem;
constexpr char kChildEnv[] = "LAKELOOP_FEATURES_CRASH_CHILD";
constexpr int kParts = 3;

ProcessorOptions CrashOptions() {
  ProcessorOptions o;
  o.max_records_per_poll = 40;  // several batches per round
  o.max_cached_keys = 5;
  return o;
}

// The child: opens the log, runs the processor until a crash point kills it.
TEST(FeaturesCrashTest, Child) {
  const char* dir = std::getenv(kChildEnv);
  if (!dir) GTEST_SKIP() << "runs only as the child of CrashKeepsStateAndOffsetTogether";
  stream::RocksLogOptions lo;
  lo.sync = false;
  auto log = stream::OpenRocksEventLog(dir, lo);
  if (!log.ok()) _exit(10);
  auto store = OpenRocksOnlineStore(log->get());
  if (!store.ok()) _exit(11);
  auto view = ParseFeatureView(testing::DiffViewYaml(), "diff.yaml");
  if (!view.ok()) _exit(12);
  auto proc = StreamProcessor::Create(log->get(), store->get(), {*view}, CrashOptions());
  if (!proc.ok() || !(*proc)->Start().ok()) _exit(13);
  auto ends = (*log)->EndOffsets("s");
  if (!ends.ok()) _exit(14);
  (void)(*proc)->WaitApplied("s", *ends, 60'000'000);
  _exit(20);  // the crash point was never reached
}

TEST(FeaturesCrashTest, CrashKeepsStateAndOffsetTogether) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("features_crash_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto view = ParseFeatureView(testing::DiffViewYaml(), "diff.yaml");
  ASSERT_TRUE(view.ok());
  testing::EventGen gen(99, 20, kParts);
  testing::Reference ref(kParts, 5 * testing::kMin);
  const char* crashes[] = {"features.before_write:3", "features.after_write:2",
                           "features.before_write:1", "features.after_write:4",
                           "features.before_write:6"};
  for (const char* crash_at : crashes) {
    SCOPED_TRACE(crash_at);
    {
      stream::RocksLogOptions lo;
      lo.sync = false;
      auto log = stream::OpenRocksEventLog(dir.string(), lo);
      ASSERT_TRUE(log.ok()) << log.status().ToString();
      ASSERT_TRUE((*log)->RegisterStream({.name = "s", .partitions = kParts}).ok());
      ref.Append(**log, "s", gen.Next(600));
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv(kChildEnv, dir.c_str(), 1);
      ::setenv("LAKELOOP_CRASH_AT", crash_at, 1);
      const char* argv[] = {"features_test", "--gtest_filter=FeaturesCrashTest.Child", nullptr};
      ::execv("/proc/self/exe", const_cast<char* const*>(argv));
      _exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child ended otherwise: " << status;
  }
  // Recover and finish: the aggregates equal the reference exactly.
  stream::RocksLogOptions lo;
  lo.sync = false;
  auto log = stream::OpenRocksEventLog(dir.string(), lo);
  ASSERT_TRUE(log.ok());
  auto store = OpenRocksOnlineStore(log->get());
  ASSERT_TRUE(store.ok());
  auto proc = StreamProcessor::Create(log->get(), store->get(), {*view}, CrashOptions());
  ASSERT_TRUE(proc.ok());
  ASSERT_TRUE((*proc)->Start().ok());
  auto ends = (*log)->EndOffsets("s");
  ASSERT_TRUE(ends.ok());
  ASSERT_TRUE((*proc)->WaitApplied("s", *ends, 60'000'000).ok());
  EXPECT_GT(ref.Check(**proc, *view, 5), 1000);
  auto stats = (*proc)->Stats("diff");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events_applied, ref.applied());
  EXPECT_EQ(stats->late_events, ref.late());
  proc->reset();
  store->reset();
  log->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lakeloop::features
