// Point-in-time replay of stream views: a brute-force differential test (late events, ties,
// every aggregation and window, leakage), and bit-for-bit equality with the StreamProcessor's
// online reads on the same log.
#include "features/internal/pit_replay.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "features/features.h"
#include "features/internal/test_util.h"

namespace lakeloop::features::internal {
namespace {

using testing::kBase;
using testing::kHour;
using testing::kMin;
namespace fs = std::filesystem;

class PitReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::path(::testing::TempDir()) /
           ("pit_replay_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    stream::RocksLogOptions o;
    o.sync = false;
    auto log = stream::OpenRocksEventLog((dir_ / "log").string(), o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
    ASSERT_TRUE(log_->RegisterStream({.name = "s", .partitions = 3}).ok());
    auto v = ParseFeatureView(testing::DiffViewYaml(), "diff.yaml");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    view_ = *v;
  }
  void TearDown() override {
    log_.reset();
    fs::remove_all(dir_);
  }

  fs::path dir_;
  std::unique_ptr<stream::EventLog> log_;
  FeatureView view_;
};

// Brute force, written without tiles: accepted (not late by log order) events of the key with
// ceil_h(t) - W < e <= t.
std::optional<double> Expected(const std::vector<testing::RefEvent>& all, const FeatureDef& f,
                               const std::string& key, int64_t t) {
  const int64_t h = f.window_us <= kHour ? kMin : kHour;
  const int64_t lo = stream::CeilTo(t, h) - f.window_us;
  return testing::Aggregate(all, f, key, lo, t);
}

TEST_F(PitReplayTest, MatchesBruteForceAtRandomPastTimes) {
  testing::Reference ref(3, 5 * kMin);
  testing::EventGen gen(7, 40, 3);
  ref.Append(*log_, "s", gen.Next(4000));
  ASSERT_GT(ref.late(), 0);
  const auto& all = ref.events();
  int64_t t_min = INT64_MAX, t_max = INT64_MIN;
  for (const auto& e : all) {
    t_min = std::min(t_min, e.t);
    t_max = std::max(t_max, e.t);
  }
  std::mt19937_64 rng(11);
  std::vector<std::string> keys;
  std::vector<int64_t> times;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back("k" + std::to_string(rng() % 42));  // k40, k41: no events at all
    int64_t t = t_min - kHour + static_cast<int64_t>(rng() % (t_max - t_min + 3 * kHour));
    if (i % 10 == 0) t = all[rng() % all.size()].t;  // exactly on an event: it counts
    times.push_back(t);
  }
  auto got = ReplayStreamView(*log_, view_, keys, times);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->complete);
  EXPECT_EQ(got->events_late, ref.late());
  int compared = 0;
  for (size_t row = 0; row < keys.size(); ++row) {
    bool seen = false;
    for (const auto& e : all) {
      seen = seen || (e.key == keys[row] && e.valid_json && !e.late && e.t <= times[row]);
    }
    EXPECT_EQ(got->has_state[row], seen) << keys[row] << " " << times[row];
    for (size_t f = 0; f < view_.features.size(); ++f) {
      const FeatureDef& def = view_.features[f];
      auto want = Expected(all, def, keys[row], times[row]);
      const auto& v = got->values[f][row];
      SCOPED_TRACE(keys[row] + " " + def.name + " t=" + std::to_string(times[row]));
      ASSERT_EQ(want.has_value(), v.has_value());
      if (!want) continue;
      const double tol = def.agg == stream::Agg::kCountDistinct
                             ? 0.05 * *want + 0.01
                             : 1e-9 * std::max(1.0, std::abs(*want));
      EXPECT_NEAR(*v, *want, tol);
      ++compared;
    }
  }
  EXPECT_GT(compared, 10000);
}

