// StreamProcessor: the worker that applies stream records to key states, the feature-log
// flusher, and the read path.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/time.h"
#include "features/features.h"
#include "features/internal/plan.h"
#include "lake/lake.h"
#include "sql/sql.h"

namespace lakeloop::features {

namespace json = boost::json;
using internal::KeyState;
using internal::Plan;

namespace {

void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (i * 8)));
}
uint64_t GetU64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<unsigned char>(s[i]);
  return v;
}

// Per-partition progress persisted with the checkpoint: counters and the watermark.
struct Progress {
  int64_t applied = 0;
  int64_t invalid = 0;
  stream::Watermark watermark;
};

std::string EncodeProgress(const Progress& p) {
  std::string out;
  PutU64(&out, static_cast<uint64_t>(p.applied));
  PutU64(&out, static_cast<uint64_t>(p.invalid));
  out += p.watermark.Serialize();
  return out;
}

Result<Progress> DecodeProgress(std::string_view in) {
  if (in.size() < 16) return Status(Code::kDataLoss, "corrupt feature progress");
  Progress p;
  p.applied = static_cast<int64_t>(GetU64(in));
  p.invalid = static_cast<int64_t>(GetU64(in.substr(8)));
  ASSIGN_OR_RETURN(p.watermark, stream::Watermark::Deserialize(in.substr(16)));
  return p;
}

}  // namespace

