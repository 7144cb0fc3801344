#include "core/time.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace lakeloop {
namespace {

// Days from civil date, proleptic Gregorian (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

Micros NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Micros MonotonicMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string FormatRfc3339(Micros t) {
  int64_t secs = t >= 0 ? t / 1000000 : (t - 999999) / 1000000;
  int64_t frac = t - secs * 1000000;
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

Result<Micros> ParseRfc3339(std::string_view s) {
  int y, mo, d, h = 0, mi = 0, se = 0;
  auto bad = [&] {
    return Status(Code::kInvalidArgument,
                  "not an RFC 3339 timestamp: '" + std::string(s.substr(0, 64)) + "'");
  };
  if (!Digits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d)) {
    return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return bad();
  size_t pos = 10;
  int64_t frac_us = 0;
  int64_t offset_s = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return bad();
    if (!Digits(s, pos + 1, 2, &h) || s.size() < pos + 9 || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &mi) || s[pos + 6] != ':' || !Digits(s, pos + 7, 2, &se)) {
      return bad();
    }
    if (h > 23 || mi > 59 || se > 60) return bad();
    pos += 9;
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      int64_t scale = 100000;
      size_t start = pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (scale > 0) frac_us += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == start) return bad();
    }
    if (pos >= s.size()) return bad();  // a time needs a zone
    if (s[pos] == 'Z' || s[pos] == 'z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int oh, om;
      if (!Digits(s, pos + 1, 2, &oh) || s.size() < pos + 6 || s[pos + 3] != ':' ||
          !Digits(s, pos + 4, 2, &om)) {
        return bad();
      }
      offset_s = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
      pos += 6;
    } else {
      return bad();
    }
    if (pos != s.size()) return bad();
  }
  int64_t days = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
  return secs * 1000000 + frac_us;
}

}  // namespace lakeloop
