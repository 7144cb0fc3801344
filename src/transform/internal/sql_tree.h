// transform/internal: reading DuckDB's serialised parse tree (json_serialize_sql) and generating
// the SQL of data tests. Private to the transform module.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "transform/transform.h"

namespace lakeloop::transform::internal {

// A table reference as written (lower-cased); schema empty when unqualified.
struct RawTableRef {
  std::string catalog;
  std::string schema;
  std::string table;
};

struct TreeRefs {
  std::vector<RawTableRef> tables;  // BASE_TABLE refs not shadowed by a CTE in scope
  std::vector<std::string> parameters;
};

// Walks one statement's tree. CTE names (cte_map keys) are in scope in the subtree of the node
// that defines them, which includes the CTE bodies (recursive CTEs, later CTEs reading earlier).
TreeRefs WalkStatement(const boost::json::value& statement);

// The 1-based line of byte `position` in `text`.
int LineOf(std::string_view text, size_t position);

// `sql` without trailing whitespace and semicolons, so it can be wrapped in COPY (...) / a
// subquery. (A comment after the last ';' is not removed: DuckDB then reports the error.)
std::string StripSql(std::string_view sql);

// The SELECT returning a test's failing rows, reading the model as "processed"."<name>".
std::string TestSql(const DataTest& test, const Model& model);
// The view a relationships test reads.
Result<lake::TableRef> RelationshipTarget(const DataTest& test);

}  // namespace lakeloop::transform::internal
