// sql/internal/sql_text: small lexical helpers over SQL text (no parsing beyond comments,
// quotes and parentheses; DuckDB's parser stays the judge of what a statement is).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lakeloop::sql::internal {

// True if `sql` holds nothing but whitespace, semicolons and comments.
bool IsBlankSql(std::string_view sql);

// `sql` without trailing whitespace and semicolons, so it can be wrapped in a subquery.
std::string_view StripTrailing(std::string_view sql);

// The first keyword of the statement, upper-case, after comments and opening parentheses
// ("" if it does not start with a word).
std::string FirstKeyword(std::string_view sql);

// Keywords that start a query (a statement DuckDB binds as SELECT). Binding other statements can
// have side effects (EXPORT DATABASE creates its directory while being prepared), so user SQL
// that does not start with one of these is refused before DuckDB binds it.
bool IsQueryKeyword(std::string_view keyword);

// DuckDB's statement type name for a leading keyword that is not a query ("INSERT", "LOAD" for
// INSTALL, "TRANSACTION" for BEGIN); the keyword itself when unknown.
std::string_view StatementTypeForKeyword(std::string_view keyword);

// For "EXPLAIN [ANALYZE|ANALYSE] [VERBOSE] [(options)] <statement>" returns <statement>; nullopt
// if the text does not start that way (after comments).
std::optional<std::string_view> ExplainedStatement(std::string_view sql);

}  // namespace lakeloop::sql::internal
