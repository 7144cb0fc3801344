#include "core/yaml.h"

namespace lakeloop {

Result<YAML::Node> LoadYamlMapping(std::string_view text, const std::string& file_name,
                                   std::string_view what) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::ParserException& e) {
    return InvalidArgument(file_name + ":" + std::to_string(e.mark.line + 1) +
                           ": not valid YAML: " + e.msg);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(file_name + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) {
    return InvalidArgument(file_name + ":1: " + std::string(what) + " must be a mapping of keys");
  }
  return root;
}

Status YamlError(const std::string& file_name, const YAML::Node& n, std::string_view what) {
  std::string where = file_name;
  if (n.IsDefined() && n.Mark().line >= 0) where += ":" + std::to_string(n.Mark().line + 1);
  return InvalidArgument(where + ": " + std::string(what));
}

}  // namespace lakeloop
