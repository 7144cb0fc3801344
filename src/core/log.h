// core/log: process-wide logging setup over spdlog. Modules log with spdlog's default logger
// (spdlog::info(...)); only the composition root calls InitLogging.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace lakeloop {

// Logs to stderr and, when `file` is not empty, to that file too. `level`:
// trace|debug|info|warn|error.
Status InitLogging(const std::string& level, const std::filesystem::path& file = {});

}  // namespace lakeloop
