// sql/upload_limits: cheap checks of an uploaded file before DuckDB sees it. DuckDB's type
// detection costs roughly the cube of JSON nesting depth, and its width grows with the number of
// columns; a 24 KB upload could hold a core and gigabytes for minutes. One linear pass (no
// allocation beyond a bounded set of key names) rejects what is over a limit with
// kPayloadTooLarge naming the limit and its lakeloop.yaml key.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace lakeloop::sql {

struct UploadLimits {
  int64_t max_json_depth = 64;       // limits.upload_max_json_depth
  int64_t max_columns = 2048;        // limits.upload_max_columns
  int64_t max_line_bytes = 8 << 20;  // limits.upload_max_line_bytes (a CSV record, a JSON line)
  int64_t max_parquet_footer_bytes = 16 << 20;  // limits.upload_max_parquet_footer_bytes
  int64_t max_parquet_row_groups = 100000;      // limits.upload_max_parquet_row_groups
};

// CSV (RFC 4180 quoting): the header's field count (the largest count over the delimiters DuckDB
// may detect: , ; tab |) and every record's length (a quoted newline continues the record).
Status CheckCsvUpload(std::string_view data, const UploadLimits& limits);

// JSON lines (or one JSON array of objects): nesting depth, keys of any one object, distinct keys
// of the top-level records (the table's columns), the length of each line.
Status CheckJsonUpload(std::string_view data, const UploadLimits& limits);

// Parquet: the trailer ("PAR1" magic, footer length) and the footer's Thrift FileMetaData, parsed
// here without allocating: number of schema elements (columns), number of row groups, footer size.
// DuckDB's own footer reader allocates every list a footer claims (10 million schema elements
// in a few bytes), so it runs only once these are known to be within the limits.
Status CheckParquetUpload(std::string_view data, const UploadLimits& limits);

}  // namespace lakeloop::sql
