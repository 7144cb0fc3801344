#include "sql/internal/encode.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "sql/internal/handles.h"

namespace lakeloop::sql::internal {
namespace {

using u128 = unsigned __int128;
using i128 = __int128;

constexpr int64_t kMaxSafeInteger = int64_t{1} << 53;  // JSON numbers beyond lose precision

enum class Kind { kNumber, kBool, kString };

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

// Zero-padded to `width` digits; `v` >= 0.
void AppendPadded(std::string* out, int64_t v, int width) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  for (int n = static_cast<int>(r.ptr - buf); n < width; ++n) out->push_back('0');
  out->append(buf, r.ptr);
}

void AppendU128(std::string* out, u128 v) {
  char buf[48];
  char* p = buf + sizeof(buf);
  do {
    *--p = static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  } while (v != 0);
  out->append(p, buf + sizeof(buf) - p);
}

void AppendI128(std::string* out, i128 v) {
  if (v < 0) {
    out->push_back('-');
    AppendU128(out, static_cast<u128>(0) - static_cast<u128>(v));
  } else {
    AppendU128(out, static_cast<u128>(v));
  }
}

// Exact decimal text: 123450 with scale 3 -> "123.450".
void AppendDecimal(std::string* out, i128 v, int scale) {
  if (scale == 0) return AppendI128(out, v);
  std::string digits;
  u128 mag = v < 0 ? static_cast<u128>(0) - static_cast<u128>(v) : static_cast<u128>(v);
  AppendU128(&digits, mag);
  if (digits.size() <= static_cast<size_t>(scale)) {
    digits.insert(0, static_cast<size_t>(scale) + 1 - digits.size(), '0');
  }
  if (v < 0) out->push_back('-');
  out->append(digits, 0, digits.size() - scale);
  out->push_back('.');
  out->append(digits, digits.size() - scale, std::string::npos);
}

i128 ToI128(duckdb_hugeint h) {
  return static_cast<i128>((static_cast<u128>(static_cast<uint64_t>(h.upper)) << 64) | h.lower);
}

// Howard Hinnant's civil_from_days: proleptic Gregorian, any int64 day count.
void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t yy = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

// ISO 8601 date; years outside 0000..9999 use the expanded form (sign, astronomical numbering).
void AppendDate(std::string* out, int64_t days) {
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  if (y < 0) {
    out->push_back('-');
    AppendPadded(out, -y, 4);
  } else {
    if (y > 9999) out->push_back('+');
    AppendPadded(out, y, 4);
  }
  out->push_back('-');
  AppendPadded(out, m, 2);
  out->push_back('-');
  AppendPadded(out, d, 2);
}

// HH:MM:SS.fffffffff from a count of sub-second units since midnight (`digits` = 6 or 9).
void AppendTimeOfDay(std::string* out, int64_t units, int digits) {
  const int64_t per_sec = digits == 9 ? 1000000000 : 1000000;
  int64_t secs = units / per_sec;
  AppendPadded(out, secs / 3600, 2);
  out->push_back(':');
  AppendPadded(out, secs / 60 % 60, 2);
  out->push_back(':');
  AppendPadded(out, secs % 60, 2);
  out->push_back('.');
  AppendPadded(out, units % per_sec, digits);
}

// RFC 3339 UTC from units since the epoch; `digits` 6 (micros) or 9 (nanos).
void AppendTimestamp(std::string* out, int64_t units, int digits) {
  const int64_t per_day = (digits == 9 ? int64_t{1000000000} : int64_t{1000000}) * 86400;
  int64_t days = units / per_day;
  int64_t rem = units % per_day;
  if (rem < 0) {
    rem += per_day;
    --days;
  }
  AppendDate(out, days);
  out->push_back('T');
  AppendTimeOfDay(out, rem, digits);
  out->push_back('Z');
}

// Sign of each component kept (the PostgreSQL iso_8601 convention): "P-1M", "PT-1.5S".
void AppendInterval(std::string* out, const duckdb_interval& iv) {
  if (iv.months == 0 && iv.days == 0 && iv.micros == 0) {
    out->append("PT0S");
    return;
  }
  out->push_back('P');
  if (iv.months / 12 != 0) {
    AppendInt(out, iv.months / 12);
    out->push_back('Y');
  }
  if (iv.months % 12 != 0) {
    AppendInt(out, iv.months % 12);
    out->push_back('M');
  }
  if (iv.days != 0) {
    AppendInt(out, iv.days);
    out->push_back('D');
  }
  if (iv.micros == 0) return;
  out->push_back('T');
  const int64_t us = iv.micros;
  const int64_t hours = us / 3600000000LL;
  const int64_t minutes = us / 60000000LL % 60;
  const int64_t micros = us % 60000000LL;
  if (hours != 0) {
    AppendInt(out, hours);
    out->push_back('H');
  }
  if (minutes != 0) {
    AppendInt(out, minutes);
    out->push_back('M');
  }
  if (micros != 0) {
    if (micros < 0) out->push_back('-');
    const int64_t mag = micros < 0 ? -micros : micros;
    AppendInt(out, mag / 1000000);
    int64_t frac = mag % 1000000;
    if (frac != 0) {
      int width = 6;
      while (frac % 10 == 0) {
        frac /= 10;
        --width;
      }
      out->push_back('.');
      AppendPadded(out, frac, width);
    }
    out->push_back('S');
  }
}

void AppendHex(std::string* out, uint64_t v, int nibbles) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = nibbles - 1; i >= 0; --i) out->push_back(kHex[(v >> (i * 4)) & 15]);
}

