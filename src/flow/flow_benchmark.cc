// Scheduler overhead per task: a chain of 40 trivial jobs where job i's completion notifies the
// table job i+1 depends on (data-aware triggering), run history in a SQLite catalog.
// Reported: end-to-end wall time of the chain / 40 ("per_task_ms"). Not run by tests.
//   ./flow_benchmark                       catalog in $FLOW_BENCH_DIR (default /tmp), sync=FULL
//   BM_Chain40/memory                      the same on an in-memory catalog (no fsync): CPU cost
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "core/ids.h"
#include "flow/flow.h"

namespace lakeloop::flow {
namespace {

constexpr int kChain = 40;

void RunChain(benchmark::State& state, bool in_memory) {
  std::filesystem::path dir;
  std::unique_ptr<catalog::Store> store;
  if (in_memory) {
    store = std::move(catalog::OpenSqlite(":memory:")).value();
  } else {
    const char* base = std::getenv("FLOW_BENCH_DIR");
    dir = std::filesystem::path(base ? base : "/tmp") / ("flow_bench_" + NewUuid());
    std::filesystem::create_directories(dir);
    store = std::move(catalog::OpenSqlite(dir / "catalog.db")).value();
  }
  if (!catalog::Migrate(*store, Scheduler::Migrations()).ok()) {
    state.SkipWithError("migrate");
    return;
  }
  SchedulerOptions o;
  o.workers = 2;
  Scheduler s(store.get(), o);
  for (int i = 0; i < kChain; ++i) {
    JobSpec spec;
    if (i > 0) spec.upstream_tables = {"bench.t" + std::to_string(i)};
    auto st = s.Register(MakeJob("chain:" + std::to_string(i),
                                 [](RunContext&) -> Result<RunOutput> {
                                   RunOutput out;
                                   out.rows_out = 1;
                                   return out;
                                 }),
                         spec);
    if (!st.ok()) state.SkipWithError("register");
  }
  std::mutex mu;
  std::condition_variable cv;
  int64_t done = 0;
  int64_t version = 0;
  s.AddListener([&](const RunEvent& e) {
    if (e.kind != RunEventKind::kFinished || e.run.status != RunStatus::kSucceeded) return;
    int i = std::stoi(e.run.job.substr(6));
    if (i + 1 < kChain) {
      s.NotifyTableCommitted("bench.t" + std::to_string(i + 1), ++version);
    } else {
      std::lock_guard<std::mutex> l(mu);
      ++done;
      cv.notify_all();
    }
  });
  if (!s.Start().ok()) state.SkipWithError("start");
  int64_t want = 0;
  double total_ms = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    ++want;
    auto id = s.Trigger("chain:0");
    if (!id.ok()) state.SkipWithError("trigger");
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done >= want; });
    total_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  state.counters["per_task_ms"] =
      total_ms / static_cast<double>(std::max<int64_t>(1, state.iterations() * kChain));
  s.Stop();
  if (!dir.empty()) std::filesystem::remove_all(dir);
}

void BM_Chain40(benchmark::State& state) { RunChain(state, false); }
void BM_Chain40Memory(benchmark::State& state) { RunChain(state, true); }
BENCHMARK(BM_Chain40)
    ->Name("BM_Chain40/sqlite_file_sync_full")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3);
BENCHMARK(BM_Chain40Memory)
    ->Name("BM_Chain40/sqlite_memory")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);

}  // namespace
}  // namespace lakeloop::flow

BENCHMARK_MAIN();
