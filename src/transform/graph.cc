// Dependencies from DuckDB's parse tree, and the model graph.
#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <set>

#include "core/json.h"
#include "transform/internal/sql_tree.h"
#include "transform/transform.h"

namespace lakeloop::transform {

namespace json = boost::json;

namespace {

bool Less(const lake::TableRef& a, const lake::TableRef& b) {
  return std::tie(a.zone, a.name) < std::tie(b.zone, b.name);
}

void SortUnique(std::vector<lake::TableRef>* refs) {
  std::sort(refs->begin(), refs->end(), Less);
  refs->erase(std::unique(refs->begin(), refs->end()), refs->end());
}

// The statement tree(s) DuckDB serialises for `sql`.
Result<json::object> Serialize(sql::Engine& engine, std::string_view text) {
  sql::QueryRequest request;
  request.sql = "SELECT CAST(json_serialize_sql(" + sql::QuoteLiteral(text) + ") AS VARCHAR)";
  request.limit = 1;
  request.timeout_ms = 30000;
  ASSIGN_OR_RETURN(sql::QueryReply reply, engine.Run(request));
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(reply.body));
  const json::value* rows = body.if_contains("rows");
  if (rows == nullptr || !rows->is_array() || rows->as_array().empty() ||
      !rows->as_array()[0].is_array() || rows->as_array()[0].as_array().empty() ||
      !rows->as_array()[0].as_array()[0].is_string()) {
    return Internal("json_serialize_sql gave an unexpected reply");
  }
  return ParseJsonObject(rows->as_array()[0].as_array()[0].as_string());
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out.append(sep);
    out.append(parts[i]);
  }
  return out;
}

}  // namespace

Result<SqlRefs> AnalyzeSql(sql::Engine& engine, std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return InvalidArgument("SQL contains a NUL byte");
  if (text.find_first_not_of(" \t\r\n;") == std::string_view::npos) {
    return InvalidArgument("SQL is empty");
  }
  ASSIGN_OR_RETURN(json::object tree, Serialize(engine, text));
  if (const json::value* error = tree.if_contains("error");
      error && error->is_bool() && error->as_bool()) {
    std::string message = "cannot parse the SQL";
    if (const json::value* m = tree.if_contains("error_message"); m && m->is_string()) {
      message = std::string(m->as_string());
    }
    if (message.find("Only SELECT") != std::string::npos) {
      return InvalidArgument("the SQL must be one SELECT statement: " + message);
    }
    if (const json::value* p = tree.if_contains("position"); p && p->is_string()) {
      size_t position = 0;
      try {
        position = std::stoull(std::string(p->as_string()));
        return InvalidArgument("line " + std::to_string(internal::LineOf(text, position)) + ": " +
                               message);
      } catch (const std::exception&) {
      }
    }
    return InvalidArgument(message);
  }
  const json::value* statements = tree.if_contains("statements");
  if (statements == nullptr || !statements->is_array()) {
    return Internal("json_serialize_sql gave no statements");
  }
  if (statements->as_array().size() != 1) {
    return InvalidArgument("the SQL must be exactly one SELECT statement; got " +
                           std::to_string(statements->as_array().size()));
  }
  internal::TreeRefs raw = internal::WalkStatement(statements->as_array()[0]);
  SqlRefs out;
  for (const auto& r : raw.tables) {
    if (!r.catalog.empty()) {
      return InvalidArgument("table " + r.catalog + "." + r.schema + "." + r.table +
                             ": write zone.table, without a catalog");
    }
    if (r.schema.empty()) {
      return InvalidArgument("table '" + r.table + "' is not qualified: write zone.table (raw." +
                             r.table + ", processed." + r.table + ", ...)");
    }
    auto ref = lake::ParseTableRef(r.schema + "." + r.table);
    if (!ref.ok()) {
      return InvalidArgument("table " + r.schema + "." + r.table +
                             " is not a lake table: " + ref.status().message());
    }
    out.tables.push_back(std::move(ref).value());
  }
  SortUnique(&out.tables);
  out.parameters = std::move(raw.parameters);
  std::sort(out.parameters.begin(), out.parameters.end());
  out.parameters.erase(std::unique(out.parameters.begin(), out.parameters.end()),
                       out.parameters.end());
  return out;
}

