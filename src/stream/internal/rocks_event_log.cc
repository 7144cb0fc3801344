// The RocksDB EventLog: one DB, column families log/dedup/offsets/state/meta, one committer thread
// doing group commit. See stream/README.md for the key layout and the invariants.
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "core/crash_point.h"
#include "core/time.h"
#include "stream/internal/codec.h"
#include "stream/rocks.h"
#include "stream/stream.h"

namespace lakeloop::stream {
namespace internal {
namespace {

constexpr int kMaxPartitions = 1024;
constexpr size_t kMaxKeyBytes = 4096;
constexpr size_t kMaxEventIdBytes = 512;

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  Code code = Code::kIoError;
  if (s.IsCorruption()) code = Code::kDataLoss;
  if (s.IsBusy() || s.IsTryAgain()) code = Code::kUnavailable;
  return Status(code, std::string(what) + ": " + s.ToString());
}

struct PartitionState {
  std::string meta_key;
  // Authoritative, changed only under write_mu_ (committer, Trim).
  PartitionMeta meta;
  // Published after each successful write, for lock-free Offsets().
  std::atomic<int64_t> begin{0};
  std::atomic<int64_t> end{0};
};

struct StreamState {
  StreamOptions options;  // written under write_mu_ and streams_mu_ (exclusive)
  std::vector<std::unique_ptr<PartitionState>> partitions;  // count fixed at creation
};

struct Request {
  StreamState* stream = nullptr;
  std::vector<Event> events;
  std::vector<int32_t> partitions;
  std::vector<std::string> bodies;  // encoded off the committer thread
  size_t bytes = 0;
  EventLog::AppendCallback done;
};

}  // namespace

class RocksEventLog final : public EventLog {
 public:
  RocksEventLog(const RocksLogOptions& options) : options_(options) {
    if (!options_.now_us) options_.now_us = [] { return NowMicros(); };
  }