TEST_F(PitReplayTest, NeverUsesEventsStampedAfterTheRowTime) {
  // A late-arriving event (appended last, within lateness) stamped after t, and one stamped at t.
  const int64_t t = kBase + 10 * kMin;
  auto ev = [](int64_t at, double v) {
    return stream::Event{"a", at, "",
                         "{\"event_type\":\"purchase\",\"value\":" + std::to_string(v) + "}"};
  };
  ASSERT_TRUE(log_->Append("s", {ev(t - kMin, 1), ev(t + 4 * kMin, 100)}).ok());
  ASSERT_TRUE(log_->Append("s", {ev(t + 30 * 1'000'000, 1000), ev(t, 10)}).ok());
  auto got = ReplayStreamView(*log_, view_, {"a", "a"}, {t, t - 1});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  size_t sum_1h = 0;
  for (size_t f = 0; f < view_.features.size(); ++f) {
    if (view_.features[f].name == "sum_1h") sum_1h = f;
  }
  EXPECT_EQ(got->values[sum_1h][0], 11.0);  // t - 1m and t itself
  EXPECT_EQ(got->values[sum_1h][1], 1.0);   // just before t: only t - 1m
}

TEST_F(PitReplayTest, DropsWhatTheProcessorDropsAsLateByLogOrder) {
  // Same event time, two log positions: before the watermark passes it, it counts; after, not.
  const int64_t t = kBase + 2 * kHour;
  auto ev = [](int64_t at) {
    return stream::Event{"a", at, "", "{\"event_type\":\"click\",\"value\":1}"};
  };
  ASSERT_TRUE(log_->Append("s", {ev(t - 10 * kMin), ev(t)}).ok());         // first: accepted
  ASSERT_TRUE(log_->Append("s", {ev(t - 10 * kMin), ev(t - kMin)}).ok());  // late, accepted
  auto got = ReplayStreamView(*log_, view_, {"a"}, {t});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->events_late, 1);
  size_t count_1h = 0;
  for (size_t f = 0; f < view_.features.size(); ++f) {
    if (view_.features[f].name == "count_1h") count_1h = f;
  }
  EXPECT_EQ(got->values[count_1h][0], 3.0);
}

TEST_F(PitReplayTest, EqualsOnlineReadsOfTheProcessor) {
  auto store = OpenRocksOnlineStore(log_.get());
  ASSERT_TRUE(store.ok());
  testing::Reference ref(3, 5 * kMin);
  testing::EventGen gen(3, 30, 3);
  ref.Append(*log_, "s", gen.Next(3000));
  auto proc = StreamProcessor::Create(log_.get(), store->get(), {view_});
  ASSERT_TRUE(proc.ok()) << proc.status().ToString();
  ASSERT_TRUE((*proc)->Start().ok());
  auto ends = log_->EndOffsets("s");
  ASSERT_TRUE(ends.ok());
  ASSERT_TRUE((*proc)->WaitApplied("s", *ends, 30'000'000).ok());
  // Online reads are exact at or after a key's newest event: compare there, bit for bit (the
  // same tiles, the same HyperLogLog).
  std::vector<std::string> keys;
  std::vector<int64_t> times;
  for (const auto& key : ref.Keys()) {
    const int64_t m = ref.KeyMax(key);
    if (m == INT64_MIN) continue;
    for (int64_t d : {int64_t{0}, int64_t{1}, 3 * kMin, 50 * kMin, 23 * kHour}) {
      keys.push_back(key);
      times.push_back(m + d);
    }
  }
  auto got = ReplayStreamView(*log_, view_, keys, times);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (size_t row = 0; row < keys.size(); ++row) {
    auto online = (*proc)->Get(view_.name, keys[row], times[row]);
    ASSERT_TRUE(online.ok());
    for (size_t f = 0; f < view_.features.size(); ++f) {
      SCOPED_TRACE(keys[row] + " " + view_.features[f].name);
      EXPECT_EQ(got->values[f][row], online->values[f].value);
    }
  }
  (*proc)->Stop();
}

TEST_F(PitReplayTest, RefusesWhatItCannotReplay) {
  FeatureView other = view_;
  other.stream = "nope";
  EXPECT_EQ(ReplayStreamView(*log_, other, {"a"}, {kBase}).status().code(), Code::kNotFound);
  EXPECT_EQ(ReplayStreamView(*log_, view_, {"a"}, {}).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lakeloop::features::internal
