// core/time: UTC wall-clock helpers. Timestamps are microseconds since the Unix epoch, UTC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace lakeloop {

using Micros = int64_t;

Micros NowMicros();
// Monotonic clock in microseconds, for durations only.
Micros MonotonicMicros();
// RFC 3339 in UTC with microseconds: 2026-11-26T09:17:10.123456Z
std::string FormatRfc3339(Micros t);
// Parses RFC 3339 (Z or +hh:mm offset, optional fraction) into UTC micros.
Result<Micros> ParseRfc3339(std::string_view s);

}  // namespace lakeloop
