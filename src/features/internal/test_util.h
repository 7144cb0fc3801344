// Test helpers (tests only): random event streams and a brute-force reference of the window
// semantics in stream/window.h, with the partition watermark's late-event rule.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "features/features.h"
#include "stream/stream.h"

namespace lakeloop::features::testing {

struct RefEvent {
  std::string key;
  int64_t t;
  std::string type;
  double value;
  bool valid_json = true;
  int32_t partition = 0;
  bool late = false;
  size_t seq = 0;  // append order
};

inline constexpr int64_t kSec = 1'000'000;
inline constexpr int64_t kMin = 60 * kSec;
inline constexpr int64_t kHour = 60 * kMin;
inline constexpr int64_t kBase = 1'700'000'000LL * kSec;

// The differential view: every aggregation at 5m, 1h and 24h; 5m lateness.
inline std::string DiffViewYaml(const std::string& name = "diff", const std::string& stream = "s") {
  std::string y =
      "name: " + name + "\nkind: stream\nstream: " + stream + "\nallowed_lateness: 5m\nfeatures:\n";
  const char* windows[] = {"5m", "1h", "24h"};
  for (const char* agg : {"count", "sum", "avg", "min", "max", "last", "count_distinct"}) {
    for (const char* w : windows) {
      std::string a = agg;
      y += "  - {name: " + a + "_" + w + ", agg: " + a + ", window: " + w;
      if (a == "count") y += ", where: {event_type: click}";
      if (a == "sum") y += ", field: value, where: {event_type: purchase}";
      if (a == "count_distinct") y += ", field: event_type";
      if (a == "avg" || a == "min" || a == "max" || a == "last") y += ", field: value";
      y += "}\n";
    }
  }
  return y;
}

class EventGen {
 public:
  EventGen(uint32_t seed, int keys, int partitions) : rng_(seed), keys_(keys), parts_(partitions) {}

