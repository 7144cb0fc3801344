// Model files: <name>.sql plus an optional <name>.yaml, parsed with yaml-cpp. yaml-cpp exceptions
// stop here; every error names file and line.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "core/fs.h"
#include "transform/transform.h"

namespace lakeloop::transform {

namespace fs = std::filesystem;

std::string_view TestKindName(TestKind kind) {
  switch (kind) {
    case TestKind::kNotNull:
      return "not_null";
    case TestKind::kUnique:
      return "unique";
    case TestKind::kAcceptedValues:
      return "accepted_values";
    case TestKind::kRelationships:
      return "relationships";
    case TestKind::kMinRows:
      return "min_rows";
    case TestKind::kSql:
      return "sql";
  }
  return "unknown";
}

std::string_view SeverityName(Severity severity) {
  return severity == Severity::kError ? "error" : "warn";
}

namespace {

// Collects "file:line: reason" errors; the model is valid only when none were added.
class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  void Add(int line, const std::string& reason) {
    std::string where = file_;
    if (line > 0) where += ":" + std::to_string(line);
    messages_.push_back(where + ": " + reason);
  }
  void Add(const YAML::Node& n, const std::string& reason) { Add(Line(n), reason); }
  static int Line(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }
  bool empty() const { return messages_.empty(); }
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  std::string file_;
  std::vector<std::string> messages_;
};

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out.append(sep);
    out.append(parts[i]);
  }
  return out;
}

bool IsIdentifier(std::string_view s) { return lake::ValidateIdentifier("name", s).ok(); }

bool Scalar(const YAML::Node& n, std::string* out) {
  if (!n.IsScalar()) return false;
  *out = n.Scalar();
  return true;
}

// A column name: a scalar identifier.
bool ReadColumn(const YAML::Node& n, const std::string& key, Errors* errors, std::string* out) {
  if (!Scalar(n, out) || out->empty()) {
    errors->Add(n, "'" + key + "' must be a column name");
    return false;
  }
  return true;
}

// A column or a list of columns.
bool ReadColumns(const YAML::Node& n, const std::string& key, Errors* errors,
                 std::vector<std::string>* out) {
  out->clear();
  if (n.IsScalar()) {
    std::string c;
    if (!ReadColumn(n, key, errors, &c)) return false;
    out->push_back(c);
    return true;
  }
  if (!n.IsSequence() || n.size() == 0) {
    errors->Add(n, "'" + key + "' must be a column name or a non-empty list of them");
    return false;
  }
  for (const auto& item : n) {
    std::string c;
    if (!ReadColumn(item, key, errors, &c)) return false;
    out->push_back(c);
  }
  return true;
}

