#include "features/internal/pit_replay.h"

#include <algorithm>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <functional>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "features/internal/plan.h"
#include "stream/window.h"

namespace lakeloop::features::internal {
namespace {

namespace json = boost::json;

struct KeyEvent {
  int64_t t;
  std::string payload;
};

}  // namespace

Result<ReplayResult> ReplayStreamView(const stream::EventLog& log, const FeatureView& view,
                                      const std::vector<std::string>& keys,
                                      const std::vector<int64_t>& times_us,
                                      const ReplayOptions& options) {
  if (view.kind != ViewKind::kStream) {
    return InvalidArgument("view '" + view.name + "' is not a stream view");
  }
  if (keys.size() != times_us.size()) {
    return InvalidArgument("keys and times differ in size");
  }
  ASSIGN_OR_RETURN(Plan plan, BuildPlan(view));
  ASSIGN_OR_RETURN(std::vector<stream::OffsetRange> ranges, log.Offsets(view.stream));
  ReplayResult out;
  out.offsets = ranges;
  if (!options.end_offsets.empty()) {
    if (options.end_offsets.size() != ranges.size()) {
      return InvalidArgument("end_offsets: one per partition of stream '" + view.stream + "'");
    }
    for (size_t p = 0; p < ranges.size(); ++p) {
      out.offsets[p].end = std::min(ranges[p].end, options.end_offsets[p]);
    }
  }

  // Entity rows by key.
  std::unordered_map<std::string_view, std::vector<size_t>> rows_of;
  rows_of.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) rows_of[keys[i]].push_back(i);
  std::unordered_map<std::string_view, std::vector<KeyEvent>> events_of;

  int64_t total = 0;
  for (const auto& r : out.offsets) total += std::max<int64_t>(0, r.end - r.begin);
  // 1) Each partition in log order through the processor's watermark: what it accepts.
  alignas(16) unsigned char buffer[8192];
  stream::Watermark* watermark = nullptr;
  auto process = [&](const stream::Record& r) {
    ++out.events_read;
    json::monotonic_resource mr(buffer, sizeof buffer);
    boost::system::error_code ec;
    json::value payload = json::parse(r.event.payload, ec, &mr);
    if (ec || !payload.is_object()) {
      ++out.events_invalid;
    } else if (!watermark->Observe(r.event.event_time_us)) {
      ++out.events_late;
    } else {
      auto it = rows_of.find(r.event.key);
      if (it != rows_of.end()) {
        events_of[it->first].push_back({r.event.event_time_us, r.event.payload});
      }
    }
  };
  for (size_t p = 0; p < out.offsets.size(); ++p) {
    stream::Watermark wm(view.allowed_lateness_us);
    watermark = &wm;
    int64_t next = out.offsets[p].begin;
    const int64_t end = out.offsets[p].end;
    if (next > 0) {
      if (options.archived) {
        ASSIGN_OR_RETURN(std::vector<stream::Record> old,
                         options.archived(static_cast<int32_t>(p), next));
        for (const stream::Record& r : old) {
          if (r.offset >= next) break;
          ++out.events_archived;
          process(r);
        }
      } else {
        out.complete = false;
      }
    }
    while (next < end) {
      if (options.cancelled && options.cancelled->load()) {
        return Status(Code::kCancelled, "historical retrieval cancelled");
      }
      const size_t want = static_cast<size_t>(
          std::min<int64_t>(end - next, static_cast<int64_t>(options.read_batch)));
      ASSIGN_OR_RETURN(std::vector<stream::Record> recs,
                       log.Read(view.stream, static_cast<int32_t>(p), next, want));
      if (recs.empty()) break;  // trimmed meanwhile
      for (const stream::Record& r : recs) {
        if (r.offset >= end) break;
        next = r.offset + 1;
        process(r);
      }
      if (options.progress) options.progress(out.events_read, total);
    }
  }

  // 2) Per key: its rows by time; events applied in time order (ties in log order, as the later
  // one wins `last` online too) up to each row's time, then read at that time.
  const size_t nf = view.features.size();
  out.values.assign(nf, std::vector<std::optional<double>>(keys.size()));
  out.has_state.assign(keys.size(), false);
  std::vector<std::optional<double>> numbers;
  for (auto& [key, rows] : rows_of) {
    std::sort(rows.begin(), rows.end(),
              [&](size_t a, size_t b) { return times_us[a] < times_us[b]; });
    std::vector<KeyEvent>* evs = nullptr;
    if (auto it = events_of.find(key); it != events_of.end()) {
      evs = &it->second;
      std::stable_sort(evs->begin(), evs->end(),
                       [](const KeyEvent& a, const KeyEvent& b) { return a.t < b.t; });
    }
    std::optional<KeyState> state;
    size_t j = 0;
    for (size_t row : rows) {
      const int64_t t = times_us[row];
      while (evs && j < evs->size() && (*evs)[j].t <= t) {
        if (!state) {
          ASSIGN_OR_RETURN(KeyState s, NewKeyState(plan));
          state = std::move(s);
        }
        json::monotonic_resource mr(buffer, sizeof buffer);
        boost::system::error_code ec;
        json::value payload = json::parse((*evs)[j].payload, ec, &mr);
        ApplyEvent(plan, payload.get_object(), (*evs)[j].t, &*state);
        ++out.events_used;
        ++j;
      }
      out.has_state[row] = state.has_value();
      ReadNumbers(plan, state ? &*state : nullptr, t, &numbers);
      for (size_t f = 0; f < nf; ++f) out.values[f][row] = numbers[f];
    }
  }
  return out;
}

}  // namespace lakeloop::features::internal
