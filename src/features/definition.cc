// Feature view definitions: YAML -> FeatureView, with file:line errors.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/yaml.h"
#include "features/features.h"
#include "features/store.h"
#include "lake/lake.h"

namespace lakeloop::features {
namespace {

class Parser {
 public:
  explicit Parser(const std::string& file) : file_(file) {}

  Status Bad(const YAML::Node& n, const std::string& what) const {
    return YamlError(file_, n, what);
  }

  Result<std::string> Str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) return Bad(n, "'" + key + "' must be a string");
    return n.Scalar();
  }

  // Keys of a mapping, checked against `allowed`; duplicates and unknown keys are errors.
  Result<std::map<std::string, std::pair<YAML::Node, YAML::Node>>> Keys(
      const YAML::Node& map, const std::set<std::string>& allowed, const std::string& what) const {
    std::map<std::string, std::pair<YAML::Node, YAML::Node>> out;
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) return Bad(it->first, "keys must be strings");
      const std::string k = it->first.Scalar();
      if (out.count(k)) return Bad(it->first, "duplicate key '" + k + "'");
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        return Bad(it->first, "unknown key '" + k + "' in " + what + " (allowed: " + list + ")");
      }
      out.emplace(k, std::make_pair(it->first, it->second));
    }
    return out;
  }

  Status Identifier(const YAML::Node& n, const std::string& what, const std::string& id) const {
    Status s = lake::ValidateIdentifier(what, id);
    if (!s.ok()) return Bad(n, s.message());
    return Status::Ok();
  }

  // "30s", "5m", "1h", "2d", "0" -> micros.
  Result<int64_t> Duration(const YAML::Node& n, const std::string& key) const {
    const std::string bad =
        "'" + key + "' must be a duration in whole seconds like 30s, 5m, 1h or 1d";
    if (!n.IsScalar()) return Bad(n, bad);
    const std::string& s = n.Scalar();
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || v < 0 || v > 1'000'000'000) return Bad(n, bad);
    std::string_view unit(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
    int64_t mult;
    if (unit == "s") {
      mult = 1;
    } else if (unit == "m") {
      mult = 60;
    } else if (unit == "h") {
      mult = 3600;
    } else if (unit == "d") {
      mult = 86400;
    } else if (unit.empty() && v == 0) {
      mult = 0;
    } else {
      return Bad(n, bad);
    }
    return v * mult * 1'000'000;
  }

 private:
  const std::string& file_;
};

constexpr int64_t kHourUs = 3'600'000'000;
const std::set<std::string> kReservedColumns = {"event_time", "_applied_at", "_partition",
                                                "_offset"};

Result<FeatureDef> ParseFeature(const Parser& p, const YAML::Node& node) {
  if (!node.IsMap()) return p.Bad(node, "each feature must be a mapping (name, agg, window...)");
  ASSIGN_OR_RETURN(
      auto keys,
      p.Keys(node, {"name", "agg", "field", "window", "where", "description"}, "a feature"));
  FeatureDef f;
  auto need = [&](const char* k) -> Status {
    if (!keys.count(k)) return p.Bad(node, std::string("feature needs '") + k + "'");
    return Status::Ok();
  };
  RETURN_IF_ERROR(need("name"));
  RETURN_IF_ERROR(need("agg"));
  RETURN_IF_ERROR(need("window"));
  const YAML::Node& name_node = keys["name"].second;
  ASSIGN_OR_RETURN(f.name, p.Str(name_node, "name"));
  RETURN_IF_ERROR(p.Identifier(name_node, "feature name", f.name));
  if (kReservedColumns.count(f.name)) {
    return p.Bad(name_node, "feature name '" + f.name + "' is reserved");
  }
  const YAML::Node& agg_node = keys["agg"].second;
  ASSIGN_OR_RETURN(std::string agg, p.Str(agg_node, "agg"));
  auto parsed = stream::ParseAgg(agg);
  if (!parsed.ok()) {
    return p.Bad(agg_node, "agg must be count, sum, avg, min, max, last or count_distinct, not '" +
                               agg + "'");
  }
  f.agg = *parsed;
  if (keys.count("field")) {
    const YAML::Node& fn = keys["field"].second;
    ASSIGN_OR_RETURN(f.field, p.Str(fn, "field"));
    if (f.field.empty()) return p.Bad(fn, "'field' must not be empty");
    if (f.agg == stream::Agg::kCount) {
      return p.Bad(fn, "count takes no 'field' (filter events with 'where')");
    }
  } else if (f.agg != stream::Agg::kCount) {
    return p.Bad(agg_node, std::string(stream::AggName(f.agg)) + " needs a 'field'");
  }
  const YAML::Node& wn = keys["window"].second;
  ASSIGN_OR_RETURN(f.window_us, p.Duration(wn, "window"));
  if (f.window_us <= 0) return p.Bad(wn, "window must be positive");
  if (f.window_us > kMaxWindowUs) return p.Bad(wn, "window must be at most 7d");
  if (f.window_us > kHourUs && f.window_us % kHourUs != 0) {
    return p.Bad(wn, "windows longer than 1h must be whole hours");
  }
  if (keys.count("where")) {
    const YAML::Node& w = keys["where"].second;
    if (!w.IsMap() || w.size() == 0) {
      return p.Bad(w, "'where' must be a mapping of payload field: value (equality filters)");
    }
    std::set<std::string> seen;
    for (auto it = w.begin(); it != w.end(); ++it) {
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      if (!k.IsScalar() || k.Scalar().empty()) {
        return p.Bad(k, "'where' keys must be field names");
      }
      WhereClause c;
      c.field = k.Scalar();
      if (!seen.insert(c.field).second) return p.Bad(k, "duplicate key '" + c.field + "'");
      if (!v.IsScalar()) {
        return p.Bad(v, "'where' values must be a string, a number or true/false");
      }
      const std::string& s = v.Scalar();
      double d;
      bool b;
      // A quoted scalar is a string whatever it looks like ("1" stays text).
      const std::string tag = v.Tag();
      const bool quoted = tag == "!";
      if (!quoted && YAML::convert<bool>::decode(v, b) &&
          (s == "true" || s == "false" || s == "True" || s == "False")) {
        c.value = b;
      } else if (!quoted && !s.empty() &&
                 std::from_chars(s.data(), s.data() + s.size(), d).ptr == s.data() + s.size()) {
        c.value = d;
      } else {
        c.value = s;
      }
      f.where.push_back(std::move(c));
    }
    std::sort(f.where.begin(), f.where.end(),
              [](const WhereClause& a, const WhereClause& b) { return a.field < b.field; });
  }
  return f;
}

