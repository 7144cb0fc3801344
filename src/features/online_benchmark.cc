// In-process online retrieval (OnlinePlan::Get, the call path the serving module uses): 1 entity x
// 20 features from 2 batch views of 10 double features each, over N entities in the RocksDB online
// store (LAKELOOP_BENCH_CUSTOMERS, default 100k), a random entity per call. Besides Google
// Benchmark's mean, each call is timed and p50/p99 (ns) are reported as counters, for
// bench/features.py.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "features/features.h"
#include "features/store.h"

namespace lakeloop::features {
namespace {

namespace fs = std::filesystem;
constexpr int kViews = 2;
constexpr int kFeatures = 10;

int64_t Customers() {
  const char* env = std::getenv("LAKELOOP_BENCH_CUSTOMERS");
  return env ? std::max<int64_t>(1, std::atoll(env)) : 100'000;
}

struct Fixture {
  fs::path dir;
  std::unique_ptr<stream::EventLog> log;
  std::unique_ptr<OnlineStore> store;
  std::shared_ptr<const OnlinePlan> plan;
  int64_t customers = 0;

  Fixture() {
    customers = Customers();
    dir = fs::temp_directory_path() / ("online_benchmark_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    stream::RocksLogOptions o;
    o.sync = false;
    log = stream::OpenRocksEventLog((dir / "log").string(), o).value();
    store = OpenRocksOnlineStore(log.get()).value();
    Registry r;
    r.entities.push_back(
        ParseEntity("name: customer\njoin_key: customer_id\ntype: int64\n", "e.yaml").value());
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0, 1);
    const int64_t now = 1'800'000'000'000'000;
    for (int v = 0; v < kViews; ++v) {
      std::string y = "name: view_" + std::to_string(v) + "\nkind: batch\nsource: raw.view_" +
                      std::to_string(v) +
                      "\nentity: customer\ntimestamp: event_timestamp\nfeatures:\n";
      for (int f = 0; f < kFeatures; ++f)
        y += "  - {name: f" + std::to_string(f) + ", type: double}\n";
      r.views.push_back(ParseFeatureView(y, "v.yaml").value());
      StateBatch batch;
      batch.view = "view_" + std::to_string(v);
      const uint64_t schema = BatchSchema(r.views.back());
      for (int64_t k = 0; k < customers; ++k) {
        BatchRow row;
        row.schema = schema;
        row.event_time_us = now - k;
        for (int f = 0; f < kFeatures; ++f) row.values.emplace_back(u(rng));
        batch.states.emplace_back(std::to_string(k), EncodeBatchRow(row));
        if (batch.states.size() == 10'000) {
          (void)store->Commit(batch);
          batch.states.clear();
        }
      }
      if (!batch.states.empty()) (void)store->Commit(batch);
    }
    std::string svc = "name: svc\nfeatures:\n  - view_0:*\n  - view_1:*\n";
    r.services.push_back(ParseFeatureService(svc, "s.yaml").value());
    plan = OnlinePlan::Build(std::move(r), store.get(), {}).value();
  }
  ~Fixture() {
    plan.reset();
    store.reset();
    log.reset();
    fs::remove_all(dir);
  }
};

Fixture& TheFixture() {
  static Fixture f;
  return f;
}

// range(0): 0 = a list of 20 "view:feature" (resolved per call), 1 = the service (resolved at
// apply).
void BM_OnlineGet(benchmark::State& state) {
  Fixture& fx = TheFixture();
  OnlineRequest req;
  if (state.range(0) == 1) {
    req.feature_service = "svc";
  } else {
    for (int v = 0; v < kViews; ++v) {
      for (int f = 0; f < kFeatures; ++f) {
        req.features.push_back("view_" + std::to_string(v) + ":f" + std::to_string(f));
      }
    }
  }
  req.join_key = "customer_id";
  req.read_time_us = 1'800'000'000'000'000;
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int64_t> key(0, fx.customers - 1);
  std::vector<int64_t> samples;
  samples.reserve(1 << 20);
  int64_t present = 0;
  for (auto _ : state) {
    req.keys = std::vector<int64_t>{key(rng)};
    auto t0 = std::chrono::steady_clock::now();
    auto r = fx.plan->Get(req);
    auto t1 = std::chrono::steady_clock::now();
    if (samples.size() < samples.capacity()) {
      samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
    if (r.ok() && r->values[0][19].status == FeatureStatus::kPresent) ++present;
    benchmark::DoNotOptimize(r);
  }
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double p) {
    return samples.empty() ? 0.0
                           : static_cast<double>(samples[std::min(
                                 samples.size() - 1, static_cast<size_t>(p * samples.size()))]);
  };
  state.counters["p50_ns"] = pct(0.50);
  state.counters["p99_ns"] = pct(0.99);
  state.counters["customers"] = static_cast<double>(fx.customers);
  state.counters["present_fraction"] =
      static_cast<double>(present) / static_cast<double>(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_OnlineGet)->Arg(0)->Arg(1)->MinTime(2.0)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lakeloop::features

BENCHMARK_MAIN();
