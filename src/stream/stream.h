// stream: the durable event log of lakeloop (the store of record and the change stream in one).
// Events are appended to a named stream, spread over partitions by key, numbered by a per-partition
// offset, acknowledged only once durable (group commit), and read back in order by consumers that
// commit their offsets. `OpenRocksEventLog` is the embedded implementation (RocksDB); a Kafka one
// implements the same `EventLog` interface. Window primitives for stream features: stream/window.h.
// The RocksDB face (for the features module's atomic tile + offset writes): stream/rocks.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace lakeloop::stream {

// One event as the producer sent it.
struct Event {
  std::string key;        // entity key as text; decides the partition; must not be empty
  int64_t event_time_us;  // when it happened, UTC micros (producer's clock)
  std::string event_id;   // optional; non-empty ids are de-duplicated within the stream's window
  std::string payload;    // the event as compact JSON (not validated here)
};

// One event as stored.
struct Record {
  int32_t partition;
  int64_t offset;          // per partition, dense from 0, never reused
  int64_t ingest_time_us;  // log time: assigned at commit, non-decreasing within a partition
  Event event;
};

struct StreamOptions {
  std::string name;             // [A-Za-z0-9_.-]{1,128}
  int partitions = 4;           // 1..1024; cannot change once the stream exists
  int64_t dedup_window_us = 0;  // 0 = no de-duplication
  int64_t retention_us = 0;     // Trim drops records older than this (ingest time); 0 = keep
  int64_t retention_bytes = 0;  // Trim keeps each partition under this many bytes; 0 = no limit
};

// What happened to one appended event, in the order of the request.
struct AppendedEvent {
  int32_t partition;
  int64_t offset;
  // True when the event_id was already stored within the dedup window: nothing new was written and
  // partition/offset name the record stored first (which may be in another partition).
  bool duplicate;
};

struct AppendResult {
  std::vector<AppendedEvent> events;
};

// First retained offset and next offset to be assigned, for one partition.
struct OffsetRange {
  int64_t begin;
  int64_t end;
};

struct ConsumerInfo {
  std::string consumer;
  std::string stream;
  bool durable;                       // retention never deletes what it has not committed
  std::vector<int64_t> next_offsets;  // per partition; -1 where nothing is committed
};

struct TrimResult {
  int64_t records_deleted = 0;
  int64_t bytes_deleted = 0;
  int64_t dedup_entries_expired = 0;
};

// Where the partitioner puts a key: (murmur2(key) & 0x7fffffff) % partitions, with Kafka's murmur2
// (seed 0x9747b28c), the same mapping as Kafka's Java default partitioner for keyed records, so a
// Kafka-backed log and any other Kafka producer agree. Stable across restarts and platforms.
int32_t PartitionForKey(std::string_view key, int partitions);
// Kafka's Utils.murmur2 over the bytes of `data`.
int32_t KafkaMurmur2(std::string_view data);

// Validates a stream or consumer name: [A-Za-z0-9_.-]{1,128}.
Status ValidateName(std::string_view kind, std::string_view name);

// The event log. Implementations are thread-safe: every method may be called from any thread.
//
// Delivery is at-least-once: a consumer reads from its committed offset, processes, then commits
// the next offset; a crash between the two replays the records after the last commit. Offsets are
// per (stream, partition), dense and increasing; order is guaranteed within a partition only.
class EventLog {
 public:
  using AppendCallback = std::function<void(Result<AppendResult>)>;

  virtual ~EventLog() = default;

  // Creates the stream or updates its dedup/retention settings. kConflict if it exists with a
  // different partition count; kInvalidArgument for bad options.
  virtual Status RegisterStream(const StreamOptions& options) = 0;
  virtual Result<StreamOptions> GetStream(std::string_view stream) const = 0;
  virtual std::vector<StreamOptions> ListStreams() const = 0;

