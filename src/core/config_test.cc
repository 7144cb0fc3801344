#include "core/config.h"

#include <gtest/gtest.h>

namespace lakeloop {
namespace {

TEST(ConfigTest, DefaultsWhenEmpty) {
  auto c = ParseConfig("", "lakeloop.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server.listen, "127.0.0.1:8080");
  EXPECT_GE(c->sql.threads, 1);
}

TEST(ConfigTest, ReadsSections) {
  auto c = ParseConfig(
      "name: shop\nserver:\n  listen: 0.0.0.0:9000\n  worker_threads: 3\n"
      "sql:\n  memory_limit: 1GB\n",
      "lakeloop.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "shop");
  EXPECT_EQ(c->server.listen, "0.0.0.0:9000");
  EXPECT_EQ(c->server.worker_threads, 3);
  EXPECT_EQ(c->sql.memory_limit, "1GB");
}

TEST(ConfigTest, ReadsTheFrontDoorKeys) {
  auto c = ParseConfig(
      "server:\n  allowed_hosts: [lake.example, \"10.0.0.5:8080\"]\n"
      "  cors_allowed_origins:\n    - http://localhost:5173\n  max_connections: 64\n"
      "  max_events_per_request: 1000\n  auth_failures_per_minute: 5\n"
      "  ingest_queue_events: 10\n  max_inflight_body_bytes: 134217728\n",
      "lakeloop.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.allowed_hosts, (std::vector<std::string>{"lake.example", "10.0.0.5:8080"}));
  EXPECT_EQ(c->server.cors_allowed_origins, std::vector<std::string>{"http://localhost:5173"});
  EXPECT_EQ(c->server.max_connections, 64);
  EXPECT_EQ(c->server.max_events_per_request, 1000);
  EXPECT_EQ(c->server.auth_failures_per_minute, 5);
  EXPECT_EQ(c->server.ingest_queue_events, 10);
  EXPECT_EQ(c->server.max_inflight_body_bytes, 134217728);
  auto d = ParseConfig("", "f");
  EXPECT_TRUE(d->server.allowed_hosts.empty() && d->server.cors_allowed_origins.empty());
  EXPECT_EQ(d->server.max_events_per_request, 100000);
  EXPECT_FALSE(ParseConfig("server:\n  allowed_hosts: evil\n", "f").ok());  // not a list
  EXPECT_FALSE(ParseConfig("server:\n  max_connections: 0\n", "f").ok());
  EXPECT_FALSE(ParseConfig("server:\n  max_inflight_body_bytes: 2048\n", "f").ok());
}

TEST(ConfigTest, UnknownKeyNamesFileAndLine) {
  auto c = ParseConfig("name: shop\nserver:\n  lisen: x\n", "p/lakeloop.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("p/lakeloop.yaml:3"), std::string::npos)
      << c.status().message();
  EXPECT_NE(c.status().message().find("server.lisen"), std::string::npos);
}

TEST(ConfigTest, WrongTypeAndSyntaxErrors) {
  EXPECT_FALSE(ParseConfig("server:\n  io_threads: many\n", "f").ok());
  EXPECT_FALSE(ParseConfig("server: [1,\n", "f").ok());
  EXPECT_FALSE(ParseConfig("server:\n  io_threads: 0\n", "f").ok());
}

TEST(ConfigTest, LimitsSection) {
  auto d = ParseConfig("", "f");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->limits.upload_max_json_depth, 64);
  EXPECT_EQ(d->limits.upload_max_columns, 2048);
  EXPECT_EQ(d->limits.shutdown_hard_ms, 5000);
  auto c = ParseConfig(
      "limits:\n  upload_max_json_depth: 10\n  export_max_rows: 5\n  loads_memory_limit: 512MB\n"
      "  expensive_concurrency: 3\n",
      "f");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->limits.upload_max_json_depth, 10);
  EXPECT_EQ(c->limits.export_max_rows, 5);
  EXPECT_EQ(c->limits.loads_memory_limit, "512MB");
  EXPECT_EQ(c->limits.expensive_concurrency, 3);
  EXPECT_FALSE(ParseConfig("limits:\n  upload_max_columns: 0\n", "f").ok());
  auto bad = ParseConfig("limits:\n  max_depth: 3\n", "f");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("limits.max_depth"), std::string::npos);
}

TEST(ConfigTest, DatasetsEngineLimits) {
  auto d = ParseConfig("", "f");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->limits.datasets_threads, 1);
  EXPECT_EQ(d->limits.datasets_memory_limit, "2GB");
  EXPECT_EQ(d->limits.datasets_query_timeout_ms, 1800000);
  auto c = ParseConfig(
      "limits:\n  datasets_threads: 3\n  datasets_memory_limit: 8GB\n"
      "  datasets_query_timeout_ms: 0\n",
      "f");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->limits.datasets_threads, 3);
  EXPECT_EQ(c->limits.datasets_memory_limit, "8GB");
  EXPECT_EQ(c->limits.datasets_query_timeout_ms, 0);
  EXPECT_FALSE(ParseConfig("limits:\n  datasets_threads: 0\n", "f").ok());
  EXPECT_FALSE(ParseConfig("limits:\n  datasets_query_timeout_ms: -1\n", "f").ok());
}

}  // namespace
}  // namespace lakeloop