Result<Graph> Graph::Build(sql::Engine& engine, std::vector<Model> models) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < models.size(); ++i) {
    if (!index.emplace(models[i].name, i).second) {
      return InvalidArgument("two models are named '" + models[i].name + "'");
    }
  }
  auto is_model = [&](const lake::TableRef& t) {
    return t.zone == kOutputZone && index.contains(t.name);
  };
  std::vector<std::string> errors;
  for (Model& m : models) {
    const std::string file = m.sql_file.empty() ? m.name + ".sql" : m.sql_file.string();
    const std::string yaml = m.yaml_file.empty() ? m.name + ".yaml" : m.yaml_file.string();
    auto refs = AnalyzeSql(engine, m.sql);
    if (!refs.ok()) {
      if (refs.status().code() != Code::kInvalidArgument) return refs.status();
      errors.push_back(file + ": " + refs.status().message());
      continue;
    }
    m.inputs = refs->tables;
    for (const auto& p : refs->parameters) {
      if (p != "start" && p != "end") {
        errors.push_back(file + ": unknown parameter $" + p + " (models get $start and $end)");
      } else if (m.materialized == Materialization::kTable) {
        errors.push_back(file + ": $" + p +
                         " is given to incremental models only (materialized: incremental)");
      }
    }
    m.test_inputs.clear();
    for (const DataTest& t : m.tests) {
      const std::string where = yaml + ":" + std::to_string(t.line) + ": test " + t.name + ": ";
      if (t.kind == TestKind::kRelationships) {
        auto target = internal::RelationshipTarget(t);
        if (!target.ok()) {
          errors.push_back(where + target.status().message());
        } else if (t.to.find('.') == std::string::npos && !index.contains(t.to)) {
          errors.push_back(where + "no model named '" + t.to + "' (use zone.table for a table)");
        } else if (!(*target == m.output())) {
          m.test_inputs.push_back(*target);
        }
      } else if (t.kind == TestKind::kSql) {
        auto test_refs = AnalyzeSql(engine, t.sql);
        if (!test_refs.ok()) {
          if (test_refs.status().code() != Code::kInvalidArgument) return test_refs.status();
          errors.push_back(where + test_refs.status().message());
          continue;
        }
        if (!test_refs->parameters.empty()) {
          errors.push_back(where + "test SQL cannot use parameters");
        }
        for (const auto& r : test_refs->tables) {
          if (!(r == m.output())) m.test_inputs.push_back(r);
        }
      }
    }
    SortUnique(&m.test_inputs);
  }
  if (!errors.empty()) return InvalidArgument(Join(errors, "\n"));

  // Edges model -> the models it reads (data and tests). Kahn's algorithm, ties by name.
  const size_t n = models.size();
  std::vector<std::vector<size_t>> deps(n), users(n);
  for (size_t i = 0; i < n; ++i) {
    std::set<size_t> d;
    for (const auto* list : {&models[i].inputs, &models[i].test_inputs}) {
      for (const auto& t : *list) {
        if (is_model(t)) d.insert(index.at(t.name));
      }
    }
    deps[i].assign(d.begin(), d.end());
    for (size_t j : deps[i]) users[j].push_back(i);
  }
  std::vector<size_t> missing(n);
  std::set<std::pair<std::string, size_t>> ready;
  for (size_t i = 0; i < n; ++i) {
    missing[i] = deps[i].size();
    if (missing[i] == 0) ready.insert({models[i].name, i});
  }
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t i = ready.begin()->second;
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t u : users[i]) {
      if (--missing[u] == 0) ready.insert({models[u].name, u});
    }
  }
  if (order.size() != n) {
    // Every model left waits for another one left: walk dependencies until one repeats.
    size_t start = 0;
    for (size_t i = 0; i < n; ++i) {
      if (missing[i] > 0) {
        start = i;
        break;
      }
    }
    std::vector<size_t> path;
    std::vector<int> pos(n, -1);
    size_t cur = start;
    while (pos[cur] < 0) {
      pos[cur] = static_cast<int>(path.size());
      path.push_back(cur);
      for (size_t d : deps[cur]) {
        if (missing[d] > 0) {
          cur = d;
          break;
        }
      }
    }
    // path[pos[cur]..] is a cycle in "reads" direction; print it in build direction.
    std::vector<std::string> names;
    for (size_t k = path.size(); k-- > static_cast<size_t>(pos[cur]);) {
      names.push_back(models[path[k]].name);
    }
    names.push_back(names.front());
    return InvalidArgument("cycle: " + Join(names, " -> "));
  }
  Graph g;
  for (size_t i : order) g.models_.push_back(std::move(models[i]));
  return g;
}

std::vector<std::string> Graph::Order() const {
  std::vector<std::string> out;
  for (const auto& m : models_) out.push_back(m.name);
  return out;
}

const Model* Graph::Find(std::string_view name) const {
  for (const auto& m : models_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::vector<std::string> Graph::Downstream(const lake::TableRef& table) const {
  // models_ is topologically ordered, so one forward pass sees every upstream change first.
  std::vector<lake::TableRef> changed{table};
  std::vector<std::string> out;
  for (const auto& m : models_) {
    if (m.output() == table) continue;
    bool reads = false;
    for (const auto& in : m.inputs) {
      if (std::find(changed.begin(), changed.end(), in) != changed.end()) reads = true;
    }
    if (reads) {
      out.push_back(m.name);
      changed.push_back(m.output());
    }
  }
  return out;
}

}  // namespace lakeloop::transform
