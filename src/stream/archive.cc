#include "stream/archive.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cmath>
#include <fstream>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/time.h"
#include "stream/window.h"

namespace lakeloop::stream {
namespace json = boost::json;
namespace fs = std::filesystem;
using catalog::Rows;

namespace {

constexpr int64_t kDayUs = 86'400'000'000;

struct Meta {
  const char* name;
  const char* type;
};
constexpr Meta kMetaColumns[] = {{"_partition", "INTEGER"},
                                 {"_offset", "BIGINT"},
                                 {"_ingested_at", "TIMESTAMP"},
                                 {"_late", "BOOLEAN"}};

// Writes one field of a payload into the spool line, or null when absent or of the wrong type
// (events appended by another path than ValidateEvents). Timestamps go as micros.
void SpoolValue(JsonWriter& w, FieldType type, const json::value* v) {
  if (v == nullptr || v->is_null()) {
    w.Null();
    return;
  }
  switch (type) {
    case FieldType::kInteger:
      if (v->is_int64()) {
        w.Int(v->get_int64());
      } else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
        w.Int(static_cast<int64_t>(v->get_uint64()));
      } else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() &&
                 std::fabs(v->get_double()) <= 9007199254740992.0) {
        w.Int(static_cast<int64_t>(v->get_double()));
      } else {
        w.Null();
      }
      return;
    case FieldType::kNumber:
      if (v->is_number()) {
        w.Double(v->to_number<double>());
      } else {
        w.Null();
      }
      return;
    case FieldType::kString:
      if (v->is_string()) {
        w.String(v->get_string());
      } else {
        w.Null();
      }
      return;
    case FieldType::kBoolean:
      if (v->is_bool()) {
        w.Bool(v->get_bool());
      } else {
        w.Null();
      }
      return;
    case FieldType::kTimestamp:
      if (v->is_string()) {
        auto t = ParseRfc3339(v->get_string());
        if (t.ok()) {
          w.Int(*t);
        } else {
          w.Null();
        }
      } else if (v->is_int64() && std::llabs(v->get_int64()) < INT64_MAX / 1000) {
        w.Int(v->get_int64() * 1000);
      } else {
        w.Null();
      }
      return;
  }
  w.Null();
}

// SELECT list turning the spool's columns into the table's types, and read_json's columns map.
std::string SpoolSelect(const StreamDefinition& def, const std::string& spool) {
  std::string cols = "{";
  std::string select;
  auto add = [&](const std::string& name, std::string_view type, bool micros) {
    if (cols.size() > 1) cols += ", ";
    cols += sql::QuoteLiteral(name) + ": '" + std::string(micros ? "BIGINT" : type) + "'";
    if (!select.empty()) select += ", ";
    std::string q = sql::QuoteIdentifier(name);
    if (micros) {
      select += "make_timestamp(" + q + ") AS " + q;
    } else {
      select += "CAST(" + q + " AS " + std::string(type) + ") AS " + q;
    }
  };
  for (const auto& f : def.fields) {
    add(f.name, FieldSqlType(f.type), f.type == FieldType::kTimestamp);
  }
  for (const auto& m : kMetaColumns) {
    add(m.name, m.type, std::string_view(m.type) == "TIMESTAMP");
  }
  cols += "}";
  return "SELECT " + select + " FROM read_json(" + sql::QuoteLiteral(spool) +
         ", format = 'newline_delimited', columns = " + cols + ") ORDER BY _partition, _offset";
}

std::string ColumnList(const StreamDefinition& def) {
  std::string out;
  for (const auto& c : ArchiveSchema(def)) {
    if (!out.empty()) out += ", ";
    out += sql::QuoteIdentifier(c.name);
  }
  return out;
}

Status WriteSpool(const fs::path& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  f.close();
  if (!f) return IoError("writing spool " + path.string());
  return Status::Ok();
}

// "event_date=2026-11-26" from a data file key, or "".
std::string DateFolder(const std::string& key) {
  size_t p = key.find("/event_date=");
  if (p == std::string::npos) return {};
  size_t end = key.find('/', p + 1);
  if (end == std::string::npos) return {};
  return key.substr(p + 1, end - p - 1);
}

}  // namespace

std::vector<lake::Column> ArchiveSchema(const StreamDefinition& def) {
  std::vector<lake::Column> out;
  for (const auto& f : def.fields) out.push_back({f.name, std::string(FieldSqlType(f.type))});
  for (const auto& m : kMetaColumns) out.push_back({m.name, m.type});
  return out;
}

