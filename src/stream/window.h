// stream/window: primitives for windowed stream features. Pure C++, no I/O: the features module
// keeps a TileState per (entity key, feature) as bytes (Serialize) in the event log's `state`
// column family and a Watermark per partition.
//
// Window semantics (the contract a differential test against SQL is written to):
//   Times are UTC micros. Tiles are half-open on the left: fine tile k covers (k*g, (k+1)*g],
//   coarse block b covers (b*G, (b+1)*G], g = fine_tile_us, G = coarse_tile_us (a multiple of g).
//   ceil_x(t) is the smallest multiple of x that is >= t. For a window W, the tail granularity is
//   h = g when W <= G, else h = G; W must be a multiple of h.
//   Read(t, W) aggregates every applied event e with  ceil_h(t) - W < e <= ceil_g(t).
//   When no applied event in t's fine tile is later than t (always so for reads at the present,
//   t >= every event time seen), that is exactly          ceil_h(t) - W < e <= t,
//   and Read reports exact = true. So: the head edge is exact per event; the tail edge is rounded
//   up to h, i.e. the window never holds events older than t - W, and holds every event newer than
//   t - W + h (e.g. 5m window: 1-minute tail; 24h window: 1-hour tail). Reads at t below the
//   state's horizon (max event time - allowed lateness) may miss evicted tiles: exact = false.
//   Late events (older than the partition watermark) are the caller's to drop (Watermark).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace lakeloop::stream {

enum class Agg { kCount, kSum, kAvg, kMin, kMax, kLast, kCountDistinct };
std::string_view AggName(Agg agg);  // "count", "sum", "avg", "min", "max", "last", "count_distinct"
Result<Agg> ParseAgg(std::string_view name);

// HyperLogLog with 2^precision 6-bit registers (stored a byte each), 64-bit hashes, a sparse form
// while it is small (what most tiles are), linear counting at low cardinality. Mergeable (same
// precision) and serialisable. Standard error 1.04 / sqrt(2^precision): 1.6% at 12. Not
// thread-safe (a value type).
class HyperLogLog {
 public:
  explicit HyperLogLog(int precision = 12);     // clamped to [4, 18]
  static uint64_t Hash(std::string_view item);  // stable across platforms (FNV-1a + splitmix64)
  void Add(std::string_view item) { AddHash(Hash(item)); }
  void AddHash(uint64_t hash);
  // kInvalidArgument when the precisions differ.
  Status Merge(const HyperLogLog& other);
  double Estimate() const;
  bool empty() const { return sparse_.empty() && dense_.empty(); }
  int precision() const { return p_; }
  static double StandardError(int precision);

  void AppendTo(std::string* out) const;
  static bool ParseFrom(std::string_view* in, HyperLogLog* out);

 private:
  void ToDense();
  void Set(uint32_t index, uint8_t rho);
  int p_;
  std::vector<uint32_t> sparse_;  // sorted by index: index << 8 | rho
  std::vector<uint8_t> dense_;    // 2^p registers once dense
};

struct TileConfig {
  int64_t fine_tile_us = 60'000'000;       // g
  int64_t coarse_tile_us = 3'600'000'000;  // G, a multiple of g
  int64_t max_window_us = 86'400'000'000;  // longest window that will be read
  int64_t allowed_lateness_us = 0;  // how far behind its newest event a key may still get events
  int hll_precision = 12;
};

struct WindowValue {
  int64_t count = 0;  // events in the window (every aggregation)
  // count, sum, count_distinct: always set (0 when empty); avg, min, max, last: unset when empty.
  std::optional<double> value;
  bool exact = true;  // see the semantics above
};

// The tiles of one aggregation for one entity key: fine tiles for the newest coarse block (plus
// lateness), coarse blocks for max_window. Each event updates its fine tile and its coarse block
// at once (no roll-up step). Bounded: at most G/g + lateness/g + 2 fine tiles and
// max_window/G + lateness/G + 2 coarse blocks, fewer when events are sparse (only tiles with
// events exist). A value type; not thread-safe.
class TileState {
 public:
  // kInvalidArgument for inconsistent sizes.
  static Result<TileState> Create(Agg agg, const TileConfig& config);

