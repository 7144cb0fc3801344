#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>

#include "core/fs.h"

namespace lakeloop {
namespace {

Status Bad(const std::string& file, const YAML::Node& n, const std::string& what) {
  std::string where = file;
  if (n.Mark().line >= 0) where += ":" + std::to_string(n.Mark().line + 1);
  return InvalidArgument(where + ": " + what);
}

template <typename T>
Status Read(const std::string& file, const YAML::Node& n, const std::string& key, T* out) {
  try {
    *out = n.as<T>();
  } catch (const YAML::Exception&) {
    return Bad(file, n, "'" + key + "' has the wrong type");
  }
  return Status::Ok();
}

using Fields = std::map<std::string, std::function<Status(const YAML::Node&)>>;

Status ReadSection(const std::string& file, const YAML::Node& node, const std::string& section,
                   const Fields& fields) {
  if (!node.IsMap()) return Bad(file, node, "'" + section + "' must be a mapping");
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    auto it = fields.find(key);
    if (it == fields.end()) {
      return Bad(file, kv.first,
                 "unknown key '" + (section.empty() ? "" : section + ".") + key + "'");
    }
    RETURN_IF_ERROR(it->second(kv.second));
  }
  return Status::Ok();
}

}  // namespace

Result<Config> ParseConfig(const std::string& text, const std::string& file) {
  Config c;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return InvalidArgument(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return c;
  auto f = [&](const std::string& key, auto* out) {
    return std::pair<const std::string, std::function<Status(const YAML::Node&)>>(
        key, [&file, key, out](const YAML::Node& n) { return Read(file, n, key, out); });
  };
  Fields server = {f("listen", &c.server.listen),
                   f("io_threads", &c.server.io_threads),
                   f("worker_threads", &c.server.worker_threads),
                   f("max_body_bytes", &c.server.max_body_bytes),
                   f("require_auth", &c.server.require_auth),
                   f("shutdown_grace_ms", &c.server.shutdown_grace_ms),
                   f("allowed_hosts", &c.server.allowed_hosts),
                   f("cors_allowed_origins", &c.server.cors_allowed_origins),
                   f("max_connections", &c.server.max_connections),
                   f("max_inflight_body_bytes", &c.server.max_inflight_body_bytes),
                   f("max_events_per_request", &c.server.max_events_per_request),
                   f("auth_failures_per_minute", &c.server.auth_failures_per_minute),
                   f("ingest_queue_events", &c.server.ingest_queue_events),
                   f("web_root", &c.server.web_root)};
  Fields sql = {f("threads", &c.sql.threads), f("memory_limit", &c.sql.memory_limit),
                f("query_timeout_ms", &c.sql.query_timeout_ms),
                f("default_row_limit", &c.sql.default_row_limit),
                f("max_row_limit", &c.sql.max_row_limit)};
  Fields lake = {f("snapshot_retention_s", &c.lake.snapshot_retention_s)};
  LimitsConfig& l = c.limits;
  Fields limits = {f("upload_max_json_depth", &l.upload_max_json_depth),
                   f("upload_max_columns", &l.upload_max_columns),
                   f("upload_max_line_bytes", &l.upload_max_line_bytes),
                   f("upload_max_parquet_footer_bytes", &l.upload_max_parquet_footer_bytes),
                   f("upload_max_parquet_row_groups", &l.upload_max_parquet_row_groups),
                   f("loads_memory_limit", &l.loads_memory_limit),
                   f("loads_threads", &l.loads_threads),
                   f("loads_query_timeout_ms", &l.loads_query_timeout_ms),
                   f("expensive_concurrency", &l.expensive_concurrency),
                   f("expensive_queue", &l.expensive_queue),
                   f("export_max_rows", &l.export_max_rows),
                   f("export_max_bytes", &l.export_max_bytes),
                   f("shutdown_hard_ms", &l.shutdown_hard_ms),
                   f("datasets_threads", &l.datasets_threads),
                   f("datasets_memory_limit", &l.datasets_memory_limit),
                   f("datasets_query_timeout_ms", &l.datasets_query_timeout_ms)};
  Fields top = {
      f("name", &c.name),
      f("log_level", &c.log_level),
      {"server", [&](const YAML::Node& n) { return ReadSection(file, n, "server", server); }},
      {"sql", [&](const YAML::Node& n) { return ReadSection(file, n, "sql", sql); }},
      {"lake", [&](const YAML::Node& n) { return ReadSection(file, n, "lake", lake); }},
      {"limits", [&](const YAML::Node& n) { return ReadSection(file, n, "limits", limits); }},
  };
  // Sections owned by later modules (sources, schedules...) are validated by those modules.
  for (const char* key : {"sources", "models", "streams", "features", "pipelines", "endpoints",
                          "monitors", "dashboards", "defaults", "description"}) {
    top[key] = [](const YAML::Node&) { return Status::Ok(); };
  }
  RETURN_IF_ERROR(ReadSection(file, root, "", top));
  if (c.server.io_threads < 1 || c.server.worker_threads < 1 || c.sql.threads < 1) {
    return InvalidArgument(file + ": thread counts must be at least 1");
  }
  if (c.server.max_body_bytes < 1024) {
    return InvalidArgument(file + ": server.max_body_bytes must be at least 1024");
  }
  if (l.upload_max_json_depth < 1 || l.upload_max_columns < 1 || l.upload_max_line_bytes < 1 ||
      l.upload_max_parquet_footer_bytes < 8 || l.upload_max_parquet_row_groups < 1 ||
      l.loads_threads < 1 || l.expensive_concurrency < 1 || l.expensive_queue < 1 ||
      l.export_max_rows < 1 || l.export_max_bytes < 1 || l.shutdown_hard_ms < 0 ||
      l.loads_query_timeout_ms < 0 || l.datasets_threads < 1 || l.datasets_query_timeout_ms < 0) {
    return InvalidArgument(file +
                           ": limits.* must be positive (loads_query_timeout_ms and "
                           "shutdown_hard_ms may be 0)");
  }
  if (c.server.max_connections < 1 || c.server.max_inflight_body_bytes < c.server.max_body_bytes ||
      c.server.max_events_per_request < 1 || c.server.auth_failures_per_minute < 1 ||
      c.server.ingest_queue_events < 1) {
    return InvalidArgument(
        file +
        ": server.max_connections, max_events_per_request, ingest_queue_events and "
        "auth_failures_per_minute must be at least 1, and "
        "max_inflight_body_bytes at least max_body_bytes");
  }
  return c;
}

Result<Config> LoadConfig(const std::filesystem::path& project_dir) {
  auto path = project_dir / "lakeloop.yaml";
  if (!std::filesystem::exists(path)) return Config{};
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseConfig(text, path.string());
}

}  // namespace lakeloop
