// stream/definition: what a stream is, as written in a project's `streams/*.yaml`, and the
// validation of events sent to it (the HTTP ingest path: `POST /api/v1/streams/{stream}/events`).
//
//   name: clicks                  # [a-z_][a-z0-9_]{0,62}; the lake table is raw.<name>
//   fields:                       # in this order in the canonical payload and in raw.<name>
//     customer_id: {type: integer}
//     ts: {type: timestamp}
//     value: {type: number, required: false}
//   key: customer_id              # entity key: a required integer or string field
//   time: ts                      # event time: a required timestamp field
//   event_id: event_id            # optional: a string field used for de-duplication
//   dedup_window: 1h              # durations: <n>ms|s|m|h|d (0 = off)
//   retention: 7d                 # optional; retention_bytes: <n> optional
//   allowed_lateness: 5m          # watermark lag (late events are archived with _late = true)
//   max_future_skew: 1m           # events further ahead of the server clock are rejected
//   partitions: 4
//   additional_fields: reject     # reject (default) | allow: unknown fields kept in the payload
//
// Field types: integer (JSON integer, or a number with an integral value within +-2^53), number
// (any finite JSON number), string, boolean, timestamp (an RFC 3339 string with a zone —
// "2026-11-26T09:17:10.5+01:00" — or a JSON integer of epoch milliseconds). `required` defaults to
// true; a JSON null counts as absent. Field names are [a-z][a-z0-9_]{0,62} ('_' first is reserved
// for the archive's own columns, and `event_date` is the archive's partition column).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "stream/stream.h"

namespace lakeloop::stream {

enum class FieldType { kInteger, kNumber, kString, kBoolean, kTimestamp };
std::string_view FieldTypeName(FieldType type);  // "integer", ...
std::string_view FieldSqlType(FieldType type);   // BIGINT, DOUBLE, VARCHAR, BOOLEAN, TIMESTAMP

struct FieldDefinition {
  std::string name;
  FieldType type = FieldType::kString;
  bool required = true;
};

struct StreamDefinition {
  std::string name;
  std::vector<FieldDefinition> fields;  // in file order
  std::string key_field;
  std::string time_field;
  std::string event_id_field;  // empty: no de-duplication
  int64_t dedup_window_us = 0;
  int64_t retention_us = 0;
  int64_t retention_bytes = 0;
  int64_t allowed_lateness_us = 0;
  int64_t max_future_skew_us = 60'000'000;
  int partitions = 4;
  bool allow_additional_fields = false;
  std::string origin;  // the file it came from

  // Index into `fields`, or -1.
  int FieldIndex(std::string_view name) const;
  StreamOptions ToStreamOptions() const;
};

// Parses one definition. Errors are kInvalidArgument "<file>:<line>:<column>: <reason>": YAML
// syntax, unknown keys (at any level), bad types, values and references (key/time/event_id must
// name a field of the right type).
Result<StreamDefinition> ParseStreamDefinition(std::string_view yaml_text,
                                               std::string_view file_name);
// Every `*.yaml` / `*.yml` in `dir` (not recursive), sorted by name; a missing directory is empty.
// The file name's stem must equal the stream's name; two files naming one stream are an error.
Result<std::vector<StreamDefinition>> LoadStreamDefinitions(const std::filesystem::path& dir);

// "250ms", "90s", "5m", "1h", "7d", "0" -> micros.
Result<int64_t> ParseDuration(std::string_view text);

// ---- event validation (the ingest hot path) ---------------------------------------------------

struct RejectedEvent {
  size_t index;       // position in the request: array element, or non-blank NDJSON line, from 0
  std::string error;  // "field 'ts': ..." — the reason, naming the field when there is one
};

struct ValidatedBatch {
  std::vector<Event> accepted;         // ready for EventLog::Append
  std::vector<size_t> accepted_index;  // request position of each accepted event
  std::vector<RejectedEvent> rejected;
  size_t total() const { return accepted.size() + rejected.size(); }
};

// Limits on one event besides the field types.
inline constexpr size_t kMaxEventIdBytes = 512;  // the event log's limit
inline constexpr size_t kMaxKeyBytes = 1024;

// Validates a request body: a JSON array of event objects (first non-blank byte '['), or NDJSON
// (one event object per line; blank lines skipped). Each event is checked on its own: a bad event
// (or an NDJSON line that is not JSON) is rejected with its index and reason and the others are
// kept. The accepted Event has key = the key field as text (integers in decimal), event_time_us,
// event_id (empty when absent), and payload = compact canonical JSON: the definition's fields in
// definition order (absent/null optional fields omitted), timestamps as RFC 3339 UTC with
// microseconds, numbers in shortest round-trip form, then any allowed additional fields.
// An event whose time is more than max_future_skew after `now_us` is rejected.
// Whole-body errors: kInvalidArgument (empty body), kMalformedRequest (a JSON array that does not
// parse, or a body that is neither an array nor objects). Thread-safe (no shared state).
Result<ValidatedBatch> ValidateEvents(const StreamDefinition& definition, std::string_view body,
                                      int64_t now_us);

}  // namespace lakeloop::stream
