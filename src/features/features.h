// features: online features from streams (the Firehose -> SageMaker Feature Store role).
// Feature views are defined in `features/*.yaml`; a `kind: stream` view aggregates the events of
// one stream per entity key over sliding windows (stream/window.h tiles). The StreamProcessor
// consumes the stream's EventLog and keeps every key's tiles in an OnlineStore, writing the tiles
// and the consumer offset in one atomic batch (exactly-once state); reads aggregate the tiles at a
// read time, fresh to the last applied event. Each applied event's feature values are also logged
// to the lake as `features.<view>` (exactly once, for point-in-time training sets).
// `kind: batch` views, retrieval and materialisation come later in the same files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "stream/stream.h"
#include "stream/window.h"

namespace lakeloop::lake {
class Lake;
}
namespace lakeloop::sql {
class Engine;
}

namespace lakeloop::features {

// ---- Definitions
// ---------------------------------------------------------------------------------

enum class ViewKind { kStream, kBatch };

// A batch feature's type (store.h: names, and which lake column types fit).
enum class ValueType { kInt64, kDouble, kString, kBool, kTimestamp };

// `where: {field: value}`: the payload's top-level `field` equals `value` (same JSON type; numbers
// compare as doubles).
struct WhereClause {
  std::string field;
  std::variant<std::string, double, bool> value;
  bool operator==(const WhereClause&) const = default;
};

struct FeatureDef {
  std::string name;  // [a-z_][a-z0-9_]{0,62}: also the feature log's column name
  stream::Agg agg;
  std::string field;      // payload field (top level); empty for count
  int64_t window_us = 0;  // whole seconds; <= 1h, or whole hours up to kMaxWindowUs
  std::vector<WhereClause> where;
  // kBatch: the feature's type and the source column it reads (default: its name). Stream
  // features are doubles.
  ValueType type = ValueType::kDouble;
  std::string column;
  int line = 0;  // 1-based line of its definition
  bool operator==(const FeatureDef&) const = default;
};

inline constexpr int64_t kMaxWindowUs = 7LL * 24 * 3600 * 1'000'000;
inline constexpr int64_t kMaxLatenessUs = 24LL * 3600 * 1'000'000;

struct FeatureView {
  std::string name;  // [a-z_][a-z0-9_]{0,62}: the lake table is features.<name>
  ViewKind kind = ViewKind::kStream;
  std::string stream;                 // kStream: the stream read; its event key is the entity key
  std::string entity = "entity_key";  // column name of the entity key in the feature log
  std::string description;
  std::vector<FeatureDef> features;
  int64_t allowed_lateness_us = 0;
  std::string file_name;  // where it was defined, for messages
  // kBatch (`entity` then names an Entity, store.h): the lake table read ("zone.table"), its
  // event-timestamp column, and how long a row stays valid (0: forever).
  std::string source;
  std::string timestamp_column;
  int64_t ttl_us = 0;
};

// Parses one view definition. kInvalidArgument "<file>:<line>: <reason>" for YAML errors,
// unknown or duplicate keys, bad names, aggregations, windows, filters, types. Does not check that
// the stream, the entity or the source table exists (the caller does).
Result<FeatureView> ParseFeatureView(const std::string& yaml_text, const std::string& file_name);
// Every `*.yaml` / `*.yml` file in `dir` (sorted by name; a missing dir is empty). The first error
// wins; two views with one name: kInvalidArgument.
Result<std::vector<FeatureView>> LoadFeatureViews(const std::filesystem::path& dir);

// Catalog migrations of this module (feature log offsets). Apply with catalog::Migrate.
std::vector<catalog::Migration> Migrations();

// ---- Online store
// --------------------------------------------------------------------------------

// Per (view, stream partition): how far the processor got, and its opaque progress (watermark,
// counters) at that point.
struct Checkpoint {
  int64_t next_offset = 0;
  std::string progress;
};

// One atomic write of a processor: new states of entity keys, the checkpoints they reflect, and
// feature-log spool rows of the applied events.
struct StateBatch {
  std::string view;
  std::string stream;
  std::vector<std::pair<std::string, std::string>> states;  // entity key -> serialized state
  std::vector<std::pair<int32_t, Checkpoint>> checkpoints;  // partition -> checkpoint
  struct LogRow {
    int32_t partition;
    int64_t offset;
    std::string row;
  };
  std::vector<LogRow> log_rows;
};

// Where the serialized state of each (view, entity key) lives, with the processor's checkpoints
// and feature-log spool, so that all three change atomically. Implementations: RocksDB (the event
// log's DB, here), Redis later (MULTI/EXEC; checkpoints then live in Redis and are copied to the
// Kafka consumer group after the fact). Thread-safe.
class OnlineStore {
 public:
  virtual ~OnlineStore() = default;
  // nullopt when the key has no state.
  virtual Result<std::optional<std::string>> Get(std::string_view view,
                                                 std::string_view key) const = 0;
  // One slot per key, in order.
  virtual Result<std::vector<std::optional<std::string>>> GetMany(
      std::string_view view, const std::vector<std::string>& keys) const = 0;
  virtual Status Put(std::string_view view, std::string_view key, std::string_view value) = 0;
  // All of it or nothing; durable against a process crash when it returns.
  virtual Status Commit(const StateBatch& batch) = 0;
  // nullopt when the processor never committed for the partition.
  virtual Result<std::optional<Checkpoint>> GetCheckpoint(std::string_view view,
                                                          std::string_view stream,
                                                          int32_t partition) const = 0;
  // A fingerprint of the view's definition the stored state was built with.
  virtual Result<std::optional<std::string>> GetViewMeta(std::string_view view) const = 0;
  // Drops every state, checkpoint and spool row of the view, rewinds its checkpoints of
  // `partitions` partitions to offset 0 and records `meta`, atomically.
  virtual Status ResetView(std::string_view view, std::string_view stream, int partitions,
                           std::string_view meta) = 0;
  // Spool rows of one partition with offset >= from_offset, in offset order, at most max_rows.
  virtual Result<std::vector<StateBatch::LogRow>> ScanLog(std::string_view view, int32_t partition,
                                                          int64_t from_offset,
                                                          size_t max_rows) const = 0;
  // Deletes spool rows with offset < below_offset.
  virtual Status TrimLog(std::string_view view, int32_t partition, int64_t below_offset) = 0;
};

// The RocksDB online store in the `state` column family of a RocksDB EventLog (the consumer
// offset goes to the log's `offsets` CF through stream::PutConsumerOffset, in the same batch).
// `log` must outlive the store. kInvalidArgument when `log` is not a RocksDB log.
Result<std::unique_ptr<OnlineStore>> OpenRocksOnlineStore(stream::EventLog* log);

// The consumer a view's processor commits as: "features.<view>".
std::string ConsumerName(std::string_view view);

// ---- Reads
// ---------------------------------------------------------------------------------------

struct FeatureValue {
  std::string name;
  std::optional<double> value;  // null: avg/min/max/last over an empty window
  bool exact = true;            // see stream/window.h
};

struct FeatureVector {
  std::string view;
  std::string key;
  std::vector<FeatureValue> values;  // in definition order
  int64_t as_of_us = 0;              // the read time
  bool found = true;                 // false: the key has no state (values are the defaults)
};

// ---- Processor
// -----------------------------------------------------------------------------------

struct ProcessorOptions {
  int64_t poll_interval_us = 50'000;   // polls without notifications
  size_t max_records_per_poll = 2048;  // per partition and poll
  size_t max_cached_keys = 200'000;    // per view: key states kept decoded in memory
  std::function<int64_t()> now_us;     // wall clock for _applied_at and freshness; tests inject one

