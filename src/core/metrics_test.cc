// Metrics: the exact Prometheus text, registration rules, and exact totals under concurrency.
#include "core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace lakeloop::metrics {
namespace {

TEST(MetricsTest, RendersTheExactPrometheusText) {
  Registry r;
  Counter* get = *r.GetCounter("lakeloop_http_requests_total", "HTTP requests answered.",
                               {{"route", "/api/v1/sql"}, {"method", "POST"}});
  Counter* health = *r.GetCounter("lakeloop_http_requests_total", "HTTP requests answered.",
                                  {{"method", "GET"}, {"route", "/api/v1/health"}});
  get->Add(3);
  health->Add();
  Gauge* q = *r.GetGauge("lakeloop_queue_depth", "Requests waiting for a worker.");
  q->Set(2.5);
  Histogram* h = *r.GetHistogram("lakeloop_sql_duration_seconds", "Time to answer a query.",
                                 {0.25, 0.5, 1}, {{"engine", "user"}});
  h->Observe(0.125);
  h->Observe(0.5);  // bounds are inclusive
  h->Observe(0.75);
  h->Observe(7);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP lakeloop_http_requests_total HTTP requests answered.\n"
            "# TYPE lakeloop_http_requests_total counter\n"
            "lakeloop_http_requests_total{method=\"GET\",route=\"/api/v1/health\"} 1\n"
            "lakeloop_http_requests_total{method=\"POST\",route=\"/api/v1/sql\"} 3\n"
            "# HELP lakeloop_queue_depth Requests waiting for a worker.\n"
            "# TYPE lakeloop_queue_depth gauge\n"
            "lakeloop_queue_depth 2.5\n"
            "# HELP lakeloop_sql_duration_seconds Time to answer a query.\n"
            "# TYPE lakeloop_sql_duration_seconds histogram\n"
            "lakeloop_sql_duration_seconds_bucket{engine=\"user\",le=\"0.25\"} 1\n"
            "lakeloop_sql_duration_seconds_bucket{engine=\"user\",le=\"0.5\"} 2\n"
            "lakeloop_sql_duration_seconds_bucket{engine=\"user\",le=\"1\"} 3\n"
            "lakeloop_sql_duration_seconds_bucket{engine=\"user\",le=\"+Inf\"} 4\n"
            "lakeloop_sql_duration_seconds_sum{engine=\"user\"} 8.375\n"
            "lakeloop_sql_duration_seconds_count{engine=\"user\"} 4\n");
}

TEST(MetricsTest, HistogramSumAndCountCarryTheirLabels) {
  Registry r;
  Histogram* h = *r.GetHistogram("x_seconds", "h", {1}, {{"a", "b"}});
  h->Observe(2);
  std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("x_seconds_sum{a=\"b\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_count{a=\"b\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_bucket{a=\"b\",le=\"1\"} 0\n"), std::string::npos) << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  Registry r;
  (*r.GetCounter("odd_total", "line one\nback\\slash \"quoted\"", {{"path", "C:\\dir\n\"x\""}}))
      ->Add();
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP odd_total line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE odd_total counter\n"
            "odd_total{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
  EXPECT_EQ(EscapeLabelValue("a\"b"), "a\\\"b");
}

TEST(MetricsTest, SpecialValues) {
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(-3), "-3");
}

