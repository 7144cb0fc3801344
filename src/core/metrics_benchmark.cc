// Cost of counting on a hot path: ./metrics_benchmark [--benchmark_...]. Not run by tests.
#include <benchmark/benchmark.h>

#include <atomic>

#include "core/metrics.h"

namespace lakeloop::metrics {
namespace {

Registry& Shared() {
  static Registry r;
  return r;
}

void BM_CounterAdd(benchmark::State& state) {
  static Counter* c = *Shared().GetCounter("bench_total", "h");
  for (auto _ : state) c->Add();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CounterAdd)->Threads(1)->Threads(2)->Threads(4);

// The anchor: one shared atomic that every thread increments (what sharding avoids).
void BM_SharedAtomicAdd(benchmark::State& state) {
  static std::atomic<uint64_t> a{0};
  for (auto _ : state) a.fetch_add(1, std::memory_order_relaxed);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SharedAtomicAdd)->Threads(1)->Threads(2)->Threads(4);

void BM_HistogramObserve(benchmark::State& state) {
  static Histogram* h =
      *Shared().GetHistogram("bench_seconds", "h", ExponentialBuckets(0.0001, 2, 20));
  double v = 0.0001;
  for (auto _ : state) {
    h->Observe(v);
    v = v > 10 ? 0.0001 : v * 1.7;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2)->Threads(4);

void BM_Render100Series(benchmark::State& state) {
  Registry r;
  for (int i = 0; i < 50; ++i) {
    (*r.GetCounter("c_total", "h", {{"route", "/r" + std::to_string(i)}}))->Add(i);
    (*r.GetGauge("g_bytes", "h", {{"route", "/r" + std::to_string(i)}}))->Set(i);
  }
  for (auto _ : state) benchmark::DoNotOptimize(r.RenderPrometheus());
}
BENCHMARK(BM_Render100Series);

}  // namespace
}  // namespace lakeloop::metrics

BENCHMARK_MAIN();
