// core/metrics.h: counters, gauges and fixed-bucket histograms every module may update on its hot
// paths, and a Registry that renders them in the Prometheus text exposition format (0.0.4) for
// `GET /metrics`.
//
// Cost: Counter::Add and Histogram::Observe are one relaxed atomic add (two for a histogram: its
// bucket and its sum) on a cache line of the calling thread's shard, so threads that count the
// same metric do not bounce one line between cores. Reading (Value, rendering) sums the shards;
// it is exact once the writers have returned, and otherwise a value some time during the read.
//
// Naming (checked at registration): [a-zA-Z_:][a-zA-Z0-9_:]*, units in the name
// (`lakeloop_http_request_duration_seconds`), counters end in `_total`. Label names
// [a-zA-Z_][a-zA-Z0-9_]* (not starting with `__`, never `le` on a histogram); label values are
// any UTF-8 and are escaped when rendered.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace lakeloop::metrics {

// Sorted by name when rendered; a metric's identity is its name and label set.
using Labels = std::vector<std::pair<std::string, std::string>>;

namespace internal {
inline constexpr size_t kShards = 16;
// The calling thread's shard (threads are spread round-robin at their first update).
size_t ShardIndex();
struct alignas(64) PaddedCount {
  std::atomic<uint64_t> v{0};
};
struct alignas(64) PaddedSum {
  std::atomic<double> v{0};
};
}  // namespace internal

// A monotonically increasing count. Thread-safe; Add is a relaxed atomic add.
class Counter {
 public:
  void Add(uint64_t n = 1) {
    shards_[internal::ShardIndex()].v.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const;

 private:
  internal::PaddedCount shards_[internal::kShards];
};

// A value that goes up and down (queue depth, open connections, bytes in use). Thread-safe.
class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  void Add(double d) { v_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Observations counted in fixed buckets (upper bounds, inclusive, strictly increasing; +Inf is
// implicit), plus their sum and count. Thread-safe; Observe is a bucket search and two relaxed
// atomic adds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(64) Shard {
    std::unique_ptr<std::atomic<uint64_t>[]> counts;  // bounds_.size() + 1
    std::atomic<double> sum{0};
  };
  std::vector<double> bounds_;
  std::unique_ptr<Shard[]> shards_;
};

// Bucket bounds: start, start*factor, ... (count of them); e.g. latencies in seconds.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// start, start+width, ... (count of them).
std::vector<double> LinearBuckets(double start, double width, int count);

// Owns metrics by (name, labels) and renders them. Get* returns the same object for the same
// name and labels (create once, keep the pointer; pointers stay valid for the Registry's life).
// kInvalidArgument for a bad name, label, bucket list, a counter without `_total`, or a name
// already registered with another type, help or buckets. Thread-safe.
class Registry {
 public:
  Result<Counter*> GetCounter(std::string_view name, std::string_view help, Labels labels = {});
  Result<Gauge*> GetGauge(std::string_view name, std::string_view help, Labels labels = {});
  Result<Histogram*> GetHistogram(std::string_view name, std::string_view help,
                                  std::vector<double> bounds, Labels labels = {});

  // A series whose value is read from `value` at each render (a figure another component already
  // keeps, e.g. the scheduler's counts): a counter (the function must never decrease) or a gauge.
  // `value` is called under the registry's lock: it must be quick and must not call the registry.
  Status AddCounterCallback(std::string_view name, std::string_view help, Labels labels,
                            std::function<double()> value);
  Status AddGaugeCallback(std::string_view name, std::string_view help, Labels labels,
                          std::function<double()> value);

  // Prometheus text format 0.0.4 (Content-Type: text/plain; version=0.0.4): families sorted by
  // name, each with its HELP and TYPE lines, then its series sorted by labels.
  std::string RenderPrometheus() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;  // histograms
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Gauge>> gauges;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
    std::map<Labels, std::function<double()>> callbacks;
  };
  Result<Family*> FamilyFor(std::string_view name, std::string_view help, Type type, Labels& labels,
                            const std::vector<double>* bounds);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

// Prometheus label-value escaping: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view v);
// A sample value: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string FormatValue(double v);

}  // namespace lakeloop::metrics