  // Feature log: enabled when lake, catalog and loader are all set. `loader` is an unsandboxed
  // internal sql::Engine; `scratch_dir` holds temporary CSV files.
  lake::Lake* lake = nullptr;
  catalog::Store* catalog = nullptr;
  sql::Engine* loader = nullptr;
  std::filesystem::path scratch_dir;
  size_t log_flush_rows = 100'000;             // flush once this many rows are pending
  int64_t log_flush_interval_us = 10'000'000;  // or this long after the last flush
};

struct PartitionStats {
  int32_t partition = 0;
  int64_t applied_offset = 0;  // next offset to apply
  int64_t end_offset = 0;      // the log's end offset
  int64_t lag = 0;             // end - applied
  int64_t watermark_us = INT64_MIN;
  int64_t logged_offset = 0;  // next offset to write to the feature log
};

struct ViewStats {
  std::string view;
  std::string stream;
  int64_t events_applied = 0;       // events aggregated (not late), since the state was created
  int64_t late_events = 0;          // older than the partition watermark: dropped
  int64_t invalid_events = 0;       // payload not a JSON object: skipped (since start)
  int64_t last_event_time_us = 0;   // of the last applied record
  int64_t last_ingest_time_us = 0;  // of the last applied record
  int64_t last_applied_at_us = 0;   // when its batch was committed
  int64_t last_delay_us = 0;  // commit time - ingest time of the oldest record in the last batch
  int64_t log_rows_committed = 0;  // feature log rows committed to the lake since start
  std::vector<PartitionStats> partitions;
};

// Runs the stream feature views: one worker thread applies new records of every view's stream
// (per partition, from its committed checkpoint) to the key states and commits states +
// checkpoints atomically per poll; a second thread flushes the feature log to the lake. Reads
// (Get/GetMany) go to the OnlineStore (RocksDB MVCC: they never wait for the writer).
// Thread-safe: every public method may be called from any thread.
class StreamProcessor {
 public:
  // Views of kind stream only (others: kInvalidArgument). `log` and `store` (and the lake parts
  // of `options`) must outlive the processor.
  static Result<std::unique_ptr<StreamProcessor>> Create(stream::EventLog* log, OnlineStore* store,
                                                         std::vector<FeatureView> views,
                                                         ProcessorOptions options = {});
  ~StreamProcessor();  // Stop()
  StreamProcessor(const StreamProcessor&) = delete;
  StreamProcessor& operator=(const StreamProcessor&) = delete;