Archiver::Archiver(Deps deps, ArchiverOptions options) : deps_(deps), options_(std::move(options)) {
  spool_dir_ = options_.spool_dir.empty()
                   ? fs::temp_directory_path() / ("lakeloop-archive-" + RandomHex(6))
                   : options_.spool_dir;
}

Archiver::~Archiver() {
  Stop();
  if (options_.spool_dir.empty()) {
    std::error_code ec;
    fs::remove_all(spool_dir_, ec);
  }
}

std::vector<catalog::Migration> Archiver::Migrations() {
  return {{"stream_archive", 1,
           "CREATE TABLE stream_archive_offsets ("
           " stream TEXT NOT NULL, part INTEGER NOT NULL, next_offset BIGINT NOT NULL,"
           " max_event_time BIGINT NOT NULL, late_events BIGINT NOT NULL,"
           " updated_at BIGINT NOT NULL, PRIMARY KEY (stream, part))"}};
}

Result<std::vector<Archiver::PartitionState>> Archiver::State(std::string_view stream) {
  int partitions = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = streams_.find(stream);
    if (it == streams_.end())
      return NotFound("stream '" + std::string(stream) + "' is not archived");
    partitions = it->second.partitions;
  }
  ASSIGN_OR_RETURN(
      Rows r, deps_.catalog->Query("SELECT part, next_offset, max_event_time, late_events FROM "
                                   "stream_archive_offsets WHERE stream = ?",
                                   {std::string(stream)}));
  std::vector<PartitionState> out(partitions);
  for (size_t i = 0; i < r.size(); ++i) {
    int64_t p = r.Int(i, 0);
    if (p < 0 || p >= partitions) continue;
    out[p] = {r.Int(i, 1), r.Int(i, 2), r.Int(i, 3)};
  }
  return out;
}

Status Archiver::AddStream(const StreamDefinition& def) {
  RETURN_IF_ERROR(lake::ValidateIdentifier("stream", def.name));
  RETURN_IF_ERROR(deps_.log->RegisterStream(def.ToStreamOptions()));
  RETURN_IF_ERROR(deps_.log->RegisterConsumer(options_.consumer, def.name, /*durable=*/true));
  {
    std::lock_guard<std::mutex> l(mu_);
    streams_.insert_or_assign(def.name, def);
  }
  // The catalog is the source of truth: a crash after a lake commit and before the log commit
  // left the log consumer behind. Bring it up (never down).
  ASSIGN_OR_RETURN(auto state, State(def.name));
  for (size_t p = 0; p < state.size(); ++p) {
    if (state[p].next_offset < 0) continue;
    auto committed =
        deps_.log->CommittedOffset(options_.consumer, def.name, static_cast<int32_t>(p));
    if (committed.ok() && *committed >= state[p].next_offset) continue;
    RETURN_IF_ERROR(deps_.log->CommitOffset(options_.consumer, def.name, static_cast<int32_t>(p),
                                            state[p].next_offset));
  }
  return Status::Ok();
}

std::vector<std::string> Archiver::Streams() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [name, def] : streams_) out.push_back(name);
  return out;
}

Result<ArchiveResult> Archiver::ArchiveOnce(std::string_view stream) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return NotFound("stream '" + std::string(stream) + "' is not archived");
  return ArchiveLocked(it->second);
}

Result<DrainResult> Archiver::ArchiveAll(std::string_view stream, int max_rounds) {
  DrainResult d;
  for (int i = 0; i < max_rounds; ++i) {
    ASSIGN_OR_RETURN(ArchiveResult r, ArchiveOnce(stream));
    ++d.rounds;
    d.events += r.events;
    d.remaining = r.remaining;
    if (!r.more) {
      d.done = r.remaining == 0;  // else offsets the log cannot serve (a gap): not caught up
      break;
    }
  }
  return d;
}

Result<CompactResult> Archiver::CompactOnce(std::string_view stream) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return NotFound("stream '" + std::string(stream) + "' is not archived");
  return CompactLocked(it->second);
}

