// Entities, feature services, the registry's cross-checks and the batch row encoding.
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <map>
#include <set>

#include "core/yaml.h"
#include "features/store.h"
#include "lake/lake.h"

namespace lakeloop::features {
namespace {

// Top-level keys of a definition, each checked against `allowed`.
Result<std::map<std::string, YAML::Node>> TopKeys(const YAML::Node& root,
                                                  const std::set<std::string>& allowed,
                                                  const std::string& file,
                                                  const std::string& what) {
  std::map<std::string, YAML::Node> out;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (!it->first.IsScalar()) return YamlError(file, it->first, "keys must be strings");
    const std::string k = it->first.Scalar();
    if (out.count(k)) return YamlError(file, it->first, "duplicate key '" + k + "'");
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return YamlError(file, it->first,
                       "unknown key '" + k + "' in " + what + " (allowed: " + list + ")");
    }
    out.emplace(k, it->second);
  }
  return out;
}

Result<std::string> ScalarOf(const YAML::Node& n, const std::string& key, const std::string& file) {
  if (!n.IsScalar()) return YamlError(file, n, "'" + key + "' must be a string");
  return n.Scalar();
}

Status IdentifierAt(const YAML::Node& n, const std::string& what, const std::string& id,
                    const std::string& file) {
  Status s = lake::ValidateIdentifier(what, id);
  if (!s.ok()) return YamlError(file, n, s.message());
  return Status::Ok();
}

std::string Where(const std::string& file, int line) {
  return file + ":" + std::to_string(line > 0 ? line : 1);
}

}  // namespace

std::string_view ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kInt64:
      return "int64";
    case ValueType::kDouble:
      return "double";
    case ValueType::kString:
      return "string";
    case ValueType::kBool:
      return "bool";
    case ValueType::kTimestamp:
      return "timestamp";
  }
  return "?";
}

Result<ValueType> ParseValueType(std::string_view name) {
  for (ValueType t : {ValueType::kInt64, ValueType::kDouble, ValueType::kString, ValueType::kBool,
                      ValueType::kTimestamp}) {
    if (ValueTypeName(t) == name) return t;
  }
  return InvalidArgument("type must be int64, double, string, bool or timestamp, not '" +
                         std::string(name) + "'");
}

bool ColumnFits(ValueType t, std::string_view type) {
  auto starts = [&](std::string_view p) { return type.substr(0, p.size()) == p; };
  const bool integer = type == "TINYINT" || type == "SMALLINT" || type == "INTEGER" ||
                       type == "BIGINT" || type == "UTINYINT" || type == "USMALLINT" ||
                       type == "UINTEGER";
  switch (t) {
    case ValueType::kInt64:
      return integer;
    case ValueType::kDouble:
      return integer || type == "FLOAT" || type == "DOUBLE" || starts("DECIMAL") ||
             type == "BIGINT" || type == "UBIGINT" || type == "HUGEINT";
    case ValueType::kString:
      return type == "VARCHAR";
    case ValueType::kBool:
      return type == "BOOLEAN";
    case ValueType::kTimestamp:
      return starts("TIMESTAMP") || type == "DATE";
  }
  return false;
}

Result<FeatureRef> ParseFeatureRef(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos) {
    return InvalidArgument("feature reference '" + std::string(text) +
                           "' must be view:feature or view:*");
  }
  FeatureRef r;
  r.view = std::string(text.substr(0, colon));
  r.feature = std::string(text.substr(colon + 1));
  RETURN_IF_ERROR(lake::ValidateIdentifier("feature view name", r.view));
  if (r.feature != "*") RETURN_IF_ERROR(lake::ValidateIdentifier("feature name", r.feature));
  return r;
}

Result<Entity> ParseEntity(const std::string& yaml_text, const std::string& file) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlMapping(yaml_text, file, "an entity"));
  Entity e;
  e.file_name = file;
  try {
    ASSIGN_OR_RETURN(auto keys,
                     TopKeys(root, {"name", "join_key", "type", "description"}, file, "an entity"));
    for (const char* k : {"name", "join_key"}) {
      if (!keys.count(k)) return InvalidArgument(file + ":1: '" + k + "' is required");
    }
    ASSIGN_OR_RETURN(e.name, ScalarOf(keys["name"], "name", file));
    RETURN_IF_ERROR(IdentifierAt(keys["name"], "entity name", e.name, file));
    ASSIGN_OR_RETURN(e.join_key, ScalarOf(keys["join_key"], "join_key", file));
    RETURN_IF_ERROR(IdentifierAt(keys["join_key"], "join key", e.join_key, file));
    if (keys.count("type")) {
      ASSIGN_OR_RETURN(std::string t, ScalarOf(keys["type"], "type", file));
      if (t == "int64") {
        e.type = ValueType::kInt64;
      } else if (t == "string") {
        e.type = ValueType::kString;
      } else {
        return YamlError(file, keys["type"],
                         "an entity's type must be int64 or string, not '" + t + "'");
      }
    }
    if (keys.count("description")) {
      ASSIGN_OR_RETURN(e.description, ScalarOf(keys["description"], "description", file));
    }
  } catch (const YAML::Exception& ex) {
    return InvalidArgument(file + ":" + std::to_string(ex.mark.line + 1) + ": " + ex.msg);
  }
  return e;
}

