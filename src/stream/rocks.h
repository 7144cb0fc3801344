// stream/rocks: the RocksDB face of the embedded event log, for the features module, which keeps
// its tiles in the `state` column family and must write tiles and its consumer offset in one
// atomic WriteBatch (so a crash never applies an event twice to a tile nor skips one).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "stream/stream.h"

namespace lakeloop::stream {

// Borrowed pointers, valid while the EventLog that gave them is alive. The DB is thread-safe.
// `log`, `dedup`, `offsets` and `meta` belong to the event log: write `offsets` only through
// PutConsumerOffset and never write the others. `state` belongs to its users (the features module).
struct RocksHandle {
  rocksdb::DB* db = nullptr;
  rocksdb::ColumnFamilyHandle* log = nullptr;
  rocksdb::ColumnFamilyHandle* dedup = nullptr;
  rocksdb::ColumnFamilyHandle* offsets = nullptr;
  rocksdb::ColumnFamilyHandle* state = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
};

// The handle of a log made by OpenRocksEventLog; kInvalidArgument for any other EventLog.
Result<RocksHandle> GetRocksHandle(EventLog& log);

// Adds to `batch` the same write CommitOffset makes, so a caller can commit tile updates and the
// offset they reflect together. kInvalidArgument for a bad name or a negative offset.
Status PutConsumerOffset(const RocksHandle& handle, rocksdb::WriteBatch* batch,
                         std::string_view consumer, std::string_view stream, int32_t partition,
                         int64_t next_offset);

}  // namespace lakeloop::stream