void ReadTest(const YAML::Node& item, Errors* errors, std::vector<DataTest>* tests) {
  if (!item.IsMap()) {
    errors->Add(item, "a test must be a mapping such as {not_null: id}");
    return;
  }
  DataTest t;
  t.line = Errors::Line(item);
  int kinds = 0;
  bool ok = true;
  for (const auto& kv : item) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "severity") {
      std::string s;
      if (Scalar(v, &s) && s == "error") {
        t.severity = Severity::kError;
      } else if (Scalar(v, &s) && s == "warn") {
        t.severity = Severity::kWarn;
      } else {
        errors->Add(v, "severity must be error or warn");
        ok = false;
      }
      continue;
    }
    if (key == "name") {
      if (!Scalar(v, &t.name) || t.name.empty()) {
        errors->Add(v, "test name must be a non-empty string");
        ok = false;
      }
      continue;
    }
    ++kinds;
    if (key == "not_null") {
      t.kind = TestKind::kNotNull;
      t.columns.resize(1);
      ok = ReadColumn(v, key, errors, &t.columns[0]) && ok;
    } else if (key == "unique") {
      t.kind = TestKind::kUnique;
      ok = ReadColumns(v, key, errors, &t.columns) && ok;
    } else if (key == "accepted_values") {
      t.kind = TestKind::kAcceptedValues;
      if (!v.IsMap()) {
        errors->Add(v, "accepted_values must be {column: c, values: [...]}");
        ok = false;
        continue;
      }
      for (const auto& f : v) {
        const std::string fk = f.first.Scalar();
        if (fk == "column") {
          t.columns.resize(1);
          ok = ReadColumn(f.second, "column", errors, &t.columns[0]) && ok;
        } else if (fk == "values") {
          if (!f.second.IsSequence() || f.second.size() == 0) {
            errors->Add(f.second, "accepted_values.values must be a non-empty list");
            ok = false;
            continue;
          }
          for (const auto& val : f.second) {
            std::string s;
            if (!Scalar(val, &s)) {
              errors->Add(val, "accepted_values.values must be scalars");
              ok = false;
            }
            t.values.push_back(s);
          }
        } else {
          errors->Add(f.first, "unknown key 'accepted_values." + fk + "'");
          ok = false;
        }
      }
      if (ok && (t.columns.empty() || t.values.empty())) {
        errors->Add(v, "accepted_values needs column and values");
        ok = false;
      }
    } else if (key == "relationships") {
      t.kind = TestKind::kRelationships;
      if (!v.IsMap()) {
        errors->Add(v, "relationships must be {column: c, to: zone.table, field: f}");
        ok = false;
        continue;
      }
      for (const auto& f : v) {
        const std::string fk = f.first.Scalar();
        if (fk == "column") {
          t.columns.resize(1);
          ok = ReadColumn(f.second, "column", errors, &t.columns[0]) && ok;
        } else if (fk == "field") {
          ok = ReadColumn(f.second, "field", errors, &t.field) && ok;
        } else if (fk == "to") {
          if (!Scalar(f.second, &t.to) || !(IsIdentifier(t.to) || lake::ParseTableRef(t.to).ok())) {
            errors->Add(f.second, "relationships.to must be a model name or zone.table");
            ok = false;
          }
        } else {
          errors->Add(f.first, "unknown key 'relationships." + fk + "'");
          ok = false;
        }
      }
      if (ok && (t.columns.empty() || t.to.empty() || t.field.empty())) {
        errors->Add(v, "relationships needs column, to and field");
        ok = false;
      }
    } else if (key == "min_rows") {
      t.kind = TestKind::kMinRows;
      try {
        t.min_rows = v.as<int64_t>();
      } catch (const YAML::Exception&) {
        t.min_rows = -1;
      }
      if (t.min_rows < 0) {
        errors->Add(v, "min_rows must be a non-negative integer");
        ok = false;
      }
    } else if (key == "sql") {
      t.kind = TestKind::kSql;
      if (!Scalar(v, &t.sql) || t.sql.find_first_not_of(" \t\r\n") == std::string::npos) {
        errors->Add(v, "sql must be a SELECT returning the failing rows");
        ok = false;
      }
    } else {
      errors->Add(kv.first,
                  "unknown test '" + key +
                      "' (not_null, unique, accepted_values, relationships, min_rows, sql)");
      ok = false;
    }
  }
  if (kinds != 1) {
    if (ok) errors->Add(item, "a test needs exactly one kind (not_null, unique, ...)");
    return;
  }
  if (!ok) return;
  if (t.name.empty()) {
    switch (t.kind) {
      case TestKind::kNotNull:
      case TestKind::kUnique:
        t.name = std::string(TestKindName(t.kind)) + "(" + Join(t.columns, ",") + ")";
        break;
      case TestKind::kAcceptedValues:
        t.name = "accepted_values(" + t.columns[0] + ")";
        break;
      case TestKind::kRelationships:
        t.name = "relationships(" + t.columns[0] + " -> " + t.to + "." + t.field + ")";
        break;
      case TestKind::kMinRows:
        t.name = "min_rows(" + std::to_string(t.min_rows) + ")";
        break;
      case TestKind::kSql:
        t.name = "sql(line " + std::to_string(t.line) + ")";
        break;
    }
  }
  tests->push_back(std::move(t));
}

void ReadYaml(const YAML::Node& root, Errors* errors, Model* m) {
  if (!root || root.IsNull()) return;
  if (!root.IsMap()) {
    errors->Add(root, "the model's yaml must be a mapping");
    return;
  }
  // yaml-cpp assigns through Node::operator=, and a default Node is defined: keep copies here.
  std::optional<YAML::Node> materialized, strategy, unique_key;
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    std::string s;
    if (key == "materialized") {
      materialized.emplace(v);
      if (Scalar(v, &s) && s == "table") {
        m->materialized = Materialization::kTable;
      } else if (Scalar(v, &s) && s == "incremental") {
        m->materialized = Materialization::kIncremental;
      } else {
        errors->Add(v, "materialized must be table or incremental");
      }
    } else if (key == "strategy") {
      strategy.emplace(v);
      if (Scalar(v, &s) && s == "append") {
        m->strategy = Strategy::kAppend;
      } else if (Scalar(v, &s) && s == "merge") {
        m->strategy = Strategy::kMerge;
      } else {
        errors->Add(v, "strategy must be append or merge");
      }
    } else if (key == "unique_key") {
      unique_key.emplace(v);
      ReadColumns(v, key, errors, &m->unique_key);
    } else if (key == "time_column") {
      ReadColumn(v, key, errors, &m->time_column);
    } else if (key == "partition_by") {
      if (ReadColumns(v, key, errors, &m->partition_by)) {
        for (const auto& p : m->partition_by) {
          if (!IsIdentifier(p))
            errors->Add(v, "partition column '" + p + "' is not a lower-case identifier");
        }
      }
    } else if (key == "tests") {
      if (!v.IsSequence()) {
        errors->Add(v, "tests must be a list");
        continue;
      }
      for (const auto& item : v) ReadTest(item, errors, &m->tests);
    } else {
      errors->Add(kv.first, "unknown key '" + key +
                                "' (materialized, strategy, unique_key, time_column, "
                                "partition_by, tests)");
    }
  }
  std::set<std::string> seen;
  for (const auto& t : m->tests) {
    if (!seen.insert(t.name).second) errors->Add(t.line, "duplicate test name '" + t.name + "'");
  }
  const bool incremental = m->materialized == Materialization::kIncremental;
  if (!incremental) {
    if (strategy) errors->Add(*strategy, "strategy applies to incremental models only");
    if (unique_key) errors->Add(*unique_key, "unique_key applies to incremental merge models only");
    return;
  }
  if (m->strategy == Strategy::kMerge && m->unique_key.empty() && !unique_key) {
    errors->Add(strategy ? *strategy : *materialized, "strategy merge needs unique_key");
  }
  if (m->strategy == Strategy::kAppend && unique_key) {
    errors->Add(*unique_key, "unique_key applies to strategy merge only");
  }
}