// kind: batch: source, entity, timestamp, ttl, features [{name, type, column, description}].
Status ParseBatchView(const Parser& p, const YAML::Node& root,
                      std::map<std::string, std::pair<YAML::Node, YAML::Node>>& keys,
                      FeatureView* view) {
  view->kind = ViewKind::kBatch;
  view->entity.clear();
  const std::string& file = view->file_name;
  for (const char* k : {"source", "entity", "timestamp", "features"}) {
    if (!keys.count(k)) {
      return InvalidArgument(file + ":1: '" + k + "' is required for kind batch");
    }
  }
  (void)root;
  const YAML::Node& src = keys["source"].second;
  ASSIGN_OR_RETURN(view->source, p.Str(src, "source"));
  auto ref = lake::ParseTableRef(view->source);
  if (!ref.ok())
    return p.Bad(src, "source must be a lake table zone.table: " + ref.status().message());
  const YAML::Node& en = keys["entity"].second;
  ASSIGN_OR_RETURN(view->entity, p.Str(en, "entity"));
  RETURN_IF_ERROR(p.Identifier(en, "entity", view->entity));
  const YAML::Node& ts = keys["timestamp"].second;
  ASSIGN_OR_RETURN(view->timestamp_column, p.Str(ts, "timestamp"));
  RETURN_IF_ERROR(p.Identifier(ts, "timestamp column", view->timestamp_column));
  if (keys.count("ttl")) {
    const YAML::Node& tn = keys["ttl"].second;
    ASSIGN_OR_RETURN(view->ttl_us, p.Duration(tn, "ttl"));
  }
  if (keys.count("description")) {
    ASSIGN_OR_RETURN(view->description, p.Str(keys["description"].second, "description"));
  }
  const YAML::Node& fs = keys["features"].second;
  if (!fs.IsSequence() || fs.size() == 0) return p.Bad(fs, "'features' must be a non-empty list");
  std::set<std::string> names;
  for (const auto& node : fs) {
    if (!node.IsMap()) return p.Bad(node, "each feature must be a mapping (name, type, column)");
    ASSIGN_OR_RETURN(auto fk,
                     p.Keys(node, {"name", "type", "column", "description"}, "a batch feature"));
    if (!fk.count("name")) return p.Bad(node, "feature needs 'name'");
    if (!fk.count("type")) return p.Bad(node, "feature needs 'type'");
    FeatureDef f;
    f.line = node.Mark().line + 1;
    const YAML::Node& nn = fk["name"].second;
    ASSIGN_OR_RETURN(f.name, p.Str(nn, "name"));
    RETURN_IF_ERROR(p.Identifier(nn, "feature name", f.name));
    if (!names.insert(f.name).second) return p.Bad(nn, "duplicate feature name '" + f.name + "'");
    const YAML::Node& tn = fk["type"].second;
    ASSIGN_OR_RETURN(std::string type, p.Str(tn, "type"));
    auto vt = ParseValueType(type);
    if (!vt.ok()) return p.Bad(tn, vt.status().message());
    f.type = *vt;
    f.column = f.name;
    if (fk.count("column")) {
      const YAML::Node& cn = fk["column"].second;
      ASSIGN_OR_RETURN(f.column, p.Str(cn, "column"));
      RETURN_IF_ERROR(p.Identifier(cn, "column", f.column));
    }
    view->features.push_back(std::move(f));
  }
  return Status::Ok();
}
}  // namespace

