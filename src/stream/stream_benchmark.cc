// Micro benchmarks of the stream module (not run by tests):
//   BM_RawFsync            the anchor: write 100 bytes + fdatasync on this disk
//   BM_Append/batch/threads  durable (sync) appends through group commit
//   BM_TileUpdate/BM_TileRead  window tiles over 100k keys, 1h and 24h windows
//   BM_ValidateEvents/batch/ndjson  ingest validation of the example `clicks` events, per event
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "core/time.h"
#include "stream/definition.h"
#include "stream/stream.h"
#include "stream/window.h"

namespace lakeloop::stream {
namespace {

namespace fs = std::filesystem;
const fs::path kDir = fs::temp_directory_path() / "stream_benchmark";

void BM_RawFsync(benchmark::State& state) {
  fs::create_directories(kDir);
  const std::string path = (kDir / "fsync.bin").string();
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  std::string data(100, 'x');
  for (auto _ : state) {
    if (::write(fd, data.data(), data.size()) < 0) state.SkipWithError("write");
    ::fdatasync(fd);
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawFsync)->UseRealTime()->MinTime(2.0);

std::unique_ptr<EventLog> g_log;

void BM_Append(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  if (state.thread_index() == 0) {
    g_log.reset();
    fs::remove_all(kDir / "log");
    g_log = std::move(OpenRocksEventLog((kDir / "log").string())).value();
    (void)g_log->RegisterStream(
        {.name = "events", .partitions = 4, .dedup_window_us = 3'600'000'000});
  }
  std::mt19937_64 rng(state.thread_index());
  std::vector<Event> events(batch);
  int64_t n = 0;
  for (auto _ : state) {
    for (auto& e : events) {
      e.key = "user-" + std::to_string(rng() % 100000);
      e.event_time_us = 1'750'000'000'000'000 + n;
      e.event_id = std::to_string(state.thread_index()) + "-" + std::to_string(n++);
      e.payload = R"({"user":"u","amount":12.5,"item":"sku-123","kind":"click"})";
    }
    auto r = g_log->Append("events", events);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Append)->Arg(1)->Arg(100)->Arg(1000)->Threads(1)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Append)->Arg(1)->Arg(100)->Arg(1000)->Threads(8)->UseRealTime()->MinTime(2.0);

constexpr int kKeys = 100'000;
constexpr int64_t kSec = 1'000'000;

std::vector<TileState> MakeStates(Agg agg, int64_t max_window) {
  TileConfig c{.max_window_us = max_window, .allowed_lateness_us = 60 * kSec};
  return std::vector<TileState>(kKeys, *TileState::Create(agg, c));
}

// One event per iteration on a random key, event time advancing ~ 100k events per 10 minutes.
void BM_TileUpdate(benchmark::State& state) {
  const int64_t window = state.range(0) * 3600 * kSec;
  auto states = MakeStates(Agg::kSum, window);
  std::mt19937_64 rng(1);
  int64_t t = 1'750'000'000 * kSec;
  for (auto _ : state) {
    t += 6000;
    states[rng() % kKeys].Add(t, 1.0);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TileUpdate)->Arg(1)->Arg(24)->MinTime(2.0);

// Update + serialise + deserialise: what a state store read-modify-write costs (no I/O).
void BM_TileUpdateSerialised(benchmark::State& state) {
  const int64_t window = state.range(0) * 3600 * kSec;
  auto states = MakeStates(Agg::kSum, window);
  std::vector<std::string> bytes(kKeys);
  for (int i = 0; i < kKeys; ++i) bytes[i] = states[i].Serialize();
  std::mt19937_64 rng(1);
  int64_t t = 1'750'000'000 * kSec;
  // Warm up to a day of history (about 1 event per key per 15 min) before measuring.
  for (int i = 0; i < 100 * kKeys; ++i) {
    t += 9000;
    states[rng() % kKeys].Add(t, 1.0);
  }
  for (int i = 0; i < kKeys; ++i) bytes[i] = states[i].Serialize();
  states.clear();
  size_t total = 0;
  for (auto& b : bytes) total += b.size();
  for (auto _ : state) {
    t += 9000;
    auto& b = bytes[rng() % kKeys];
    auto s = std::move(TileState::Deserialize(b)).value();
    s.Add(t, 1.0);
    b = s.Serialize();
  }
  state.counters["avg_state_bytes"] = static_cast<double>(total) / kKeys;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TileUpdateSerialised)->Arg(1)->Arg(24)->MinTime(2.0);

void BM_TileRead(benchmark::State& state) {
  const int64_t window = state.range(0) * 3600 * kSec;
  auto states = MakeStates(Agg::kAvg, window);
  std::mt19937_64 rng(1);
  int64_t t = 1'750'000'000 * kSec;
  for (int i = 0; i < 100 * kKeys; ++i) {  // a day of history
    t += 9000;
    states[rng() % kKeys].Add(t, static_cast<double>(i % 100));
  }
  double sink = 0;
  for (auto _ : state) {
    auto r = states[rng() % kKeys].Read(t, window);
    sink += r->value.value_or(0);
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TileRead)->Arg(1)->Arg(24)->MinTime(2.0);

void BM_ValidateEvents(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool ndjson = state.range(1) != 0;
  auto def = ParseStreamDefinition(
      "name: clicks\nfields:\n  customer_id: {type: integer}\n  ts: {type: timestamp}\n"
      "  event_type: {type: string}\n  value: {type: number, required: false}\n"
      "  event_id: {type: string, required: false}\nkey: customer_id\ntime: ts\n"
      "event_id: event_id\n",
      "clicks.yaml");
  const int64_t now = *ParseRfc3339("2026-11-26T12:00:00Z");
  std::string body = ndjson ? "" : "[";
  for (int i = 0; i < batch; ++i) {
    if (!ndjson && i) body += ",";
    body += "{\"customer_id\": " + std::to_string(100000 + i) + ", \"ts\": \"2026-11-26T11:59:0" +
            std::to_string(i % 10) +
            ".123Z\", \"event_type\": \"page_view\", \"value\": " + std::to_string(i * 0.5) +
            ", \"event_id\": \"evt-" + std::to_string(i) + "\"}";
    if (ndjson) body += "\n";
  }
  if (!ndjson) body += "]";
  for (auto _ : state) {
    auto r = ValidateEvents(*def, body, now);
    if (!r.ok() || r->accepted.size() != static_cast<size_t>(batch)) state.SkipWithError("bad");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_ValidateEvents)->Args({1, 1})->Args({100, 1})->Args({100, 0})->Args({1000, 0});

}  // namespace
}  // namespace lakeloop::stream

// The log must close before RocksDB's own static objects are destroyed at exit.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  lakeloop::stream::g_log.reset();
  return 0;
}