  ~RocksEventLog() override {
    {
      std::lock_guard<std::mutex> l(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (committer_.joinable()) committer_.join();
    if (db_) {
      for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      db_->Close().PermitUncheckedError();
    }
  }

  Status Open(const std::string& path) {
    rocksdb::DBOptions dbo;
    dbo.create_if_missing = true;
    dbo.create_missing_column_families = true;
    dbo.max_background_jobs = 2;
    rocksdb::ColumnFamilyOptions cfo;
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : {"default", "log", "dedup", "offsets", "state", "meta"}) {
      cfs.emplace_back(name, cfo);
    }
    rocksdb::DB* raw = nullptr;
    RETURN_IF_ERROR(
        FromRocks(rocksdb::DB::Open(dbo, path, cfs, &handles_, &raw), "open event log at " + path));
    db_.reset(raw);
    log_ = handles_[1];
    dedup_ = handles_[2];
    offsets_ = handles_[3];
    state_ = handles_[4];
    meta_ = handles_[5];
    RETURN_IF_ERROR(Load());
    committer_ = std::thread([this] { CommitterLoop(); });
    return Status::Ok();
  }

  RocksHandle Handle() const {
    return RocksHandle{db_.get(), log_, dedup_, offsets_, state_, meta_};
  }

  Status RegisterStream(const StreamOptions& o) override {
    RETURN_IF_ERROR(ValidateName("stream", o.name));
    if (o.partitions < 1 || o.partitions > kMaxPartitions) {
      return InvalidArgument("partitions must be in [1, 1024]");
    }
    if (o.dedup_window_us < 0 || o.retention_us < 0 || o.retention_bytes < 0) {
      return InvalidArgument("dedup window and retention must not be negative");
    }
    std::lock_guard<std::mutex> w(write_mu_);
    StreamState* existing = FindStream(o.name);
    rocksdb::WriteBatch wb;
    RETURN_IF_ERROR(
        FromRocks(wb.Put(meta_, StreamMetaKey(o.name), EncodeStreamOptions(o)), "batch"));
    if (existing) {
      if (static_cast<int>(existing->partitions.size()) != o.partitions) {
        return Conflict("stream '" + o.name + "' has " +
                        std::to_string(existing->partitions.size()) +
                        " partitions; the count cannot change");
      }
      RETURN_IF_ERROR(WriteSync(&wb, "register stream"));
      std::unique_lock<std::shared_mutex> l(streams_mu_);
      existing->options = o;
      return Status::Ok();
    }
    auto s = std::make_unique<StreamState>();
    s->options = o;
    for (int p = 0; p < o.partitions; ++p) {
      auto ps = std::make_unique<PartitionState>();
      ps->meta_key = PartitionMetaKey(o.name, p);
      RETURN_IF_ERROR(
          FromRocks(wb.Put(meta_, ps->meta_key, EncodePartitionMeta(ps->meta)), "batch"));
      s->partitions.push_back(std::move(ps));
    }
    RETURN_IF_ERROR(WriteSync(&wb, "register stream"));
    std::unique_lock<std::shared_mutex> l(streams_mu_);
    streams_.emplace(o.name, std::move(s));
    return Status::Ok();
  }

  Result<StreamOptions> GetStream(std::string_view stream) const override {
    std::shared_lock<std::shared_mutex> l(streams_mu_);
    auto it = streams_.find(stream);
    if (it == streams_.end()) return NotFound("no stream '" + std::string(stream) + "'");
    return it->second->options;
  }

  std::vector<StreamOptions> ListStreams() const override {
    std::shared_lock<std::shared_mutex> l(streams_mu_);
    std::vector<StreamOptions> out;
    for (const auto& [name, s] : streams_) out.push_back(s->options);
    return out;
  }

  Result<AppendResult> Append(std::string_view stream, std::vector<Event> events) override {
    struct Waiter {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<Result<AppendResult>> result;
    } waiter;
    AppendAsync(stream, std::move(events), [&waiter](Result<AppendResult> r) {
      std::lock_guard<std::mutex> l(waiter.mu);
      waiter.result.emplace(std::move(r));
      waiter.cv.notify_one();
    });
    std::unique_lock<std::mutex> l(waiter.mu);
    // No timeout: the committer completes every queued request, also when closing.
    waiter.cv.wait(l, [&] { return waiter.result.has_value(); });
    return std::move(*waiter.result);
  }

  void AppendAsync(std::string_view stream, std::vector<Event> events,
                   AppendCallback done) override {
    if (events.empty()) {
      done(AppendResult{});
      return;
    }
    StreamState* s = FindStream(stream);
    if (!s) {
      done(NotFound("no stream '" + std::string(stream) + "'"));
      return;
    }
    auto req = std::make_unique<Request>();
    req->stream = s;
    req->partitions.reserve(events.size());
    req->bodies.reserve(events.size());
    const int parts = static_cast<int>(s->partitions.size());
    for (const Event& e : events) {
      if (e.key.empty() || e.key.size() > kMaxKeyBytes) {
        done(InvalidArgument("an event key must have 1 to 4096 bytes"));
        return;
      }
      if (e.event_id.size() > kMaxEventIdBytes) {
        done(InvalidArgument("an event_id must have at most 512 bytes"));
        return;
      }
      const size_t n = e.key.size() + e.event_id.size() + e.payload.size();
      if (n > options_.max_event_bytes) {
        done(Status(Code::kPayloadTooLarge,
                    "event of " + std::to_string(n) + " bytes exceeds max_event_bytes"));
        return;
      }
      req->partitions.push_back(PartitionForKey(e.key, parts));
      req->bodies.push_back(EncodeEventBody(e));
      req->bytes += req->bodies.back().size() + stream.size() + 32;
    }
    req->events = std::move(events);
    const size_t n = req->events.size();
    if (n > options_.max_queue_events || req->bytes > options_.max_queue_bytes) {
      done(Status(Code::kPayloadTooLarge, "batch larger than the commit queue"));
      return;
    }
    {
      std::unique_lock<std::mutex> l(queue_mu_);
      if (stopping_) {
        l.unlock();
        done(Unavailable("event log is closing"));
        return;
      }
      if (queued_events_ + n > options_.max_queue_events ||
          queued_bytes_ + req->bytes > options_.max_queue_bytes) {
        l.unlock();
        done(Status(Code::kResourceExhausted, "commit queue full; retry later"));
        return;
      }
      queued_events_ += n;
      queued_bytes_ += req->bytes;
      req->done = std::move(done);
      queue_.push_back(std::move(req));
    }
    queue_cv_.notify_one();
  }

  Result<std::vector<Record>> Read(std::string_view stream, int32_t partition, int64_t from_offset,
                                   size_t max_records) const override {
    ASSIGN_OR_RETURN(PartitionState * ps, FindPartition(stream, partition));
    (void)ps;
    std::vector<Record> out;
    const std::string prefix = LogPrefix(stream, partition);
    const std::string upper = PrefixEnd(prefix);
    rocksdb::Slice ub(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &ub;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, log_));
    for (it->Seek(LogKey(stream, partition, std::max<int64_t>(0, from_offset)));
         it->Valid() && out.size() < max_records; it->Next()) {
      Record r;
      r.partition = partition;
      r.offset = LogKeyOffset(it->key().ToStringView());
      if (!DecodeLogValue(it->value().ToStringView(), &r.ingest_time_us, &r.event)) {
        return Status(Code::kDataLoss, "undecodable log record");
      }
      out.push_back(std::move(r));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "read log"));
    return out;
  }

