// stream/archive: moves each stream's events from the event log into the lake table
// raw.<stream> (Parquet, hive-partitioned by event_date=YYYY-MM-DD, event time in UTC), exactly
// once, and compacts small files. See README.md "Archiving" for the protocol.
//
// Columns of raw.<stream>: the definition's fields in order (integer BIGINT, number DOUBLE, string
// VARCHAR, boolean BOOLEAN, timestamp TIMESTAMP (UTC)), then _partition INTEGER, _offset BIGINT,
// _ingested_at TIMESTAMP (log time), _late BOOLEAN; plus event_date from the folder.
// _late: the event time was older than its partition's watermark (newest event time archived in
// the partition, in log order, minus allowed_lateness) — `stream::Watermark`, the rule the feature
// processor applies, so late events are archived and flagged instead of lost.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catalog/catalog.h"
#include "core/status.h"
#include "lake/lake.h"
#include "sql/sql.h"
#include "stream/definition.h"
#include "stream/stream.h"

namespace lakeloop::stream {

struct ArchiverOptions {
  std::string consumer = "archiver";  // the durable EventLog consumer
  std::string zone = "raw";
  size_t max_batch_events = 200'000;     // per ArchiveOnce, over all partitions
  std::filesystem::path spool_dir;       // NDJSON spool for DuckDB; empty: a temp folder
  int64_t interval_ms = 1000;            // Start(): ArchiveOnce cadence per stream
  int64_t compact_interval_ms = 60'000;  // Start(): CompactOnce cadence per stream; <= 0: never
  // A date partition is compacted when it holds more than this many small files ...
  int compact_min_files = 16;
  // ... files smaller than this; they are rewritten into one file (ordered by _partition, _offset).
  int64_t compact_small_file_bytes = 64ll << 20;
};

struct ArchiveResult {
  int64_t events = 0;                 // rows committed to the lake by this call
  int64_t late = 0;                   // of which _late
  int64_t files = 0;                  // Parquet files (one per event date)
  int64_t lake_version = 0;           // the snapshot committed; 0 when there was nothing to archive
  std::vector<int64_t> next_offsets;  // per partition, after this call
  bool more = false;                  // a partition filled its share of the batch: call again
  // Events the log held past next_offsets when this call read it (newer ones may have arrived).
  int64_t remaining = 0;
};

// What ArchiveAll did and what it left.
struct DrainResult {
  int64_t rounds = 0;     // ArchiveOnce calls
  int64_t events = 0;     // rows committed to the lake, over all rounds
  int64_t remaining = 0;  // events still unarchived after the last round (0 when done)
  bool done = false;      // the last round found nothing more: the archive caught up with the log
};

struct CompactResult {
  int64_t dates = 0;  // date partitions rewritten
  int64_t files_removed = 0;
  int64_t files_added = 0;
  int64_t lake_version = 0;  // 0 when nothing needed compacting
};

// Archives streams to the lake. Owns the `stream_archive_offsets` catalog table (Migrations()).
// Thread-safe: ArchiveOnce / CompactOnce of one Archiver are serialised by one mutex; the
// background thread (Start) calls them too. One Archiver per catalog: a second one (another
// process) is detected by the offsets compare-and-swap and gets kConflict, never duplicates.
class Archiver {
 public:
  struct Deps {
    EventLog* log;
    lake::Lake* lake;
    catalog::Store* catalog;
    sql::Engine* engine;  // internal (unsandboxed) engine: reads the spool, writes Parquet
  };
  Archiver(Deps deps, ArchiverOptions options);
  ~Archiver();  // Stop()
  Archiver(const Archiver&) = delete;
  Archiver& operator=(const Archiver&) = delete;

  static std::vector<catalog::Migration> Migrations();

  // Adds (or updates) a stream to archive: registers the stream in the log if it is missing,
  // registers the durable consumer, and brings the consumer's log offsets up to the catalog's
  // (repairing a crash between a lake commit and the log commit). The lake schema is fixed by the
  // first commit: changing field types later fails the next ArchiveOnce with kConflict.
  Status AddStream(const StreamDefinition& definition);
  std::vector<std::string> Streams() const;

  // Archives what the log holds past the archived offsets (at most max_batch_events) as ONE lake
  // append whose catalog transaction also stores the next offsets and watermarks; then commits the
  // offsets to the log consumer. kNotFound for a stream not added.
  Result<ArchiveResult> ArchiveOnce(std::string_view stream);
  // ArchiveOnce until the archive has caught up with the log or `max_rounds` calls ran; says
  // whether it caught up and, if not, how many events remain (the background thread, or another
  // call, archives them). kNotFound for a stream not added.
  Result<DrainResult> ArchiveAll(std::string_view stream, int max_rounds);
  // Rewrites, per event date, the small files of raw.<stream> into one when there are more than
  // compact_min_files of them: one lake commit replacing them (compare-and-swap on the version).
  Result<CompactResult> CompactOnce(std::string_view stream);

  // Background thread: every interval, ArchiveOnce for every stream (repeating at once while a
  // call filled its batch), and CompactOnce on its own cadence. Errors are logged.
  Status Start();
  // Stops the thread, then archives what is left (flush). Idempotent.
  void Stop();

  // The archived offsets and watermarks as the catalog holds them (tests, status pages).
  struct PartitionState {
    int64_t next_offset = -1;  // -1: nothing archived yet
    int64_t max_event_time_us = INT64_MIN;
    int64_t late_events = 0;
  };
  Result<std::vector<PartitionState>> State(std::string_view stream);

 private:
  Result<ArchiveResult> ArchiveLocked(const StreamDefinition& def);
  Result<CompactResult> CompactLocked(const StreamDefinition& def);
  void Run();

  Deps deps_;
  ArchiverOptions options_;
  std::filesystem::path spool_dir_;
  mutable std::mutex mu_;  // serialises archive/compact and guards streams_
  std::map<std::string, StreamDefinition, std::less<>> streams_;
  std::mutex thread_mu_;  // guards stop_, running_
  std::condition_variable cv_;
  bool stop_ = false;
  bool running_ = false;
  std::thread thread_;
};

// The lake table's columns for a definition (without the event_date partition column).
std::vector<lake::Column> ArchiveSchema(const StreamDefinition& definition);

}  // namespace lakeloop::stream