Result<ArchiveResult> Archiver::ArchiveLocked(const StreamDefinition& def) {
  const int np = def.partitions;
  // 1) Where we are: the catalog's offsets and watermarks (not a cache: a failed or concurrent
  //    commit can never make us skip or repeat).
  ASSIGN_OR_RETURN(
      Rows r, deps_.catalog->Query("SELECT part, next_offset, max_event_time, late_events FROM "
                                   "stream_archive_offsets WHERE stream = ?",
                                   {def.name}));
  std::vector<PartitionState> state(np);
  for (size_t i = 0; i < r.size(); ++i) {
    int64_t p = r.Int(i, 0);
    if (p >= 0 && p < np) state[p] = {r.Int(i, 1), r.Int(i, 2), r.Int(i, 3)};
  }
  const std::vector<PartitionState> before = state;
  ASSIGN_OR_RETURN(auto ranges, deps_.log->Offsets(def.name));
  if (static_cast<int>(ranges.size()) != np) {
    return Conflict("stream '" + def.name + "' has " + std::to_string(ranges.size()) +
                    " partitions in the log, the definition says " + std::to_string(np));
  }

  // 2) Read each partition in offset order, flag late events, spool rows per event date.
  struct DateSpool {
    std::string data;
    int64_t rows = 0;
  };
  std::map<int64_t, DateSpool> spools;  // day number -> rows
  ArchiveResult result;
  result.next_offsets.resize(np);
  const size_t share = std::max<size_t>(1, options_.max_batch_events / np);
  const size_t nf = def.fields.size();
  std::vector<const json::value*> slots(nf);
  unsigned char buffer[8192];
  json::monotonic_resource mr(buffer, sizeof(buffer));
  for (int p = 0; p < np; ++p) {
    int64_t from = state[p].next_offset >= 0 ? state[p].next_offset : ranges[p].begin;
    ASSIGN_OR_RETURN(auto records, deps_.log->Read(def.name, p, from, share));
    if (records.size() == share) result.more = true;
    Watermark wm(def.allowed_lateness_us);
    if (state[p].max_event_time_us != INT64_MIN) (void)wm.Observe(state[p].max_event_time_us);
    for (const auto& rec : records) {
      if (rec.offset != from) {
        spdlog::warn(
            "stream archive {}: partition {} jumps from offset {} to {} (trimmed before "
            "the archiver was registered?)",
            def.name, p, from, rec.offset);
      }
      from = rec.offset + 1;
      bool late = !wm.Observe(rec.event.event_time_us);
      if (late) {
        ++result.late;
        ++state[p].late_events;
      }
      mr.release();
      boost::system::error_code ec;
      json::value v = json::parse(rec.event.payload, ec, &mr);
      std::fill(slots.begin(), slots.end(), nullptr);
      if (!ec && v.is_object()) {
        for (size_t i = 0; i < nf; ++i) {
          if (const json::value* fv = v.get_object().if_contains(def.fields[i].name)) slots[i] = fv;
        }
      } else {
        spdlog::warn("stream archive {}: partition {} offset {}: payload is not a JSON object",
                     def.name, p, rec.offset);
      }
      DateSpool& spool = spools[FloorDiv(rec.event.event_time_us, kDayUs)];
      JsonWriter w(&spool.data);
      w.BeginObject();
      for (size_t i = 0; i < nf; ++i) {
        w.Key(def.fields[i].name);
        SpoolValue(w, def.fields[i].type, slots[i]);
      }
      w.Key("_partition").Int(p);
      w.Key("_offset").Int(rec.offset);
      w.Key("_ingested_at").Int(rec.ingest_time_us);
      w.Key("_late").Bool(late);
      w.EndObject();
      spool.data.push_back('\n');
      ++spool.rows;
      ++result.events;
    }
    state[p].next_offset = from;
    state[p].max_event_time_us = wm.max_event_time();
    result.next_offsets[p] = from;
    result.remaining += std::max<int64_t>(0, ranges[p].end - from);
  }
  if (result.events == 0) return result;

  // 3) One Parquet file per event date in a staging folder.
  lake::TableRef table{options_.zone, def.name};
  ASSIGN_OR_RETURN(lake::Staging staging, deps_.lake->BeginWrite(table));
  std::vector<fs::path> spool_files;
  auto cleanup = [&] {
    std::error_code ec;
    for (const auto& f : spool_files) fs::remove(f, ec);
  };
  auto fail = [&](Status s) -> Status {
    cleanup();
    Status aborted = deps_.lake->AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("stream archive: abort write: {}", aborted.ToString());
    return s;
  };
  if (staging.local_dir.empty()) {
    return fail(Status(Code::kUnimplemented, "archiving needs a local object store"));
  }
  std::error_code ec;
  fs::create_directories(spool_dir_, ec);
  if (ec) return fail(IoError("spool folder " + spool_dir_.string() + ": " + ec.message()));
  lake::CommitRequest commit;
  commit.staging = staging;
  commit.owner = lake::Owner{"stream", def.name};
  commit.mode = lake::WriteMode::kAppend;
  commit.schema = ArchiveSchema(def);
  commit.partition_by = {"event_date"};
  for (auto& [day, spool] : spools) {
    std::string date = FormatRfc3339(day * kDayUs).substr(0, 10);
    fs::path spool_file = spool_dir_ / (staging.write_id + "-" + date + ".ndjson");
    spool_files.push_back(spool_file);
    Status written = WriteSpool(spool_file, spool.data);
    if (!written.ok()) return fail(written);
    std::string dir = "event_date=" + date;
    fs::create_directories(staging.local_dir / dir, ec);
    if (ec) return fail(IoError("staging folder: " + ec.message()));
    std::string key = dir + "/data.parquet";
    Status copied = deps_.engine->Exec("COPY (" + SpoolSelect(def, spool_file.string()) + ") TO " +
                                       sql::QuoteLiteral((staging.local_dir / key).string()) +
                                       " (FORMAT parquet, COMPRESSION zstd)");
    if (!copied.ok()) return fail(copied.WithContext("writing " + key));
    commit.files.push_back({key, spool.rows});
    ++result.files;
  }

  // 4) ONE lake commit; its catalog transaction moves the offsets and watermarks, after checking
  //    nobody else moved them since step 1 (a second archiver gets kConflict, not duplicates).
  const int64_t now = NowMicros();
  commit.in_transaction = [&](catalog::Transaction& txn, const lake::Snapshot&) -> Status {
    ASSIGN_OR_RETURN(Rows cur, txn.Query("SELECT part, next_offset FROM stream_archive_offsets "
                                         "WHERE stream = ?",
                                         {def.name}));
    std::vector<int64_t> have(np, -1);
    for (size_t i = 0; i < cur.size(); ++i) {
      int64_t p = cur.Int(i, 0);
      if (p >= 0 && p < np) have[p] = cur.Int(i, 1);
    }
    for (int p = 0; p < np; ++p) {
      if (have[p] != before[p].next_offset) {
        return Conflict("the archived offsets of stream '" + def.name +
                        "' moved during this archive run (another archiver?)");
      }
    }
    for (int p = 0; p < np; ++p) {
      if (state[p].next_offset == before[p].next_offset) continue;
      RETURN_IF_ERROR(txn.Exec(
          "INSERT INTO stream_archive_offsets (stream, part, next_offset, max_event_time, "
          "late_events, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream, part) DO "
          "UPDATE SET next_offset = excluded.next_offset, max_event_time = "
          "excluded.max_event_time, late_events = excluded.late_events, updated_at = "
          "excluded.updated_at",
          {def.name, int64_t{p}, state[p].next_offset, state[p].max_event_time_us,
           state[p].late_events, now}));
    }
    return Status::Ok();
  };
  CrashPoint("stream.archive.before_commit");
  auto snap = deps_.lake->Commit(commit);
  cleanup();
  if (!snap.ok()) {
    Status aborted = deps_.lake->AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("stream archive: abort write: {}", aborted.ToString());
    return snap.status().WithContext("archiving stream '" + def.name + "'");
  }
  result.lake_version = snap->version;
  CrashPoint("stream.archive.after_commit");

  // 5) Let retention advance. May lag or be lost in a crash: AddStream repairs it from the catalog,
  //    and until then the log merely keeps more than it must.
  for (int p = 0; p < np; ++p) {
    if (state[p].next_offset == before[p].next_offset) continue;
    Status s = deps_.log->CommitOffset(options_.consumer, def.name, p, state[p].next_offset);
    if (!s.ok()) {
      spdlog::warn("stream archive {}: committing log offset of partition {}: {}", def.name, p,
                   s.ToString());
    }
  }
  return result;
}