  // Checks each view's stream exists (kNotFound), registers the durable consumers, loads the
  // checkpoints (resetting a view whose definition changed: its state is rebuilt from the start
  // of the log) and starts the threads.
  Status Start();
  // Finishes the batch in progress, flushes the feature log, joins. Idempotent.
  void Stop();

  // Wakes the worker: call it right after an append to `stream` was acknowledged. Cheap, never
  // blocks (safe on the event log's committer thread).
  void Notify(std::string_view stream);

  // Waits until every view of `stream` applied everything below `end_offsets` (per partition,
  // e.g. EventLog::EndOffsets after an append). kDeadlineExceeded on timeout; kNotFound when no
  // view reads the stream.
  Status WaitApplied(std::string_view stream, const std::vector<int64_t>& end_offsets,
                     int64_t timeout_us);
  // Flushes every view's pending feature-log rows to the lake now (no-op when the log is off).
  Status FlushLog();

  // Aggregates at read time t: windows (t - W, t] (window.h semantics). Unknown key: count,
  // sum and count_distinct 0, others null. Unknown view: kNotFound.
  Result<FeatureVector> Get(std::string_view view, std::string_view key,
                            int64_t read_time_us) const;
  Result<std::vector<FeatureVector>> GetMany(std::string_view view,
                                             const std::vector<std::string>& keys,
                                             int64_t read_time_us) const;

  Result<ViewStats> Stats(std::string_view view) const;
  std::vector<std::string> ViewNames() const;

  class Impl;  // processor.cc

 private:
  explicit StreamProcessor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lakeloop::features