void AppendUuid(std::string* out, duckdb_hugeint h) {
  // DuckDB stores UUIDs with the top bit flipped so that they sort as unsigned.
  const uint64_t hi = static_cast<uint64_t>(h.upper) ^ (uint64_t{1} << 63);
  const uint64_t lo = h.lower;
  AppendHex(out, hi >> 32, 8);
  out->push_back('-');
  AppendHex(out, (hi >> 16) & 0xffff, 4);
  out->push_back('-');
  AppendHex(out, hi & 0xffff, 4);
  out->push_back('-');
  AppendHex(out, lo >> 48, 4);
  out->push_back('-');
  AppendHex(out, lo & 0xffffffffffffULL, 12);
}

// BIT: the first byte counts the padding bits at the front of the second byte.
void AppendBits(std::string* out, std::string_view raw) {
  if (raw.empty()) return;
  const int padding = static_cast<unsigned char>(raw[0]);
  for (size_t i = 1; i < raw.size(); ++i) {
    const auto byte = static_cast<unsigned char>(raw[i]);
    for (int bit = 7; bit >= 0; --bit) {
      if (i == 1 && 7 - bit < padding) continue;
      out->push_back((byte >> bit) & 1 ? '1' : '0');
    }
  }
}

// BIGNUM: 3 header bytes (top bit set = non-negative, then the byte count), then the magnitude
// big-endian; negative numbers have every byte inverted.
void AppendBignum(std::string* out, std::string_view raw) {
  if (raw.size() < 3) return;
  const bool negative = (static_cast<unsigned char>(raw[0]) & 0x80) == 0;
  std::vector<uint32_t> limbs;  // base 1e9, least significant first
  for (size_t i = 3; i < raw.size(); ++i) {
    uint64_t carry = static_cast<unsigned char>(raw[i]);
    if (negative) carry = (~carry) & 0xff;
    for (auto& limb : limbs) {
      const uint64_t v = uint64_t{limb} * 256 + carry;
      limb = static_cast<uint32_t>(v % 1000000000);
      carry = v / 1000000000;
    }
    while (carry != 0) {
      limbs.push_back(static_cast<uint32_t>(carry % 1000000000));
      carry /= 1000000000;
    }
  }
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  if (limbs.empty()) {
    out->push_back('0');
    return;
  }
  if (negative) out->push_back('-');
  AppendInt(out, limbs.back());
  for (size_t i = limbs.size() - 1; i-- > 0;) AppendPadded(out, limbs[i], 9);
}

