#include "core/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace lakeloop {

Status InitLogging(const std::string& level, const std::filesystem::path& file) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return InvalidArgument("unknown log level '" + level + "' (trace|debug|info|warn|error)");
  }
  try {
    std::vector<spdlog::sink_ptr> sinks;
    sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    if (!file.empty()) {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string()));
    }
    auto logger = std::make_shared<spdlog::logger>("lakeloop", sinks.begin(), sinks.end());
    logger->set_level(lvl);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ [%t] %v", spdlog::pattern_time_type::utc);
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    spdlog::flush_every(std::chrono::seconds(1));
  } catch (const std::exception& e) {
    return IoError(std::string("logging setup: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace lakeloop