TEST(MetricsTest, SameNameAndLabelsIsTheSameMetric) {
  Registry r;
  Counter* a = *r.GetCounter("a_total", "h", {{"x", "1"}, {"y", "2"}});
  Counter* b = *r.GetCounter("a_total", "h", {{"y", "2"}, {"x", "1"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, *r.GetCounter("a_total", "h", {{"x", "2"}, {"y", "2"}}));
}

TEST(MetricsTest, RegistrationRules) {
  Registry r;
  EXPECT_EQ(r.GetCounter("requests", "h").status().code(), Code::kInvalidArgument);  // _total
  EXPECT_EQ(r.GetCounter("9lives_total", "h").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetGauge("has-dash", "h").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetGauge("g", "h", {{"__reserved", "x"}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetGauge("g", "h", {{"a", "1"}, {"a", "2"}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetHistogram("h_seconds", "h", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetHistogram("h_seconds", "h", {1, 1}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetHistogram("h_seconds", "h", {1}, {{"le", "x"}}).status().code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(r.GetGauge("ns:used_bytes", "h").ok());
  EXPECT_EQ(r.GetCounter("ns:used_bytes", "h").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.GetGauge("ns:used_bytes", "other help").status().code(), Code::kInvalidArgument);
  ASSERT_TRUE(r.GetHistogram("lat_seconds", "h", {1, 2}).ok());
  EXPECT_EQ(r.GetHistogram("lat_seconds", "h", {1, 3}).status().code(), Code::kInvalidArgument);
}

TEST(MetricsTest, CallbackSeriesAreReadAtRender) {
  Registry r;
  double runs = 0;
  ASSERT_TRUE(
      r.AddCounterCallback("runs_total", "Runs.", {{"kind", "b"}}, [&] { return runs; }).ok());
  (*r.GetCounter("runs_total", "Runs.", {{"kind", "a"}}))->Add(2);
  ASSERT_TRUE(r.AddGaugeCallback("up", "Up.", {}, [] { return 1.0; }).ok());
  EXPECT_EQ(r.AddGaugeCallback("up", "Up.", {}, [] { return 2.0; }).code(),
            Code::kInvalidArgument);  // that series exists
  runs = 7;
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP runs_total Runs.\n"
            "# TYPE runs_total counter\n"
            "runs_total{kind=\"a\"} 2\n"
            "runs_total{kind=\"b\"} 7\n"
            "# HELP up Up.\n"
            "# TYPE up gauge\n"
            "up 1\n");
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(0.001, 10, 4), (std::vector<double>{0.001, 0.01, 0.1, 1}));
  EXPECT_EQ(LinearBuckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
}

// N threads x M updates = N*M exactly, for counters, gauges and histograms.
TEST(MetricsTest, ConcurrentUpdatesAreExact) {
  Registry r;
  Counter* c = *r.GetCounter("c_total", "h");
  Gauge* g = *r.GetGauge("g", "h");
  Histogram* h = *r.GetHistogram("h_seconds", "h", {0.5, 1.5});
  constexpr int kThreads = 8;
  constexpr int kPer = 100'000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        c->Add();
        g->Add(1);
        h->Observe(static_cast<double>((i + t) % 3));  // 0, 1, 2
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c->Value(), uint64_t{kThreads} * kPer);
  EXPECT_EQ(g->Value(), double{kThreads} * kPer);
  Histogram::Snapshot s = h->Read();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kPer);
  EXPECT_EQ(s.cumulative.back(), s.count);
  uint64_t zeros = 0, ones = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPer; ++i) {
      zeros += (i + t) % 3 == 0;
      ones += (i + t) % 3 == 1;
    }
  }
  EXPECT_EQ(s.cumulative[0], zeros);
  EXPECT_EQ(s.cumulative[1], zeros + ones);
  EXPECT_EQ(s.sum, static_cast<double>(ones + 2 * (s.count - zeros - ones)));
}

// Rendering while threads count: every rendered counter value is between 0 and the final total
// and never decreases.
TEST(MetricsTest, RenderWhileCounting) {
  Registry r;
  Counter* c = *r.GetCounter("c_total", "h");
  std::atomic<bool> done{false};
  std::thread w([&] {
    for (int i = 0; i < 200'000; ++i) c->Add();
    done = true;
  });
  uint64_t last = 0;
  bool monotonic = true;
  while (!done) {
    std::string text = r.RenderPrometheus();
    auto pos = text.find("\nc_total ");
    if (pos == std::string::npos) {
      monotonic = false;
      break;
    }
    uint64_t v = std::strtoull(text.c_str() + pos + 9, nullptr, 10);
    monotonic &= v >= last && v <= 200'000;
    last = v;
  }
  w.join();
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(c->Value(), 200'000u);
}

}  // namespace
}  // namespace lakeloop::metrics