  Result<int64_t> SeekTime(std::string_view stream, int32_t partition,
                           int64_t time_us) const override {
    ASSIGN_OR_RETURN(PartitionState * ps, FindPartition(stream, partition));
    const rocksdb::Snapshot* snap = db_->GetSnapshot();
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    auto r = SeekTimeAt(ro, stream, partition, ps->meta_key, time_us);
    db_->ReleaseSnapshot(snap);
    return r;
  }

  Result<std::vector<OffsetRange>> Offsets(std::string_view stream) const override {
    std::shared_lock<std::shared_mutex> l(streams_mu_);
    auto it = streams_.find(stream);
    if (it == streams_.end()) return NotFound("no stream '" + std::string(stream) + "'");
    std::vector<OffsetRange> out;
    for (const auto& ps : it->second->partitions) {
      // end first: begin only grows, so begin <= end holds for the pair.
      int64_t end = ps->end.load(std::memory_order_acquire);
      int64_t begin = ps->begin.load(std::memory_order_acquire);
      out.push_back({std::min(begin, end), end});
    }
    return out;
  }

  Status RegisterConsumer(std::string_view consumer, std::string_view stream,
                          bool durable) override {
    RETURN_IF_ERROR(ValidateName("consumer", consumer));
    if (!FindStream(stream)) return NotFound("no stream '" + std::string(stream) + "'");
    rocksdb::WriteBatch wb;
    RETURN_IF_ERROR(
        FromRocks(wb.Put(meta_, ConsumerMetaKey(stream, consumer), std::string(1, durable ? 1 : 0)),
                  "batch"));
    return WriteSync(&wb, "register consumer");
  }

  Status CommitOffset(std::string_view consumer, std::string_view stream, int32_t partition,
                      int64_t next_offset) override {
    RETURN_IF_ERROR(ValidateName("consumer", consumer));
    ASSIGN_OR_RETURN(PartitionState * ps, FindPartition(stream, partition));
    (void)ps;
    if (next_offset < 0) return InvalidArgument("negative offset");
    std::string v;
    PutFixed64BE(&v, static_cast<uint64_t>(next_offset));
    rocksdb::WriteOptions wo;  // WAL, no fsync: see stream.h
    return FromRocks(db_->Put(wo, offsets_, ConsumerOffsetKey(consumer, stream, partition), v),
                     "commit offset");
  }

  Result<int64_t> CommittedOffset(std::string_view consumer, std::string_view stream,
                                  int32_t partition) const override {
    ASSIGN_OR_RETURN(PartitionState * ps, FindPartition(stream, partition));
    (void)ps;
    return ReadCommitted(rocksdb::ReadOptions(), consumer, stream, partition);
  }

