#include "stream/window.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "stream/internal/codec.h"

namespace lakeloop::stream {
namespace {

using internal::GetVarint64;
using internal::PutVarint64;

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

void PutDouble(std::string* out, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, 8);
  internal::PutFixed64BE(out, bits);
}
bool GetDouble(std::string_view* in, double* d) {
  uint64_t bits;
  if (!internal::GetFixed64(in, &bits)) return false;
  std::memcpy(d, &bits, 8);
  return true;
}
bool GetSigned(std::string_view* in, int64_t* v) {
  uint64_t u;
  if (!GetVarint64(in, &u)) return false;
  *v = UnZigZag(u);
  return true;
}

}  // namespace

std::string_view AggName(Agg agg) {
  switch (agg) {
    case Agg::kCount:
      return "count";
    case Agg::kSum:
      return "sum";
    case Agg::kAvg:
      return "avg";
    case Agg::kMin:
      return "min";
    case Agg::kMax:
      return "max";
    case Agg::kLast:
      return "last";
    case Agg::kCountDistinct:
      return "count_distinct";
  }
  return "?";
}

Result<Agg> ParseAgg(std::string_view name) {
  for (Agg a :
       {Agg::kCount, Agg::kSum, Agg::kAvg, Agg::kMin, Agg::kMax, Agg::kLast, Agg::kCountDistinct}) {
    if (AggName(a) == name) return a;
  }
  return InvalidArgument("unknown aggregation '" + std::string(name) + "'");
}

// ---------------------------------------------------------------------------------------------
// HyperLogLog

HyperLogLog::HyperLogLog(int precision) : p_(std::clamp(precision, 4, 18)) {}

uint64_t HyperLogLog::Hash(std::string_view item) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : item) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  // splitmix64 finaliser: FNV alone has weak high bits, HLL uses them as the register index.
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

double HyperLogLog::StandardError(int precision) {
  return 1.04 / std::sqrt(static_cast<double>(1u << precision));
}

void HyperLogLog::AddHash(uint64_t hash) {
  const auto index = static_cast<uint32_t>(hash >> (64 - p_));
  const uint64_t rest = hash << p_;
  const auto rho = static_cast<uint8_t>(rest == 0 ? 64 - p_ + 1 : std::countl_zero(rest) + 1);
  Set(index, rho);
}

void HyperLogLog::Set(uint32_t index, uint8_t rho) {
  if (!dense_.empty()) {
    dense_[index] = std::max(dense_[index], rho);
    return;
  }
  const uint32_t entry = index << 8 | rho;
  auto it = std::lower_bound(sparse_.begin(), sparse_.end(), index << 8);
  if (it != sparse_.end() && (*it >> 8) == index) {
    if ((*it & 0xff) < rho) *it = entry;
    return;
  }
  sparse_.insert(it, entry);
  // The sparse form costs 4 bytes an entry; switch when the dense one (1 byte a register) is
  // smaller.
  if (sparse_.size() * 4 > (size_t{1} << p_)) ToDense();
}

void HyperLogLog::ToDense() {
  dense_.assign(size_t{1} << p_, 0);
  for (uint32_t e : sparse_) dense_[e >> 8] = std::max<uint8_t>(dense_[e >> 8], e & 0xff);
  sparse_.clear();
  sparse_.shrink_to_fit();
}

Status HyperLogLog::Merge(const HyperLogLog& other) {
  if (other.p_ != p_) return InvalidArgument("HyperLogLog precisions differ");
  if (!other.dense_.empty()) {
    if (dense_.empty()) ToDense();
    for (size_t i = 0; i < dense_.size(); ++i) dense_[i] = std::max(dense_[i], other.dense_[i]);
    return Status::Ok();
  }
  for (uint32_t e : other.sparse_) Set(e >> 8, static_cast<uint8_t>(e & 0xff));
  return Status::Ok();
}

double HyperLogLog::Estimate() const {
  const double m = static_cast<double>(size_t{1} << p_);
  double sum = 0;
  double zeros = 0;
  if (!dense_.empty()) {
    for (uint8_t r : dense_) {
      sum += std::ldexp(1.0, -r);
      zeros += r == 0;
    }
  } else {
    zeros = m - static_cast<double>(sparse_.size());
    sum = zeros;
    for (uint32_t e : sparse_) sum += std::ldexp(1.0, -static_cast<int>(e & 0xff));
  }
  const double alpha = p_ == 4   ? 0.673
                       : p_ == 5 ? 0.697
                       : p_ == 6 ? 0.709
                                 : 0.7213 / (1 + 1.079 / m);
  double estimate = alpha * m * m / sum;
  if (estimate <= 2.5 * m && zeros > 0) estimate = m * std::log(m / zeros);  // linear counting
  return estimate;
}

