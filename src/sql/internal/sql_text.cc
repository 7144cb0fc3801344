#include "sql/internal/sql_text.h"

#include <cctype>

namespace lakeloop::sql::internal {
namespace {

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Skips whitespace and comments from `pos`; false on an unterminated block comment.
bool SkipTrivia(std::string_view s, size_t* pos) {
  size_t i = *pos;
  while (i < s.size()) {
    if (IsSpace(s[i])) {
      ++i;
    } else if (s.compare(i, 2, "--") == 0) {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (s.compare(i, 2, "/*") == 0) {
      int depth = 0;
      while (i < s.size()) {
        if (s.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (s.compare(i, 2, "*/") == 0) {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
      if (depth != 0) return false;
    } else {
      break;
    }
  }
  *pos = i;
  return true;
}

bool TakeKeyword(std::string_view s, size_t* pos, std::string_view keyword) {
  size_t i = *pos;
  if (s.size() - i < keyword.size()) return false;
  for (size_t k = 0; k < keyword.size(); ++k) {
    if (std::toupper(static_cast<unsigned char>(s[i + k])) != keyword[k]) return false;
  }
  i += keyword.size();
  if (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) {
    return false;
  }
  *pos = i;
  return true;
}

// Skips one balanced parenthesised group starting at s[*pos] == '('.
bool SkipParens(std::string_view s, size_t* pos) {
  int depth = 0;
  size_t i = *pos;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\'' || c == '"') {
      for (++i; i < s.size(); ++i) {
        if (s[i] == c) {
          if (i + 1 < s.size() && s[i + 1] == c) {
            ++i;
          } else {
            break;
          }
        }
      }
      if (i >= s.size()) return false;
      ++i;
      continue;
    }
    if (c == '-' || c == '/') {
      size_t j = i;
      if (!SkipTrivia(s, &j)) return false;
      if (j != i) {
        i = j;
        continue;
      }
    }
    if (c == '(') ++depth;
    if (c == ')' && --depth == 0) {
      *pos = i + 1;
      return true;
    }
    ++i;
  }
  return false;
}

}  // namespace

bool IsBlankSql(std::string_view sql) {
  size_t pos = 0;
  while (true) {
    if (!SkipTrivia(sql, &pos)) return false;
    if (pos < sql.size() && sql[pos] == ';') {
      ++pos;
      continue;
    }
    return pos == sql.size();
  }
}

std::string_view StripTrailing(std::string_view sql) {
  while (!sql.empty() && (IsSpace(sql.back()) || sql.back() == ';')) sql.remove_suffix(1);
  return sql;
}

std::string FirstKeyword(std::string_view sql) {
  size_t pos = 0;
  while (true) {
    if (!SkipTrivia(sql, &pos)) return "";
    if (pos < sql.size() && sql[pos] == '(') {
      ++pos;
      continue;
    }
    break;
  }
  std::string word;
  while (pos < sql.size() &&
         (std::isalpha(static_cast<unsigned char>(sql[pos])) || sql[pos] == '_')) {
    word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[pos]))));
    ++pos;
  }
  return word;
}

bool IsQueryKeyword(std::string_view k) {
  return k == "SELECT" || k == "WITH" || k == "FROM" || k == "VALUES" || k == "TABLE" ||
         k == "SUMMARIZE" || k == "DESCRIBE" || k == "SHOW" || k == "PIVOT" || k == "UNPIVOT" ||
         k == "PIVOT_WIDER" || k == "PIVOT_LONGER";
}

std::string_view StatementTypeForKeyword(std::string_view k) {
  struct Entry {
    std::string_view keyword, type;
  };
  static constexpr Entry kTable[] = {
      {"INSTALL", "LOAD"},
      {"FORCE", "LOAD"},
      {"BEGIN", "TRANSACTION"},
      {"START", "TRANSACTION"},
      {"COMMIT", "TRANSACTION"},
      {"END", "TRANSACTION"},
      {"ROLLBACK", "TRANSACTION"},
      {"ABORT", "TRANSACTION"},
      {"RESET", "SET"},
      {"USE", "SET"},
      {"IMPORT", "PRAGMA"},
      {"CHECKPOINT", "PRAGMA"},
      {"FORCE_CHECKPOINT", "PRAGMA"},
      {"DEALLOCATE", "DROP"},
      {"TRUNCATE", "DELETE"},
      {"INSERT", "INSERT"},
      {"UPDATE", "UPDATE"},
      {"DELETE", "DELETE"},
      {"CREATE", "CREATE"},
      {"ALTER", "ALTER"},
      {"DROP", "DROP"},
      {"COPY", "COPY"},
      {"ATTACH", "ATTACH"},
      {"DETACH", "DETACH"},
      {"LOAD", "LOAD"},
      {"SET", "SET"},
      {"PRAGMA", "PRAGMA"},
      {"CALL", "CALL"},
      {"EXPORT", "EXPORT"},
      {"VACUUM", "VACUUM"},
      {"ANALYZE", "ANALYZE"},
      {"PREPARE", "PREPARE"},
      {"EXECUTE", "EXECUTE"},
      {"EXPLAIN", "EXPLAIN"},
      {"MERGE", "MERGE_INTO"},
  };
  for (const Entry& e : kTable) {
    if (e.keyword == k) return e.type;
  }
  return k.empty() ? std::string_view("UNKNOWN") : k;
}

std::optional<std::string_view> ExplainedStatement(std::string_view sql) {
  size_t pos = 0;
  if (!SkipTrivia(sql, &pos) || !TakeKeyword(sql, &pos, "EXPLAIN")) return std::nullopt;
  if (!SkipTrivia(sql, &pos)) return std::nullopt;
  if (TakeKeyword(sql, &pos, "ANALYZE") || TakeKeyword(sql, &pos, "ANALYSE")) {
    if (!SkipTrivia(sql, &pos)) return std::nullopt;
  }
  if (TakeKeyword(sql, &pos, "VERBOSE")) {
    if (!SkipTrivia(sql, &pos)) return std::nullopt;
  }
  if (pos < sql.size() && sql[pos] == '(') {
    // Either an option list or a parenthesised query; both cases leave a SELECT or nothing.
    size_t after = pos;
    if (!SkipParens(sql, &after)) return std::nullopt;
    size_t rest = after;
    if (!SkipTrivia(sql, &rest)) return std::nullopt;
    if (!IsBlankSql(sql.substr(rest))) pos = rest;
  }
  return sql.substr(pos);
}

}  // namespace lakeloop::sql::internal
