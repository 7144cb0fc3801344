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

struct Config {
  std::string name = "lakeloop";
  std::string log_level = "info";
  ServerConfig server;
  SqlConfig sql;
  LakeConfig lake;
};

// Reads <project>/lakeloop.yaml if present; defaults otherwise. Errors name file, line and key.
Result<Config> LoadConfig(const std::filesystem::path& project_dir);
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& file_name);

}  // namespace lakeloop