void HyperLogLog::AppendTo(std::string* out) const {
  out->push_back(static_cast<char>(p_));
  if (!dense_.empty()) {
    out->push_back(1);
    out->append(reinterpret_cast<const char*>(dense_.data()), dense_.size());
    return;
  }
  out->push_back(0);
  PutVarint64(out, sparse_.size());
  uint32_t prev = 0;
  for (uint32_t e : sparse_) {
    PutVarint64(out, e - prev);  // sorted: deltas stay small
    prev = e;
  }
}

bool HyperLogLog::ParseFrom(std::string_view* in, HyperLogLog* out) {
  if (in->size() < 2) return false;
  const int p = static_cast<unsigned char>((*in)[0]);
  const int mode = (*in)[1];
  in->remove_prefix(2);
  if (p < 4 || p > 18) return false;
  *out = HyperLogLog(p);
  const size_t m = size_t{1} << p;
  if (mode == 1) {
    if (in->size() < m) return false;
    out->dense_.assign(in->begin(), in->begin() + m);
    in->remove_prefix(m);
    return true;
  }
  uint64_t n;
  if (mode != 0 || !GetVarint64(in, &n) || n > m) return false;
  out->sparse_.reserve(n);
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t d;
    if (!GetVarint64(in, &d)) return false;
    prev += d;
    if ((prev >> 8) >= m) return false;
    out->sparse_.push_back(static_cast<uint32_t>(prev));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// TileState

Result<TileState> TileState::Create(Agg agg, const TileConfig& c) {
  if (c.fine_tile_us <= 0 || c.coarse_tile_us <= 0 || c.coarse_tile_us % c.fine_tile_us != 0) {
    return InvalidArgument("coarse_tile_us must be a positive multiple of fine_tile_us");
  }
  if (c.max_window_us <= 0 || c.allowed_lateness_us < 0) {
    return InvalidArgument("max_window_us must be positive and allowed_lateness_us >= 0");
  }
  if (c.hll_precision < 4 || c.hll_precision > 18) {
    return InvalidArgument("hll_precision must be in [4, 18]");
  }
  return TileState(agg, c);
}

TileState::Partial* TileState::Upsert(std::vector<std::pair<int64_t, Partial>>* tiles,
                                      int64_t index) {
  // Events mostly arrive in time order: the tile is usually the last one or a new last one.
  if (tiles->empty() || tiles->back().first < index) {
    tiles->emplace_back(index, Partial{});
    return &tiles->back().second;
  }
  if (tiles->back().first == index) return &tiles->back().second;
  auto it = std::lower_bound(tiles->begin(), tiles->end(), index,
                             [](const auto& t, int64_t i) { return t.first < i; });
  if (it == tiles->end() || it->first != index) it = tiles->emplace(it, index, Partial{});
  return &it->second;
}

void TileState::Apply(int64_t e, double v, const uint64_t* hash) {
  auto update = [&](Partial* p) {
    if (p->count == 0) {
      p->min = p->max = v;
      p->last_time = p->max_time = e;
      p->last_value = v;
    }
    ++p->count;
    p->sum += v;
    p->min = std::min(p->min, v);
    p->max = std::max(p->max, v);
    if (e >= p->last_time) {  // ties: the later arrival wins
      p->last_time = e;
      p->last_value = v;
    }
    p->max_time = std::max(p->max_time, e);
    if (hash) {
      if (!p->hll) p->hll.emplace(config_.hll_precision);
      p->hll->AddHash(*hash);
    }
  };
  update(Upsert(&fine_, TileIndex(e, config_.fine_tile_us)));
  if (config_.max_window_us > config_.coarse_tile_us) {
    update(Upsert(&coarse_, TileIndex(e, config_.coarse_tile_us)));
  }
  if (e > max_event_time_) {
    max_event_time_ = e;
    const int64_t h = e - config_.allowed_lateness_us;
    if (h > horizon_) Evict(h);
  }
}

void TileState::Add(int64_t event_time_us, double value) {
  if (agg_ == Agg::kCount) value = 0;
  Apply(event_time_us, value, nullptr);
}

void TileState::AddItem(int64_t event_time_us, std::string_view item) {
  const uint64_t h = HyperLogLog::Hash(item);
  Apply(event_time_us, 0, &h);
}

void TileState::Evict(int64_t horizon_us) {
  horizon_ = std::max(horizon_, horizon_us);
  const int64_t g = config_.fine_tile_us, G = config_.coarse_tile_us;
  // Fine tiles serve windows <= G and the head block of longer ones: reads at t >= horizon need
  // those ending after horizon - min(G, max_window). Coarse blocks: after horizon - max_window.
  const int64_t fine_keep = horizon_ - std::min(G, config_.max_window_us);
  const int64_t coarse_keep = horizon_ - config_.max_window_us;
  auto fine_end = std::find_if(fine_.begin(), fine_.end(),
                               [&](const auto& t) { return (t.first + 1) * g > fine_keep; });
  fine_.erase(fine_.begin(), fine_end);
  auto coarse_end = std::find_if(coarse_.begin(), coarse_.end(),
                                 [&](const auto& t) { return (t.first + 1) * G > coarse_keep; });
  coarse_.erase(coarse_.begin(), coarse_end);
}

void TileState::Merge(Partial* into, const Partial& from) const {
  if (from.count == 0) return;
  if (into->count == 0) {
    *into = from;
    return;
  }
  into->count += from.count;
  into->sum += from.sum;
  into->min = std::min(into->min, from.min);
  into->max = std::max(into->max, from.max);
  if (from.last_time >= into->last_time) {
    into->last_time = from.last_time;
    into->last_value = from.last_value;
  }
  into->max_time = std::max(into->max_time, from.max_time);
  if (from.hll) {
    if (!into->hll) into->hll.emplace(config_.hll_precision);
    (void)into->hll->Merge(*from.hll);  // same precision by construction
  }
}

Result<WindowValue> TileState::Read(int64_t t, int64_t w) const {
  const int64_t g = config_.fine_tile_us, G = config_.coarse_tile_us;
  const bool coarse_tail = w > G;
  const int64_t h = coarse_tail ? G : g;
  if (w <= 0 || w % h != 0 || w > config_.max_window_us) {
    return InvalidArgument("window must be a positive multiple of " + std::to_string(h) +
                           " us and at most max_window_us");
  }
  const int64_t kt = TileIndex(t, g);
  int64_t first_fine = kt - w / g + 1;
  Partial acc;
  if (coarse_tail) {
    const int64_t b = TileIndex(t, G);
    const int64_t first_block = b - w / G + 1;
    for (const auto& [i, p] : coarse_) {
      if (i >= first_block && i < b) Merge(&acc, p);
    }
    first_fine = b * (G / g);
  }
  bool exact = t >= horizon_;
  for (const auto& [i, p] : fine_) {
    if (i < first_fine || i > kt) continue;
    Merge(&acc, p);
    if (i == kt && p.max_time > t) exact = false;
  }
  WindowValue out;
  out.count = acc.count;
  out.exact = exact;
  const bool any = acc.count > 0;
  switch (agg_) {
    case Agg::kCount:
      out.value = static_cast<double>(acc.count);
      break;
    case Agg::kSum:
      out.value = acc.sum;
      break;
    case Agg::kAvg:
      if (any) out.value = acc.sum / static_cast<double>(acc.count);
      break;
    case Agg::kMin:
      if (any) out.value = acc.min;
      break;
    case Agg::kMax:
      if (any) out.value = acc.max;
      break;
    case Agg::kLast:
      if (any) out.value = acc.last_value;
      break;
    case Agg::kCountDistinct:
      out.value = acc.hll ? std::round(acc.hll->Estimate()) : 0.0;
      break;
  }
  return out;
}

namespace {

void PutPartial(std::string* out, Agg agg, const TileState::Partial& p) {
  PutVarint64(out, static_cast<uint64_t>(p.count));
  PutVarint64(out, ZigZag(p.max_time));
  switch (agg) {
    case Agg::kCount:
      break;
    case Agg::kSum:
    case Agg::kAvg:
      PutDouble(out, p.sum);
      break;
    case Agg::kMin:
      PutDouble(out, p.min);
      break;
    case Agg::kMax:
      PutDouble(out, p.max);
      break;
    case Agg::kLast:
      PutVarint64(out, ZigZag(p.last_time));
      PutDouble(out, p.last_value);
      break;
    case Agg::kCountDistinct:
      out->push_back(p.hll ? 1 : 0);
      if (p.hll) p.hll->AppendTo(out);
      break;
  }
}

bool GetPartial(std::string_view* in, Agg agg, int hll_p, TileState::Partial* p) {
  uint64_t count;
  if (!GetVarint64(in, &count) || !GetSigned(in, &p->max_time)) return false;
  p->count = static_cast<int64_t>(count);
  switch (agg) {
    case Agg::kCount:
      return true;
    case Agg::kSum:
    case Agg::kAvg:
      return GetDouble(in, &p->sum);
    case Agg::kMin:
      return GetDouble(in, &p->min);
    case Agg::kMax:
      return GetDouble(in, &p->max);
    case Agg::kLast:
      return GetSigned(in, &p->last_time) && GetDouble(in, &p->last_value);
    case Agg::kCountDistinct: {
      if (in->empty()) return false;
      const bool has = (*in)[0] == 1;
      in->remove_prefix(1);
      if (!has) return true;
      HyperLogLog h;
      if (!HyperLogLog::ParseFrom(in, &h) || h.precision() != hll_p) return false;
      p->hll = std::move(h);
      return true;
    }
  }
  return false;
}

void PutTiles(std::string* out, Agg agg,
              const std::vector<std::pair<int64_t, TileState::Partial>>& tiles) {
  PutVarint64(out, tiles.size());
  int64_t prev = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    if (i == 0) {
      PutVarint64(out, ZigZag(tiles[i].first));
    } else {
      PutVarint64(out, static_cast<uint64_t>(tiles[i].first - prev));
    }
    prev = tiles[i].first;
    PutPartial(out, agg, tiles[i].second);
  }
}

bool GetTiles(std::string_view* in, Agg agg, int hll_p,
              std::vector<std::pair<int64_t, TileState::Partial>>* tiles) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  tiles->reserve(n);
  int64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t index;
    if (i == 0) {
      if (!GetSigned(in, &index)) return false;
    } else {
      uint64_t d;
      if (!GetVarint64(in, &d) || d == 0) return false;
      index = prev + static_cast<int64_t>(d);
    }
    prev = index;
    TileState::Partial p;
    if (!GetPartial(in, agg, hll_p, &p)) return false;
    tiles->emplace_back(index, std::move(p));
  }
  return true;
}

}  // namespace