bool IsValid(duckdb_vector vec, uint64_t row) {
  uint64_t* validity = duckdb_vector_get_validity(vec);
  return validity == nullptr || duckdb_validity_row_is_valid(validity, row);
}

template <typename T>
const T& At(duckdb_vector vec, uint64_t row) {
  return static_cast<const T*>(duckdb_vector_get_data(vec))[row];
}

std::string_view StringAt(duckdb_vector vec, uint64_t row) {
  auto* s = static_cast<duckdb_string_t*>(duckdb_vector_get_data(vec)) + row;
  return {duckdb_string_t_data(s), duckdb_string_t_length(*s)};
}

template <typename T>
Kind IntegerText(T v, std::string* scratch, std::string_view* text) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  scratch->assign(buf, r.ptr);
  *text = *scratch;
  if constexpr (sizeof(T) == 8) {
    if constexpr (std::is_signed_v<T>) {
      if (v > kMaxSafeInteger || v < -kMaxSafeInteger) return Kind::kString;
    } else {
      if (v > static_cast<uint64_t>(kMaxSafeInteger)) return Kind::kString;
    }
  }
  return Kind::kNumber;
}

template <typename T>
Kind FloatText(T v, std::string* scratch, std::string_view* text) {
  if (std::isnan(v)) {
    *text = "NaN";
    return Kind::kString;
  }
  if (std::isinf(v)) {
    *text = v > 0 ? "Infinity" : "-Infinity";
    return Kind::kString;
  }
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  scratch->assign(buf, r.ptr);
  *text = *scratch;
  return Kind::kNumber;
}

// Timestamps of every unit: +-infinity are stored as +-INT64_MAX.
Kind TimestampText(int64_t raw, int64_t to_micros, bool nanos, std::string* scratch,
                   std::string_view* text) {
  if (raw == std::numeric_limits<int64_t>::max()) {
    *text = "infinity";
  } else if (raw == -std::numeric_limits<int64_t>::max()) {
    *text = "-infinity";
  } else {
    scratch->clear();
    AppendTimestamp(scratch, nanos ? raw : raw * to_micros, nanos ? 9 : 6);
    *text = *scratch;
  }
  return Kind::kString;
}

