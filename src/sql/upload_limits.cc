#include "sql/upload_limits.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

namespace lakeloop::sql {

namespace {

Status TooLarge(const std::string& what, int64_t limit, const char* key) {
  return Status(Code::kPayloadTooLarge, what + "; the limit is " + std::to_string(limit) +
                                            " (limits." + key + " in lakeloop.yaml)");
}

Status LineTooLong(const char* kind, int64_t line, const UploadLimits& limits) {
  return TooLarge(std::string(kind) + " " + std::to_string(line) + " is longer than " +
                      std::to_string(limits.max_line_bytes) + " bytes",
                  limits.max_line_bytes, "upload_max_line_bytes");
}

}  // namespace

Status CheckCsvUpload(std::string_view data, const UploadLimits& limits) {
  // Delimiters DuckDB's sniffer may choose; the header's widest reading counts.
  constexpr std::array<char, 4> kDelims = {',', ';', '\t', '|'};
  std::array<int64_t, 4> header_fields = {1, 1, 1, 1};
  bool in_header = true;
  bool quoted = false;
  int64_t record = 1;
  size_t record_start = 0;
  const size_t max_line = static_cast<size_t>(limits.max_line_bytes);
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '"') {
      quoted = !quoted;  // "" inside a quoted field toggles twice: still quoted
    } else if (!quoted && c == '\n') {
      if (in_header) {
        in_header = false;
        int64_t widest = *std::max_element(header_fields.begin(), header_fields.end());
        if (widest > limits.max_columns) {
          return TooLarge("the CSV header has " + std::to_string(widest) + " columns",
                          limits.max_columns, "upload_max_columns");
        }
      }
      if (i - record_start > max_line) return LineTooLong("CSV record", record, limits);
      record_start = i + 1;
      ++record;
      continue;
    } else if (in_header && !quoted) {
      for (size_t d = 0; d < kDelims.size(); ++d) {
        if (c == kDelims[d]) ++header_fields[d];
      }
      if (*std::max_element(header_fields.begin(), header_fields.end()) > limits.max_columns) {
        return TooLarge(
            "the CSV header has more than " + std::to_string(limits.max_columns) + " columns",
            limits.max_columns, "upload_max_columns");
      }
    }
    if (i - record_start >= max_line) return LineTooLong("CSV record", record, limits);
  }
  return Status::Ok();
}

Status CheckJsonUpload(std::string_view data, const UploadLimits& limits) {
  // One entry per open container: its kind and the keys seen in it so far (objects).
  struct Open {
    bool object;
    int64_t keys;
  };
  std::vector<Open> stack;
  stack.reserve(static_cast<size_t>(std::min<int64_t>(limits.max_json_depth, 1024)) + 1);
  std::unordered_set<std::string> columns;  // keys of the top-level records; at most max_columns
  bool in_string = false;
  bool escaped = false;
  size_t string_start = 0;
  std::string_view last_string;
  int64_t line = 1;
  size_t line_start = 0;
  const size_t max_line = static_cast<size_t>(limits.max_line_bytes);
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (i - line_start >= max_line) return LineTooLong("JSON line", line, limits);
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
        last_string = data.substr(string_start, i - string_start);
      } else if (c == '\n') {
        ++line;  // invalid JSON; DuckDB will say so
        line_start = i + 1;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        string_start = i + 1;
        break;
      case '{':
      case '[':
        if (static_cast<int64_t>(stack.size()) >= limits.max_json_depth) {
          return TooLarge("the JSON data nests deeper than " +
                              std::to_string(limits.max_json_depth) + " levels (line " +
                              std::to_string(line) + ")",
                          limits.max_json_depth, "upload_max_json_depth");
        }
        stack.push_back({c == '{', 0});
        break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ':':
        if (!stack.empty() && stack.back().object) {
          if (++stack.back().keys > limits.max_columns) {
            return TooLarge("a JSON object has more than " + std::to_string(limits.max_columns) +
                                " keys (line " + std::to_string(line) + ")",
                            limits.max_columns, "upload_max_columns");
          }
          // A record is a top-level object, or an object in a top-level array.
          const bool record = stack.size() == 1 || (stack.size() == 2 && !stack[0].object);
          if (record && columns.size() <= static_cast<size_t>(limits.max_columns) &&
              columns.emplace(last_string).second &&
              columns.size() > static_cast<size_t>(limits.max_columns)) {
            return TooLarge("the JSON records have more than " +
                                std::to_string(limits.max_columns) + " distinct keys (columns)",
                            limits.max_columns, "upload_max_columns");
          }
        }
        break;
      case '\n':
        ++line;
        line_start = i + 1;
        break;
      default:
        break;
    }
  }
  return Status::Ok();
}