Result<CompactResult> Archiver::CompactLocked(const StreamDefinition& def) {
  CompactResult result;
  lake::TableRef table{options_.zone, def.name};
  auto info = deps_.lake->GetTable(table);
  if (!info.ok()) {
    if (info.status().code() == Code::kNotFound) return result;
    return info.status();
  }
  if (info->current_version == 0) return result;
  ASSIGN_OR_RETURN(auto files, deps_.lake->SnapshotFiles(table));
  std::map<std::string, std::vector<lake::DataFile>> small;  // date folder -> files
  for (const auto& f : files) {
    std::string dir = DateFolder(f.key);
    if (dir.empty() || f.bytes >= options_.compact_small_file_bytes) continue;
    small[dir].push_back(f);
  }
  std::erase_if(small, [&](const auto& kv) {
    return static_cast<int64_t>(kv.second.size()) <= options_.compact_min_files;
  });
  if (small.empty()) return result;

  ASSIGN_OR_RETURN(lake::Staging staging, deps_.lake->BeginWrite(table));
  auto fail = [&](Status s) -> Status {
    Status aborted = deps_.lake->AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("stream archive: abort write: {}", aborted.ToString());
    return s;
  };
  if (staging.local_dir.empty()) {
    return fail(Status(Code::kUnimplemented, "compaction needs a local object store"));
  }
  lake::CommitRequest commit;
  commit.staging = staging;
  commit.owner = lake::Owner{"stream", def.name};
  commit.mode = lake::WriteMode::kAppend;
  commit.schema = ArchiveSchema(def);
  commit.partition_by = {"event_date"};
  commit.expected_version = info->current_version;
  const std::string columns = ColumnList(def);
  for (const auto& [dir, group] : small) {
    std::string list;
    int64_t rows = 0;
    for (const auto& f : group) {
      if (!list.empty()) list += ", ";
      list += sql::QuoteLiteral(deps_.lake->store()->Locate(f.key));
      rows += f.rows;
      commit.replaces.push_back(f.key);
    }
    std::error_code ec;
    fs::create_directories(staging.local_dir / dir, ec);
    if (ec) return fail(IoError("staging folder: " + ec.message()));
    std::string key = dir + "/compacted.parquet";
    Status copied =
        deps_.engine->Exec("COPY (SELECT " + columns + " FROM read_parquet([" + list +
                           "], hive_partitioning = false) ORDER BY _partition, _offset) TO " +
                           sql::QuoteLiteral((staging.local_dir / key).string()) +
                           " (FORMAT parquet, COMPRESSION zstd)");
    if (!copied.ok()) return fail(copied.WithContext("compacting " + dir));
    commit.files.push_back({key, rows});
    ++result.dates;
    result.files_removed += static_cast<int64_t>(group.size());
    ++result.files_added;
  }
  auto snap = deps_.lake->Commit(commit);
  if (!snap.ok()) return fail(snap.status().WithContext("compacting raw." + def.name));
  result.lake_version = snap->version;
  return result;
}

