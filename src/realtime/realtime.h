// realtime: the streaming path wired together. Applied stream definitions become streams of the
// durable event log (RocksDB) with an archiver into raw.<stream>; applied stream feature views run
// in the stream processor (online features fresh to the last event, logged to features.<view>).
// It also validates and ingests posted events and reports per-stream figures.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "features/features.h"
#include "lake/lake.h"
#include "sql/sql.h"
#include "stream/archive.h"
#include "stream/definition.h"
#include "stream/stream.h"

namespace lakeloop::realtime {

struct RealtimeOptions {
  std::filesystem::path project;
  std::filesystem::path log_dir;  // the event log (RocksDB)
  std::filesystem::path scratch;
  int sql_threads = 1;
  std::string memory_limit = "1GB";
  // Serving: the archiver and the feature processor run in the background. A one-shot CLI command
  // leaves them off.
  bool background = true;
  int64_t archive_interval_ms = 1000;
  // Events waiting for (or in) the event log's group commit; past it ingest answers 429.
  size_t max_queue_events = 100'000;
};

struct ProjectFiles {
  std::vector<stream::StreamDefinition> streams;
  std::vector<features::FeatureView> views;
  std::vector<catalog::Definitions::Definition> definitions;
};

// What one POST of events did.
struct IngestReport {
  int64_t accepted = 0;
  int64_t duplicates = 0;
  std::vector<stream::RejectedEvent> rejected;
};

// Counters of one stream since the process started (the log's offsets are durable).
struct StreamCounters {
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> requests{0};
};

// Thread-safe.
class Realtime {
 public:
  static Result<std::unique_ptr<Realtime>> Open(catalog::Store* catalog, lake::Lake* lake,
                                                RealtimeOptions options);
  ~Realtime();
  static std::vector<catalog::Migration> Migrations();

  // Reads streams/*.yaml and features/*.yaml and validates them together (a view's stream, its
  // fields and their types). Errors name file, line and reason.
  Result<ProjectFiles> ReadProject();
  // Loads the applied definitions from the catalog: registers streams, archiver and processor.
  Status Reload();
  void Stop();

  // Validates `body` (JSON array or NDJSON) against the stream's definition and appends the valid
  // events durably (group commit). `done` runs once, possibly on another thread, after the
  // acknowledgement (or the refusal). kNotFound for an unknown stream; kResourceExhausted when the
  // log's queue is full; kInvalidArgument when the body as a whole is unusable.
  void Ingest(const std::string& stream, std::string body,
              std::function<void(Result<IngestReport>)> done);

  Result<features::FeatureVector> Online(const std::string& view, const std::string& key,
                                         int64_t read_time_us);
  // {"stream","partitions","events":{...},"consumers":[...],"archive":{...},"views":[...]}
  Result<std::string> StreamJson(const std::string& stream);
  std::vector<std::string> StreamNames();

  // Retention: deletes log records past each stream's retention (never past a durable consumer:
  // the archiver and the feature views). Called periodically by the server.
  Status Maintain();

  // For tests and tools: archive everything now.
  Status ArchiveNow(const std::string& stream);
  stream::EventLog& log() { return *log_; }

 private:
  Realtime(catalog::Store* catalog, lake::Lake* lake, RealtimeOptions options);
  struct Applied;
  std::shared_ptr<const Applied> applied();

  catalog::Store* catalog_;
  lake::Lake* lake_;
  RealtimeOptions options_;
  std::unique_ptr<stream::EventLog> log_;
  std::unique_ptr<features::OnlineStore> online_;
  std::unique_ptr<sql::Engine> loader_;
  std::unique_ptr<stream::Archiver> archiver_;
  std::mutex mu_;  // guards applied_, processor_, counters_
  std::shared_ptr<const Applied> applied_;
  std::shared_ptr<features::StreamProcessor> processor_;
  std::map<std::string, std::shared_ptr<StreamCounters>, std::less<>> counters_;
};

}  // namespace lakeloop::realtime
