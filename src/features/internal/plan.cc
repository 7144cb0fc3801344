#include "features/internal/plan.h"

#include <boost/json/value.hpp>
#include <charconv>
#include <cmath>
#include <numeric>

namespace lakeloop::features::internal {
namespace {

namespace json = boost::json;
constexpr int64_t kMinuteUs = 60'000'000;
constexpr int64_t kHourUs = 3'600'000'000;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const auto b = static_cast<unsigned char>((*in)[0]);
    in->remove_prefix(1);
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

bool AsDouble(const json::value& v, double* out) {
  switch (v.kind()) {
    case json::kind::int64:
      *out = static_cast<double>(v.get_int64());
      return true;
    case json::kind::uint64:
      *out = static_cast<double>(v.get_uint64());
      return true;
    case json::kind::double_:
      *out = v.get_double();
      return true;
    default:
      return false;
  }
}

bool Matches(const std::vector<WhereClause>& where, const json::object& payload) {
  for (const auto& c : where) {
    const json::value* v = payload.if_contains(c.field);
    if (!v) return false;
    if (const auto* s = std::get_if<std::string>(&c.value)) {
      if (!v->is_string() || v->get_string() != *s) return false;
    } else if (const auto* d = std::get_if<double>(&c.value)) {
      double x;
      if (!AsDouble(*v, &x) || x != *d) return false;
    } else {
      if (!v->is_bool() || v->get_bool() != std::get<bool>(c.value)) return false;
    }
  }
  return true;
}

std::string WhereText(const std::vector<WhereClause>& where) {
  std::string out;
  for (const auto& c : where) {
    out += c.field + "=";
    if (const auto* s = std::get_if<std::string>(&c.value)) {
      out += "s" + std::to_string(s->size()) + ":" + *s;
    } else if (const auto* d = std::get_if<double>(&c.value)) {
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof buf, *d);
      out += "d" + std::string(buf, r.ptr);
    } else {
      out += std::get<bool>(c.value) ? "btrue" : "bfalse";
    }
    out += ";";
  }
  return out;
}

void AppendDouble(std::string* out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

}  // namespace

Result<Plan> BuildPlan(const FeatureView& view) {
  Plan plan;
  plan.view = view;
  for (const auto& f : view.features) {
    size_t i = 0;
    for (; i < plan.aggregators.size(); ++i) {
      const auto& a = plan.aggregators[i];
      if (a.agg == f.agg && a.field == f.field && a.where == f.where) break;
    }
    if (i == plan.aggregators.size()) {
      Aggregator a{f.agg, f.field, f.where, {}};
      a.config.fine_tile_us = kMinuteUs;
      a.config.coarse_tile_us = kHourUs;
      a.config.max_window_us = 0;
      a.config.allowed_lateness_us = view.allowed_lateness_us;
      plan.aggregators.push_back(std::move(a));
    }
    auto& c = plan.aggregators[i].config;
    if (f.window_us <= kHourUs) c.fine_tile_us = std::gcd(c.fine_tile_us, f.window_us);
    c.max_window_us = std::max(c.max_window_us, f.window_us);
    plan.feature_aggregator.push_back(i);
  }
  plan.fingerprint = "v1|" + view.stream + "|" + std::to_string(view.allowed_lateness_us);
  for (const auto& a : plan.aggregators) {
    if (a.config.fine_tile_us < 1'000'000 || a.config.fine_tile_us % 1'000'000 != 0) {
      return InvalidArgument(view.file_name + ": windows must be whole seconds");
    }
    ASSIGN_OR_RETURN(auto probe, stream::TileState::Create(a.agg, a.config));
    (void)probe;
    plan.fingerprint += "|" + std::string(stream::AggName(a.agg)) + "," + a.field + "," +
                        WhereText(a.where) + "," + std::to_string(a.config.fine_tile_us) + "," +
                        std::to_string(a.config.coarse_tile_us) + "," +
                        std::to_string(a.config.max_window_us);
  }
  return plan;
}

Result<KeyState> NewKeyState(const Plan& plan) {
  KeyState s;
  s.tiles.reserve(plan.aggregators.size());
  for (const auto& a : plan.aggregators) {
    ASSIGN_OR_RETURN(auto t, stream::TileState::Create(a.agg, a.config));
    s.tiles.push_back(std::move(t));
  }
  return s;
}

std::string EncodeKeyState(const KeyState& state) {
  std::string out, scratch;
  EncodeKeyStateTo(state, &out, &scratch);
  return out;
}

void EncodeKeyStateTo(const KeyState& state, std::string* out, std::string* scratch) {
  out->push_back(1);  // format version
  PutVarint(out, state.tiles.size());
  for (const auto& t : state.tiles) {
    scratch->clear();
    t.SerializeTo(scratch);
    PutVarint(out, scratch->size());
    out->append(*scratch);
  }
}

Result<KeyState> DecodeKeyState(const Plan& plan, std::string_view in) {
  const Status bad(Code::kDataLoss, "corrupt feature state of view " + plan.view.name);
  uint64_t n;
  if (in.empty() || in[0] != 1) return bad;
  in.remove_prefix(1);
  if (!GetVarint(&in, &n) || n != plan.aggregators.size()) return bad;
  KeyState s;
  s.tiles.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len;
    if (!GetVarint(&in, &len) || len > in.size()) return bad;
    auto t = stream::TileState::Deserialize(in.substr(0, len));
    if (!t.ok()) return bad;
    in.remove_prefix(len);
    s.tiles.push_back(std::move(t).value());
  }
  if (!in.empty()) return bad;
  return s;
}

