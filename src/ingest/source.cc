// Parsing of sources/*.yaml into SourceSpec.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "core/fs.h"
#include "core/yaml.h"
#include "ingest/ingest.h"
#include "ingest/internal/secrets.h"

namespace lakeloop::ingest {

std::string_view SourceTypeName(SourceType type) {
  switch (type) {
    case SourceType::kFiles:
      return "files";
    case SourceType::kSqlite:
      return "sqlite";
    case SourceType::kPostgres:
      return "postgres";
  }
  return "?";
}

namespace {

constexpr size_t kMaxNameLength = 53;  // raw.<name>__rejected must stay a 63-char identifier

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

  Result<std::vector<std::string>> StrList(const YAML::Node& n, const std::string& key) const {
    std::vector<std::string> out;
    if (n.IsScalar()) {
      out.push_back(n.Scalar());
      return out;
    }
    if (!n.IsSequence()) return Bad(n, "'" + key + "' must be a list of column names");
    for (const auto& e : n) {
      if (!e.IsScalar() || e.Scalar().empty()) {
        return Bad(e, "'" + key + "' must be a list of column names");
      }
      out.push_back(e.Scalar());
    }
    return out;
  }

  Result<bool> Bool(const YAML::Node& n, const std::string& key) const {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
      return Bad(n, "'" + key + "' must be true or false");
    }
    return v;
  }

 private:
  const std::string& file_;
};

Status CheckColumnName(const Parser& p, const YAML::Node& n, const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) {
    return p.Bad(n, "column names must be non-empty");
  }
  if (name == "_loaded_at" || name == "_batch_id" || name == "load_date") {
    return p.Bad(n, "column '" + name + "' is reserved (added by ingest)");
  }
  return Status::Ok();
}

// A DuckDB type name, checked for shape only (DuckDB checks it at run time): letters, digits,
// spaces, and balanced (), [], quotes-free.
bool PlausibleType(const std::string& t) {
  if (t.empty() || t.size() > 200) return false;
  int depth = 0;
  for (char c : t) {
    if (c == '(' || c == '[')
      ++depth;
    else if (c == ')' || c == ']')
      --depth;
    else if (!std::isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != ',' && c != '_' &&
             c != ':')
      return false;
    if (depth < 0) return false;
  }
  return depth == 0;
}

Result<Lookback> ParseLookback(const std::string& text) {
  Lookback lb;
  lb.text = text;
  if (text.empty()) return InvalidArgument("empty");
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  if (i == 0) return InvalidArgument("must start with a number");
  double n = 0;
  try {
    n = std::stod(text.substr(0, i));
  } catch (...) {
    return InvalidArgument("must start with a number");
  }
  std::string unit = text.substr(i);
  if (unit.empty()) {
    lb.is_duration = false;
    lb.number = n;
    return lb;
  }
  static const std::map<std::string, int64_t> kUnits = {
      {"s", 1000000LL}, {"m", 60000000LL}, {"h", 3600000000LL}, {"d", 86400000000LL}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) return InvalidArgument("unit must be s, m, h or d");
  lb.is_duration = true;
  lb.micros = static_cast<int64_t>(std::llround(n * static_cast<double>(it->second)));
  return lb;
}

}  // namespace

