// features/internal/pit_replay: point-in-time values of a stream feature view, computed by
// replaying the stream's event log through the processor's own code (Plan, ApplyEvent, TileState,
// Watermark, HyperLogLog), so that historical values are what an online read returns.
//
// Semantics (the contract the differential tests are written to):
//   - Lateness, by log order: every partition is read in offset order through a stream::Watermark
//     with the view's allowed_lateness, exactly as the StreamProcessor does; an event it would
//     drop as late is dropped here too (whatever its event time). Payloads that are not JSON
//     objects are skipped, as online.
//   - Point in time: the value for (key, t) aggregates the key's accepted events stamped at or
//     before t (`e <= t`: an event stamped exactly at t counts, one stamped after t never does),
//     i.e. what an online read at t returns once every event stamped <= t has arrived.
//   - Windows: TileState::Read(t, W) of a state holding exactly those events, so the window is
//     `ceil_h(t) - W < e <= t` (tail rounded to the aggregator's tile h, stream/window.h), and
//     count_distinct is the same HyperLogLog merge as online.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "features/features.h"
#include "stream/stream.h"

namespace lakeloop::features::internal {

struct ReplayResult {
  // values[f][row]: feature f of view.features (definition order) for entity row `row`.
  std::vector<std::vector<std::optional<double>>> values;
  // Per row: the key had an accepted event stamped <= t (the online store had a state for it at
  // t). False rows read like StreamProcessor::Get of an unknown key (counts 0); the online
  // service reports them "missing", and datasets write nulls.
  std::vector<bool> has_state;
  std::vector<stream::OffsetRange> offsets;  // per partition: the log range replayed
  int64_t events_read = 0;
  int64_t events_late = 0;
  int64_t events_invalid = 0;
  int64_t events_used = 0;      // accepted events of the requested keys applied to some row
  int64_t events_archived = 0;  // of events_read, those read from `archived`
  // False when the log no longer holds the stream's first events (retention trimmed them) and
  // no `archived` source gave them: windows reaching back that far may miss events.
  bool complete = true;
};

struct ReplayOptions {
  // Replay up to these offsets (per partition); empty: the log's end offsets when the call starts.
  std::vector<int64_t> end_offsets;
  size_t read_batch = 4096;
  std::shared_ptr<std::atomic<bool>> cancelled;  // kCancelled when set
  // Records the log no longer holds (below a partition's first retained offset), in offset
  // order — the archive raw.<stream>: called once for each partition whose log starts above 0.
  // Null: those records are not replayed and the result says complete = false.
  std::function<Result<std::vector<stream::Record>>(int32_t partition, int64_t below_offset)>
      archived;
  // Called after each read batch with (records read, records to read).
  std::function<void(int64_t, int64_t)> progress;
};

// keys[i], times_us[i]: entity row i. kNotFound when the view's stream is not in the log;
// kInvalidArgument for a view that is not of kind stream or sizes that differ.
Result<ReplayResult> ReplayStreamView(const stream::EventLog& log, const FeatureView& view,
                                      const std::vector<std::string>& keys,
                                      const std::vector<int64_t>& times_us,
                                      const ReplayOptions& options = {});

}  // namespace lakeloop::features::internal