  // Appends `events` and returns once they are durable (an acknowledgement survives kill -9 and
  // power loss). Per event: the assigned partition/offset, or `duplicate`. All events of one call
  // commit together or not at all. Errors: kNotFound (stream), kInvalidArgument (empty key,
  // oversize id), kPayloadTooLarge (an event or the batch is bigger than the queue may ever hold),
  // kResourceExhausted (the commit queue is full: retry later), kUnavailable (closing), kIoError.
  virtual Result<AppendResult> Append(std::string_view stream, std::vector<Event> events) = 0;
  // The same without blocking: `done` runs exactly once, either inline on the calling thread (when
  // the request is refused at once) or on the committer thread after the commit. `done` must be
  // quick and must not call the blocking Append (it would wait on its own thread).
  virtual void AppendAsync(std::string_view stream, std::vector<Event> events,
                           AppendCallback done) = 0;

  // Up to `max_records` records of one partition from `from_offset` on, in offset order. Reading
  // below the first retained offset starts at the first retained record (offsets show the gap);
  // reading at or past the end returns nothing. kNotFound / kInvalidArgument (partition).
  virtual Result<std::vector<Record>> Read(std::string_view stream, int32_t partition,
                                           int64_t from_offset, size_t max_records) const = 0;
  // The first offset whose ingest_time_us >= time_us (the end offset if there is none): where to
  // replay from to see everything ingested since `time_us`.
  virtual Result<int64_t> SeekTime(std::string_view stream, int32_t partition,
                                   int64_t time_us) const = 0;
  // Per partition: [first retained offset, next offset).
  virtual Result<std::vector<OffsetRange>> Offsets(std::string_view stream) const = 0;
  // Per partition: the next offset to be assigned (Kafka's end offsets).
  Result<std::vector<int64_t>> EndOffsets(std::string_view stream) const;

  // Consumers (Kafka consumer groups). A consumer need not be registered to commit; registering
  // marks it `durable` so retention never trims a record it has not committed past. A durable
  // consumer with no commit for a partition holds that partition's retention at its beginning.
  virtual Status RegisterConsumer(std::string_view consumer, std::string_view stream,
                                  bool durable) = 0;
  // Records that `consumer` has processed everything below `next_offset` in the partition.
  // Written with the WAL but without fsync: a power loss may lose the latest commits (records are
  // then redelivered: at-least-once); a process crash loses nothing.
  virtual Status CommitOffset(std::string_view consumer, std::string_view stream, int32_t partition,
                              int64_t next_offset) = 0;
  // kNotFound when the consumer never committed for this partition.
  virtual Result<int64_t> CommittedOffset(std::string_view consumer, std::string_view stream,
                                          int32_t partition) const = 0;
  virtual Result<std::vector<ConsumerInfo>> ListConsumers(std::string_view stream) const = 0;

  // Applies retention at time `now_us` (time by ingest time, size per partition) without passing
  // the slowest durable consumer's committed offset, and expires dedup entries older than the
  // window. Call it periodically (the composition root schedules it).
  virtual Result<TrimResult> Trim(int64_t now_us) = 0;
};

struct RocksLogOptions {
  // Bounds of the commit queue (events and bytes waiting or being written). A request that does
  // not fit now fails with kResourceExhausted; one that could never fit, with kPayloadTooLarge.
  size_t max_queue_events = 100'000;
  size_t max_queue_bytes = 64 << 20;
  size_t max_event_bytes = 1 << 20;  // key + id + payload of one event
  // fsync each commit. Only tests and benchmarks of the non-durable path turn it off.
  bool sync = true;
  // Clock for ingest times, dedup windows and retention; tests inject one.
  std::function<int64_t()> now_us;
};

// Opens (creating if needed) the RocksDB event log in directory `path` and starts its committer
// thread. One process per directory (RocksDB's LOCK file). Closing = destroying the object: it
// commits what is queued, then stops.
Result<std::unique_ptr<EventLog>> OpenRocksEventLog(const std::string& path,
                                                    const RocksLogOptions& options = {});

}  // namespace lakeloop::stream
