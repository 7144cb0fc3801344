// The RocksDB OnlineStore: the `state` column family of the event log's DB.
//
// Keys (`v` = view name, an identifier, so 0x00 separators are unambiguous):
//   'f' 0x00 v 0x00 'k' <entity key>                  -> key state (all aggregators)
//   'f' 0x00 v 0x00 'c' <partition u32 BE>            -> varint next offset + progress
//   'f' 0x00 v 0x00 'm'                               -> definition fingerprint
//   'f' 0x00 v 0x00 'l' <partition u32 BE> <offset u64 BE> -> feature-log spool row
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "features/features.h"
#include "stream/rocks.h"

namespace lakeloop::features {
namespace {

std::string Prefix(std::string_view view, char kind) {
  std::string k = "f";
  k.push_back('\0');
  k.append(view);
  k.push_back('\0');
  k.push_back(kind);
  return k;
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>(v >> (i * 8)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (i * 8)));
}
uint64_t GetU64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<unsigned char>(s[i]);
  return v;
}

std::string StateKey(std::string_view view, std::string_view key) {
  std::string k = Prefix(view, 'k');
  k.append(key);
  return k;
}
std::string CheckpointKey(std::string_view view, int32_t p) {
  std::string k = Prefix(view, 'c');
  PutU32(&k, static_cast<uint32_t>(p));
  return k;
}
std::string LogKey(std::string_view view, int32_t p, int64_t offset) {
  std::string k = Prefix(view, 'l');
  PutU32(&k, static_cast<uint32_t>(p));
  PutU64(&k, static_cast<uint64_t>(offset));
  return k;
}
// The smallest key after every key starting with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsCorruption()) return Status(Code::kDataLoss, std::string(what) + ": " + s.ToString());
  return IoError(std::string(what) + ": " + s.ToString());
}

class RocksOnlineStore final : public OnlineStore {
 public:
  explicit RocksOnlineStore(stream::RocksHandle h) : h_(h) { wo_.sync = false; }