Status ToStatus(const Errors& errors) { return InvalidArgument(Join(errors.messages(), "\n")); }

}  // namespace

Result<Model> ParseModel(std::string_view name, std::string_view sql, std::string_view yaml_text,
                         const fs::path& sql_file, const fs::path& yaml_file) {
  Model m;
  m.name = std::string(name);
  m.sql = std::string(sql);
  m.sql_file = sql_file;
  m.yaml_file = yaml_file;
  Errors sql_errors(sql_file.string());
  if (!IsIdentifier(name)) {
    sql_errors.Add(0, "model name '" + std::string(name) +
                          "' must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 63)");
  }
  if (sql.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    sql_errors.Add(0, "the model's SQL is empty");
  }
  if (sql.find('\0') != std::string_view::npos) sql_errors.Add(0, "the SQL contains a NUL byte");
  if (!sql_errors.empty()) return ToStatus(sql_errors);
  if (yaml_file.empty()) return m;

  Errors errors(yaml_file.string());
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::ParserException& e) {
    errors.Add(e.mark.line + 1, e.msg);
    return ToStatus(errors);
  }
  try {
    ReadYaml(root, &errors, &m);
  } catch (const YAML::Exception& e) {  // e.g. a non-scalar key
    errors.Add(e.mark.line + 1, e.msg);
  }
  if (!errors.empty()) return ToStatus(errors);
  return m;
}

Result<std::vector<Model>> LoadModels(const fs::path& models_dir) {
  std::error_code ec;
  if (!fs::is_directory(models_dir, ec)) {
    return NotFound("models folder " + models_dir.string() + " does not exist");
  }
  std::map<std::string, fs::path> sqls;
  std::map<std::string, std::vector<fs::path>> yamls;
  for (const auto& entry : fs::directory_iterator(models_dir, ec)) {
    if (!entry.is_regular_file()) continue;
    const fs::path& p = entry.path();
    const std::string ext = p.extension().string();
    if (ext == ".sql") sqls[p.stem().string()] = p;
    if (ext == ".yaml" || ext == ".yml") yamls[p.stem().string()].push_back(p);
  }
  if (ec) return IoError("listing " + models_dir.string() + ": " + ec.message());

  std::vector<std::string> messages;
  for (const auto& [stem, files] : yamls) {
    if (!sqls.contains(stem)) {
      messages.push_back(files[0].string() + ": no " + stem + ".sql beside it");
    } else if (files.size() > 1) {
      messages.push_back(files[1].string() + ": both " + stem + ".yaml and " + stem + ".yml exist");
    }
  }
  std::vector<Model> models;
  for (const auto& [stem, sql_path] : sqls) {
    auto sql = ReadFile(sql_path);
    if (!sql.ok()) return sql.status();
    std::string yaml_text;
    fs::path yaml_path;
    if (auto it = yamls.find(stem); it != yamls.end()) {
      yaml_path = it->second[0];
      auto text = ReadFile(yaml_path);
      if (!text.ok()) return text.status();
      yaml_text = std::move(text).value();
    }
    auto m = ParseModel(stem, *sql, yaml_text, sql_path, yaml_path);
    if (!m.ok()) {
      messages.push_back(m.status().message());
      continue;
    }
    models.push_back(std::move(m).value());
  }
  if (!messages.empty()) return InvalidArgument(Join(messages, "\n"));
  return models;
}

}  // namespace lakeloop::transform