  // Applies one event. `value` is ignored by kCount; kCountDistinct uses AddItem.
  void Add(int64_t event_time_us, double value);
  void AddItem(int64_t event_time_us, std::string_view item);
  // The aggregate over window_us as of read time t (semantics above). kInvalidArgument when the
  // window is not a positive multiple of its tail granularity or exceeds max_window_us.
  Result<WindowValue> Read(int64_t t_us, int64_t window_us) const;

  // Drops the tiles that no read at t >= horizon_us needs. Add calls it with
  // max_event_time - allowed_lateness.
  void Evict(int64_t horizon_us);

  std::string Serialize() const;
  // Appends exactly what Serialize returns to `out` (no temporary: the features writer encodes
  // every touched key's tiles per poll).
  void SerializeTo(std::string* out) const;
  static Result<TileState> Deserialize(std::string_view bytes);  // kDataLoss when corrupt

  Agg agg() const { return agg_; }
  const TileConfig& config() const { return config_; }
  int64_t max_event_time() const { return max_event_time_; }
  int64_t horizon() const { return horizon_; }
  size_t fine_tiles() const { return fine_.size(); }
  size_t coarse_tiles() const { return coarse_.size(); }

  // One tile's partial aggregate (public for serialisation helpers and tests).
  struct Partial {
    int64_t count = 0;
    double sum = 0;
    double min = 0;
    double max = 0;
    int64_t last_time = 0;
    double last_value = 0;
    int64_t max_time = 0;  // newest event time in the tile
    std::optional<HyperLogLog> hll;
  };

 private:
  TileState(Agg agg, const TileConfig& config) : agg_(agg), config_(config) {}
  void Apply(int64_t event_time_us, double value, const uint64_t* hash);
  void Merge(Partial* into, const Partial& from) const;
  static Partial* Upsert(std::vector<std::pair<int64_t, Partial>>* tiles, int64_t index);

  Agg agg_;
  TileConfig config_;
  int64_t max_event_time_ = INT64_MIN;
  int64_t horizon_ = INT64_MIN;
  std::vector<std::pair<int64_t, Partial>> fine_;    // sorted by tile index
  std::vector<std::pair<int64_t, Partial>> coarse_;  // sorted by block index
};

// Per-partition event-time progress: the newest event time seen minus the allowed lateness.
// An event older than the watermark is late: Observe returns false and counts it, and the caller
// leaves it out of every aggregation. A value type; not thread-safe.
class Watermark {
 public:
  explicit Watermark(int64_t allowed_lateness_us = 0) : lateness_(allowed_lateness_us) {}
  // True (and the watermark may advance) when event_time_us >= value(); false when late.
  bool Observe(int64_t event_time_us);
  int64_t value() const;  // INT64_MIN before the first event
  int64_t max_event_time() const { return max_event_time_; }
  int64_t late_events() const { return late_; }
  int64_t allowed_lateness() const { return lateness_; }

  std::string Serialize() const;
  static Result<Watermark> Deserialize(std::string_view bytes);

 private:
  int64_t lateness_;
  int64_t max_event_time_ = INT64_MIN;
  int64_t late_ = 0;
};

// Floor division for tile arithmetic (b > 0), and the fine tile index of a time: tile k covers
// (k*size, (k+1)*size].
inline int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-(a + 1)) / b) - 1; }
inline int64_t TileIndex(int64_t t, int64_t size) { return FloorDiv(t - 1, size); }
// ceil_size(t): the smallest multiple of size that is >= t.
inline int64_t CeilTo(int64_t t, int64_t size) { return (TileIndex(t, size) + 1) * size; }

}  // namespace lakeloop::stream
