#include "stream/internal/codec.h"

namespace lakeloop::stream::internal {

void PutVarint64(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint64(std::string_view* in, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    auto b = static_cast<unsigned char>((*in)[0]);
    in->remove_prefix(1);
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutVarint64(out, s.size());
  out->append(s);
}

bool GetLengthPrefixed(std::string_view* in, std::string_view* s) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

bool GetFixed64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = GetFixed64BE(in->data());
  in->remove_prefix(8);
  return true;
}

std::string LogPrefix(std::string_view stream, int32_t partition) {
  std::string k;
  k.reserve(stream.size() + 13);
  k.append(stream);
  k.push_back('\0');
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  return k;
}

std::string LogKey(std::string_view stream, int32_t partition, int64_t offset) {
  std::string k = LogPrefix(stream, partition);
  PutFixed64BE(&k, static_cast<uint64_t>(offset));
  return k;
}

int64_t LogKeyOffset(std::string_view key) {
  return static_cast<int64_t>(GetFixed64BE(key.data() + key.size() - 8));
}

std::string EncodeEventBody(const Event& e) {
  std::string v;
  v.reserve(e.key.size() + e.event_id.size() + e.payload.size() + 16);
  PutLengthPrefixed(&v, e.key);
  PutLengthPrefixed(&v, e.event_id);
  PutLengthPrefixed(&v, e.payload);
  PutFixed64BE(&v, static_cast<uint64_t>(e.event_time_us));
  return v;
}

bool DecodeLogValue(std::string_view value, int64_t* ingest_time, Event* e) {
  uint64_t t, et;
  std::string_view key, id, payload;
  if (!GetFixed64(&value, &t) || !GetLengthPrefixed(&value, &key) ||
      !GetLengthPrefixed(&value, &id) || !GetLengthPrefixed(&value, &payload) ||
      !GetFixed64(&value, &et) || !value.empty()) {
    return false;
  }
  *ingest_time = static_cast<int64_t>(t);
  e->key.assign(key);
  e->event_id.assign(id);
  e->payload.assign(payload);
  e->event_time_us = static_cast<int64_t>(et);
  return true;
}

std::string DedupIdKey(std::string_view stream, std::string_view event_id) {
  std::string k;
  k.reserve(stream.size() + event_id.size() + 2);
  k.push_back('i');
  k.append(stream);
  k.push_back('\0');
  k.append(event_id);
  return k;
}

std::string DedupTimePrefix(std::string_view stream) {
  std::string k;
  k.push_back('t');
  k.append(stream);
  k.push_back('\0');
  return k;
}

std::string DedupTimeKey(std::string_view stream, int64_t ingest_time, std::string_view event_id) {
  std::string k = DedupTimePrefix(stream);
  PutFixed64BE(&k, static_cast<uint64_t>(ingest_time));
  k.append(event_id);
  return k;
}

std::string EncodeDedupEntry(const DedupEntry& d) {
  std::string v;
  PutFixed32BE(&v, static_cast<uint32_t>(d.partition));
  PutFixed64BE(&v, static_cast<uint64_t>(d.offset));
  PutFixed64BE(&v, static_cast<uint64_t>(d.ingest_time));
  return v;
}

bool DecodeDedupEntry(std::string_view v, DedupEntry* d) {
  if (v.size() != 20) return false;
  d->partition = static_cast<int32_t>(GetFixed32BE(v.data()));
  d->offset = static_cast<int64_t>(GetFixed64BE(v.data() + 4));
  d->ingest_time = static_cast<int64_t>(GetFixed64BE(v.data() + 12));
  return true;
}

std::string ConsumerOffsetKey(std::string_view consumer, std::string_view stream,
                              int32_t partition) {
  std::string k;
  k.append(consumer);
  k.push_back('\0');
  k.append(stream);
  k.push_back('\0');
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  return k;
}

std::string StreamMetaKey(std::string_view stream) { return "s" + std::string(stream); }

std::string EncodeStreamOptions(const StreamOptions& o) {
  std::string v;
  v.push_back(1);  // format version
  PutLengthPrefixed(&v, o.name);
  PutVarint64(&v, static_cast<uint64_t>(o.partitions));
  PutFixed64BE(&v, static_cast<uint64_t>(o.dedup_window_us));
  PutFixed64BE(&v, static_cast<uint64_t>(o.retention_us));
  PutFixed64BE(&v, static_cast<uint64_t>(o.retention_bytes));
  return v;
}

bool DecodeStreamOptions(std::string_view v, StreamOptions* o) {
  if (v.empty() || v[0] != 1) return false;
  v.remove_prefix(1);
  std::string_view name;
  uint64_t parts, dw, rt, rb;
  if (!GetLengthPrefixed(&v, &name) || !GetVarint64(&v, &parts) || !GetFixed64(&v, &dw) ||
      !GetFixed64(&v, &rt) || !GetFixed64(&v, &rb) || !v.empty()) {
    return false;
  }
  o->name.assign(name);
  o->partitions = static_cast<int>(parts);
  o->dedup_window_us = static_cast<int64_t>(dw);
  o->retention_us = static_cast<int64_t>(rt);
  o->retention_bytes = static_cast<int64_t>(rb);
  return true;
}

std::string PartitionMetaKey(std::string_view stream, int32_t partition) {
  std::string k = "p" + std::string(stream);
  k.push_back('\0');
  PutFixed32BE(&k, static_cast<uint32_t>(partition));
  return k;
}

std::string EncodePartitionMeta(const PartitionMeta& m) {
  std::string v;
  PutFixed64BE(&v, static_cast<uint64_t>(m.next_offset));
  PutFixed64BE(&v, static_cast<uint64_t>(m.begin_offset));
  PutFixed64BE(&v, static_cast<uint64_t>(m.bytes));
  PutFixed64BE(&v, static_cast<uint64_t>(m.last_ingest_us));
  return v;
}

bool DecodePartitionMeta(std::string_view v, PartitionMeta* m) {
  if (v.size() != 32) return false;
  m->next_offset = static_cast<int64_t>(GetFixed64BE(v.data()));
  m->begin_offset = static_cast<int64_t>(GetFixed64BE(v.data() + 8));
  m->bytes = static_cast<int64_t>(GetFixed64BE(v.data() + 16));
  m->last_ingest_us = static_cast<int64_t>(GetFixed64BE(v.data() + 24));
  return true;
}

std::string ConsumerMetaPrefix(std::string_view stream) {
  std::string k = "c" + std::string(stream);
  k.push_back('\0');
  return k;
}

std::string ConsumerMetaKey(std::string_view stream, std::string_view consumer) {
  return ConsumerMetaPrefix(stream) + std::string(consumer);
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto c = static_cast<unsigned char>(prefix.back());
    if (c != 0xff) {
      prefix.back() = static_cast<char>(c + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return prefix;  // empty: no upper bound
}

}  // namespace lakeloop::stream::internal