Result<FeatureService> ParseFeatureService(const std::string& yaml_text, const std::string& file) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlMapping(yaml_text, file, "a feature service"));
  FeatureService s;
  s.file_name = file;
  try {
    ASSIGN_OR_RETURN(auto keys,
                     TopKeys(root, {"name", "description", "features"}, file, "a feature service"));
    for (const char* k : {"name", "features"}) {
      if (!keys.count(k)) return InvalidArgument(file + ":1: '" + k + "' is required");
    }
    ASSIGN_OR_RETURN(s.name, ScalarOf(keys["name"], "name", file));
    RETURN_IF_ERROR(IdentifierAt(keys["name"], "feature service name", s.name, file));
    if (keys.count("description")) {
      ASSIGN_OR_RETURN(s.description, ScalarOf(keys["description"], "description", file));
    }
    const YAML::Node& fs = keys["features"];
    if (!fs.IsSequence() || fs.size() == 0) {
      return YamlError(file, fs, "'features' must be a non-empty list of view:feature");
    }
    std::set<std::string> seen;
    for (const auto& n : fs) {
      ASSIGN_OR_RETURN(std::string text, ScalarOf(n, "features", file));
      auto ref = ParseFeatureRef(text);
      if (!ref.ok()) return YamlError(file, n, ref.status().message());
      if (!seen.insert(text).second) return YamlError(file, n, "'" + text + "' is listed twice");
      ref->line = n.Mark().line + 1;
      s.features.push_back(std::move(*ref));
    }
  } catch (const YAML::Exception& ex) {
    return InvalidArgument(file + ":" + std::to_string(ex.mark.line + 1) + ": " + ex.msg);
  }
  return s;
}

