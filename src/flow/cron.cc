// Cron parsing and tick arithmetic, UTC, minute resolution.
#include <cctype>
#include <string>
#include <vector>

#include "flow/flow.h"

namespace lakeloop::flow {
namespace {

constexpr Micros kMinute = 60'000'000;
constexpr int64_t kMinutesPerDay = 1440;

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t y;
  unsigned m, d;
};

Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

struct FieldDef {
  const char* name;
  int lo, hi;
  const char* const* names;  // names[i] is value lo+i... (see NameValue)
};

const char* const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",  "jul",
                                   "aug", "sep", "oct", "nov", "dec", nullptr};
const char* const kDowNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};

const FieldDef kFields[5] = {{"minute", 0, 59, nullptr},
                             {"hour", 0, 23, nullptr},
                             {"day-of-month", 1, 31, nullptr},
                             {"month", 1, 12, kMonthNames},
                             {"day-of-week", 0, 7, kDowNames}};

Status FieldError(std::string_view text, const FieldDef& f, const std::string& what) {
  return InvalidArgument("cron '" + std::string(text) + "': " + f.name + ": " + what);
}

// Parses one value (number or name) of field `f`.
Result<int> ParseValue(std::string_view text, const FieldDef& f, std::string_view tok) {
  if (tok.empty()) return FieldError(text, f, "empty value");
  if (std::isdigit(static_cast<unsigned char>(tok[0]))) {
    int v = 0;
    for (char c : tok) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || v > 1000) {
        return FieldError(text, f, "'" + std::string(tok) + "' is not a number");
      }
      v = v * 10 + (c - '0');
    }
    if (v < f.lo || v > f.hi) {
      return FieldError(text, f,
                        std::to_string(v) + " is out of range " + std::to_string(f.lo) + "-" +
                            std::to_string(f.hi));
    }
    return v;
  }
  if (f.names) {
    std::string lower;
    for (char c : tok) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; f.names[i]; ++i) {
      if (lower == f.names[i]) return f.names == kMonthNames ? i + 1 : i;
    }
  }
  return FieldError(text, f, "'" + std::string(tok) + "' is not a valid value");
}

// Parses a whole field into a bit set over [f.lo, f.hi].
Result<uint64_t> ParseField(std::string_view text, const FieldDef& f, std::string_view field) {
  uint64_t bits = 0;
  size_t pos = 0;
  while (true) {
    size_t comma = field.find(',', pos);
    std::string_view item =
        field.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (item.empty()) return FieldError(text, f, "empty list item");
    int step = 1;
    size_t slash = item.find('/');
    std::string_view range = item.substr(0, slash);
    if (slash != std::string_view::npos) {
      std::string_view s = item.substr(slash + 1);
      if (s.empty() || s.size() > 4)
        return FieldError(text, f, "bad step '" + std::string(s) + "'");
      step = 0;
      for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) {
          return FieldError(text, f, "bad step '" + std::string(s) + "'");
        }
        step = step * 10 + (c - '0');
      }
      if (step == 0) return FieldError(text, f, "step must be positive");
    }
    int lo, hi;
    if (range == "*") {
      lo = f.lo;
      hi = f.names == kDowNames ? 6 : f.hi;
    } else {
      size_t dash = range.find('-');
      ASSIGN_OR_RETURN(lo, ParseValue(text, f, range.substr(0, dash)));
      if (dash != std::string_view::npos) {
        ASSIGN_OR_RETURN(hi, ParseValue(text, f, range.substr(dash + 1)));
        if (hi < lo) {
          return FieldError(text, f, "range " + std::string(range) + " runs backwards");
        }
      } else {
        hi = slash != std::string_view::npos ? f.hi : lo;  // "a/n" = a-max/n
      }
    }
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << v;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return bits;
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[m - 1];
}

}  // namespace