namespace {

// A reader of Thrift's compact protocol over the footer bytes; never allocates.
class CompactReader {
 public:
  explicit CompactReader(std::string_view bytes) : p_(bytes) {}

  size_t remaining() const { return p_.size() - pos_; }

  Status Byte(uint8_t* out) {
    if (pos_ >= p_.size()) return Truncated();
    *out = static_cast<uint8_t>(p_[pos_++]);
    return Status::Ok();
  }

  Status Varint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = 0;
      RETURN_IF_ERROR(Byte(&b));
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return Status::Ok();
      }
    }
    return Malformed("a varint is longer than 10 bytes");
  }

  Status Skip(uint64_t n) {
    if (n > remaining()) return Truncated();
    pos_ += static_cast<size_t>(n);
    return Status::Ok();
  }

  // Field header: type 0 is STOP.
  Status FieldHeader(uint8_t* type, int16_t* id, int16_t previous) {
    uint8_t b = 0;
    RETURN_IF_ERROR(Byte(&b));
    *type = b & 0x0f;
    if (*type == 0) return Status::Ok();
    const uint8_t delta = b >> 4;
    if (delta != 0) {
      *id = static_cast<int16_t>(previous + delta);
    } else {
      uint64_t z = 0;
      RETURN_IF_ERROR(Varint(&z));
      *id = static_cast<int16_t>((z >> 1) ^ (~(z & 1) + 1));
    }
    return Status::Ok();
  }

  // List/set header: element count and type.
  Status ListHeader(uint64_t* size, uint8_t* elem_type) {
    uint8_t b = 0;
    RETURN_IF_ERROR(Byte(&b));
    *elem_type = b & 0x0f;
    *size = b >> 4;
    if (*size == 15) RETURN_IF_ERROR(Varint(size));
    return Status::Ok();
  }

  // Skips one value of `type`; `in_list` for a bool element (one byte there, none in a field).
  Status SkipValue(uint8_t type, int depth, bool in_list) {
    if (depth > kMaxDepth) return Malformed("the footer nests deeper than 64 structures");
    switch (type) {
      case 1:
      case 2:
        return in_list ? Skip(1) : Status::Ok();
      case 3:
        return Skip(1);
      case 4:
      case 5:
      case 6: {
        uint64_t v = 0;
        return Varint(&v);
      }
      case 7:
        return Skip(8);
      case 8: {
        uint64_t n = 0;
        RETURN_IF_ERROR(Varint(&n));
        return Skip(n);
      }
      case 9:
      case 10: {
        uint64_t n = 0;
        uint8_t elem = 0;
        RETURN_IF_ERROR(ListHeader(&n, &elem));
        if (n > remaining()) return Truncated();  // every element takes at least one byte
        for (uint64_t i = 0; i < n; ++i) RETURN_IF_ERROR(SkipValue(elem, depth + 1, true));
        return Status::Ok();
      }
      case 11: {
        uint64_t n = 0;
        RETURN_IF_ERROR(Varint(&n));
        if (n == 0) return Status::Ok();
        uint8_t kv = 0;
        RETURN_IF_ERROR(Byte(&kv));
        if (n > remaining()) return Truncated();
        for (uint64_t i = 0; i < n; ++i) {
          RETURN_IF_ERROR(SkipValue(kv >> 4, depth + 1, true));
          RETURN_IF_ERROR(SkipValue(kv & 0x0f, depth + 1, true));
        }
        return Status::Ok();
      }
      case 12:
        return SkipStruct(depth + 1);
      default:
        return Malformed("unknown Thrift type " + std::to_string(type));
    }
  }

  Status SkipStruct(int depth) {
    int16_t id = 0;
    while (true) {
      uint8_t type = 0;
      RETURN_IF_ERROR(FieldHeader(&type, &id, id));
      if (type == 0) return Status::Ok();
      RETURN_IF_ERROR(SkipValue(type, depth, false));
    }
  }

  static Status Malformed(const std::string& why) {
    return InvalidArgument("could not read the Parquet data: malformed footer (" + why + ")");
  }

 private:
  static constexpr int kMaxDepth = 64;
  static Status Truncated() { return Malformed("it ends early or claims more than it holds"); }

  std::string_view p_;
  size_t pos_ = 0;
};

}  // namespace