  std::vector<RefEvent> Next(int n) {
    static const char* kTypes[] = {"click", "add_to_cart", "purchase", "view", "click"};
    std::vector<RefEvent> out;
    for (int i = 0; i < n; ++i) {
      RefEvent e;
      e.key = "k" + std::to_string(rng_() % keys_);
      clock_ += static_cast<int64_t>(rng_() % (60 * kSec));
      if (rng_() % 400 == 0) clock_ += 3 * kHour;
      const int r = static_cast<int>(rng_() % 100);
      if (r < 3) {
        e.t = clock_ - 10 * kMin - static_cast<int64_t>(rng_() % (2 * kHour));  // far late
      } else {
        e.t = clock_ - static_cast<int64_t>(rng_() % (4 * kMin));  // out of order, in lateness
      }
      if (rng_() % 7 == 0) e.t -= e.t % kSec;  // some ties on whole seconds
      e.type = kTypes[rng_() % 5];
      e.value = static_cast<double>(rng_() % 4000) / 4.0;
      e.valid_json = rng_() % 500 != 0;
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  std::mt19937 rng_;
  int keys_;
  int parts_;
  int64_t clock_ = kBase;
};

inline std::string Payload(const RefEvent& e) {
  if (!e.valid_json) return "not json";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", e.value);
  return "{\"event_type\":\"" + e.type + "\",\"value\":" + buf + "}";
}

// Appends and records partition/late flags in append order (as the log orders a partition).
// Brute force, written without tiles: the aggregate of `key`'s accepted events (not late, valid
// JSON) with lo < e <= hi; counts take "click" events, sums "purchase" events (the test views).
inline std::optional<double> Aggregate(const std::vector<RefEvent>& all, const FeatureDef& f,
                                       const std::string& key, int64_t lo, int64_t hi) {
  int64_t count = 0;
  double sum = 0, mn = 0, mx = 0, last = 0;
  int64_t last_t = INT64_MIN;
  std::vector<std::string> distinct;
  for (const auto& e : all) {
    if (e.key != key || !e.valid_json || e.late || e.t <= lo || e.t > hi) continue;
    if (f.agg == stream::Agg::kCount && e.type != "click") continue;
    if (f.agg == stream::Agg::kSum && e.type != "purchase") continue;
    if (count == 0) mn = mx = e.value;
    ++count;
    sum += e.value;
    mn = std::min(mn, e.value);
    mx = std::max(mx, e.value);
    if (e.t >= last_t) {
      last_t = e.t;
      last = e.value;
    }
    distinct.push_back(e.type);
  }
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  switch (f.agg) {
    case stream::Agg::kCount:
      return static_cast<double>(count);
    case stream::Agg::kSum:
      return sum;
    case stream::Agg::kCountDistinct:
      return static_cast<double>(distinct.size());
    case stream::Agg::kAvg:
      if (count) return sum / static_cast<double>(count);
      return {};
    case stream::Agg::kMin:
      if (count) return mn;
      return {};
    case stream::Agg::kMax:
      if (count) return mx;
      return {};
    case stream::Agg::kLast:
      if (count) return last;
      return {};
  }
  return {};
}

class Reference {
 public:
  Reference(int partitions, int64_t lateness)
      : parts_(partitions), lateness_(lateness), max_(partitions, INT64_MIN) {}

  void Append(stream::EventLog& log, const std::string& stream, std::vector<RefEvent> events) {
    for (size_t i = 0; i < events.size(); i += 100) {
      std::vector<stream::Event> batch;
      for (size_t j = i; j < std::min(events.size(), i + 100); ++j) {
        batch.push_back({events[j].key, events[j].t, "", Payload(events[j])});
      }
      auto r = log.Append(stream, batch);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    for (auto& e : events) {
      e.partition = stream::PartitionForKey(e.key, parts_);
      e.seq = all_.size();
      if (e.valid_json) {
        auto& m = max_[e.partition];
        e.late = m != INT64_MIN && e.t < m - lateness_;
        if (!e.late) {
          m = std::max(m, e.t);
          ++applied_;
        } else {
          ++late_;
        }
      }
      all_.push_back(std::move(e));
    }
  }

  const std::vector<RefEvent>& events() const { return all_; }
  int64_t applied() const { return applied_; }
  int64_t late() const { return late_; }

  std::vector<std::string> Keys() const {
    std::vector<std::string> ks;
    for (const auto& e : all_) ks.push_back(e.key);
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    return ks;
  }

  // Newest applied event time of a key (INT64_MIN when none).
  int64_t KeyMax(const std::string& key) const {
    int64_t m = INT64_MIN;
    for (const auto& e : all_) {
      if (e.key == key && e.valid_json && !e.late) m = std::max(m, e.t);
    }
    return m;
  }

  // The value of feature `f` for `key` at t: ceil_h(t) - W < e <= ceil_g(t) (g = 1 min here).
  std::optional<double> Value(const FeatureDef& f, const std::string& key, int64_t t) const {
    auto ceil_to = [](int64_t x, int64_t s) { return (stream::TileIndex(x, s) + 1) * s; };
    const int64_t g = kMin;
    const int64_t h = f.window_us <= kHour ? g : kHour;
    const int64_t lo = ceil_to(t, h) - f.window_us, hi = ceil_to(t, g);
    return Aggregate(all_, f, key, lo, hi);
  }

  // Compares reads at several times per key against the reference; returns comparisons made.
  int Check(const StreamProcessor& proc, const FeatureView& view, uint32_t seed) const {
    std::mt19937 rng(seed);
    int compared = 0;
    for (const auto& key : Keys()) {
      const int64_t m = KeyMax(key);
      if (m == INT64_MIN) continue;
      std::vector<int64_t> times = {m, m + 1, m + kMin, m + 2 * 24 * kHour};
      for (int i = 0; i < 6; ++i) {
        times.push_back(m - static_cast<int64_t>(rng() % lateness_));
        times.push_back(m + static_cast<int64_t>(rng() % (25 * kHour)));
      }
      for (int64_t t : times) {
        auto got = proc.Get(view.name, key, t);
        EXPECT_TRUE(got.ok()) << got.status().ToString();
        if (!got.ok()) return compared;
        for (size_t i = 0; i < view.features.size(); ++i) {
          const FeatureDef& f = view.features[i];
          const FeatureValue& v = got->values[i];
          auto want = Value(f, key, t);
          SCOPED_TRACE(key + " " + f.name + " t=" + std::to_string(t - m));
          if (t >= m) {
            EXPECT_TRUE(v.exact);
          }
          EXPECT_EQ(want.has_value(), v.value.has_value());
          if (!want || !v.value) continue;
          const double tol = f.agg == stream::Agg::kCountDistinct
                                 ? 0.05 * *want + 0.01
                                 : 1e-9 * std::max(1.0, std::abs(*want));
          EXPECT_NEAR(*v.value, *want, tol);
          ++compared;
        }
      }
    }
    return compared;
  }

 private:
  int parts_;
  int64_t lateness_;
  std::vector<int64_t> max_;
  std::vector<RefEvent> all_;
  int64_t applied_ = 0;
  int64_t late_ = 0;
};

}  // namespace lakeloop::features::testing