  Result<std::vector<ConsumerInfo>> ListConsumers(std::string_view stream) const override {
    StreamState* s = FindStream(stream);
    if (!s) return NotFound("no stream '" + std::string(stream) + "'");
    const size_t parts = s->partitions.size();
    std::map<std::string, ConsumerInfo> by_name;
    auto entry = [&](std::string_view name) -> ConsumerInfo& {
      auto [it, fresh] = by_name.try_emplace(std::string(name));
      if (fresh) {
        it->second.consumer = std::string(name);
        it->second.stream = std::string(stream);
        it->second.durable = false;
        it->second.next_offsets.assign(parts, -1);
      }
      return it->second;
    };
    {
      const std::string prefix = ConsumerMetaPrefix(stream);
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        auto name = it->key().ToStringView().substr(prefix.size());
        entry(name).durable = it->value().size() == 1 && it->value()[0] == 1;
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "list consumers"));
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), offsets_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view k = it->key().ToStringView();
      auto z1 = k.find('\0');
      if (z1 == std::string_view::npos || k.size() < z1 + 6) continue;
      std::string_view s_name = k.substr(z1 + 1, k.size() - z1 - 6);
      if (s_name != stream || it->value().size() != 8) continue;
      auto p = GetFixed32BE(k.data() + k.size() - 4);
      if (p >= parts) continue;
      entry(k.substr(0, z1)).next_offsets[p] =
          static_cast<int64_t>(GetFixed64BE(it->value().data()));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "list consumers"));
    std::vector<ConsumerInfo> out;
    for (auto& [name, info] : by_name) out.push_back(std::move(info));
    return out;
  }

  Result<TrimResult> Trim(int64_t now_us) override {
    std::lock_guard<std::mutex> w(write_mu_);
    TrimResult result;
    std::vector<StreamState*> streams;
    {
      std::shared_lock<std::shared_mutex> l(streams_mu_);
      for (auto& [name, s] : streams_) streams.push_back(s.get());
    }
    rocksdb::WriteBatch wb;
    std::vector<std::pair<PartitionState*, PartitionMeta>> changed;  // new metas
    for (StreamState* s : streams) {
      const StreamOptions& o = s->options;
      std::vector<std::string> durable;
      {
        const std::string prefix = ConsumerMetaPrefix(o.name);
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
        for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
          if (it->value().size() == 1 && it->value()[0] == 1) {
            durable.emplace_back(it->key().ToStringView().substr(prefix.size()));
          }
        }
        RETURN_IF_ERROR(FromRocks(it->status(), "trim"));
      }
      for (int32_t p = 0; p < static_cast<int32_t>(s->partitions.size()); ++p) {
        PartitionState& ps = *s->partitions[p];
        const int64_t begin = ps.meta.begin_offset;
        const int64_t end = ps.meta.next_offset;
        if (begin >= end || (o.retention_us == 0 && o.retention_bytes == 0)) continue;
        int64_t target = begin;
        if (o.retention_us > 0) {
          ASSIGN_OR_RETURN(int64_t t, SeekTimeAt(rocksdb::ReadOptions(), o.name, p, ps.meta_key,
                                                 now_us - o.retention_us));
          target = std::max(target, t);
        }
        if (o.retention_bytes > 0 && ps.meta.bytes > o.retention_bytes) {
          int64_t excess = ps.meta.bytes - o.retention_bytes;
          int64_t off = begin;
          ForEachRecordSize(o.name, p, begin, end, [&](int64_t offset, int64_t size) {
            if (excess <= 0) return false;
            excess -= size;
            off = offset + 1;
            return true;
          });
          target = std::max(target, off);
        }
        for (const auto& c : durable) {
          auto committed = ReadCommitted(rocksdb::ReadOptions(), c, o.name, p);
          if (!committed.ok() && committed.status().code() != Code::kNotFound) {
            return committed.status();
          }
          target = std::min(target, committed.ok() ? *committed : begin);
        }
        target = std::min(target, end);
        if (target <= begin) continue;
        int64_t bytes = 0;
        ForEachRecordSize(o.name, p, begin, target, [&](int64_t, int64_t size) {
          bytes += size;
          return true;
        });
        RETURN_IF_ERROR(FromRocks(
            wb.DeleteRange(log_, LogKey(o.name, p, begin), LogKey(o.name, p, target)), "batch"));
        PartitionMeta m = ps.meta;
        m.begin_offset = target;
        m.bytes = std::max<int64_t>(0, m.bytes - bytes);
        RETURN_IF_ERROR(FromRocks(wb.Put(meta_, ps.meta_key, EncodePartitionMeta(m)), "batch"));
        changed.emplace_back(&ps, m);
        result.records_deleted += target - begin;
        result.bytes_deleted += bytes;
      }
      if (o.dedup_window_us > 0) {
        const std::string prefix = DedupTimePrefix(o.name);
        // Entries with ingest_time <= now - window are outside the window.
        const std::string upper = DedupTimeKey(o.name, now_us - o.dedup_window_us + 1, "");
        rocksdb::Slice ub(upper);
        rocksdb::ReadOptions ro;
        ro.iterate_upper_bound = &ub;
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, dedup_));
        for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
          std::string_view k = it->key().ToStringView();
          if (k.size() < prefix.size() + 8) continue;
          const auto t = static_cast<int64_t>(GetFixed64BE(k.data() + prefix.size()));
          std::string_view id = k.substr(prefix.size() + 8);
          const std::string id_key = DedupIdKey(o.name, id);
          std::string v;
          DedupEntry d;
          auto st = db_->Get(rocksdb::ReadOptions(), dedup_, id_key, &v);
          if (st.ok() && DecodeDedupEntry(v, &d) && d.ingest_time == t) {
            RETURN_IF_ERROR(FromRocks(wb.Delete(dedup_, id_key), "batch"));
          } else if (!st.ok() && !st.IsNotFound()) {
            return FromRocks(st, "trim dedup");
          }
          RETURN_IF_ERROR(FromRocks(wb.Delete(dedup_, it->key()), "batch"));
          ++result.dedup_entries_expired;
        }
        RETURN_IF_ERROR(FromRocks(it->status(), "trim dedup"));
      }
    }
    if (wb.Count() == 0) return result;
    RETURN_IF_ERROR(WriteSync(&wb, "trim"));
    for (auto& [ps, m] : changed) {
      ps->meta = m;
      ps->begin.store(m.begin_offset, std::memory_order_release);
    }
    return result;
  }

 private:
  StreamState* FindStream(std::string_view stream) const {
    std::shared_lock<std::shared_mutex> l(streams_mu_);
    auto it = streams_.find(stream);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  Result<PartitionState*> FindPartition(std::string_view stream, int32_t partition) const {
    StreamState* s = FindStream(stream);
    if (!s) return NotFound("no stream '" + std::string(stream) + "'");
    if (partition < 0 || partition >= static_cast<int32_t>(s->partitions.size())) {
      return InvalidArgument("partition " + std::to_string(partition) + " out of range");
    }
    return s->partitions[partition].get();
  }

  Status WriteSync(rocksdb::WriteBatch* wb, std::string_view what) {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return FromRocks(db_->Write(wo, wb), what);
  }

  Result<int64_t> ReadCommitted(const rocksdb::ReadOptions& ro, std::string_view consumer,
                                std::string_view stream, int32_t partition) const {
    std::string v;
    auto st = db_->Get(ro, offsets_, ConsumerOffsetKey(consumer, stream, partition), &v);
    if (st.IsNotFound()) return NotFound("no committed offset");
    RETURN_IF_ERROR(FromRocks(st, "read offset"));
    if (v.size() != 8) return Status(Code::kDataLoss, "bad offset value");
    return static_cast<int64_t>(GetFixed64BE(v.data()));
  }

  // Binary search over [begin, next) of the partition as of `ro` (ingest times are
  // non-decreasing within a partition, so the predicate ingest >= t is monotonic).
  Result<int64_t> SeekTimeAt(const rocksdb::ReadOptions& ro, std::string_view stream,
                             int32_t partition, const std::string& meta_key,
                             int64_t time_us) const {
    std::string v;
    RETURN_IF_ERROR(FromRocks(db_->Get(ro, meta_, meta_key, &v), "read partition meta"));
    PartitionMeta m;
    if (!DecodePartitionMeta(v, &m)) return Status(Code::kDataLoss, "bad partition meta");
    int64_t lo = m.begin_offset, hi = m.next_offset;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      RETURN_IF_ERROR(
          FromRocks(db_->Get(ro, log_, LogKey(stream, partition, mid), &v), "seek time"));
      if (v.size() < 8) return Status(Code::kDataLoss, "bad log record");
      if (static_cast<int64_t>(GetFixed64BE(v.data())) >= time_us) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }

  // Calls fn(offset, key+value size) for records in [from, to) until it returns false.
  template <typename Fn>
  void ForEachRecordSize(std::string_view stream, int32_t p, int64_t from, int64_t to, Fn fn) {
    const std::string upper = LogKey(stream, p, to);
    rocksdb::Slice ub(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &ub;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, log_));
    for (it->Seek(LogKey(stream, p, from)); it->Valid(); it->Next()) {
      if (!fn(LogKeyOffset(it->key().ToStringView()),
              static_cast<int64_t>(it->key().size() + it->value().size()))) {
        break;
      }
    }
  }

  Status Load() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
    for (it->Seek("s"); it->Valid() && it->key().starts_with("s"); it->Next()) {
      auto s = std::make_unique<StreamState>();
      if (!DecodeStreamOptions(it->value().ToStringView(), &s->options)) {
        return Status(Code::kDataLoss, "bad stream options");
      }
      const std::string& name = s->options.name;
      for (int p = 0; p < s->options.partitions; ++p) {
        auto ps = std::make_unique<PartitionState>();
        ps->meta_key = PartitionMetaKey(name, p);
        std::string v;
        RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), meta_, ps->meta_key, &v),
                                  "load partition " + name));
        if (!DecodePartitionMeta(v, &ps->meta)) return Status(Code::kDataLoss, "bad meta");
        // The meta and the log are written in one batch; check that they agree.
        auto next =
            db_->Get(rocksdb::ReadOptions(), log_, LogKey(name, p, ps->meta.next_offset), &v);
        bool last_ok =
            ps->meta.next_offset == ps->meta.begin_offset ||
            db_->Get(rocksdb::ReadOptions(), log_, LogKey(name, p, ps->meta.next_offset - 1), &v)
                .ok();
        if (!next.IsNotFound() || !last_ok) {
          return Status(Code::kDataLoss, "log of " + name + "/" + std::to_string(p) +
                                             " disagrees with its partition meta");
        }
        ps->begin.store(ps->meta.begin_offset);
        ps->end.store(ps->meta.next_offset);
        s->partitions.push_back(std::move(ps));
      }
      streams_.emplace(name, std::move(s));
    }
    return FromRocks(it->status(), "load streams");
  }

  void CommitterLoop() {
    std::vector<std::unique_ptr<Request>> batch;
    while (true) {
      {
        std::unique_lock<std::mutex> l(queue_mu_);
        queue_cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and everything queued is committed
        // Everything gathered while the previous commit ran goes into this one.
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      CommitGroup(batch);
      batch.clear();
    }
  }

  void CommitGroup(std::vector<std::unique_ptr<Request>>& group) {
    std::vector<Result<AppendResult>> results;
    results.reserve(group.size());
    Status failed;
    {
      std::lock_guard<std::mutex> w(write_mu_);
      const int64_t now = options_.now_us();
      rocksdb::WriteBatch wb;
      std::unordered_map<PartitionState*, PartitionMeta> saved;  // metas before this group
      std::unordered_map<std::string, DedupEntry> pending;       // ids written by this group
      std::vector<AppendResult> appended(group.size());
      for (size_t r = 0; r < group.size() && failed.ok(); ++r) {
        Request& req = *group[r];
        StreamState& s = *req.stream;
        const std::string& name = s.options.name;
        const int64_t window = s.options.dedup_window_us;
        auto& out = appended[r].events;
        out.reserve(req.events.size());
        for (size_t i = 0; i < req.events.size(); ++i) {
          const Event& e = req.events[i];
          const int32_t p = req.partitions[i];
          PartitionState& ps = *s.partitions[p];
          saved.try_emplace(&ps, ps.meta);
          std::string id_key;
          if (window > 0 && !e.event_id.empty()) {
            id_key = DedupIdKey(name, e.event_id);
            DedupEntry found;
            bool hit = false;
            if (auto it = pending.find(id_key); it != pending.end()) {
              found = it->second;
              hit = true;
            } else {
              std::string v;
              auto st = db_->Get(rocksdb::ReadOptions(), dedup_, id_key, &v);
              if (st.ok()) {
                hit = DecodeDedupEntry(v, &found);
              } else if (!st.IsNotFound()) {
                failed = FromRocks(st, "dedup lookup");
                break;
              }
            }
            if (hit && found.ingest_time > now - window) {
              out.push_back({found.partition, found.offset, true});
              continue;
            }
          }
          const int64_t offset = ps.meta.next_offset++;
          const int64_t ingest = std::max(now, ps.meta.last_ingest_us);
          ps.meta.last_ingest_us = ingest;
          std::string key = LogKey(name, p, offset);
          std::string value;
          value.reserve(8 + req.bodies[i].size());
          PutFixed64BE(&value, static_cast<uint64_t>(ingest));
          value.append(req.bodies[i]);
          ps.meta.bytes += static_cast<int64_t>(key.size() + value.size());
          auto st = wb.Put(log_, key, value);
          if (!id_key.empty() && st.ok()) {
            DedupEntry d{p, offset, ingest};
            st = wb.Put(dedup_, id_key, EncodeDedupEntry(d));
            if (st.ok()) st = wb.Put(dedup_, DedupTimeKey(name, ingest, e.event_id), "");
            pending[id_key] = d;
          }
          if (!st.ok()) {
            failed = FromRocks(st, "batch");
            break;
          }
          out.push_back({p, offset, false});
        }
      }
      for (auto& [ps, old] : saved) {
        if (!failed.ok()) break;
        failed = FromRocks(wb.Put(meta_, ps->meta_key, EncodePartitionMeta(ps->meta)), "batch");
      }
      if (failed.ok() && wb.Count() > 0) {
        CrashPoint("stream.commit.before_write");
        failed = WriteSync(&wb, "commit events");
        CrashPoint("stream.commit.after_write");
      }
      if (failed.ok()) {
        for (auto& [ps, old] : saved)
          ps->end.store(ps->meta.next_offset, std::memory_order_release);
        for (auto& a : appended) results.emplace_back(std::move(a));
      } else {
        for (auto& [ps, old] : saved) ps->meta = old;
        for (size_t r = 0; r < group.size(); ++r) results.emplace_back(failed);
      }
    }
    {
      std::lock_guard<std::mutex> l(queue_mu_);
      for (const auto& req : group) {
        queued_events_ -= req->events.size();
        queued_bytes_ -= req->bytes;
      }
    }
    for (size_t r = 0; r < group.size(); ++r) group[r]->done(std::move(results[r]));
  }

  RocksLogOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* log_ = nullptr;
  rocksdb::ColumnFamilyHandle* dedup_ = nullptr;
  rocksdb::ColumnFamilyHandle* offsets_ = nullptr;
  rocksdb::ColumnFamilyHandle* state_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;

  // Serialises everything that writes log/dedup/meta: the committer, Trim, RegisterStream.
  std::mutex write_mu_;
  mutable std::shared_mutex streams_mu_;
  std::map<std::string, std::unique_ptr<StreamState>, std::less<>> streams_;  // never shrinks

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::unique_ptr<Request>> queue_;
  size_t queued_events_ = 0;  // queued or being committed
  size_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::thread committer_;
};

}  // namespace internal