// Text of a non-null scalar at `row`. `text` may point into the vector or into `scratch`.
Kind ScalarText(const Codec& c, duckdb_vector vec, uint64_t row, std::string* scratch,
                std::string_view* text) {
  switch (c.id) {
    case DUCKDB_TYPE_BOOLEAN:
      *text = At<bool>(vec, row) ? "true" : "false";
      return Kind::kBool;
    case DUCKDB_TYPE_TINYINT:
      return IntegerText(At<int8_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_SMALLINT:
      return IntegerText(At<int16_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_INTEGER:
      return IntegerText(At<int32_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_BIGINT:
      return IntegerText(At<int64_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_UTINYINT:
      return IntegerText(At<uint8_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_USMALLINT:
      return IntegerText(At<uint16_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_UINTEGER:
      return IntegerText(At<uint32_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_UBIGINT:
      return IntegerText(At<uint64_t>(vec, row), scratch, text);
    case DUCKDB_TYPE_HUGEINT:
      scratch->clear();
      AppendI128(scratch, ToI128(At<duckdb_hugeint>(vec, row)));
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_UHUGEINT: {
      const auto& h = At<duckdb_uhugeint>(vec, row);
      scratch->clear();
      AppendU128(scratch, (static_cast<u128>(h.upper) << 64) | h.lower);
      *text = *scratch;
      return Kind::kString;
    }
    case DUCKDB_TYPE_FLOAT:
      return FloatText(At<float>(vec, row), scratch, text);
    case DUCKDB_TYPE_DOUBLE:
      return FloatText(At<double>(vec, row), scratch, text);
    case DUCKDB_TYPE_DECIMAL: {
      i128 v = 0;
      switch (c.internal) {
        case DUCKDB_TYPE_SMALLINT:
          v = At<int16_t>(vec, row);
          break;
        case DUCKDB_TYPE_INTEGER:
          v = At<int32_t>(vec, row);
          break;
        case DUCKDB_TYPE_BIGINT:
          v = At<int64_t>(vec, row);
          break;
        default:
          v = ToI128(At<duckdb_hugeint>(vec, row));
      }
      scratch->clear();
      AppendDecimal(scratch, v, c.scale);
      *text = *scratch;
      return Kind::kString;
    }
    case DUCKDB_TYPE_VARCHAR:
      *text = StringAt(vec, row);
      return Kind::kString;
    case DUCKDB_TYPE_BLOB:
      scratch->clear();
      AppendBase64(StringAt(vec, row), scratch);
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_BIT:
      scratch->clear();
      AppendBits(scratch, StringAt(vec, row));
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_BIGNUM:
      scratch->clear();
      AppendBignum(scratch, StringAt(vec, row));
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_DATE: {
      const int32_t days = At<duckdb_date>(vec, row).days;
      if (days == std::numeric_limits<int32_t>::max()) {
        *text = "infinity";
      } else if (days == -std::numeric_limits<int32_t>::max()) {
        *text = "-infinity";
      } else {
        scratch->clear();
        AppendDate(scratch, days);
        *text = *scratch;
      }
      return Kind::kString;
    }
    case DUCKDB_TYPE_TIME:
      scratch->clear();
      AppendTimeOfDay(scratch, At<duckdb_time>(vec, row).micros, 6);
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_TIME_NS:
      scratch->clear();
      AppendTimeOfDay(scratch, At<duckdb_time_ns>(vec, row).nanos, 9);
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_TIME_TZ: {
      const duckdb_time_tz_struct tz = duckdb_from_time_tz(At<duckdb_time_tz>(vec, row));
      scratch->clear();
      const auto& t = tz.time;
      AppendTimeOfDay(scratch, ((t.hour * 60LL + t.min) * 60 + t.sec) * 1000000 + t.micros, 6);
      int32_t off = tz.offset;
      scratch->push_back(off < 0 ? '-' : '+');
      if (off < 0) off = -off;
      AppendPadded(scratch, off / 3600, 2);
      scratch->push_back(':');
      AppendPadded(scratch, off / 60 % 60, 2);
      if (off % 60 != 0) {
        scratch->push_back(':');
        AppendPadded(scratch, off % 60, 2);
      }
      *text = *scratch;
      return Kind::kString;
    }
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_TZ:
      return TimestampText(At<int64_t>(vec, row), 1, false, scratch, text);
    case DUCKDB_TYPE_TIMESTAMP_S:
      return TimestampText(At<int64_t>(vec, row), 1000000, false, scratch, text);
    case DUCKDB_TYPE_TIMESTAMP_MS:
      return TimestampText(At<int64_t>(vec, row), 1000, false, scratch, text);
    case DUCKDB_TYPE_TIMESTAMP_NS:
      return TimestampText(At<int64_t>(vec, row), 1, true, scratch, text);
    case DUCKDB_TYPE_INTERVAL:
      scratch->clear();
      AppendInterval(scratch, At<duckdb_interval>(vec, row));
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_UUID:
      scratch->clear();
      AppendUuid(scratch, At<duckdb_hugeint>(vec, row));
      *text = *scratch;
      return Kind::kString;
    case DUCKDB_TYPE_ENUM: {
      uint64_t index = 0;
      switch (c.internal) {
        case DUCKDB_TYPE_UTINYINT:
          index = At<uint8_t>(vec, row);
          break;
        case DUCKDB_TYPE_USMALLINT:
          index = At<uint16_t>(vec, row);
          break;
        default:
          index = At<uint32_t>(vec, row);
      }
      *text = index < c.dictionary.size() ? std::string_view(c.dictionary[index]) : "";
      return Kind::kString;
    }
    default:
      // SQLNULL columns have no valid rows; anything unknown reads as its type's absence.
      *text = "";
      return Kind::kString;
  }
}

bool IsNested(duckdb_type id) {
  return id == DUCKDB_TYPE_LIST || id == DUCKDB_TYPE_ARRAY || id == DUCKDB_TYPE_STRUCT ||
         id == DUCKDB_TYPE_MAP || id == DUCKDB_TYPE_UNION;
}

bool IsPlainIdentifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char ch : s) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
  }
  return true;
}

void AppendMaybeQuoted(std::string* out, const std::string& name,
                       const std::unordered_set<std::string>& keywords) {
  if (IsPlainIdentifier(name) && keywords.count(name) == 0) {
    out->append(name);
    return;
  }
  out->push_back('"');
  for (char ch : name) {
    if (ch == '"') out->push_back('"');
    out->push_back(ch);
  }
  out->push_back('"');
}

}  // namespace

void AppendBase64(std::string_view bytes, std::string* out) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(kAlphabet[(v >> 6) & 63]);
    out->push_back(kAlphabet[v & 63]);
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    const bool two = i + 1 < bytes.size();
    if (two) v |= uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    out->push_back(kAlphabet[v >> 18]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(two ? kAlphabet[(v >> 6) & 63] : '=');
    out->push_back('=');
  }
}

Codec BuildCodec(duckdb_logical_type type) {
  Codec c;
  c.id = duckdb_get_type_id(type);
  switch (c.id) {
    case DUCKDB_TYPE_DECIMAL:
      c.internal = duckdb_decimal_internal_type(type);
      c.scale = duckdb_decimal_scale(type);
      break;
    case DUCKDB_TYPE_ENUM: {
      c.internal = duckdb_enum_internal_type(type);
      const uint32_t n = duckdb_enum_dictionary_size(type);
      c.dictionary.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        c.dictionary.push_back(TakeDuckString(duckdb_enum_dictionary_value(type, i)));
      }
      break;
    }
    case DUCKDB_TYPE_LIST: {
      LogicalType child(duckdb_list_type_child_type(type));
      c.children.push_back(BuildCodec(child.get()));
      break;
    }
    case DUCKDB_TYPE_ARRAY: {
      LogicalType child(duckdb_array_type_child_type(type));
      c.array_size = duckdb_array_type_array_size(type);
      c.children.push_back(BuildCodec(child.get()));
      break;
    }
    case DUCKDB_TYPE_MAP: {
      LogicalType key(duckdb_map_type_key_type(type));
      LogicalType value(duckdb_map_type_value_type(type));
      Codec entry;
      entry.id = DUCKDB_TYPE_STRUCT;
      entry.names = {"key", "value"};
      entry.children.push_back(BuildCodec(key.get()));
      entry.children.push_back(BuildCodec(value.get()));
      c.children.push_back(std::move(entry));
      break;
    }
    case DUCKDB_TYPE_STRUCT: {
      const uint64_t n = duckdb_struct_type_child_count(type);
      for (uint64_t i = 0; i < n; ++i) {
        c.names.push_back(TakeDuckString(duckdb_struct_type_child_name(type, i)));
        LogicalType child(duckdb_struct_type_child_type(type, i));
        c.children.push_back(BuildCodec(child.get()));
      }
      break;
    }
    case DUCKDB_TYPE_UNION: {
      const uint64_t n = duckdb_union_type_member_count(type);
      for (uint64_t i = 0; i < n; ++i) {
        c.names.push_back(TakeDuckString(duckdb_union_type_member_name(type, i)));
        LogicalType child(duckdb_union_type_member_type(type, i));
        c.children.push_back(BuildCodec(child.get()));
      }
      break;
    }
    default:
      break;
  }
  return c;
}

std::string TypeToSql(duckdb_logical_type type, const std::unordered_set<std::string>& keywords) {
  std::string alias = TakeDuckString(duckdb_logical_type_get_alias(type));
  if (!alias.empty()) return alias;
  const duckdb_type id = duckdb_get_type_id(type);
  switch (id) {
    case DUCKDB_TYPE_BOOLEAN:
      return "BOOLEAN";
    case DUCKDB_TYPE_TINYINT:
      return "TINYINT";
    case DUCKDB_TYPE_SMALLINT:
      return "SMALLINT";
    case DUCKDB_TYPE_INTEGER:
      return "INTEGER";
    case DUCKDB_TYPE_BIGINT:
      return "BIGINT";
    case DUCKDB_TYPE_UTINYINT:
      return "UTINYINT";
    case DUCKDB_TYPE_USMALLINT:
      return "USMALLINT";
    case DUCKDB_TYPE_UINTEGER:
      return "UINTEGER";
    case DUCKDB_TYPE_UBIGINT:
      return "UBIGINT";
    case DUCKDB_TYPE_FLOAT:
      return "FLOAT";
    case DUCKDB_TYPE_DOUBLE:
      return "DOUBLE";
    case DUCKDB_TYPE_TIMESTAMP:
      return "TIMESTAMP";
    case DUCKDB_TYPE_DATE:
      return "DATE";
    case DUCKDB_TYPE_TIME:
      return "TIME";
    case DUCKDB_TYPE_TIME_NS:
      return "TIME_NS";
    case DUCKDB_TYPE_INTERVAL:
      return "INTERVAL";
    case DUCKDB_TYPE_HUGEINT:
      return "HUGEINT";
    case DUCKDB_TYPE_UHUGEINT:
      return "UHUGEINT";
    case DUCKDB_TYPE_VARCHAR:
      return "VARCHAR";
    case DUCKDB_TYPE_BLOB:
      return "BLOB";
    case DUCKDB_TYPE_TIMESTAMP_S:
      return "TIMESTAMP_S";
    case DUCKDB_TYPE_TIMESTAMP_MS:
      return "TIMESTAMP_MS";
    case DUCKDB_TYPE_TIMESTAMP_NS:
      return "TIMESTAMP_NS";
    case DUCKDB_TYPE_UUID:
      return "UUID";
    case DUCKDB_TYPE_BIT:
      return "BIT";
    case DUCKDB_TYPE_TIME_TZ:
      return "TIME WITH TIME ZONE";
    case DUCKDB_TYPE_TIMESTAMP_TZ:
      return "TIMESTAMP WITH TIME ZONE";
    case DUCKDB_TYPE_BIGNUM:
      return "BIGNUM";
    case DUCKDB_TYPE_SQLNULL:
      return "\"NULL\"";
    case DUCKDB_TYPE_DECIMAL:
      return "DECIMAL(" + std::to_string(duckdb_decimal_width(type)) + "," +
             std::to_string(duckdb_decimal_scale(type)) + ")";
    case DUCKDB_TYPE_ENUM: {
      std::string out = "ENUM(";
      const uint32_t n = duckdb_enum_dictionary_size(type);
      for (uint32_t i = 0; i < n; ++i) {
        if (i > 0) out += ", ";
        out.push_back('\'');
        for (char ch : TakeDuckString(duckdb_enum_dictionary_value(type, i))) {
          if (ch == '\'') out.push_back('\'');
          out.push_back(ch);
        }
        out.push_back('\'');
      }
      return out + ")";
    }
    case DUCKDB_TYPE_LIST: {
      LogicalType child(duckdb_list_type_child_type(type));
      return TypeToSql(child.get(), keywords) + "[]";
    }
    case DUCKDB_TYPE_ARRAY: {
      LogicalType child(duckdb_array_type_child_type(type));
      return TypeToSql(child.get(), keywords) + "[" +
             std::to_string(duckdb_array_type_array_size(type)) + "]";
    }
    case DUCKDB_TYPE_MAP: {
      LogicalType key(duckdb_map_type_key_type(type));
      LogicalType value(duckdb_map_type_value_type(type));
      return "MAP(" + TypeToSql(key.get(), keywords) + ", " + TypeToSql(value.get(), keywords) +
             ")";
    }
    case DUCKDB_TYPE_STRUCT:
    case DUCKDB_TYPE_UNION: {
      const bool is_struct = id == DUCKDB_TYPE_STRUCT;
      std::string out = is_struct ? "STRUCT(" : "UNION(";
      const uint64_t n =
          is_struct ? duckdb_struct_type_child_count(type) : duckdb_union_type_member_count(type);
      for (uint64_t i = 0; i < n; ++i) {
        if (i > 0) out += ", ";
        AppendMaybeQuoted(&out,
                          TakeDuckString(is_struct ? duckdb_struct_type_child_name(type, i)
                                                   : duckdb_union_type_member_name(type, i)),
                          keywords);
        out.push_back(' ');
        LogicalType child(is_struct ? duckdb_struct_type_child_type(type, i)
                                    : duckdb_union_type_member_type(type, i));
        out += TypeToSql(child.get(), keywords);
      }
      return out + ")";
    }
    default:
      return "UNKNOWN";
  }
}

void WriteJsonValue(const Codec& c, duckdb_vector vec, uint64_t row, JsonWriter* w,
                    std::string* scratch) {
  if (!IsValid(vec, row)) {
    w->Null();
    return;
  }
  switch (c.id) {
    case DUCKDB_TYPE_LIST:
    case DUCKDB_TYPE_MAP: {
      const auto& entry = At<duckdb_list_entry>(vec, row);
      duckdb_vector child = duckdb_list_vector_get_child(vec);
      w->BeginArray();
      for (uint64_t i = entry.offset; i < entry.offset + entry.length; ++i) {
        WriteJsonValue(c.children[0], child, i, w, scratch);
      }
      w->EndArray();
      return;
    }
    case DUCKDB_TYPE_ARRAY: {
      duckdb_vector child = duckdb_array_vector_get_child(vec);
      w->BeginArray();
      for (uint64_t i = row * c.array_size; i < (row + 1) * c.array_size; ++i) {
        WriteJsonValue(c.children[0], child, i, w, scratch);
      }
      w->EndArray();
      return;
    }
    case DUCKDB_TYPE_STRUCT:
      w->BeginObject();
      for (size_t i = 0; i < c.children.size(); ++i) {
        w->Key(c.names[i]);
        WriteJsonValue(c.children[i], duckdb_struct_vector_get_child(vec, i), row, w, scratch);
      }
      w->EndObject();
      return;
    case DUCKDB_TYPE_UNION: {
      // Stored as a STRUCT whose first child is the tag, then one child per member.
      const uint8_t tag = At<uint8_t>(duckdb_struct_vector_get_child(vec, 0), row);
      if (tag >= c.children.size()) {
        w->Null();
        return;
      }
      WriteJsonValue(c.children[tag], duckdb_struct_vector_get_child(vec, tag + 1), row, w,
                     scratch);
      return;
    }
    default: {
      std::string_view text;
      if (ScalarText(c, vec, row, scratch, &text) == Kind::kString) {
        w->String(text);
      } else {
        w->Raw(text);
      }
    }
  }
}

void AppendCsvText(std::string_view text, std::string* out) {
  if (!text.empty() && text.find_first_of(",\"\r\n") == std::string_view::npos) {
    out->append(text);
    return;
  }
  out->push_back('"');
  for (char ch : text) {
    if (ch == '"') out->push_back('"');
    out->push_back(ch);
  }
  out->push_back('"');
}

void AppendCsvField(const Codec& c, duckdb_vector vec, uint64_t row, std::string* out,
                    std::string* scratch) {
  if (!IsValid(vec, row)) return;
  if (c.id == DUCKDB_TYPE_UNION) {
    const uint8_t tag = At<uint8_t>(duckdb_struct_vector_get_child(vec, 0), row);
    if (tag < c.children.size()) {
      AppendCsvField(c.children[tag], duckdb_struct_vector_get_child(vec, tag + 1), row, out,
                     scratch);
    }
    return;
  }
  if (IsNested(c.id)) {
    std::string json;
    JsonWriter w(&json);
    WriteJsonValue(c, vec, row, &w, scratch);
    AppendCsvText(json, out);
    return;
  }
  std::string_view text;
  if (ScalarText(c, vec, row, scratch, &text) == Kind::kString) {
    AppendCsvText(text, out);
  } else {
    out->append(text);
  }
}

}  // namespace lakeloop::sql::internal