Status Archiver::Start() {
  std::lock_guard<std::mutex> l(thread_mu_);
  if (running_) return Status::Ok();
  stop_ = false;
  running_ = true;
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void Archiver::Run() {
  int64_t last_compact = MonotonicMicros();
  for (;;) {
    {
      std::unique_lock<std::mutex> l(thread_mu_);
      cv_.wait_for(l, std::chrono::milliseconds(std::max<int64_t>(1, options_.interval_ms)),
                   [&] { return stop_; });
      if (stop_) return;
    }
    for (const auto& name : Streams()) {
      for (int round = 0; round < 100; ++round) {
        auto r = ArchiveOnce(name);
        if (!r.ok()) {
          spdlog::error("stream archive {}: {}", name, r.status().ToString());
          break;
        }
        std::lock_guard<std::mutex> l(thread_mu_);
        if (!r->more || stop_) break;
      }
    }
    if (options_.compact_interval_ms > 0 &&
        MonotonicMicros() - last_compact >= options_.compact_interval_ms * 1000) {
      last_compact = MonotonicMicros();
      for (const auto& name : Streams()) {
        auto r = CompactOnce(name);
        if (!r.ok())
          spdlog::error("stream archive {}: compaction: {}", name, r.status().ToString());
      }
    }
  }
}

void Archiver::Stop() {
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    if (!running_) return;
    stop_ = true;
    running_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Flush: archive what is left.
  for (const auto& name : Streams()) {
    for (int round = 0; round < 1000; ++round) {
      auto r = ArchiveOnce(name);
      if (!r.ok()) {
        spdlog::error("stream archive {} (flush): {}", name, r.status().ToString());
        break;
      }
      if (!r->more) break;
    }
  }
}

}  // namespace lakeloop::stream