  Result<std::optional<std::string>> Get(std::string_view view,
                                         std::string_view key) const override {
    rocksdb::PinnableSlice v;
    auto s = h_.db->Get(rocksdb::ReadOptions(), h_.state, StateKey(view, key), &v);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, "online store get"));
    return std::optional<std::string>(v.ToString());
  }

  Result<std::vector<std::optional<std::string>>> GetMany(
      std::string_view view, const std::vector<std::string>& keys) const override {
    std::vector<std::string> ks;
    ks.reserve(keys.size());
    for (const auto& k : keys) ks.push_back(StateKey(view, k));
    std::vector<rocksdb::Slice> slices(ks.begin(), ks.end());
    std::vector<rocksdb::PinnableSlice> values(ks.size());
    std::vector<rocksdb::Status> statuses(ks.size());
    h_.db->MultiGet(rocksdb::ReadOptions(), h_.state, slices.size(), slices.data(), values.data(),
                    statuses.data());
    std::vector<std::optional<std::string>> out(keys.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      if (statuses[i].IsNotFound()) continue;
      RETURN_IF_ERROR(FromRocks(statuses[i], "online store multiget"));
      out[i] = values[i].ToString();
    }
    return out;
  }

  Status Put(std::string_view view, std::string_view key, std::string_view value) override {
    return FromRocks(h_.db->Put(wo_, h_.state, StateKey(view, key), value), "online store put");
  }

  Status Commit(const StateBatch& b) override {
    size_t bytes = 64;
    for (const auto& [key, value] : b.states) bytes += key.size() + value.size() + 24;
    for (const auto& r : b.log_rows) bytes += r.row.size() + 40;
    rocksdb::WriteBatch batch(bytes);
    std::string skey = Prefix(b.view, 'k');
    const size_t base = skey.size();
    for (const auto& [key, value] : b.states) {
      skey.resize(base);
      skey.append(key);
      RETURN_IF_ERROR(FromRocks(batch.Put(h_.state, skey, value), "batch"));
    }
    for (const auto& [p, c] : b.checkpoints) {
      std::string v;
      PutU64(&v, static_cast<uint64_t>(c.next_offset));
      v += c.progress;
      RETURN_IF_ERROR(FromRocks(batch.Put(h_.state, CheckpointKey(b.view, p), v), "batch"));
      RETURN_IF_ERROR(
          stream::PutConsumerOffset(h_, &batch, ConsumerName(b.view), b.stream, p, c.next_offset));
    }
    for (const auto& r : b.log_rows) {
      RETURN_IF_ERROR(
          FromRocks(batch.Put(h_.state, LogKey(b.view, r.partition, r.offset), r.row), "batch"));
    }
    return FromRocks(h_.db->Write(wo_, &batch), "online store commit");
  }

  Result<std::optional<Checkpoint>> GetCheckpoint(std::string_view view, std::string_view,
                                                  int32_t partition) const override {
    std::string v;
    auto s = h_.db->Get(rocksdb::ReadOptions(), h_.state, CheckpointKey(view, partition), &v);
    if (s.IsNotFound()) return std::optional<Checkpoint>();
    RETURN_IF_ERROR(FromRocks(s, "online store checkpoint"));
    if (v.size() < 8) return Status(Code::kDataLoss, "corrupt feature checkpoint");
    Checkpoint c;
    c.next_offset = static_cast<int64_t>(GetU64(v));
    c.progress = v.substr(8);
    return std::optional<Checkpoint>(std::move(c));
  }

  Result<std::optional<std::string>> GetViewMeta(std::string_view view) const override {
    std::string v;
    auto s = h_.db->Get(rocksdb::ReadOptions(), h_.state, Prefix(view, 'm'), &v);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, "online store meta"));
    return std::optional<std::string>(std::move(v));
  }

  Status ResetView(std::string_view view, std::string_view stream, int partitions,
                   std::string_view meta) override {
    rocksdb::WriteBatch batch;
    for (char kind : {'k', 'c', 'l'}) {
      std::string begin = Prefix(view, kind);
      RETURN_IF_ERROR(
          FromRocks(batch.DeleteRange(h_.state, begin, PrefixEnd(begin)), "reset view"));
    }
    for (int p = 0; p < partitions; ++p) {
      RETURN_IF_ERROR(stream::PutConsumerOffset(h_, &batch, ConsumerName(view), stream, p, 0));
    }
    RETURN_IF_ERROR(FromRocks(batch.Put(h_.state, Prefix(view, 'm'), meta), "reset view"));
    return FromRocks(h_.db->Write(wo_, &batch), "reset view");
  }

  Result<std::vector<StateBatch::LogRow>> ScanLog(std::string_view view, int32_t partition,
                                                  int64_t from_offset,
                                                  size_t max_rows) const override {
    std::string prefix = Prefix(view, 'l');
    PutU32(&prefix, static_cast<uint32_t>(partition));
    const std::string end = PrefixEnd(prefix);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(h_.db->NewIterator(ro, h_.state));
    std::vector<StateBatch::LogRow> out;
    for (it->Seek(LogKey(view, partition, from_offset)); it->Valid() && out.size() < max_rows;
         it->Next()) {
      const auto k = it->key();
      if (k.size() != prefix.size() + 8) return Status(Code::kDataLoss, "corrupt spool key");
      out.push_back({partition,
                     static_cast<int64_t>(GetU64(std::string_view(k.data() + prefix.size(), 8))),
                     it->value().ToString()});
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan feature log spool"));
    return out;
  }

  Status TrimLog(std::string_view view, int32_t partition, int64_t below_offset) override {
    return FromRocks(h_.db->DeleteRange(wo_, h_.state, LogKey(view, partition, 0),
                                        LogKey(view, partition, below_offset)),
                     "trim feature log spool");
  }

 private:
  stream::RocksHandle h_;
  rocksdb::WriteOptions wo_;
};

}  // namespace

Result<std::unique_ptr<OnlineStore>> OpenRocksOnlineStore(stream::EventLog* log) {
  ASSIGN_OR_RETURN(stream::RocksHandle h, stream::GetRocksHandle(*log));
  return std::unique_ptr<OnlineStore>(std::make_unique<RocksOnlineStore>(h));
}

}  // namespace lakeloop::features