Result<FeatureView> ParseFeatureView(const std::string& yaml_text, const std::string& file_name) {
  Parser p(file_name);
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlMapping(yaml_text, file_name, "a feature view"));
  FeatureView view;
  view.file_name = file_name;
  try {
    ASSIGN_OR_RETURN(auto keys,
                     p.Keys(root,
                            {"name", "kind", "stream", "entity", "description", "features",
                             "allowed_lateness", "source", "timestamp", "ttl"},
                            "a feature view"));
    if (!keys.count("name")) return InvalidArgument(file_name + ":1: 'name' is required");
    const YAML::Node& name_node = keys["name"].second;
    ASSIGN_OR_RETURN(view.name, p.Str(name_node, "name"));
    RETURN_IF_ERROR(p.Identifier(name_node, "feature view name", view.name));
    if (!keys.count("kind")) {
      return InvalidArgument(file_name + ":1: 'kind' is required (stream)");
    }
    const YAML::Node& kind_node = keys["kind"].second;
    ASSIGN_OR_RETURN(std::string kind, p.Str(kind_node, "kind"));
    if (kind == "batch") {
      ASSIGN_OR_RETURN(auto batch_keys, p.Keys(root,
                                               {"name", "kind", "source", "entity", "timestamp",
                                                "ttl", "description", "features"},
                                               "a batch feature view"));
      RETURN_IF_ERROR(ParseBatchView(p, root, batch_keys, &view));
      return view;
    }
    if (kind != "stream") {
      return p.Bad(kind_node, "kind must be stream or batch, not '" + kind + "'");
    }
    view.kind = ViewKind::kStream;
    if (!keys.count("stream")) {
      return InvalidArgument(file_name + ":1: 'stream' is required for kind stream");
    }
    for (const char* k : {"source", "timestamp", "ttl"}) {
      if (keys.count(k)) {
        return p.Bad(keys[k].first, std::string("'") + k + "' is for kind batch views");
      }
    }
    const YAML::Node& stream_node = keys["stream"].second;
    ASSIGN_OR_RETURN(view.stream, p.Str(stream_node, "stream"));
    Status sn = stream::ValidateName("stream", view.stream);
    if (!sn.ok()) return p.Bad(stream_node, sn.message());
    if (keys.count("entity")) {
      const YAML::Node& en = keys["entity"].second;
      ASSIGN_OR_RETURN(view.entity, p.Str(en, "entity"));
      RETURN_IF_ERROR(p.Identifier(en, "entity column", view.entity));
      if (kReservedColumns.count(view.entity)) {
        return p.Bad(en, "entity column '" + view.entity + "' is reserved");
      }
    }
    if (keys.count("description")) {
      ASSIGN_OR_RETURN(view.description, p.Str(keys["description"].second, "description"));
    }
    if (keys.count("allowed_lateness")) {
      const YAML::Node& ln = keys["allowed_lateness"].second;
      ASSIGN_OR_RETURN(view.allowed_lateness_us, p.Duration(ln, "allowed_lateness"));
      if (view.allowed_lateness_us > kMaxLatenessUs) {
        return p.Bad(ln, "allowed_lateness must be at most 24h");
      }
    }
    if (!keys.count("features")) return InvalidArgument(file_name + ":1: 'features' is required");
    const YAML::Node& fs = keys["features"].second;
    if (!fs.IsSequence() || fs.size() == 0) {
      return p.Bad(fs, "'features' must be a non-empty list");
    }
    std::set<std::string> names;
    for (const auto& fnode : fs) {
      ASSIGN_OR_RETURN(FeatureDef f, ParseFeature(p, fnode));
      f.line = fnode.Mark().line + 1;
      if (!names.insert(f.name).second) {
        return p.Bad(fnode, "duplicate feature name '" + f.name + "'");
      }
      if (f.name == view.entity) {
        return p.Bad(fnode, "feature name '" + f.name + "' is the entity column's name");
      }
      view.features.push_back(std::move(f));
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument(file_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return view;
}

Result<std::vector<FeatureView>> LoadFeatureViews(const std::filesystem::path& dir) {
  std::vector<FeatureView> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(e.path());
  }
  if (ec) return IoError("list " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> seen;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return IoError("read " + f.string());
    std::stringstream text;
    text << in.rdbuf();
    ASSIGN_OR_RETURN(FeatureView v, ParseFeatureView(text.str(), f.string()));
    auto [it, fresh] = seen.emplace(v.name, f.string());
    if (!fresh) {
      return InvalidArgument(f.string() + ":1: feature view '" + v.name + "' is also defined in " +
                             it->second);
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<catalog::Migration> Migrations() {
  return {{"features", 1,
           "CREATE TABLE features_log_offsets ("
           " view TEXT NOT NULL,"
           " stream_partition INTEGER NOT NULL,"
           " next_offset INTEGER NOT NULL,"
           " PRIMARY KEY (view, stream_partition))"}};
}

std::string ConsumerName(std::string_view view) { return "features." + std::string(view); }

}  // namespace lakeloop::features
