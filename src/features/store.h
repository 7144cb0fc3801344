// features/store.h: the feature store's second face (features.h is the stream processor's).
// Entities, batch feature views' rows in the online store, feature services, and online retrieval
// through an immutable plan resolved once at apply. The serving module calls OnlinePlan::Get in
// process (no HTTP hop); the API's POST /api/v1/features/online is a thin JSON layer over it.
//
// Definitions (project files, applied by `lakeloop apply`):
//   entities/*.yaml          name, join_key, type (int64 | string), description
//   features/*.yaml          kind: stream (features.h) or kind: batch: source (zone.table),
//                            entity (an entity's name), timestamp (column), ttl, features
//                            [{name, type, column?, description?}]
//   feature_services/*.yaml  name, description, features: ["view:feature", "view:*", ...]
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"
#include "features/features.h"

namespace lakeloop::features {

// ---- Definitions
// ---------------------------------------------------------------------------------

// "int64" | "double" | "string" | "bool" | "timestamp".
std::string_view ValueTypeName(ValueType t);
Result<ValueType> ParseValueType(std::string_view name);
// Whether a lake column of DuckDB type `duckdb_type` can feed a feature of type `t` (int64: the
// integer types; double: FLOAT, DOUBLE, DECIMAL and the integers; string: VARCHAR; bool: BOOLEAN;
// timestamp: TIMESTAMP*, DATE).
bool ColumnFits(ValueType t, std::string_view duckdb_type);

struct Entity {
  std::string name;      // e.g. customer
  std::string join_key;  // e.g. customer_id: the request's key and the source tables' column
  ValueType type = ValueType::kInt64;  // kInt64 or kString
  std::string description;
  std::string file_name;
};

// One `view:feature` reference of a service (feature "*": every feature of the view).
struct FeatureRef {
  std::string view;
  std::string feature;
  int line = 0;  // 1-based line in the service's file
  std::string ToString() const { return view + ":" + feature; }
};
// "view:feature" -> FeatureRef; kInvalidArgument for anything else.
Result<FeatureRef> ParseFeatureRef(std::string_view text);

struct FeatureService {
  std::string name;
  std::string description;
  std::vector<FeatureRef> features;  // as written (stars not expanded)
  std::string file_name;
};

// kInvalidArgument "<file>:<line>: <reason>" (unknown / duplicate keys, bad names and types).
Result<Entity> ParseEntity(const std::string& yaml_text, const std::string& file_name);
Result<FeatureService> ParseFeatureService(const std::string& yaml_text,
                                           const std::string& file_name);

// Everything the feature store knows, as applied (or about to be).
struct Registry {
  std::vector<Entity> entities;
  std::vector<FeatureView> views;
  std::vector<FeatureService> services;
  const Entity* FindEntity(std::string_view name) const;  // by name
  // A view's entity: a batch view names it; a stream view's `entity` is its join key (matched
  // against the entities' join keys). Null when none matches.
  const Entity* EntityOf(const FeatureView& view) const;
  const FeatureView* FindView(std::string_view name) const;
  const FeatureService* FindService(std::string_view name) const;
};

// Cross-checks a registry: duplicate names, a batch view's entity, every service reference
// (view and feature exist; "view:*" of an existing view), a service mixing views of different
// join keys. One "file:line: reason" per problem; empty when fine.
std::vector<std::string> CheckRegistry(const Registry& r);
// An apply that changes `before` into `after` is incompatible when a feature a service of
// `after` references was retyped (or removed: CheckRegistry names those). One line per problem,
// naming the service's file and line.
std::vector<std::string> CheckCompatibility(const Registry& before, const Registry& after);

// ---- Batch rows in the online store
// --------------------------------------------------------------

// A feature value: null, int64, double, string, bool, or a timestamp (UTC micros).
struct TimestampValue {
  int64_t micros = 0;
  bool operator==(const TimestampValue&) const = default;
};
using Value = std::variant<std::monostate, int64_t, double, std::string, bool, TimestampValue>;

// The newest row of one entity of a batch view: its event time and one value per feature (in
// definition order). Encoded as the OnlineStore value of (view, key).
struct BatchRow {
  int64_t event_time_us = 0;
  std::vector<Value> values;
  // BatchSchema of the definition the row was loaded with: a read with another definition treats
  // the row as missing (never a value under the wrong name), so a changed view is reloaded in
  // place, without dropping its rows first.
  uint64_t schema = 0;
};
// A hash of what a batch view's stored values depend on: source, entity, timestamp column, and
// each feature's name, type and column (not the TTL or descriptions).
uint64_t BatchSchema(const FeatureView& view);
std::string EncodeBatchRow(const BatchRow& row);
Result<BatchRow> DecodeBatchRow(std::string_view bytes);

// ---- Online retrieval
// ----------------------------------------------------------------------------

enum class FeatureStatus { kPresent, kMissing, kExpired };
std::string_view FeatureStatusName(FeatureStatus s);  // present | missing | expired

struct OnlineValue {
  Value value;                // monostate unless present
  int64_t event_time_us = 0;  // batch: the row's event time; stream: the read time; 0 if missing
  FeatureStatus status = FeatureStatus::kMissing;
};

// Entity keys as the request gives them: all int64 or all strings (the entity's type).
using EntityKeys = std::variant<std::vector<int64_t>, std::vector<std::string>>;

struct OnlineRequest {
  std::vector<std::string> features;  // "view:feature" / "view:*"; or
  std::string feature_service;        // a service's name (exactly one of the two)
  std::string join_key;               // e.g. customer_id
  EntityKeys keys;
  int64_t read_time_us = 0;  // now: stream windows and TTLs are judged at this time
};

struct OnlineResponse {
  std::vector<std::string> features;             // "view:feature", in response order
  std::vector<std::vector<OnlineValue>> values;  // [entity][feature]
};

// Resolved once at apply: feature references, services, views' entities and kinds. Immutable and
// thread-safe; a new apply builds a new plan and swaps it in (readers keep the one they hold).
//
// Read interface (what the serving module relies on): Get does one multi-get per view involved
// and never waits for writers. A stream view is read through its StreamProcessor (`stream_views`
// below), which owns that view's hot state: the read sees every event the processor applied
// before the call (today a poll's state is applied when its RocksDB batch is written; a processor
// keeping hot state in memory must answer from it so this stays true). A batch view is read from
// the OnlineStore, where materialization writes each entity's newest row.
class OnlinePlan {
 public:
  // kInvalidArgument when the registry does not check out (CheckRegistry). `stream_views`: the
  // running processor of each stream view (a view without one answers "missing").
  static Result<std::shared_ptr<const OnlinePlan>> Build(
      Registry registry, const OnlineStore* store,
      std::map<std::string, std::shared_ptr<StreamProcessor>, std::less<>> stream_views);

  // kNotFound for an unknown service, view or feature; kInvalidArgument for a malformed request
  // (both or neither of features/service, no keys, a join key the features' entity does not
  // have, keys of the wrong type). Missing entities are kMissing, never errors.
  Result<OnlineResponse> Get(const OnlineRequest& request) const;

  const Registry& registry() const { return registry_; }

  struct Impl;

 private:
  OnlinePlan() = default;
  Registry registry_;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace lakeloop::features
