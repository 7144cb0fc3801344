// features/internal/plan: how a stream feature view is computed. Features that share an
// aggregation, a field and filters share one TileState (an "aggregator") whose tiles serve all
// their windows; a key's state is one TileState per aggregator, stored as one value.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "features/features.h"
#include "stream/window.h"

namespace lakeloop::features::internal {

struct Aggregator {
  stream::Agg agg;
  std::string field;
  std::vector<WhereClause> where;
  stream::TileConfig config;
};

struct Plan {
  FeatureView view;
  std::vector<Aggregator> aggregators;
  std::vector<size_t> feature_aggregator;  // per feature of view.features
  // Changes whenever stored states stop matching the definition (aggregators, tiles, lateness).
  std::string fingerprint;
};

// Fine tile: gcd(60 s, every window <= 1 h of the aggregator); coarse block: 1 h.
Result<Plan> BuildPlan(const FeatureView& view);

struct KeyState {
  std::vector<stream::TileState> tiles;  // one per aggregator
};

Result<KeyState> NewKeyState(const Plan& plan);
std::string EncodeKeyState(const KeyState& state);
// The same bytes appended to `out`; `scratch` is a reusable buffer (no per-tile temporaries).
void EncodeKeyStateTo(const KeyState& state, std::string* out, std::string* scratch);
Result<KeyState> DecodeKeyState(const Plan& plan, std::string_view bytes);  // kDataLoss

// Applies one event (its payload object) to every aggregator whose filters match and whose field
// is present with a usable value. Returns how many aggregators it updated.
int ApplyEvent(const Plan& plan, const boost::json::object& payload, int64_t event_time_us,
               KeyState* state);

// Feature values at read time t; `state` null = the key has no state.
void ReadValues(const Plan& plan, const KeyState* state, int64_t t_us,
                std::vector<FeatureValue>* out);

// Just the values of ReadValues (same numbers, no names: the per-event feature-log path).
void ReadNumbers(const Plan& plan, const KeyState* state, int64_t t_us,
                 std::vector<std::optional<double>>* out);

// One feature-log CSV line: key, event time, values, applied_at, partition, offset.
void AppendLogRow(std::string* out, std::string_view key, int64_t event_time_us,
                  const std::vector<FeatureValue>& values, int64_t applied_at_us, int32_t partition,
                  int64_t offset);
void AppendLogRow(std::string* out, std::string_view key, int64_t event_time_us,
                  const std::vector<std::optional<double>>& values, int64_t applied_at_us,
                  int32_t partition, int64_t offset);

}  // namespace lakeloop::features::internal
