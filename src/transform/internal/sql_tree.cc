#include "transform/internal/sql_tree.h"

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "sql/sql.h"

namespace lakeloop::transform::internal {

namespace json = boost::json;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string StringField(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return "";
  return std::string(v->as_string());
}

class Walker {
 public:
  void Walk(const json::value& v) {
    if (const json::array* a = v.if_array()) {
      for (const auto& item : *a) Walk(item);
      return;
    }
    const json::object* o = v.if_object();
    if (o == nullptr) return;
    // CTEs defined here are in scope for this node's whole subtree.
    size_t pushed = 0;
    if (const json::value* cte_map = o->if_contains("cte_map"); cte_map && cte_map->is_object()) {
      if (const json::value* map = cte_map->as_object().if_contains("map");
          map && map->is_array()) {
        for (const auto& entry : map->as_array()) {
          if (!entry.is_object()) continue;
          std::string key = StringField(entry.as_object(), "key");
          if (!key.empty()) {
            ctes_.push_back(Lower(key));
            ++pushed;
          }
        }
      }
    }
    const std::string type = StringField(*o, "type");
    if (type == "BASE_TABLE" && o->contains("table_name")) {
      RawTableRef ref{Lower(StringField(*o, "catalog_name")), Lower(StringField(*o, "schema_name")),
                      Lower(StringField(*o, "table_name"))};
      const bool is_cte = ref.catalog.empty() && ref.schema.empty() &&
                          std::find(ctes_.begin(), ctes_.end(), ref.table) != ctes_.end();
      if (!is_cte) out_.tables.push_back(std::move(ref));
    }
    if (StringField(*o, "class") == "PARAMETER") {
      std::string id = StringField(*o, "identifier");
      if (!id.empty()) out_.parameters.push_back(Lower(id));
    }
    for (const auto& kv : *o) Walk(kv.value());
    ctes_.resize(ctes_.size() - pushed);
  }

  TreeRefs Take() { return std::move(out_); }

 private:
  std::vector<std::string> ctes_;  // names in scope (a stack)
  TreeRefs out_;
};

std::string Table(const Model& model) {
  return sql::QuoteIdentifier(kOutputZone) + "." + sql::QuoteIdentifier(model.name);
}

}  // namespace

TreeRefs WalkStatement(const json::value& statement) {
  Walker w;
  w.Walk(statement);
  return w.Take();
}

int LineOf(std::string_view text, size_t position) {
  position = std::min(position, text.size());
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + position, '\n'));
}

std::string StripSql(std::string_view sql) {
  size_t end = sql.size();
  while (end > 0 &&
         (std::isspace(static_cast<unsigned char>(sql[end - 1])) || sql[end - 1] == ';')) {
    --end;
  }
  return std::string(sql.substr(0, end));
}

Result<lake::TableRef> RelationshipTarget(const DataTest& test) {
  if (test.to.find('.') == std::string::npos) {
    RETURN_IF_ERROR(lake::ValidateIdentifier("relationships.to", test.to));
    return lake::TableRef{std::string(kOutputZone), test.to};
  }
  return lake::ParseTableRef(test.to);
}

std::string TestSql(const DataTest& t, const Model& model) {
  using sql::QuoteIdentifier;
  using sql::QuoteLiteral;
  const std::string table = Table(model);
  switch (t.kind) {
    case TestKind::kNotNull:
      return "SELECT * FROM " + table + " WHERE " + QuoteIdentifier(t.columns[0]) + " IS NULL";
    case TestKind::kUnique: {
      // Keys with a NULL part are not compared (not_null checks those).
      std::string cols, not_null;
      for (size_t i = 0; i < t.columns.size(); ++i) {
        if (i > 0) {
          cols += ", ";
          not_null += " AND ";
        }
        cols += QuoteIdentifier(t.columns[i]);
        not_null += QuoteIdentifier(t.columns[i]) + " IS NOT NULL";
      }
      return "SELECT " + cols + ", COUNT(*) AS duplicates FROM " + table + " WHERE " + not_null +
             " GROUP BY " + cols + " HAVING COUNT(*) > 1";
    }
    case TestKind::kAcceptedValues: {
      std::string values;
      for (size_t i = 0; i < t.values.size(); ++i) {
        if (i > 0) values += ", ";
        values += QuoteLiteral(t.values[i]);
      }
      const std::string col = QuoteIdentifier(t.columns[0]);
      return "SELECT * FROM " + table + " WHERE " + col + " IS NOT NULL AND CAST(" + col +
             " AS VARCHAR) NOT IN (" + values + ")";
    }
    case TestKind::kRelationships: {
      auto target = RelationshipTarget(t);  // validated by Graph::Build
      const std::string parent =
          target.ok() ? QuoteIdentifier(target->zone) + "." + QuoteIdentifier(target->name)
                      : "__invalid_target";
      const std::string col = "__child." + QuoteIdentifier(t.columns[0]);
      return "SELECT __child.* FROM " + table + " AS __child WHERE " + col +
             " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM " + parent +
             " AS __parent WHERE __parent." + QuoteIdentifier(t.field) + " = " + col + ")";
    }
    case TestKind::kMinRows:
      return "SELECT COUNT(*) AS row_count FROM " + table + " HAVING COUNT(*) < " +
             std::to_string(t.min_rows);
    case TestKind::kSql:
      return StripSql(t.sql);
  }
  return "SELECT 1 WHERE false";
}

}  // namespace lakeloop::transform::internal