const Entity* Registry::FindEntity(std::string_view name) const {
  for (const auto& e : entities) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const Entity* Registry::EntityOf(const FeatureView& view) const {
  if (view.kind == ViewKind::kBatch) return FindEntity(view.entity);
  for (const auto& e : entities) {
    if (e.join_key == view.entity) return &e;
  }
  return nullptr;
}

const FeatureView* Registry::FindView(std::string_view name) const {
  for (const auto& v : views) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

const FeatureService* Registry::FindService(std::string_view name) const {
  for (const auto& s : services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::vector<std::string> CheckRegistry(const Registry& r) {
  std::vector<std::string> errors;
  std::map<std::string, std::string> names;
  for (const auto& e : r.entities) {
    auto [it, fresh] = names.emplace("entity " + e.name, e.file_name);
    if (!fresh)
      errors.push_back(e.file_name + ":1: entity '" + e.name + "' is also in " + it->second);
  }
  for (const auto& s : r.services) {
    auto [it, fresh] = names.emplace("service " + s.name, s.file_name);
    if (!fresh) {
      errors.push_back(s.file_name + ":1: feature service '" + s.name + "' is also in " +
                       it->second);
    }
  }
  for (const auto& v : r.views) {
    if (v.kind == ViewKind::kBatch && !r.FindEntity(v.entity)) {
      errors.push_back(v.file_name + ":1: batch view '" + v.name + "' names entity '" + v.entity +
                       "', which is not defined in entities/");
    }
    if (v.kind == ViewKind::kBatch) {
      for (const auto& f : v.features) {
        if (f.column == v.timestamp_column ||
            (r.EntityOf(v) && f.column == r.EntityOf(v)->join_key)) {
          errors.push_back(Where(v.file_name, f.line) + ": feature '" + f.name +
                           "' reads the view's key or timestamp column '" + f.column + "'");
        }
      }
    }
  }
  for (const auto& s : r.services) {
    std::string join_key;
    std::set<std::string> no_entity;
    for (const auto& ref : s.features) {
      const std::string at = Where(s.file_name, ref.line) + ": feature service '" + s.name + "' ";
      const FeatureView* v = r.FindView(ref.view);
      if (!v) {
        errors.push_back(at + "uses view '" + ref.view + "', which is not defined");
        continue;
      }
      if (ref.feature != "*") {
        bool has = false;
        for (const auto& f : v->features) has = has || f.name == ref.feature;
        if (!has) {
          errors.push_back(at + "uses '" + ref.ToString() + "', which view '" + v->name +
                           "' does not have (" + v->file_name + ")");
        }
      }
      const Entity* e = r.EntityOf(*v);
      if (!e) {
        // A batch view's unknown entity is reported with the view.
        if (v->kind == ViewKind::kStream && !no_entity.count(v->name)) {
          no_entity.insert(v->name);
          errors.push_back(at + "uses view '" + v->name + "', whose entity column '" + v->entity +
                           "' is no entity's join_key in entities/");
        }
        continue;
      }
      if (join_key.empty()) {
        join_key = e->join_key;
      } else if (join_key != e->join_key) {
        errors.push_back(at + "mixes join keys '" + join_key + "' and '" + e->join_key +
                         "' (view '" + v->name + "')");
      }
    }
  }
  return errors;
}

std::vector<std::string> CheckCompatibility(const Registry& before, const Registry& after) {
  std::vector<std::string> errors;
  for (const auto& s : after.services) {
    for (const auto& ref : s.features) {
      const FeatureView* old_view = before.FindView(ref.view);
      const FeatureView* new_view = after.FindView(ref.view);
      if (!old_view || !new_view) continue;
      for (const auto& of : old_view->features) {
        if (ref.feature != "*" && ref.feature != of.name) continue;
        const FeatureDef* nf = nullptr;
        for (const auto& f : new_view->features) {
          if (f.name == of.name) nf = &f;
        }
        const std::string at = Where(s.file_name, ref.line) + ": feature service '" + s.name +
                               "' uses '" + ref.view + ":" + of.name + "'";
        if (!nf) {
          if (ref.feature == "*") {
            errors.push_back(at + " (through " + ref.ToString() + "), which the new " +
                             new_view->file_name + " removes");
          }
          continue;  // a named reference to a removed feature: CheckRegistry says so
        }
        if (nf->type != of.type || old_view->kind != new_view->kind) {
          errors.push_back(at + ", which " + new_view->file_name + ":" + std::to_string(nf->line) +
                           " retypes from " + std::string(ValueTypeName(of.type)) + " to " +
                           std::string(ValueTypeName(nf->type)));
        }
      }
    }
  }
  return errors;
}

// ---- Batch row encoding: version 1, event time, then per value a tag and its payload.

namespace {
void PutU64(std::string* out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out->append(b, 8);
}
bool GetU64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  std::memcpy(v, in->data(), 8);
  in->remove_prefix(8);
  return true;
}
}  // namespace

uint64_t BatchSchema(const FeatureView& v) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto add = [&](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
  };
  add(v.source);
  add(v.entity);
  add(v.timestamp_column);
  for (const auto& f : v.features) {
    add(f.name);
    add(ValueTypeName(f.type));
    add(f.column);
  }
  return h;
}

std::string EncodeBatchRow(const BatchRow& row) {
  std::string out;
  out.push_back(1);
  PutU64(&out, row.schema);
  PutU64(&out, static_cast<uint64_t>(row.event_time_us));
  PutU64(&out, row.values.size());
  for (const Value& v : row.values) {
    out.push_back(static_cast<char>(v.index()));
    if (const auto* i = std::get_if<int64_t>(&v)) {
      PutU64(&out, static_cast<uint64_t>(*i));
    } else if (const auto* d = std::get_if<double>(&v)) {
      uint64_t bits;
      std::memcpy(&bits, d, 8);
      PutU64(&out, bits);
    } else if (const auto* s = std::get_if<std::string>(&v)) {
      PutU64(&out, s->size());
      out += *s;
    } else if (const auto* b = std::get_if<bool>(&v)) {
      out.push_back(*b ? 1 : 0);
    } else if (const auto* t = std::get_if<TimestampValue>(&v)) {
      PutU64(&out, static_cast<uint64_t>(t->micros));
    }
  }
  return out;
}

Result<BatchRow> DecodeBatchRow(std::string_view in) {
  auto bad = [] { return Status(Code::kDataLoss, "batch feature row: corrupt value"); };
  if (in.empty() || in[0] != 1) return bad();
  in.remove_prefix(1);
  BatchRow row;
  uint64_t t, n;
  if (!GetU64(&in, &row.schema) || !GetU64(&in, &t) || !GetU64(&in, &n) || n > in.size()) {
    return bad();
  }
  row.event_time_us = static_cast<int64_t>(t);
  row.values.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (in.empty()) return bad();
    const int tag = in[0];
    in.remove_prefix(1);
    uint64_t x;
    switch (tag) {
      case 0:
        row.values.emplace_back(std::monostate{});
        break;
      case 1:
        if (!GetU64(&in, &x)) return bad();
        row.values.emplace_back(static_cast<int64_t>(x));
        break;
      case 2: {
        if (!GetU64(&in, &x)) return bad();
        double d;
        std::memcpy(&d, &x, 8);
        row.values.emplace_back(d);
        break;
      }
      case 3:
        if (!GetU64(&in, &x) || x > in.size()) return bad();
        row.values.emplace_back(std::string(in.substr(0, x)));
        in.remove_prefix(x);
        break;
      case 4:
        if (in.empty()) return bad();
        row.values.emplace_back(in[0] != 0);
        in.remove_prefix(1);
        break;
      case 5:
        if (!GetU64(&in, &x)) return bad();
        row.values.emplace_back(TimestampValue{static_cast<int64_t>(x)});
        break;
      default:
        return bad();
    }
  }
  return row;
}

std::string_view FeatureStatusName(FeatureStatus s) {
  switch (s) {
    case FeatureStatus::kPresent:
      return "present";
    case FeatureStatus::kMissing:
      return "missing";
    case FeatureStatus::kExpired:
      return "expired";
  }
  return "?";
}

}  // namespace lakeloop::features