int ApplyEvent(const Plan& plan, const json::object& payload, int64_t t, KeyState* state) {
  int applied = 0;
  for (size_t i = 0; i < plan.aggregators.size(); ++i) {
    const Aggregator& a = plan.aggregators[i];
    if (!Matches(a.where, payload)) continue;
    stream::TileState& tiles = state->tiles[i];
    if (a.agg == stream::Agg::kCount) {
      tiles.Add(t, 0);
      ++applied;
      continue;
    }
    const json::value* v = payload.if_contains(a.field);
    if (!v) continue;
    if (a.agg == stream::Agg::kCountDistinct) {
      char buf[32];
      switch (v->kind()) {
        case json::kind::string:
          tiles.AddItem(t, v->get_string());
          break;
        case json::kind::bool_:
          tiles.AddItem(t, v->get_bool() ? "true" : "false");
          break;
        case json::kind::int64: {
          auto r = std::to_chars(buf, buf + sizeof buf, v->get_int64());
          tiles.AddItem(t, std::string_view(buf, r.ptr - buf));
          break;
        }
        case json::kind::uint64: {
          auto r = std::to_chars(buf, buf + sizeof buf, v->get_uint64());
          tiles.AddItem(t, std::string_view(buf, r.ptr - buf));
          break;
        }
        case json::kind::double_: {
          auto r = std::to_chars(buf, buf + sizeof buf, v->get_double());
          tiles.AddItem(t, std::string_view(buf, r.ptr - buf));
          break;
        }
        default:
          continue;
      }
      ++applied;
      continue;
    }
    double x;
    if (!AsDouble(*v, &x)) continue;
    tiles.Add(t, x);
    ++applied;
  }
  return applied;
}

void ReadValues(const Plan& plan, const KeyState* state, int64_t t,
                std::vector<FeatureValue>* out) {
  out->clear();
  out->reserve(plan.view.features.size());
  for (size_t i = 0; i < plan.view.features.size(); ++i) {
    const FeatureDef& f = plan.view.features[i];
    FeatureValue v;
    v.name = f.name;
    if (state) {
      auto r = state->tiles[plan.feature_aggregator[i]].Read(t, f.window_us);
      if (r.ok()) {
        v.value = r->value;
        v.exact = r->exact;
      }
    } else if (f.agg == stream::Agg::kCount || f.agg == stream::Agg::kSum ||
               f.agg == stream::Agg::kCountDistinct) {
      v.value = 0.0;
    }
    out->push_back(std::move(v));
  }
}

void ReadNumbers(const Plan& plan, const KeyState* state, int64_t t,
                 std::vector<std::optional<double>>* out) {
  out->clear();
  for (size_t i = 0; i < plan.view.features.size(); ++i) {
    const FeatureDef& f = plan.view.features[i];
    std::optional<double> v;
    if (state) {
      auto r = state->tiles[plan.feature_aggregator[i]].Read(t, f.window_us);
      if (r.ok()) v = r->value;
    } else if (f.agg == stream::Agg::kCount || f.agg == stream::Agg::kSum ||
               f.agg == stream::Agg::kCountDistinct) {
      v = 0.0;
    }
    out->push_back(v);
  }
}

void AppendLogRow(std::string* out, std::string_view key, int64_t event_time_us,
                  const std::vector<FeatureValue>& values, int64_t applied_at_us, int32_t partition,
                  int64_t offset) {
  std::vector<std::optional<double>> numbers;
  numbers.reserve(values.size());
  for (const auto& v : values) numbers.push_back(v.value);
  AppendLogRow(out, key, event_time_us, numbers, applied_at_us, partition, offset);
}

void AppendLogRow(std::string* out, std::string_view key, int64_t event_time_us,
                  const std::vector<std::optional<double>>& values, int64_t applied_at_us,
                  int32_t partition, int64_t offset) {
  if (out->empty()) out->reserve(key.size() + 64 + values.size() * 12);
  out->push_back('"');
  for (char c : key) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
  out->push_back(',');
  AppendInt(out, event_time_us);
  for (const auto& v : values) {
    out->push_back(',');
    if (v && std::isfinite(*v)) AppendDouble(out, *v);
  }
  out->push_back(',');
  AppendInt(out, applied_at_us);
  out->push_back(',');
  AppendInt(out, partition);
  out->push_back(',');
  AppendInt(out, offset);
  out->push_back('\n');
}

}  // namespace lakeloop::features::internal