Result<Cron> ParseCron(std::string_view text) {
  std::string expr(text);
  while (!expr.empty() && std::isspace(static_cast<unsigned char>(expr.back()))) expr.pop_back();
  size_t start = 0;
  while (start < expr.size() && std::isspace(static_cast<unsigned char>(expr[start]))) ++start;
  expr = expr.substr(start);
  if (!expr.empty() && expr[0] == '@') {
    std::string lower;
    for (char c : expr) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "@hourly")
      expr = "0 * * * *";
    else if (lower == "@daily" || lower == "@midnight")
      expr = "0 0 * * *";
    else if (lower == "@weekly")
      expr = "0 0 * * 0";
    else if (lower == "@monthly")
      expr = "0 0 1 * *";
    else if (lower == "@yearly" || lower == "@annually")
      expr = "0 0 1 1 *";
    else
      return InvalidArgument("cron '" + std::string(text) + "': unknown macro");
  }
  std::vector<std::string> fields;
  std::string cur;
  for (char c : expr) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) fields.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) fields.push_back(std::move(cur));
  if (fields.size() != 5) {
    return InvalidArgument("cron '" + std::string(text) + "': expected 5 fields (minute hour " +
                           "day-of-month month day-of-week), got " + std::to_string(fields.size()));
  }
  Cron c;
  c.text_ = std::string(text);
  uint64_t bits[5];
  for (int i = 0; i < 5; ++i) {
    ASSIGN_OR_RETURN(bits[i], ParseField(text, kFields[i], fields[i]));
  }
  c.minutes_ = bits[0];
  c.hours_ = static_cast<uint32_t>(bits[1]);
  c.doms_ = static_cast<uint32_t>(bits[2]);
  c.months_ = static_cast<uint16_t>(bits[3]);
  uint64_t dow = bits[4];
  if (dow & (uint64_t{1} << 7)) dow = (dow | 1) & 0x7f;  // 7 = Sunday
  c.dows_ = static_cast<uint8_t>(dow);
  c.dom_star_ = fields[2][0] == '*';
  c.dow_star_ = fields[4][0] == '*';
  // Refuse expressions that never fire: only the day-of-month restricted (AND with an
  // unrestricted day-of-week) and no chosen month has such a day (Feb counted as 29).
  if (!c.dom_star_ && c.dow_star_) {
    bool any = false;
    for (unsigned m = 1; m <= 12 && !any; ++m) {
      if (!(c.months_ & (1u << m))) continue;
      for (unsigned d = 1; d <= DaysInMonth(2000, m); ++d) {
        if (c.doms_ & (1u << d)) {
          any = true;
          break;
        }
      }
    }
    if (!any) {
      return InvalidArgument("cron '" + std::string(text) +
                             "': day-of-month: no chosen month has such a day");
    }
  }
  return c;
}

bool Cron::DayMatches(int64_t days, unsigned month, unsigned day) const {
  if (!(months_ & (1u << month))) return false;
  unsigned dow = static_cast<unsigned>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
  bool dom_ok = doms_ & (1u << day);
  bool dow_ok = dows_ & (1u << dow);
  if (dom_star_ || dow_star_) return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

bool Cron::Matches(int64_t minute) const {
  int64_t days = FloorDiv(minute, kMinutesPerDay);
  int64_t mod = minute - days * kMinutesPerDay;
  Civil c = CivilFromDays(days);
  return DayMatches(days, c.m, c.d) && (hours_ & (1u << (mod / 60))) &&
         (minutes_ & (uint64_t{1} << (mod % 60)));
}

Micros Cron::NextAfter(Micros t) const {
  int64_t m = FloorDiv(t, kMinute) + 1;
  // Skip whole days, then hours, then minutes. 8 years covers Feb 29 across a skipped leap year.
  for (int guard = 0; guard < 8 * 366 + 24 * 60 + 60 + 8; ++guard) {
    int64_t days = FloorDiv(m, kMinutesPerDay);
    int64_t mod = m - days * kMinutesPerDay;
    Civil c = CivilFromDays(days);
    if (!(months_ & (1u << c.m))) {  // to the first day of the next month
      int64_t y = c.y + (c.m == 12);
      unsigned nm = c.m == 12 ? 1 : c.m + 1;
      m = DaysFromCivil(y, nm, 1) * kMinutesPerDay;
      continue;
    }
    if (!DayMatches(days, c.m, c.d)) {
      m = (days + 1) * kMinutesPerDay;
      continue;
    }
    if (!(hours_ & (1u << (mod / 60)))) {
      m = m - mod % 60 + 60;
      continue;
    }
    if (!(minutes_ & (uint64_t{1} << (mod % 60)))) {
      ++m;
      continue;
    }
    return m * kMinute;
  }
  return INT64_MAX;  // unreachable for expressions ParseCron accepts
}

Micros Cron::PrevBefore(Micros t) const {
  int64_t m = FloorDiv(t - 1, kMinute);
  for (int guard = 0; guard < 8 * 366 + 24 * 60 + 60 + 8; ++guard) {
    int64_t days = FloorDiv(m, kMinutesPerDay);
    int64_t mod = m - days * kMinutesPerDay;
    Civil c = CivilFromDays(days);
    if (!(months_ & (1u << c.m))) {  // to the last minute of the previous month
      m = DaysFromCivil(c.y, c.m, 1) * kMinutesPerDay - 1;
      continue;
    }
    if (!DayMatches(days, c.m, c.d)) {
      m = days * kMinutesPerDay - 1;
      continue;
    }
    if (!(hours_ & (1u << (mod / 60)))) {
      m = m - mod % 60 - 1;
      continue;
    }
    if (!(minutes_ & (uint64_t{1} << (mod % 60)))) {
      --m;
      continue;
    }
    return m * kMinute;
  }
  return INT64_MIN;
}

}  // namespace lakeloop::flow
