// core/yaml: loading a definition file's YAML with errors that name the file and line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

#include "core/status.h"

namespace lakeloop {

// Parses `text` and requires a mapping at the top. Errors are kInvalidArgument
// "<file>:<line>: not valid YAML: ..." or "<file>:1: <what> must be a mapping of keys".
Result<YAML::Node> LoadYamlMapping(std::string_view text, const std::string& file_name,
                                   std::string_view what);

// "<file>:<line of n>: <what>" as kInvalidArgument (without the line when n has no position).
Status YamlError(const std::string& file_name, const YAML::Node& n, std::string_view what);

}  // namespace lakeloop
