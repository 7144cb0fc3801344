// core/config: the project's lakeloop.yaml (runtime settings) with defaults for everything, so a
// project folder without the file still runs. Unknown keys are errors, reported with line numbers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"

namespace lakeloop {

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  int io_threads = 1;      // Beast/Asio network threads; never block
  int worker_threads = 2;  // blocking work: SQL, commits
  int64_t max_body_bytes = 64 << 20;
  bool require_auth = false;  // tokens are always required when listening beyond loopback
  int shutdown_grace_ms = 10000;
  // The front door (src/api/README.md). Host names the server answers to beyond the loopback
  // names (localhost, 127.0.0.1, [::1]); entries are "host" (any port) or "host:port".
  std::vector<std::string> allowed_hosts;
  // Browser origins ("http://localhost:5173") allowed to call the API cross-origin (CORS and
  // state-changing requests); empty = CORS off.
  std::vector<std::string> cors_allowed_origins;
  int max_connections = 1024;                     // past it: 503 + Retry-After, then close
  int64_t max_inflight_body_bytes = 256LL << 20;  // request bodies held in memory, all connections
  int64_t max_events_per_request = 100000;        // POST .../events beyond it: 413
  int auth_failures_per_minute = 20;              // bad tokens per client address, then 429
  int64_t ingest_queue_events = 100000;  // events queued for the event log's commit; past it 429
  // The built web UI served at `/`; empty = <repo>/web/dist beside the binary's build dir.
  std::string web_root;
};

struct SqlConfig {
  int threads = 2;
  std::string memory_limit = "2GB";
  int64_t query_timeout_ms = 30000;
  int64_t default_row_limit = 10000;  // rows returned as JSON when the request gives no limit
  int64_t max_row_limit = 1000000;
};

struct LakeConfig {
  // Superseded snapshots stay queryable (time travel) and their files stay on disk this long.
  int64_t snapshot_retention_s = 7 * 24 * 3600;
};

// What one request or job may cost (issue 15). Upload limits are checked before DuckDB sees the
// data; every query of the loads engine (uploads, sources, models) has a time and memory limit;
// uploads, exports and ad-hoc SQL share one admission queue; shutdown has a deadline.
struct LimitsConfig {
  int64_t upload_max_json_depth = 64;       // nesting of objects/arrays in a JSON upload
  int64_t upload_max_columns = 2048;        // CSV header fields, JSON keys, Parquet schema
  int64_t upload_max_line_bytes = 8 << 20;  // one CSV record or JSON line (so one field)
  int64_t upload_max_parquet_footer_bytes = 16 << 20;
  int64_t upload_max_parquet_row_groups = 100000;
  // The engine of loads and models (uploads, sources, models): its own memory, threads, temp dir.
  std::string loads_memory_limit = "2GB";
  int loads_threads = 1;
  int64_t loads_query_timeout_ms = 600000;  // each query of an upload, source load or model
  // Uploads, exports and ad-hoc SQL: at most `concurrency` run, `queue` wait; beyond: 503.
  int expensive_concurrency = 2;
  int expensive_queue = 16;            // >= 1
  int64_t export_max_rows = 10000000;  // ?format=parquet
  int64_t export_max_bytes = int64_t{1} << 30;
  // After SIGTERM and server.shutdown_grace_ms, running queries and jobs are interrupted; the
  // process exits at the latest this long after the grace period.
  int64_t shutdown_hard_ms = 5000;
  // Dataset builds (POST /api/v1/features/historical): their own engine, so serving and ingest
  // keep their latency.
  int datasets_threads = 1;
  std::string datasets_memory_limit = "2GB";
  int64_t datasets_query_timeout_ms = 1800000;  // each query of a build; 0: none
};

struct Config {
  std::string name = "lakeloop";
  std::string log_level = "info";
  ServerConfig server;
  SqlConfig sql;
  LakeConfig lake;
  LimitsConfig limits;
};

// Reads <project>/lakeloop.yaml if present; defaults otherwise. Errors name file, line and key.
Result<Config> LoadConfig(const std::filesystem::path& project_dir);
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& file_name);

}  // namespace lakeloop