std::string TileState::Serialize() const {
  std::string out;
  out.reserve(32 + (fine_.size() + coarse_.size()) * 16);
  SerializeTo(&out);
  return out;
}

void TileState::SerializeTo(std::string* out) const {
  out->push_back(1);  // format version
  out->push_back(static_cast<char>(agg_));
  PutVarint64(out, static_cast<uint64_t>(config_.fine_tile_us));
  PutVarint64(out, static_cast<uint64_t>(config_.coarse_tile_us));
  PutVarint64(out, static_cast<uint64_t>(config_.max_window_us));
  PutVarint64(out, static_cast<uint64_t>(config_.allowed_lateness_us));
  out->push_back(static_cast<char>(config_.hll_precision));
  PutVarint64(out, ZigZag(max_event_time_));
  PutVarint64(out, ZigZag(horizon_));
  PutTiles(out, agg_, fine_);
  PutTiles(out, agg_, coarse_);
}

Result<TileState> TileState::Deserialize(std::string_view in) {
  const Status bad(Code::kDataLoss, "corrupt tile state");
  if (in.size() < 2 || in[0] != 1 || static_cast<unsigned char>(in[1]) > 6) return bad;
  const auto agg = static_cast<Agg>(in[1]);
  in.remove_prefix(2);
  TileConfig c;
  uint64_t g, G, mw, lat;
  if (!GetVarint64(&in, &g) || !GetVarint64(&in, &G) || !GetVarint64(&in, &mw) ||
      !GetVarint64(&in, &lat) || in.empty()) {
    return bad;
  }
  c.fine_tile_us = static_cast<int64_t>(g);
  c.coarse_tile_us = static_cast<int64_t>(G);
  c.max_window_us = static_cast<int64_t>(mw);
  c.allowed_lateness_us = static_cast<int64_t>(lat);
  c.hll_precision = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  auto created = Create(agg, c);
  if (!created.ok()) return bad;
  TileState s = std::move(created).value();
  if (!GetSigned(&in, &s.max_event_time_) || !GetSigned(&in, &s.horizon_) ||
      !GetTiles(&in, agg, c.hll_precision, &s.fine_) ||
      !GetTiles(&in, agg, c.hll_precision, &s.coarse_) || !in.empty()) {
    return bad;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Watermark

bool Watermark::Observe(int64_t e) {
  if (e < value()) {
    ++late_;
    return false;
  }
  max_event_time_ = std::max(max_event_time_, e);
  return true;
}

int64_t Watermark::value() const {
  if (max_event_time_ == INT64_MIN) return INT64_MIN;
  return max_event_time_ - lateness_;
}

std::string Watermark::Serialize() const {
  std::string out;
  out.push_back(1);
  PutVarint64(&out, ZigZag(lateness_));
  PutVarint64(&out, ZigZag(max_event_time_));
  PutVarint64(&out, ZigZag(late_));
  return out;
}

Result<Watermark> Watermark::Deserialize(std::string_view in) {
  if (in.empty() || in[0] != 1) return Status(Code::kDataLoss, "corrupt watermark");
  in.remove_prefix(1);
  Watermark w;
  if (!GetSigned(&in, &w.lateness_) || !GetSigned(&in, &w.max_event_time_) ||
      !GetSigned(&in, &w.late_) || !in.empty()) {
    return Status(Code::kDataLoss, "corrupt watermark");
  }
  return w;
}

}  // namespace lakeloop::stream