Result<std::unique_ptr<EventLog>> OpenRocksEventLog(const std::string& path,
                                                    const RocksLogOptions& options) {
  auto log = std::make_unique<internal::RocksEventLog>(options);
  RETURN_IF_ERROR(log->Open(path));
  return std::unique_ptr<EventLog>(std::move(log));
}

Result<RocksHandle> GetRocksHandle(EventLog& log) {
  auto* rocks = dynamic_cast<internal::RocksEventLog*>(&log);
  if (!rocks) return InvalidArgument("not a RocksDB event log");
  return rocks->Handle();
}

Status PutConsumerOffset(const RocksHandle& handle, rocksdb::WriteBatch* batch,
                         std::string_view consumer, std::string_view stream, int32_t partition,
                         int64_t next_offset) {
  RETURN_IF_ERROR(ValidateName("consumer", consumer));
  RETURN_IF_ERROR(ValidateName("stream", stream));
  if (next_offset < 0 || partition < 0) return InvalidArgument("negative offset or partition");
  std::string v;
  internal::PutFixed64BE(&v, static_cast<uint64_t>(next_offset));
  return internal::FromRocks(
      batch->Put(handle.offsets, internal::ConsumerOffsetKey(consumer, stream, partition), v),
      "batch");
}

}  // namespace lakeloop::stream
