#include "stream/window.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

namespace lakeloop::stream {
namespace {

constexpr int64_t kSec = 1'000'000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;

const Agg kAllAggs[] = {Agg::kCount, Agg::kSum,  Agg::kAvg,          Agg::kMin,
                        Agg::kMax,   Agg::kLast, Agg::kCountDistinct};

TEST(WindowTest, AggNamesRoundTrip) {
  for (Agg a : kAllAggs) EXPECT_EQ(*ParseAgg(AggName(a)), a);
  EXPECT_EQ(ParseAgg("median").status().code(), Code::kInvalidArgument);
}

TEST(WindowTest, TileArithmetic) {
  EXPECT_EQ(TileIndex(1, 60), 0);
  EXPECT_EQ(TileIndex(60, 60), 0);  // tiles are (k*g, (k+1)*g]
  EXPECT_EQ(TileIndex(61, 60), 1);
  EXPECT_EQ(TileIndex(0, 60), -1);
  EXPECT_EQ(TileIndex(-60, 60), -2);
  EXPECT_EQ(CeilTo(60, 60), 60);
  EXPECT_EQ(CeilTo(61, 60), 120);
  EXPECT_EQ(CeilTo(-59, 60), 0);
  EXPECT_EQ(FloorDiv(-1, 60), -1);
  EXPECT_EQ(FloorDiv(-61, 60), -2);
}

TEST(WindowTest, HeadIsExactTailIsTileGranular) {
  TileConfig c;  // 1-minute tiles, 1-hour blocks, 24 h max
  auto s = *TileState::Create(Agg::kCount, c);
  const int64_t base = 1000 * kHour;
  s.Add(base + 1 * kMin, 1);      // in tile (base, base+1m]
  s.Add(base + 1 * kMin + 1, 1);  // next tile
  s.Add(base + 2 * kMin + 30 * kSec, 1);
  // Read at base+3m, 2-minute window: ceil(t) - W = base+1m < e <= base+3m.
  auto r = *s.Read(base + 3 * kMin, 2 * kMin);
  EXPECT_EQ(r.count, 2);
  EXPECT_TRUE(r.exact);
  // Read at base+2m10s: the event at +2m30s is later than t but in t's tile, so the tile counts
  // whole, (base+1m, base+3m], and the read says it is not exact.
  r = *s.Read(base + 2 * kMin + 10 * kSec, 2 * kMin);
  EXPECT_EQ(r.count, 2);
  EXPECT_FALSE(r.exact);
  // Tail rounding: a read just after base+2m with W=1m covers (base+2m, base+3m] up to t.
  r = *s.Read(base + 2 * kMin + 40 * kSec, kMin);
  EXPECT_EQ(r.count, 1);
  EXPECT_TRUE(r.exact);
  EXPECT_EQ(s.Read(base, 90 * kSec).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s.Read(base, 90 * kMin).status().code(), Code::kInvalidArgument);  // > G: hours
  EXPECT_EQ(s.Read(base, 25 * kHour).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(s.Read(base, 2 * kHour).ok());
  EXPECT_EQ(TileState::Create(Agg::kSum, {.fine_tile_us = 7, .coarse_tile_us = 10}).status().code(),
            Code::kInvalidArgument);
}

TEST(WindowTest, EmptyWindowValues) {
  for (Agg a : kAllAggs) {
    auto s = *TileState::Create(a, {});
    auto r = *s.Read(10 * kHour, 5 * kMin);
    EXPECT_EQ(r.count, 0);
    bool zero_when_empty = a == Agg::kCount || a == Agg::kSum || a == Agg::kCountDistinct;
    EXPECT_EQ(r.value.has_value(), zero_when_empty) << AggName(a);
    if (zero_when_empty) {
      EXPECT_EQ(*r.value, 0.0);
    }
  }
}

TEST(WindowTest, StateStaysBounded) {
  TileConfig c{.allowed_lateness_us = 5 * kMin};
  auto s = *TileState::Create(Agg::kSum, c);
  for (int64_t t = 0; t < 72 * kHour; t += 10 * kSec) s.Add(100 * kHour + t, 1);
  EXPECT_LE(s.fine_tiles(), static_cast<size_t>(60 + 5 + 2));
  EXPECT_LE(s.coarse_tiles(), static_cast<size_t>(24 + 2));
  auto r = *s.Read(172 * kHour, 24 * kHour);
  EXPECT_EQ(r.count, 24 * 360 - 1);  // (148h, 172h]: the event at exactly 148h is out
  EXPECT_LT(s.Serialize().size(), 2000u);
  // A short-window config keeps only what its windows need.
  auto short_state = *TileState::Create(Agg::kCount, {.max_window_us = 5 * kMin});
  for (int64_t t = 0; t < 3 * kHour; t += 10 * kSec) short_state.Add(t + 1, 0);
  EXPECT_LE(short_state.fine_tiles(), 6u);
  EXPECT_EQ(short_state.coarse_tiles(), 0u);
}

// A brute-force reference: every accepted event, and the documented semantics applied literally.
struct RefEvent {
  int64_t t;
  double v;
  std::string item;
};

struct Expected {
  int64_t count = 0;
  std::optional<double> value;
  bool exact = true;
};

Expected Reference(Agg agg, const std::vector<RefEvent>& events, int64_t t, int64_t w,
                   const TileConfig& c) {
  const int64_t h = w > c.coarse_tile_us ? c.coarse_tile_us : c.fine_tile_us;
  const int64_t lo = CeilTo(t, h) - w, hi = CeilTo(t, c.fine_tile_us);
  Expected out;
  double sum = 0, mn = 0, mx = 0, last = 0;
  int64_t last_t = INT64_MIN;
  std::set<std::string> items;
  for (const auto& e : events) {  // arrival order: ties in time go to the later arrival
    if (e.t <= lo || e.t > hi) continue;
    if (e.t > t) out.exact = false;
    if (out.count == 0) mn = mx = e.v;
    ++out.count;
    sum += e.v;
    mn = std::min(mn, e.v);
    mx = std::max(mx, e.v);
    if (e.t >= last_t) {
      last_t = e.t;
      last = e.v;
    }
    items.insert(e.item);
  }
  const bool any = out.count > 0;
  switch (agg) {
    case Agg::kCount:
      out.value = static_cast<double>(out.count);
      break;
    case Agg::kSum:
      out.value = sum;
      break;
    case Agg::kAvg:
      if (any) out.value = sum / static_cast<double>(out.count);
      break;
    case Agg::kMin:
      if (any) out.value = mn;
      break;
    case Agg::kMax:
      if (any) out.value = mx;
      break;
    case Agg::kLast:
      if (any) out.value = last;
      break;
    case Agg::kCountDistinct:
      out.value = static_cast<double>(items.size());
      break;
  }
  return out;
}

class WindowDifferentialTest : public ::testing::TestWithParam<Agg> {};

TEST_P(WindowDifferentialTest, MatchesBruteForce) {
  const Agg agg = GetParam();
  const TileConfig config{.allowed_lateness_us = 10 * kMin};
  const int64_t windows[] = {5 * kMin, kHour, 24 * kHour};
  std::mt19937_64 rng(42 + static_cast<int>(agg));
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  constexpr int kKeys = 12;
  std::map<int, TileState> states;
  std::map<int, std::vector<RefEvent>> ref;
  Watermark watermark(config.allowed_lateness_us);  // one partition
  int64_t now = 1'750'000'000 * kSec + 17;          // not aligned to any tile
  int64_t late = 0, reads = 0, inexact_reads = 0;
  for (int i = 0; i < 12'000; ++i) {
    now += uniform(0, 40 * kSec);
    if (i % 3000 == 2999) now += 30 * kHour;  // gaps longer than every window
    int64_t e = now - uniform(0, 11 * kMin);  // out of order, mostly within lateness
    if (uniform(0, 99) < 3) e = now - uniform(kHour, 30 * kHour);  // far too late
    const int key = static_cast<int>(uniform(0, kKeys - 1));
    const double v = static_cast<double>(uniform(-1000, 1000));
    const std::string item = "u" + std::to_string(uniform(0, 400));
    if (!watermark.Observe(e)) {
      ++late;
      continue;
    }
    auto it = states.find(key);
    if (it == states.end()) it = states.emplace(key, *TileState::Create(agg, config)).first;
    if (agg == Agg::kCountDistinct) {
      it->second.AddItem(e, item);
    } else {
      it->second.Add(e, v);
    }
    ref[key].push_back({e, v, item});
    if (i % 500 == 0) {  // what the features module does: keep bytes, load them back
      auto back = TileState::Deserialize(it->second.Serialize());
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(back->Serialize(), it->second.Serialize());
      it->second = std::move(back).value();
    }
    if (i % 25 != 0) continue;
    for (int k = 0; k < 3; ++k) {
      const int rk = static_cast<int>(uniform(0, kKeys - 1));
      auto st = states.find(rk);
      if (st == states.end()) continue;
      // Present reads (t >= every event seen) and past reads down to the key's horizon.
      const int64_t hz = st->second.horizon();
      const int64_t t = k == 0 ? std::max(hz, watermark.max_event_time() - uniform(0, 10 * kMin))
                               : watermark.max_event_time() + uniform(0, 20 * kMin);
      for (int64_t w : windows) {
        auto got = st->second.Read(t, w);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        Expected want = Reference(agg, ref[rk], t, w, config);
        ++reads;
        inexact_reads += !want.exact;
        SCOPED_TRACE("t=" + std::to_string(t) + " w=" + std::to_string(w));
        ASSERT_EQ(got->count, want.count);
        ASSERT_EQ(got->exact, want.exact);
        if (k > 0) {
          ASSERT_TRUE(got->exact) << "present reads are exact";
        }
        ASSERT_EQ(got->value.has_value(), want.value.has_value());
        if (!want.value) continue;
        if (agg == Agg::kCountDistinct) {
          const double tol = std::max(2.0, 4 * HyperLogLog::StandardError(12) * *want.value);
          ASSERT_NEAR(*got->value, *want.value, tol);
        } else {
          ASSERT_NEAR(*got->value, *want.value, 1e-9 * std::max(1.0, std::abs(*want.value)));
        }
      }
    }
  }
  EXPECT_GT(late, 100);
  EXPECT_EQ(late, watermark.late_events());
  EXPECT_GT(reads, 3000);
  EXPECT_GT(inexact_reads, 0) << "the past-read path was exercised";
}

INSTANTIATE_TEST_SUITE_P(AllAggs, WindowDifferentialTest, ::testing::ValuesIn(kAllAggs),
                         [](const auto& info) { return std::string(AggName(info.param)); });

TEST(WindowTest, LastIsByEventTimeNotArrival) {
  auto s = *TileState::Create(Agg::kLast, {.allowed_lateness_us = 10 * kMin});
  const int64_t base = 500 * kHour;
  s.Add(base + 5 * kMin, 1);
  s.Add(base + 3 * kMin, 2);  // arrives later, happened earlier
  EXPECT_EQ(*s.Read(base + 6 * kMin, 5 * kMin)->value, 1);
  s.Add(base + 5 * kMin, 3);  // same time: the later arrival wins
  EXPECT_EQ(*s.Read(base + 6 * kMin, 5 * kMin)->value, 3);
}

TEST(WindowTest, SerialisationRoundTripAndCorruption) {
  for (Agg a : kAllAggs) {
    auto s = *TileState::Create(a, {.allowed_lateness_us = kMin});
    for (int i = 0; i < 5000; ++i) {
      if (a == Agg::kCountDistinct) {
        s.AddItem(i * 20 * kSec, "item" + std::to_string(i % 3000));
      } else {
        s.Add(i * 20 * kSec, i % 97);
      }
    }
    const std::string bytes = s.Serialize();
    auto back = TileState::Deserialize(bytes);
    ASSERT_TRUE(back.ok()) << AggName(a);
    EXPECT_EQ(back->agg(), a);
    EXPECT_EQ(back->Serialize(), bytes);
    for (int64_t w : {5 * kMin, kHour, 24 * kHour}) {
      auto x = *s.Read(5000 * 20 * kSec, w), y = *back->Read(5000 * 20 * kSec, w);
      EXPECT_EQ(x.count, y.count);
      EXPECT_EQ(x.value, y.value);
    }
    EXPECT_EQ(TileState::Deserialize(bytes.substr(0, bytes.size() - 1)).status().code(),
              Code::kDataLoss);
    EXPECT_EQ(TileState::Deserialize("").status().code(), Code::kDataLoss);
    EXPECT_EQ(TileState::Deserialize(bytes + "x").status().code(), Code::kDataLoss);
  }
}

TEST(WatermarkTest, LateEventsAreCountedAndDropped) {
  Watermark w(10);
  EXPECT_EQ(w.value(), INT64_MIN);
  EXPECT_TRUE(w.Observe(100));
  EXPECT_EQ(w.value(), 90);
  EXPECT_TRUE(w.Observe(90));   // exactly at the watermark: on time
  EXPECT_FALSE(w.Observe(89));  // older than the watermark: late
  EXPECT_TRUE(w.Observe(95));   // out of order within lateness
  EXPECT_EQ(w.value(), 90);     // does not move back
  EXPECT_TRUE(w.Observe(200));
  EXPECT_FALSE(w.Observe(150));
  EXPECT_EQ(w.late_events(), 2);
  auto back = Watermark::Deserialize(w.Serialize());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->value(), 190);
  EXPECT_EQ(back->late_events(), 2);
  EXPECT_EQ(Watermark::Deserialize("x").status().code(), Code::kDataLoss);
}

TEST(HyperLogLogTest, ErrorWithinBound) {
  for (int p : {12, 14}) {
    const double se = HyperLogLog::StandardError(p);
    for (int n : {10, 100, 1000, 5000, 20000, 100000, 500000}) {
      HyperLogLog h(p);
      for (int i = 0; i < n; ++i) h.Add("user-" + std::to_string(i));
      for (int i = 0; i < n; i += 3) h.Add("user-" + std::to_string(i));  // repeats don't count
      const double err = std::abs(h.Estimate() - n) / n;
      EXPECT_LE(err, 3 * se) << "p=" << p << " n=" << n << " estimate=" << h.Estimate();
    }
  }
}

TEST(HyperLogLogTest, MergeAndSerialise) {
  HyperLogLog a(12), b(12), u(12);
  for (int i = 0; i < 3000; ++i) {
    a.Add("x" + std::to_string(i));
    u.Add("x" + std::to_string(i));
  }
  for (int i = 2000; i < 5000; ++i) {
    b.Add("x" + std::to_string(i));
    u.Add("x" + std::to_string(i));
  }
  HyperLogLog m = a;
  ASSERT_TRUE(m.Merge(b).ok());
  EXPECT_DOUBLE_EQ(m.Estimate(), u.Estimate());  // merge = union, register by register
  EXPECT_NEAR(m.Estimate(), 5000, 5000 * 3 * HyperLogLog::StandardError(12));
  EXPECT_EQ(m.Merge(HyperLogLog(14)).code(), Code::kInvalidArgument);
  for (int n : {0, 5, 500, 5000}) {  // empty, sparse, dense
    HyperLogLog h(12);
    for (int i = 0; i < n; ++i) h.Add(std::to_string(i));
    std::string bytes;
    h.AppendTo(&bytes);
    std::string_view in = bytes;
    HyperLogLog back;
    ASSERT_TRUE(HyperLogLog::ParseFrom(&in, &back));
    EXPECT_TRUE(in.empty());
    EXPECT_DOUBLE_EQ(back.Estimate(), h.Estimate());
    if (n == 5) {
      EXPECT_LT(bytes.size(), 40u) << "sparse while small";
    }
  }
  EXPECT_EQ(HyperLogLog::Hash("abc"), HyperLogLog::Hash("abc"));
}

}  // namespace
}  // namespace lakeloop::stream
