// sql/internal/encode: turns DuckDB result vectors into JSON and CSV text, and DuckDB logical
// types into SQL type text. One value encoder serves every type; CSV reuses the scalar text and
// writes nested values as their JSON text. Stateless apart from the per-result Codec tree.
#pragma once

#include <duckdb.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/json.h"

namespace lakeloop::sql::internal {

// What the encoder needs to know about one (possibly nested) column type, computed once per
// result so that per-value work is a switch and pointer arithmetic.
struct Codec {
  duckdb_type id = DUCKDB_TYPE_INVALID;
  duckdb_type internal = DUCKDB_TYPE_INVALID;  // DECIMAL storage, ENUM index width
  uint8_t scale = 0;                           // DECIMAL
  uint64_t array_size = 0;                     // ARRAY
  std::vector<std::string> names;              // STRUCT fields, UNION members
  std::vector<std::string> dictionary;         // ENUM
  std::vector<Codec> children;                 // LIST/ARRAY/MAP: 1 (MAP: STRUCT(key, value))
};

Codec BuildCodec(duckdb_logical_type type);

// SQL text of a type as DuckDB spells it ("DECIMAL(18,3)", "STRUCT(a INTEGER, b VARCHAR)").
// `keywords` are DuckDB's keywords; field names that are keywords or not plain lower-case
// identifiers are double-quoted.
std::string TypeToSql(duckdb_logical_type type, const std::unordered_set<std::string>& keywords);

// Appends the value at `row` of `vec` as one JSON value (null when invalid).
void WriteJsonValue(const Codec& codec, duckdb_vector vec, uint64_t row, JsonWriter* w,
                    std::string* scratch);

// Appends the value at `row` as one CSV field (RFC 4180 quoting; NULL is an empty field, an
// empty string is "").
void AppendCsvField(const Codec& codec, duckdb_vector vec, uint64_t row, std::string* out,
                    std::string* scratch);
void AppendCsvText(std::string_view text, std::string* out);

void AppendBase64(std::string_view bytes, std::string* out);

}  // namespace lakeloop::sql::internal
