// Processor throughput (events/s on one worker thread) with 100k keys for a view with 1h and 24h
// windows, and Get latency p50/p99 (idle, and while the processor is applying a backlog).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "features/features.h"

namespace lakeloop::features {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kSec = 1'000'000;
constexpr int kKeys = 100'000;

constexpr char kView[] = R"(name: bench
kind: stream
stream: s
allowed_lateness: 5m
features:
  - {name: clicks_1h, agg: count, window: 1h, where: {event_type: click}}
  - {name: clicks_24h, agg: count, window: 24h, where: {event_type: click}}
  - {name: spend_1h, agg: sum, field: value, window: 1h, where: {event_type: purchase}}
  - {name: spend_24h, agg: sum, field: value, window: 24h, where: {event_type: purchase}}
  - {name: avg_value_24h, agg: avg, field: value, window: 24h}
  - {name: max_value_1h, agg: max, field: value, window: 1h}
  - {name: last_value_1h, agg: last, field: value, window: 1h}
  - {name: distinct_types_1h, agg: count_distinct, field: event_type, window: 1h}
)";

// The same six aggregations with every window at 1h, or at 24h (throughput per window length).
std::string OneWindowView(const std::string& w) {
  return "name: bench\nkind: stream\nstream: s\nallowed_lateness: 5m\nfeatures:\n"
         "  - {name: clicks, agg: count, window: " +
         w +
         ", where: {event_type: click}}\n"
         "  - {name: spend, agg: sum, field: value, window: " +
         w +
         ", where: {event_type: purchase}}\n"
         "  - {name: avg_value, agg: avg, field: value, window: " +
         w +
         "}\n"
         "  - {name: max_value, agg: max, field: value, window: " +
         w +
         "}\n"
         "  - {name: last_value, agg: last, field: value, window: " +
         w +
         "}\n"
         "  - {name: distinct_types, agg: count_distinct, field: event_type, window: " +
         w + "}\n";
}

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Env {
  fs::path dir;
  std::unique_ptr<stream::EventLog> log;
  std::unique_ptr<OnlineStore> store;
  std::unique_ptr<StreamProcessor> proc;
  int64_t clock = 1'700'000'000LL * kSec;
  std::mt19937 rng{1};

  Env() {
    dir = fs::temp_directory_path() / ("features_bench_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    stream::RocksLogOptions o;
    o.sync = false;
    log = std::move(stream::OpenRocksEventLog(dir.string(), o)).value();
    (void)log->RegisterStream({.name = "s", .partitions = 4});
    store = std::move(OpenRocksOnlineStore(log.get())).value();
  }
  ~Env() {
    proc.reset();
    store.reset();
    log.reset();
    fs::remove_all(dir);
  }
  void Append(int n) {
    static const char* kTypes[] = {"click", "view", "purchase", "add_to_cart"};
    for (int i = 0; i < n; i += 1000) {
      std::vector<stream::Event> batch;
      for (int j = 0; j < 1000; ++j) {
        clock += 20'000;  // 50 events per second of event time
        const char* type = kTypes[rng() % 4];
        batch.push_back({"user" + std::to_string(rng() % kKeys), clock, "",
                         std::string("{\"event_type\":\"") + type +
                             "\",\"value\":" + std::to_string(rng() % 10000) + ".5}"});
      }
      (void)log->Append("s", std::move(batch));
    }
  }
  std::string yaml = kView;
  void StartProcessor() {
    auto view = std::move(ParseFeatureView(yaml, "bench.yaml")).value();
    proc = std::move(StreamProcessor::Create(log.get(), store.get(), {view})).value();
    (void)proc->Start();
  }
  bool Drain() {
    auto ends = log->EndOffsets("s");
    return proc->WaitApplied("s", *ends, 600'000'000).ok();
  }
};

void BM_ProcessorThroughput(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int64_t window_h = state.range(1);  // 0: the mixed 1h/24h view
  for (auto _ : state) {
    state.PauseTiming();
    Env env;
    if (window_h) env.yaml = OneWindowView(std::to_string(window_h) + "h");
    env.Append(n / 2);  // warm: every key gets state in the store first
    env.StartProcessor();
    env.Drain();
    env.proc->Stop();
    env.Append(n);
    env.proc.reset();
    env.StartProcessor();  // cold cache: states are first read back from the store
    state.ResumeTiming();
    auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = ProcessCpuSeconds();
    env.Drain();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = ProcessCpuSeconds() - cpu0;
    state.counters["events_per_s"] = n / s;
    // Per core: events over the CPU time of the whole process while draining (the worker plus
    // RocksDB's flush/compaction threads), so a busy shared machine does not skew it.
    state.counters["events_per_cpu_s"] = n / cpu;
    auto one = env.store->Get("bench", "user1");
    if (one.ok() && *one) state.counters["state_bytes"] = static_cast<double>((*one)->size());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ProcessorThroughput)
    ->Args({400'000, 0})
    ->Args({400'000, 1})
    ->Args({400'000, 24})
    ->ArgNames({"events", "window_h"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void Percentiles(benchmark::State& state, std::vector<double>& lat) {
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[lat.size() * 99 / 100];
}

void BM_GetLatency(benchmark::State& state) {
  const bool busy = state.range(0) != 0;
  Env env;
  env.Append(300'000);
  env.StartProcessor();
  env.Drain();
  if (busy) {
    env.Append(1'000'000);  // backlog the worker applies while we read
    env.proc->Notify("s");
  }
  std::vector<double> lat;
  lat.reserve(1 << 20);
  std::mt19937 rng(5);
  const int64_t t = env.clock;
  for (auto _ : state) {
    const std::string key = "user" + std::to_string(rng() % kKeys);
    auto t0 = std::chrono::steady_clock::now();
    auto v = env.proc->Get("bench", key, t);
    auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(v);
    lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  Percentiles(state, lat);
  auto stats = env.proc->Stats("bench");
  if (stats.ok()) state.counters["applied_during"] = static_cast<double>(stats->events_applied);
}
BENCHMARK(BM_GetLatency)->Arg(0)->Arg(1)->Iterations(100'000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lakeloop::features

BENCHMARK_MAIN();
