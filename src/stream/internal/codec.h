// Private: key layout and value encodings of the RocksDB event log, and small binary helpers.
// The layout is documented in stream/README.md; changing it needs a migration.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "stream/stream.h"

namespace lakeloop::stream::internal {

inline void PutFixed64BE(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 8);
}
inline void PutFixed32BE(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 3; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 4);
}
inline uint64_t GetFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline uint32_t GetFixed32BE(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
void PutVarint64(std::string* out, uint64_t v);
// Advances *in; false on truncation.
bool GetVarint64(std::string_view* in, uint64_t* v);
void PutLengthPrefixed(std::string* out, std::string_view s);
bool GetLengthPrefixed(std::string_view* in, std::string_view* s);
bool GetFixed64(std::string_view* in, uint64_t* v);  // big-endian

// log:     <stream> 0x00 <partition u32 BE> <offset u64 BE>
std::string LogPrefix(std::string_view stream, int32_t partition);
std::string LogKey(std::string_view stream, int32_t partition, int64_t offset);
// Offset of a log key (last 8 bytes).
int64_t LogKeyOffset(std::string_view key);
// Log value: <ingest_time u64 BE> <body>; body = varint-prefixed key, event_id, payload, then
// event_time u64 BE (two's complement).
std::string EncodeEventBody(const Event& e);
bool DecodeLogValue(std::string_view value, int64_t* ingest_time, Event* e);

// dedup:   'i' <stream> 0x00 <event_id>                       -> partition u32, offset u64, ingest
// u64
//          't' <stream> 0x00 <ingest_time u64 BE> <event_id>  -> "" (expiry index)
std::string DedupIdKey(std::string_view stream, std::string_view event_id);
std::string DedupTimePrefix(std::string_view stream);
std::string DedupTimeKey(std::string_view stream, int64_t ingest_time, std::string_view event_id);
struct DedupEntry {
  int32_t partition;
  int64_t offset;
  int64_t ingest_time;
};
std::string EncodeDedupEntry(const DedupEntry& d);
bool DecodeDedupEntry(std::string_view v, DedupEntry* d);

// offsets: <consumer> 0x00 <stream> 0x00 <partition u32 BE>     -> next_offset u64 BE
std::string ConsumerOffsetKey(std::string_view consumer, std::string_view stream,
                              int32_t partition);

// meta:    's' <stream>                          -> stream options
//          'p' <stream> 0x00 <partition u32 BE>  -> partition state
//          'c' <stream> 0x00 <consumer>          -> durable flag (1 byte)
std::string StreamMetaKey(std::string_view stream);
std::string EncodeStreamOptions(const StreamOptions& o);
bool DecodeStreamOptions(std::string_view v, StreamOptions* o);
std::string PartitionMetaKey(std::string_view stream, int32_t partition);
struct PartitionMeta {
  int64_t next_offset = 0;
  int64_t begin_offset = 0;
  int64_t bytes = 0;  // sum of key+value sizes of retained records
  int64_t last_ingest_us = 0;
};
std::string EncodePartitionMeta(const PartitionMeta& m);
bool DecodePartitionMeta(std::string_view v, PartitionMeta* m);
std::string ConsumerMetaPrefix(std::string_view stream);
std::string ConsumerMetaKey(std::string_view stream, std::string_view consumer);

// The smallest string greater than every string with this prefix (for iterate_upper_bound).
std::string PrefixEnd(std::string prefix);

}  // namespace lakeloop::stream::internal