class StreamProcessor::Impl {
 public:
  struct CacheEntry {
    KeyState state;
    uint64_t used = 0;  // the poll that last touched it (eviction order)
    bool dirty = false;
  };
  // Heterogeneous lookup: find by the record's key without building a string.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view k) const { return std::hash<std::string_view>()(k); }
  };
  using Cache = std::unordered_map<std::string, CacheEntry, KeyHash, std::equal_to<>>;
  using CacheSlot = Cache::value_type;

  struct View {
    Plan plan;
    std::string consumer;
    int partitions = 0;
    bool log_enabled = false;
    // Worker-owned.
    std::vector<int64_t> next;
    std::vector<Progress> progress;
    Cache cache;
    uint64_t polls = 0;   // poll counter for CacheEntry::used
    std::string scratch;  // EncodeKeyStateTo's buffer
    // Published under Impl::mu_.
    std::vector<int64_t> published_next;
    ViewStats stats;
    // Feature log: owned by whoever holds flush_mu_; mirrored into stats under mu_.
    std::vector<int64_t> logged_next;
    std::atomic<int64_t> pending_log_rows{0};
  };

  Impl(stream::EventLog* log, OnlineStore* store, ProcessorOptions options)
      : log_(log), store_(store), options_(std::move(options)) {
    if (!options_.now_us) options_.now_us = [] { return NowMicros(); };
  }

  ~Impl() { Stop(); }

  Status AddView(const FeatureView& v) {
    if (v.kind != ViewKind::kStream) {
      return InvalidArgument(v.file_name + ": view " + v.name + " is not a stream view");
    }
    if (index_.count(v.name)) return InvalidArgument("feature view " + v.name + " defined twice");
    ASSIGN_OR_RETURN(Plan plan, internal::BuildPlan(v));
    auto view = std::make_unique<View>();
    view->plan = std::move(plan);
    view->consumer = ConsumerName(v.name);
    view->log_enabled = options_.lake && options_.catalog && options_.loader;
    view->stats.view = v.name;
    view->stats.stream = v.stream;
    index_[v.name] = views_.size();
    views_.push_back(std::move(view));
    return Status::Ok();
  }

  Status Start() {
    std::lock_guard<std::mutex> life(life_mu_);
    if (started_) return Status::Ok();
    for (auto& v : views_) RETURN_IF_ERROR(LoadView(*v, /*first=*/true));
    started_ = true;
    stop_ = false;
    worker_ = std::thread([this] { Run(); });
    if (AnyLog()) log_thread_ = std::thread([this] { RunLog(); });
    return Status::Ok();
  }

  void Stop() {
    std::lock_guard<std::mutex> life(life_mu_);
    if (!started_) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    wake_cv_.notify_all();
    log_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    if (log_thread_.joinable()) log_thread_.join();
    Status s = FlushLog();
    if (!s.ok()) spdlog::error("features: final feature-log flush: {}", s.ToString());
    started_ = false;
  }

  void Notify(std::string_view) {
    {
      std::lock_guard<std::mutex> l(mu_);
      notified_ = true;
    }
    wake_cv_.notify_one();
  }

  Status WaitApplied(std::string_view stream, const std::vector<int64_t>& ends, int64_t timeout) {
    std::vector<View*> vs;
    for (auto& v : views_) {
      if (v->plan.view.stream == stream) vs.push_back(v.get());
    }
    if (vs.empty()) return NotFound("no feature view reads stream " + std::string(stream));
    auto done = [&] {
      for (View* v : vs) {
        for (size_t p = 0; p < ends.size(); ++p) {
          if (p >= v->published_next.size() || v->published_next[p] < ends[p]) return false;
        }
      }
      return true;
    };
    std::unique_lock<std::mutex> l(mu_);
    if (!applied_cv_.wait_for(l, std::chrono::microseconds(timeout), done)) {
      return Status(Code::kDeadlineExceeded, "features not applied in time");
    }
    return Status::Ok();
  }

  Result<const View*> FindView(std::string_view name) const {
    auto it = index_.find(std::string(name));
    if (it == index_.end()) return NotFound("feature view " + std::string(name));
    return views_[it->second].get();
  }

  Result<FeatureVector> Get(std::string_view view, std::string_view key, int64_t t) const {
    ASSIGN_OR_RETURN(const View* v, FindView(view));
    ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->Get(view, key));
    FeatureVector out;
    out.view = std::string(view);
    out.key = std::string(key);
    out.as_of_us = t;
    if (bytes) {
      ASSIGN_OR_RETURN(KeyState s, internal::DecodeKeyState(v->plan, *bytes));
      internal::ReadValues(v->plan, &s, t, &out.values);
    } else {
      out.found = false;
      internal::ReadValues(v->plan, nullptr, t, &out.values);
    }
    return out;
  }

  Result<std::vector<FeatureVector>> GetMany(std::string_view view,
                                             const std::vector<std::string>& keys,
                                             int64_t t) const {
    ASSIGN_OR_RETURN(const View* v, FindView(view));
    ASSIGN_OR_RETURN(auto values, store_->GetMany(view, keys));
    std::vector<FeatureVector> out(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      out[i].view = std::string(view);
      out[i].key = keys[i];
      out[i].as_of_us = t;
      if (values[i]) {
        ASSIGN_OR_RETURN(KeyState s, internal::DecodeKeyState(v->plan, *values[i]));
        internal::ReadValues(v->plan, &s, t, &out[i].values);
      } else {
        out[i].found = false;
        internal::ReadValues(v->plan, nullptr, t, &out[i].values);
      }
    }
    return out;
  }

  Result<ViewStats> Stats(std::string_view view) const {
    ASSIGN_OR_RETURN(const View* v, FindView(view));
    auto ends = log_->EndOffsets(v->plan.view.stream);
    std::lock_guard<std::mutex> l(mu_);
    ViewStats s = v->stats;
    for (size_t p = 0; p < s.partitions.size(); ++p) {
      if (ends.ok() && p < ends->size()) {
        s.partitions[p].end_offset = (*ends)[p];
        s.partitions[p].lag = std::max<int64_t>(0, (*ends)[p] - s.partitions[p].applied_offset);
      }
    }
    return s;
  }

  std::vector<std::string> ViewNames() const {
    std::vector<std::string> out;
    for (const auto& v : views_) out.push_back(v->plan.view.name);
    return out;
  }

  Status FlushLog() {
    std::lock_guard<std::mutex> f(flush_mu_);
    Status first;
    for (auto& v : views_) {
      if (!v->log_enabled) continue;
      Status s = FlushView(*v);
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  }

 private:
  bool AnyLog() const {
    for (const auto& v : views_) {
      if (v->log_enabled) return true;
    }
    return false;
  }

  // Loads (or, after a failed write, reloads) a view's checkpoints; drops its cache.
  Status LoadView(View& v, bool first) {
    const FeatureView& def = v.plan.view;
    if (first) {
      ASSIGN_OR_RETURN(stream::StreamOptions so, log_->GetStream(def.stream));
      v.partitions = so.partitions;
      RETURN_IF_ERROR(log_->RegisterConsumer(v.consumer, def.stream, /*durable=*/true));
      ASSIGN_OR_RETURN(std::optional<std::string> meta, store_->GetViewMeta(def.name));
      if (!meta || *meta != v.plan.fingerprint) {
        if (meta) {
          spdlog::warn("features: view {} changed: rebuilding its state from the log", def.name);
        }
        RETURN_IF_ERROR(store_->ResetView(def.name, def.stream, v.partitions, v.plan.fingerprint));
      }
    }
    v.cache.clear();
    // No rehash while the working set first loads (reads are cache misses enough).
    v.cache.reserve(std::min<size_t>(options_.max_cached_keys, size_t{1} << 18));
    v.next.assign(v.partitions, 0);
    v.progress.assign(v.partitions, Progress{0, 0, stream::Watermark(def.allowed_lateness_us)});
    for (int p = 0; p < v.partitions; ++p) {
      ASSIGN_OR_RETURN(auto c, store_->GetCheckpoint(def.name, def.stream, p));
      if (!c) continue;
      v.next[p] = c->next_offset;
      ASSIGN_OR_RETURN(v.progress[p], DecodeProgress(c->progress));
    }
    if (first && v.log_enabled) {
      v.logged_next.assign(v.partitions, 0);
      ASSIGN_OR_RETURN(catalog::Rows rows,
                       options_.catalog->Query("SELECT stream_partition, next_offset FROM "
                                               "features_log_offsets WHERE view = ?",
                                               {def.name}));
      for (size_t i = 0; i < rows.size(); ++i) {
        const int64_t p = rows.Int(i, 0);
        if (p >= 0 && p < v.partitions) v.logged_next[p] = rows.Int(i, 1);
      }
      for (int p = 0; p < v.partitions; ++p) {
        RETURN_IF_ERROR(store_->TrimLog(def.name, p, v.logged_next[p]));
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    v.published_next = v.next;
    v.stats.partitions.resize(v.partitions);
    v.stats.events_applied = 0;
    v.stats.late_events = 0;
    v.stats.invalid_events = 0;
    for (int p = 0; p < v.partitions; ++p) {
      auto& ps = v.stats.partitions[p];
      ps.partition = p;
      ps.applied_offset = v.next[p];
      ps.watermark_us = v.progress[p].watermark.value();
      if (v.log_enabled) ps.logged_offset = v.logged_next[p];
      v.stats.events_applied += v.progress[p].applied;
      v.stats.late_events += v.progress[p].watermark.late_events();
      v.stats.invalid_events += v.progress[p].invalid;
    }
    return Status::Ok();
  }

  void Run() {
    int64_t backoff_us = 0;
    while (true) {
      bool worked = false;
      bool failed = false;
      for (auto& v : views_) {
        auto r = ProcessView(*v);
        if (!r.ok()) {
          spdlog::error("features: view {}: {}", v->plan.view.name, r.status().ToString());
          failed = true;
          Status reload = LoadView(*v, false);
          if (!reload.ok()) spdlog::error("features: reload: {}", reload.ToString());
        } else if (*r) {
          worked = true;
        }
      }
      backoff_us =
          failed ? std::min<int64_t>(std::max<int64_t>(backoff_us * 2, 10'000), 5'000'000) : 0;
      std::unique_lock<std::mutex> l(mu_);
      if (stop_) return;
      if (worked && !failed) continue;
      wake_cv_.wait_for(l,
                        std::chrono::microseconds(failed ? backoff_us : options_.poll_interval_us),
                        [&] { return stop_ || (notified_ && !failed); });
      notified_ = false;
      if (stop_) return;
    }
  }

  // Reads the states of the poll's keys that are not cached with one MultiGet (sorted, batched:
  // far cheaper than a point lookup per first touch) and caches them clean.
  // Also marks, per partition, each record that is its key's last in the poll (`last`): the
  // state is encoded right after that record, while it is still in the CPU cache.
  Status Prefetch(View& v, const std::vector<std::vector<stream::Record>>& recs,
                  std::vector<std::vector<char>>* last) {
    std::vector<std::string> missing;
    {
      std::unordered_map<std::string_view, bool, KeyHash, std::equal_to<>> seen;
      size_t n = 0;
      for (const auto& part : recs) n += part.size();
      seen.reserve(n);
      last->resize(recs.size());
      for (size_t p = recs.size(); p-- > 0;) {
        (*last)[p].assign(recs[p].size(), 0);
        for (size_t i = recs[p].size(); i-- > 0;) {
          const std::string& key = recs[p][i].event.key;
          if (!seen.emplace(key, true).second) continue;
          (*last)[p][i] = 1;
          if (v.cache.find(std::string_view(key)) == v.cache.end()) missing.push_back(key);
        }
      }
    }
    if (missing.empty()) return Status::Ok();
    std::sort(missing.begin(), missing.end());
    ASSIGN_OR_RETURN(auto bytes, store_->GetMany(v.plan.view.name, missing));
    for (size_t i = 0; i < missing.size(); ++i) {
      KeyState s;
      if (bytes[i]) {
        ASSIGN_OR_RETURN(s, internal::DecodeKeyState(v.plan, *bytes[i]));
      } else {
        ASSIGN_OR_RETURN(s, internal::NewKeyState(v.plan));
      }
      v.cache.emplace(std::move(missing[i]), CacheEntry{std::move(s), v.polls, false});
    }
    return Status::Ok();
  }

  Result<CacheSlot*> Lookup(View& v, const std::string& key, std::vector<CacheSlot*>* dirty) {
    auto it = v.cache.find(std::string_view(key));
    if (it == v.cache.end()) {  // Prefetch missed it (not expected): read it alone
      ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->Get(v.plan.view.name, key));
      KeyState s;
      if (bytes) {
        ASSIGN_OR_RETURN(s, internal::DecodeKeyState(v.plan, *bytes));
      } else {
        ASSIGN_OR_RETURN(s, internal::NewKeyState(v.plan));
      }
      it = v.cache.emplace(key, CacheEntry{std::move(s), v.polls, false}).first;
    }
    it->second.used = v.polls;
    if (!it->second.dirty) {
      it->second.dirty = true;
      dirty->push_back(&*it);
    }
    return &*it;
  }

  // Keeps the cache within max_cached_keys, dropping the least recently touched keys (by poll)
  // down to 7/8 of it so the scan is amortised over many polls. Only clean entries are cached
  // here (called after a commit), so dropping them loses nothing.
  void Evict(View& v) {
    const size_t max = options_.max_cached_keys;
    if (v.cache.size() <= max) return;
    const size_t keep = max - max / 8;
    std::vector<std::pair<uint64_t, Cache::iterator>> order;
    order.reserve(v.cache.size());
    for (auto it = v.cache.begin(); it != v.cache.end(); ++it)
      order.emplace_back(it->second.used, it);
    const size_t drop = v.cache.size() - keep;
    std::nth_element(order.begin(), order.begin() + static_cast<ptrdiff_t>(drop), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < drop; ++i) v.cache.erase(order[i].second);
  }

  // One poll of one view: returns whether it consumed records.
  Result<bool> ProcessView(View& v) {
    const FeatureView& def = v.plan.view;
    StateBatch batch;
    batch.view = def.name;
    batch.stream = def.stream;
    std::vector<CacheSlot*> dirty;
    std::vector<std::optional<double>> values;
    int64_t oldest_ingest = INT64_MAX, last_event = 0, last_ingest = 0;
    std::vector<int64_t> next = v.next;
    std::vector<Progress> progress = v.progress;
    ++v.polls;
    std::vector<std::vector<stream::Record>> all(v.partitions);
    bool any = false;
    for (int p = 0; p < v.partitions; ++p) {
      ASSIGN_OR_RETURN(all[p], log_->Read(def.stream, p, next[p], options_.max_records_per_poll));
      any = any || !all[p].empty();
    }
    if (!any) return false;
    std::vector<std::vector<char>> last;
    RETURN_IF_ERROR(Prefetch(v, all, &last));
    alignas(16) unsigned char buffer[8192];
    for (int p = 0; p < v.partitions; ++p) {
      const std::vector<stream::Record>& recs = all[p];
      if (recs.empty()) continue;
      Progress& pr = progress[p];
      for (size_t i = 0; i < recs.size(); ++i) {
        const stream::Record& r = recs[i];
        next[p] = r.offset + 1;
        oldest_ingest = std::min(oldest_ingest, r.ingest_time_us);
        last_event = r.event.event_time_us;
        last_ingest = r.ingest_time_us;
        CacheSlot* slot = nullptr;
        json::monotonic_resource mr(buffer, sizeof buffer);
        boost::system::error_code ec;
        json::value payload = json::parse(r.event.payload, ec, &mr);
        if (ec || !payload.is_object()) {
          ++pr.invalid;
        } else if (pr.watermark.Observe(r.event.event_time_us)) {  // else late: counted
          ++pr.applied;
          ASSIGN_OR_RETURN(slot, Lookup(v, r.event.key, &dirty));
          KeyState* state = &slot->second.state;
          internal::ApplyEvent(v.plan, payload.get_object(), r.event.event_time_us, state);
          if (v.log_enabled) {
            internal::ReadNumbers(v.plan, state, r.event.event_time_us, &values);
            StateBatch::LogRow row{p, r.offset, {}};
            internal::AppendLogRow(&row.row, r.event.key, r.event.event_time_us, values,
                                   options_.now_us(), p, r.offset);
            batch.log_rows.push_back(std::move(row));
          }
        }
        if (!last[p][i]) continue;
        // The key's last record of the poll: encode its state now, while it is in the CPU cache
        // (encoding 8k cold states after the loop was mostly cache misses).
        if (!slot) {
          auto it = v.cache.find(std::string_view(r.event.key));
          if (it != v.cache.end()) slot = &*it;
        }
        if (slot && slot->second.dirty) {
          auto& [key, value] = batch.states.emplace_back(slot->first, std::string());
          (void)key;
          value.reserve(256);
          internal::EncodeKeyStateTo(slot->second.state, &value, &v.scratch);
        }
      }
      batch.checkpoints.push_back({p, Checkpoint{next[p], EncodeProgress(pr)}});
    }
    // Key order: RocksDB's memtable inserts a sorted batch far faster (each insert starts from
    // the previous one's position in the skip list).
    std::sort(batch.states.begin(), batch.states.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    CrashPoint("features.before_write");
    RETURN_IF_ERROR(store_->Commit(batch));  // the caller reloads the view on failure
    CrashPoint("features.after_write");
    for (CacheSlot* e : dirty) e->second.dirty = false;
    v.next = std::move(next);
    v.progress = std::move(progress);
    Evict(v);
    const int64_t now = options_.now_us();
    if (v.log_enabled) {
      const int64_t pending =
          v.pending_log_rows.fetch_add(static_cast<int64_t>(batch.log_rows.size())) +
          static_cast<int64_t>(batch.log_rows.size());
      if (pending >= static_cast<int64_t>(options_.log_flush_rows)) log_cv_.notify_one();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      v.published_next = v.next;
      ViewStats& s = v.stats;
      s.events_applied = s.late_events = s.invalid_events = 0;
      for (int p = 0; p < v.partitions; ++p) {
        s.partitions[p].applied_offset = v.next[p];
        s.partitions[p].watermark_us = v.progress[p].watermark.value();
        s.events_applied += v.progress[p].applied;
        s.late_events += v.progress[p].watermark.late_events();
        s.invalid_events += v.progress[p].invalid;
      }
      s.last_event_time_us = last_event;
      s.last_ingest_time_us = last_ingest;
      s.last_applied_at_us = now;
      s.last_delay_us = now - oldest_ingest;
    }
    applied_cv_.notify_all();
    return true;
  }

  void RunLog() {
    while (true) {
      {
        std::unique_lock<std::mutex> l(mu_);
        log_cv_.wait_for(l, std::chrono::microseconds(options_.log_flush_interval_us), [&] {
          if (stop_) return true;
          for (const auto& v : views_) {
            if (v->pending_log_rows.load() >= static_cast<int64_t>(options_.log_flush_rows)) {
              return true;
            }
          }
          return false;
        });
        if (stop_) return;
      }
      Status s = FlushLog();
      if (!s.ok()) spdlog::error("features: feature-log flush: {}", s.ToString());
    }
  }

  // Ships the view's spooled rows from logged_next on as one Parquet append to features.<view>;
  // the new logged offsets commit in the same catalog transaction as the snapshot.
  Status FlushView(View& v) {
    const FeatureView& def = v.plan.view;
    constexpr size_t kMaxRows = 1'000'000;
    std::string csv;
    int64_t rows = 0;
    std::vector<std::pair<int32_t, int64_t>> new_next;  // partition -> next logged offset
    for (int p = 0; p < v.partitions; ++p) {
      ASSIGN_OR_RETURN(auto spooled, store_->ScanLog(def.name, p, v.logged_next[p], kMaxRows));
      if (spooled.empty()) continue;
      for (const auto& r : spooled) csv += r.row;
      rows += static_cast<int64_t>(spooled.size());
      new_next.emplace_back(p, spooled.back().offset + 1);
    }
    if (rows == 0) return Status::Ok();
    std::error_code ec;
    std::filesystem::create_directories(options_.scratch_dir, ec);
    const auto csv_path =
        options_.scratch_dir / ("features-" + def.name + "-" + NewUuid() + ".csv");
    {
      std::ofstream out(csv_path, std::ios::binary | std::ios::trunc);
      out << csv;
      if (!out) return IoError("write " + csv_path.string());
    }
    struct Cleanup {
      std::filesystem::path p;
      ~Cleanup() {
        std::error_code e;
        std::filesystem::remove(p, e);
      }
    } cleanup{csv_path};

    std::string columns = "{'k': 'VARCHAR', 't': 'BIGINT'";
    std::string select =
        "SELECT k AS " + sql::QuoteIdentifier(def.entity) + ", make_timestamp(t) AS event_time";
    std::vector<lake::Column> schema = {{def.entity, "VARCHAR"}, {"event_time", "TIMESTAMP"}};
    for (size_t i = 0; i < def.features.size(); ++i) {
      columns += ", 'f" + std::to_string(i) + "': 'DOUBLE'";
      select += ", f" + std::to_string(i) + " AS " + sql::QuoteIdentifier(def.features[i].name);
      schema.push_back({def.features[i].name, "DOUBLE"});
    }
    columns += ", 'a': 'BIGINT', 'p': 'INTEGER', 'o': 'BIGINT'}";
    select += ", make_timestamp(a) AS _applied_at, p AS _partition, o AS _offset";
    schema.push_back({"_applied_at", "TIMESTAMP"});
    schema.push_back({"_partition", "INTEGER"});
    schema.push_back({"_offset", "BIGINT"});
    select += " FROM read_csv(" + sql::QuoteLiteral(csv_path.string()) +
              ", header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"',"
              " columns = " +
              columns + ")";

    ASSIGN_OR_RETURN(lake::Staging staging, options_.lake->BeginWrite({"features", def.name}));
    auto fail = [&](Status s) -> Status {
      Status aborted = options_.lake->AbortWrite(staging);
      if (!aborted.ok()) spdlog::warn("features: abort write: {}", aborted.ToString());
      return s;
    };
    const std::string file = "part-0.parquet";
    Status copied = options_.loader->Exec("COPY (" + select + ") TO " +
                                          sql::QuoteLiteral((staging.local_dir / file).string()) +
                                          " (FORMAT parquet, COMPRESSION zstd)");
    if (!copied.ok()) return fail(copied);
    CrashPoint("features.log.before_commit");
    lake::CommitRequest commit;
    commit.staging = staging;
    commit.owner = lake::Owner{"feature_view", def.name};
    commit.mode = lake::WriteMode::kAppend;
    commit.files.push_back({file, rows});
    commit.schema = schema;
    const std::vector<int64_t> expected = v.logged_next;
    commit.in_transaction = [&](catalog::Transaction& txn, const lake::Snapshot&) -> Status {
      for (const auto& [p, next] : new_next) {
        ASSIGN_OR_RETURN(catalog::Rows cur,
                         txn.Query("SELECT next_offset FROM features_log_offsets WHERE view = ? "
                                   "AND stream_partition = ?",
                                   {def.name, int64_t{p}}));
        const int64_t have = cur.empty() ? 0 : cur.Int(0, 0);
        if (have != expected[p]) {
          return Conflict("feature log of " + def.name + " was written by another process");
        }
        RETURN_IF_ERROR(
            txn.Exec("INSERT INTO features_log_offsets (view, stream_partition, next_offset) "
                     "VALUES (?, ?, ?) ON CONFLICT (view, stream_partition) DO UPDATE SET "
                     "next_offset = excluded.next_offset",
                     {def.name, int64_t{p}, next}));
      }
      return Status::Ok();
    };
    auto snap = options_.lake->Commit(commit);
    if (!snap.ok()) return fail(snap.status());
    CrashPoint("features.log.after_commit");
    for (const auto& [p, next] : new_next) {
      v.logged_next[p] = next;
      RETURN_IF_ERROR(store_->TrimLog(def.name, p, next));
    }
    v.pending_log_rows.fetch_sub(rows);
    std::lock_guard<std::mutex> l(mu_);
    v.stats.log_rows_committed += rows;
    for (const auto& [p, next] : new_next) v.stats.partitions[p].logged_offset = next;
    return Status::Ok();
  }

  stream::EventLog* log_;
  OnlineStore* store_;
  ProcessorOptions options_;
  std::vector<std::unique_ptr<View>> views_;  // fixed after Create
  std::map<std::string, size_t> index_;       // fixed after Create

  std::mutex life_mu_;  // Start/Stop
  bool started_ = false;
  mutable std::mutex mu_;  // stop_, notified_, published state and stats
  bool stop_ = false;
  bool notified_ = false;
  std::condition_variable wake_cv_;
  std::condition_variable applied_cv_;
  std::condition_variable log_cv_;
  std::mutex flush_mu_;  // one feature-log flush at a time
  std::thread worker_;
  std::thread log_thread_;
};

Result<std::unique_ptr<StreamProcessor>> StreamProcessor::Create(stream::EventLog* log,
                                                                 OnlineStore* store,
                                                                 std::vector<FeatureView> views,
                                                                 ProcessorOptions options) {
  auto impl = std::make_unique<Impl>(log, store, std::move(options));
  for (const auto& v : views) RETURN_IF_ERROR(impl->AddView(v));
  return std::unique_ptr<StreamProcessor>(new StreamProcessor(std::move(impl)));
}

StreamProcessor::StreamProcessor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StreamProcessor::~StreamProcessor() { impl_->Stop(); }
Status StreamProcessor::Start() { return impl_->Start(); }
void StreamProcessor::Stop() { impl_->Stop(); }
void StreamProcessor::Notify(std::string_view stream) { impl_->Notify(stream); }
Status StreamProcessor::WaitApplied(std::string_view stream, const std::vector<int64_t>& ends,
                                    int64_t timeout_us) {
  return impl_->WaitApplied(stream, ends, timeout_us);
}
Status StreamProcessor::FlushLog() { return impl_->FlushLog(); }
Result<FeatureVector> StreamProcessor::Get(std::string_view view, std::string_view key,
                                           int64_t t) const {
  return impl_->Get(view, key, t);
}
Result<std::vector<FeatureVector>> StreamProcessor::GetMany(std::string_view view,
                                                            const std::vector<std::string>& keys,
                                                            int64_t t) const {
  return impl_->GetMany(view, keys, t);
}
Result<ViewStats> StreamProcessor::Stats(std::string_view view) const { return impl_->Stats(view); }
std::vector<std::string> StreamProcessor::ViewNames() const { return impl_->ViewNames(); }

}  // namespace lakeloop::features