Result<SourceSpec> ParseSource(const std::string& yaml_text, const std::string& file_name) {
  Parser p(file_name);
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlMapping(yaml_text, file_name, "a source definition"));

  SourceSpec spec;
  spec.file_name = file_name;
  std::map<std::string, YAML::Node> keys;  // key -> its key node (for the line)
  std::map<std::string, YAML::Node> values;
  try {
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (!it->first.IsScalar()) return p.Bad(it->first, "keys must be strings");
      const std::string k = it->first.Scalar();
      if (keys.count(k)) return p.Bad(it->first, "duplicate key '" + k + "'");
      keys[k] = it->first;
      values[k] = it->second;
    }

    // type first: which keys are valid depends on it.
    if (!values.count("type")) {
      return InvalidArgument(file_name + ":1: 'type' is required (files, sqlite or postgres)");
    }
    ASSIGN_OR_RETURN(std::string type, p.Str(values["type"], "type"));
    if (type == "files")
      spec.type = SourceType::kFiles;
    else if (type == "sqlite")
      spec.type = SourceType::kSqlite;
    else if (type == "postgres" || type == "postgresql")
      spec.type = SourceType::kPostgres;
    else
      return p.Bad(values["type"], "type must be files, sqlite or postgres, not '" + type + "'");

    static const std::set<std::string> kCommon = {
        "name",   "type",     "schedule",           "description",
        "schema", "required", "max_rejected_share", "on_new_column"};
    static const std::set<std::string> kFiles = {"path", "format", "csv"};
    static const std::set<std::string> kDb = {"table",    "query", "cursor",
                                              "lookback", "key",   "cursor_type"};
    const bool files = spec.type == SourceType::kFiles;
    for (const auto& [k, node] : keys) {
      if (kCommon.count(k)) continue;
      if (files && kFiles.count(k)) continue;
      if (!files && kDb.count(k)) continue;
      if (spec.type == SourceType::kSqlite && k == "database") continue;
      if (spec.type == SourceType::kPostgres &&
          (k == "dsn" || k == "connect_timeout" || k == "statement_timeout")) {
        continue;
      }
      bool elsewhere = kFiles.count(k) || kDb.count(k) || k == "database" || k == "dsn" ||
                       k == "connect_timeout" || k == "statement_timeout";
      if (elsewhere) return p.Bad(node, "key '" + k + "' is not valid for type " + type);
      return p.Bad(node, "unknown key '" + k + "'");
    }

    auto has = [&](const char* k) { return values.count(k) > 0; };
    auto str = [&](const char* k, std::string* out) -> Status {
      if (!has(k)) return Status::Ok();
      ASSIGN_OR_RETURN(*out, p.Str(values[k], k));
      return Status::Ok();
    };

    // name: default the file stem.
    if (has("name")) {
      RETURN_IF_ERROR(str("name", &spec.name));
    } else {
      spec.name = std::filesystem::path(file_name).stem().string();
    }
    {
      const YAML::Node& where = has("name") ? values["name"] : root;
      Status ok = lake::ValidateIdentifier("source name", spec.name);
      if (!ok.ok()) return p.Bad(where, ok.message());
      if (spec.name.size() > kMaxNameLength) {
        return p.Bad(where, "source name '" + spec.name + "' is longer than " +
                                std::to_string(kMaxNameLength) + " characters");
      }
    }
    RETURN_IF_ERROR(str("schedule", &spec.schedule));
    RETURN_IF_ERROR(str("description", &spec.description));

    if (has("schema")) {
      const YAML::Node& s = values["schema"];
      if (!s.IsMap()) return p.Bad(s, "'schema' must be a mapping of column: type");
      std::set<std::string> seen;
      for (auto it = s.begin(); it != s.end(); ++it) {
        if (!it->first.IsScalar()) return p.Bad(it->first, "schema keys must be column names");
        std::string col = it->first.Scalar();
        RETURN_IF_ERROR(CheckColumnName(p, it->first, col));
        if (!seen.insert(col).second) return p.Bad(it->first, "column '" + col + "' twice");
        ASSIGN_OR_RETURN(std::string t, p.Str(it->second, "schema." + col));
        if (!PlausibleType(t)) {
          return p.Bad(it->second, "column '" + col + "': '" + t + "' is not a DuckDB type");
        }
        spec.schema.push_back({col, t});
      }
    }
    if (has("required")) {
      ASSIGN_OR_RETURN(spec.required, p.StrList(values["required"], "required"));
    }
    if (has("max_rejected_share")) {
      const YAML::Node& n = values["max_rejected_share"];
      double v = -1;
      if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !(v >= 0.0 && v <= 1.0)) {
        return p.Bad(n, "'max_rejected_share' must be a number from 0 to 1");
      }
      spec.max_rejected_share = v;
    }
    if (has("on_new_column")) {
      ASSIGN_OR_RETURN(std::string v, p.Str(values["on_new_column"], "on_new_column"));
      if (v == "evolve")
        spec.on_new_column = OnNewColumn::kEvolve;
      else if (v == "fail")
        spec.on_new_column = OnNewColumn::kFail;
      else
        return p.Bad(values["on_new_column"], "'on_new_column' must be evolve or fail");
    }

    if (files) {
      if (!has("path")) {
        return p.Bad(keys["type"], "'path' is required for type files (a folder or a glob)");
      }
      RETURN_IF_ERROR(str("path", &spec.path));
      if (spec.path.empty()) return p.Bad(values["path"], "'path' must not be empty");
      if (has("format")) {
        ASSIGN_OR_RETURN(std::string f, p.Str(values["format"], "format"));
        auto parsed = sql::ParseFileFormat(f);
        if (!parsed.ok()) return p.Bad(values["format"], parsed.status().message());
        spec.format = *parsed;
      } else {
        auto guessed = sql::FileFormatFromPath(spec.path);
        if (!guessed.ok()) {
          return p.Bad(values["path"], "'format' is required (csv, json or parquet)");
        }
        spec.format = *guessed;
      }
      if (has("csv")) {
        const YAML::Node& c = values["csv"];
        if (spec.format != sql::FileFormat::kCsv) return p.Bad(c, "'csv' options need format csv");
        if (!c.IsMap()) return p.Bad(c, "'csv' must be a mapping (delimiter, header)");
        for (auto it = c.begin(); it != c.end(); ++it) {
          std::string k = it->first.Scalar();
          if (k == "delimiter") {
            ASSIGN_OR_RETURN(spec.csv.delimiter, p.Str(it->second, "csv.delimiter"));
            if (spec.csv.delimiter == "\\t" || spec.csv.delimiter == "tab")
              spec.csv.delimiter = "\t";
            if (spec.csv.delimiter.size() != 1 || spec.csv.delimiter == "\"" ||
                spec.csv.delimiter == "\n" || spec.csv.delimiter == "\r") {
              return p.Bad(it->second, "'csv.delimiter' must be one character");
            }
          } else if (k == "header") {
            ASSIGN_OR_RETURN(spec.csv.header, p.Bool(it->second, "csv.header"));
          } else {
            return p.Bad(it->first, "unknown key 'csv." + k + "'");
          }
        }
      }
    } else {
      const char* where_key = spec.type == SourceType::kSqlite ? "database" : "dsn";
      if (!has(where_key)) {
        return p.Bad(keys["type"], std::string("'") + where_key + "' is required for type " + type);
      }
      if (spec.type == SourceType::kSqlite) {
        RETURN_IF_ERROR(str("database", &spec.database));
        if (spec.database.empty()) return p.Bad(values["database"], "'database' must not be empty");
      } else {
        RETURN_IF_ERROR(str("dsn", &spec.dsn));
        Status s = internal::CheckDsn(spec.dsn);
        if (!s.ok()) return p.Bad(values["dsn"], s.message());
        for (const char* k : {"connect_timeout", "statement_timeout"}) {
          if (!has(k)) continue;
          ASSIGN_OR_RETURN(std::string text, p.Str(values[k], k));
          auto parsed = ParseLookback(text);
          if (!parsed.ok() || !parsed->is_duration || parsed->micros < 1000000) {
            return p.Bad(values[k], std::string("'") + k +
                                        "' must be a duration of at least 1s (e.g. 10s, 5m)");
          }
          (std::string(k) == "connect_timeout" ? spec.connect_timeout_ms
                                               : spec.statement_timeout_ms) = parsed->micros / 1000;
        }
      }
      RETURN_IF_ERROR(str("table", &spec.table));
      RETURN_IF_ERROR(str("query", &spec.query));
      if (spec.table.empty() == spec.query.empty()) {
        return p.Bad(keys["type"], "exactly one of 'table' or 'query' is required");
      }
      RETURN_IF_ERROR(str("cursor", &spec.cursor));
      if (has("lookback")) {
        if (spec.cursor.empty()) return p.Bad(keys["lookback"], "'lookback' needs a 'cursor'");
        ASSIGN_OR_RETURN(std::string lb, p.Str(values["lookback"], "lookback"));
        auto parsed = ParseLookback(lb);
        if (!parsed.ok()) {
          return p.Bad(values["lookback"], "'lookback' " + parsed.status().message() +
                                               " (e.g. 90s, 15m, 1h, 2d, or 100 for a "
                                               "numeric cursor)");
        }
        spec.lookback = *parsed;
      }
      if (has("cursor_type")) {
        if (spec.cursor.empty())
          return p.Bad(keys["cursor_type"], "'cursor_type' needs a 'cursor'");
        RETURN_IF_ERROR(str("cursor_type", &spec.cursor_type));
        static const std::set<std::string> kKinds = {"timestamp", "text_timestamp", "unix_seconds",
                                                     "unix_millis", "integer"};
        if (!kKinds.count(spec.cursor_type)) {
          return p.Bad(values["cursor_type"],
                       "cursor_type must be timestamp, text_timestamp, unix_seconds, unix_millis "
                       "or integer, not '" +
                           spec.cursor_type + "'");
        }
      }
      if (has("key")) {
        if (spec.cursor.empty()) return p.Bad(keys["key"], "'key' needs a 'cursor'");
        ASSIGN_OR_RETURN(spec.key, p.StrList(values["key"], "key"));
      }
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument(file_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return spec;
}

Result<std::vector<SourceSpec>> LoadSources(const std::filesystem::path& dir) {
  std::vector<SourceSpec> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(e.path());
  }
  if (ec) return IoError("list " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> names;
  for (const auto& f : files) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(f));
    std::string shown = (dir.filename() / f.filename()).string();
    ASSIGN_OR_RETURN(SourceSpec spec, ParseSource(text, shown));
    auto [it, inserted] = names.emplace(spec.name, shown);
    if (!inserted) {
      return InvalidArgument(shown + ": source '" + spec.name + "' is also defined in " +
                             it->second);
    }
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace lakeloop::ingest