Status CheckParquetUpload(std::string_view data, const UploadLimits& limits) {
  if (data.size() < 12 || data.substr(0, 4) != "PAR1") {
    return InvalidArgument("could not read the Parquet data: it does not start with PAR1");
  }
  const std::string_view magic = data.substr(data.size() - 4);
  if (magic == "PARE") {
    return InvalidArgument("could not read the Parquet data: encrypted footers are not accepted");
  }
  if (magic != "PAR1") {
    return InvalidArgument("could not read the Parquet data: it does not end with PAR1");
  }
  uint32_t footer_len = 0;
  for (int i = 0; i < 4; ++i) {
    footer_len |= static_cast<uint32_t>(static_cast<uint8_t>(data[data.size() - 8 + i])) << (8 * i);
  }
  if (static_cast<int64_t>(footer_len) > limits.max_parquet_footer_bytes) {
    return TooLarge("the Parquet footer is " + std::to_string(footer_len) + " bytes",
                    limits.max_parquet_footer_bytes, "upload_max_parquet_footer_bytes");
  }
  if (footer_len > data.size() - 12) {
    return CompactReader::Malformed("its length " + std::to_string(footer_len) +
                                    " exceeds the file");
  }
  CompactReader r(data.substr(data.size() - 8 - footer_len, footer_len));
  int16_t id = 0;
  bool saw_schema = false;
  while (true) {
    uint8_t type = 0;
    RETURN_IF_ERROR(r.FieldHeader(&type, &id, id));
    if (type == 0) break;
    if ((id == 2 || id == 4) && type == 9) {
      uint64_t n = 0;
      uint8_t elem = 0;
      RETURN_IF_ERROR(r.ListHeader(&n, &elem));
      if (id == 2) {
        saw_schema = true;
        // The root element is not a column.
        const uint64_t columns = n == 0 ? 0 : n - 1;
        if (columns > static_cast<uint64_t>(limits.max_columns)) {
          return TooLarge("the Parquet schema has " + std::to_string(columns) + " columns",
                          limits.max_columns, "upload_max_columns");
        }
      } else if (n > static_cast<uint64_t>(limits.max_parquet_row_groups)) {
        return TooLarge("the Parquet file has " + std::to_string(n) + " row groups",
                        limits.max_parquet_row_groups, "upload_max_parquet_row_groups");
      }
      if (n > r.remaining()) {
        return CompactReader::Malformed("a list claims more elements than it holds");
      }
      for (uint64_t i = 0; i < n; ++i) RETURN_IF_ERROR(r.SkipValue(elem, 1, true));
      continue;
    }
    RETURN_IF_ERROR(r.SkipValue(type, 0, false));
  }
  if (!saw_schema) return CompactReader::Malformed("no schema");
  return Status::Ok();
}

}  // namespace lakeloop::sql
