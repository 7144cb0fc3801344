#include "ingest/ingest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <functional>
#include <map>
#include <set>

#include "core/crash_point.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/time.h"
#include "ingest/internal/cursor.h"
#include "ingest/internal/extract.h"
#include "ingest/internal/secrets.h"

namespace lakeloop::ingest {
namespace json = boost::json;
using sql::Column;
using sql::QuoteIdentifier;
using sql::QuoteLiteral;

namespace {

constexpr const char* kLoadedAt = "_loaded_at";
constexpr const char* kBatchId = "_batch_id";
constexpr const char* kLoadDate = "load_date";

// ---- small helpers ------------------------------------------------------------------------------

std::string Hex(const unsigned char* d, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[d[i] >> 4]);
    out.push_back(kHex[d[i] & 15]);
  }
  return out;
}

// Streaming SHA-256 of a file (files may be larger than memory): 1 MiB read(2)s straight into
// OpenSSL's EVP (SHA-NI where the CPU has it); a few % of a load's time.
Result<std::string> Sha256File(const std::filesystem::path& path) {
  struct File {
    int fd;
    ~File() {
      if (fd >= 0) ::close(fd);
    }
  } file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  const int fd = file.fd;
  if (fd < 0) return IoError("cannot read " + path.string());
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Internal("sha256 init failed");
  }
  std::vector<char> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read " + path.string());
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Hex(md, len);
}

// read_csv options for files whose lines may be long (db extracts: a line is a row; JSON lines).
// read_csv allocates `buffer_size` up front per scan whatever the file's size (by default 16 x
// max_line_size: 1.5 GiB for 100 MB lines, past a 1GB memory_limit), so both are sized to the
// file: lines up to 100 MB (or the file), a buffer of twice that, at least DuckDB's default 32 MiB.
std::string LongLineOptions(int64_t file_size) {
  const int64_t line = std::clamp<int64_t>(file_size + 1, int64_t{2} << 20, 100'000'000);
  const int64_t buffer = std::max<int64_t>(2 * line, int64_t{32} << 20);
  return "max_line_size = " + std::to_string(line) + ", buffer_size = " + std::to_string(buffer);
}

// Glob match: `**` any characters (also '/'), `*` any except '/', `?` one except '/'.
bool GlobMatch(std::string_view p, std::string_view s) {
  if (p.empty()) return s.empty();
  if (p.starts_with("**")) {
    std::string_view rest = p.substr(2);
    if (rest.starts_with("/")) {
      // "**/" also matches no folder at all.
      if (GlobMatch(rest.substr(1), s)) return true;
    }
    for (size_t i = 0; i <= s.size(); ++i) {
      if (GlobMatch(rest, s.substr(i))) return true;
    }
    return false;
  }
  if (p[0] == '*') {
    for (size_t i = 0; i <= s.size(); ++i) {
      if (GlobMatch(p.substr(1), s.substr(i))) return true;
      if (i < s.size() && s[i] == '/') return false;
    }
    return false;
  }
  if (s.empty()) return false;
  if (p[0] == '?') return s[0] != '/' && GlobMatch(p.substr(1), s.substr(1));
  return p[0] == s[0] && GlobMatch(p.substr(1), s.substr(1));
}

bool HasExtensionFor(sql::FileFormat f, const std::filesystem::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  switch (f) {
    case sql::FileFormat::kCsv:
      return e == ".csv" || e == ".tsv" || e == ".txt";
    case sql::FileFormat::kJson:
      return e == ".json" || e == ".jsonl" || e == ".ndjson";
    case sql::FileFormat::kParquet:
      return e == ".parquet";
  }
  return false;
}

bool Hidden(const std::filesystem::path& rel) {
  for (const auto& part : rel) {
    std::string s = part.string();
    if (!s.empty() && (s[0] == '.' || s[0] == '_')) return true;
  }
  return false;
}

std::string UpperType(std::string t) {
  for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return t;
}

bool IsNested(const std::string& type) {
  std::string u = UpperType(type);
  return u == "JSON" || u.find('[') != std::string::npos || u.rfind("STRUCT", 0) == 0 ||
         u.rfind("MAP", 0) == 0 || u.rfind("UNION", 0) == 0 || u.rfind("LIST", 0) == 0;
}

// DuckDB type for a json_structure() value: {"a":"UBIGINT"} -> STRUCT("a" BIGINT), ["DOUBLE"] ->
// DOUBLE[], "JSON" (mixed types) -> JSON, "NULL" (only nulls) -> VARCHAR.
std::string TypeOfStructure(const json::value& v) {
  if (v.is_string()) {
    std::string t(v.as_string());
    if (t == "UBIGINT" || t == "BIGINT") return "BIGINT";
    if (t == "NULL") return "VARCHAR";
    return t;
  }
  if (v.is_array()) {
    if (v.as_array().empty()) return "JSON";
    return TypeOfStructure(v.as_array()[0]) + "[]";
  }
  if (v.is_object() && !v.as_object().empty()) {
    std::string out = "STRUCT(";
    bool first = true;
    for (const auto& [k, e] : v.as_object()) {
      out += (first ? "" : ", ") + sql::QuoteIdentifier(std::string(k)) + " " + TypeOfStructure(e);
      first = false;
    }
    return out + ")";
  }
  return "JSON";
}

int64_t JsonInt(const json::value& v) {
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64()) return static_cast<int64_t>(v.as_uint64());
  if (v.is_double()) return static_cast<int64_t>(v.as_double());
  if (v.is_string()) return std::stoll(std::string(v.as_string()));
  return 0;
}

std::string JsonText(const json::value& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

template <typename C>
const C* Find(const std::vector<C>& cols, const std::string& name) {
  for (const auto& c : cols) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// Debug-level phase timings of a run ("ingest orders: stream 'a.csv' 812 ms"): the profile of a
// slow load without a profiler.
class PhaseTimer {
 public:
  explicit PhaseTimer(const std::string& source) : source_(source), start_(NowMicros()) {}
  void Lap(const std::string& phase) {
    const Micros now = NowMicros();
    spdlog::debug("ingest {}: {} {} ms", source_, phase, (now - start_) / 1000);
    start_ = now;
  }

 private:
  const std::string& source_;
  Micros start_;
};

// ---- one run ------------------------------------------------------------------------------------

struct InputFile {
  std::filesystem::path abs;
  std::string shown;  // path as recorded: relative to the project when inside it
  std::string sha256;
  int64_t size = 0;
};

// One file or db extract read into the run's DuckDB schema.
struct Part {
  std::string table;            // <schema>.f_<i>: data columns + _ord
  std::string origin;           // file shown name, or "" for db sources
  std::vector<Column> columns;  // as read (CSV: pinned/sniffed types; JSON: from the sniff)
  bool json_lines = false;      // the table holds one _line column (JSON text)
  bool csv = false;
  int64_t rows = 0;  // rows read (CSV: without structural rejects)
  // Files: how to read it again (set by SniffFile). `table` is materialised only on the slow path.
  std::string src;       // quoted absolute path
  std::string csv_opts;  // read_csv options after the sniff (types pinned), without the rejects
  bool read = false;     // `table` holds every row (JSON lines, or the slow path)
};

class Run {
 public:
  Run(sql::Engine* engine, lake::Lake* lake, catalog::Store* catalog,
      const std::filesystem::path& project_dir, const IngestorOptions& ingest_options,
      const SourceSpec& spec, const RunOptions& options)
      : engine_(engine),
        lake_(lake),
        catalog_(catalog),
        project_dir_(project_dir),
        ingest_options_(ingest_options),
        spec_(spec),
        options_(options) {}

  ~Run() {
    if (staging_) {
      Status s = lake_->AbortWrite(*staging_);
      if (!s.ok()) spdlog::warn("ingest: abort write: {}", s.ToString());
    }
    if (!schema_.empty()) {
      Status s = engine_->Exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
      if (!s.ok()) spdlog::warn("ingest: dropping {}: {}", schema_, s.ToString());
    }
    if (!spool_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(spool_, ec);
    }
  }

  Result<LoadResult> Go() {
    Result<LoadResult> r = GoInner();
    if (!r.ok()) return internal::Mask(r.status(), secrets_);
    return r;
  }

 private:
  Result<LoadResult> GoInner();
  Result<LoadResult> RunFiles();
  Result<LoadResult> RunDb();

  // SQL helpers.
  Status Exec(const std::string& sql) { return engine_->Exec(sql); }
  Result<json::array> Rows(const std::string& sql);
  Result<std::vector<Column>> Describe(const std::string& sql) { return engine_->Describe(sql); }
  Result<std::string> NormaliseType(const std::string& column, const std::string& type);

  Status Prepare();
  Status SettlePending();
  Result<std::set<std::string>> CommittedWriteIds();
  Result<std::vector<InputFile>> ListFiles();
  Result<Part> SniffFile(const InputFile& f, size_t index);
  Status ReadPart(Part& p);
  bool Streamable(const Part& p) const;
  Status StreamPart(Part& p, size_t index);
  Result<int64_t> StagedRows(const std::string& prefix);
  std::string RejectingCsv(const Part& p, std::string* rj, std::string* rs) const;
  Status PlanSchema(const std::vector<Part>& parts);
  Status TypePart(const Part& p, const std::string& key_expr);
  Status CheckTypeChanges(const Part& p, const std::vector<std::pair<std::string, int64_t>>& fails);
  Status CheckShare();
  // `before_commit` runs with the lake write id after the files are written, just before the
  // commit point (to record an intent that names the write).
  using BeforeCommit = std::function<Status(const std::string& write_id)>;
  // `staged`: a write that already holds streamed parts (files); the good table is added to it.
  Result<lake::Snapshot> CommitData(bool overwrite, const BeforeCommit& before_commit,
                                    std::optional<lake::Staging> staged = std::nullopt);
  Result<lake::Snapshot> CommitRejected(const BeforeCommit& before_commit);
  // Copies `select` (when not empty) into the staging (a new write unless `staged`), then commits
  // every file in it. On error the write is aborted.
  Result<lake::Snapshot> CopyAndCommit(const lake::TableRef& ref, const std::string& select,
                                       lake::WriteMode mode, std::optional<int64_t> expected,
                                       const BeforeCommit& before_commit,
                                       std::optional<lake::Staging> staged = std::nullopt);
  // The type the definition or the table fixes for a column, if any.
  std::optional<std::string> FixedType(const std::string& name) const {
    if (const Column* d = Find(declared_, name)) return d->type;
    if (table_ && !overwrite_) {
      if (const auto* t = Find(table_->schema, name)) return t->type;
    }
    return std::nullopt;
  }
  std::string Ts() const { return "make_timestamp(" + std::to_string(now_) + ")"; }

  sql::Engine* engine_;
  lake::Lake* lake_;
  catalog::Store* catalog_;
  std::filesystem::path project_dir_;
  IngestorOptions ingest_options_;
  const SourceSpec& spec_;
  RunOptions options_;
  std::vector<std::string> secrets_;

  Micros now_ = 0;
  std::string batch_id_;
  std::string schema_;  // the run's DuckDB schema, dropped at the end
  std::filesystem::path spool_;
  lake::TableRef ref_, rejected_ref_;
  std::optional<lake::TableInfo> table_;  // raw.<source> when it exists
  std::vector<Column> declared_;          // spec.schema with normalised types
  std::vector<Column> target_;            // data columns of the table after this run
  bool evolved_ = false;
  bool overwrite_ = false;
  // db cursor: cursor_type_ is the type of the normalised value (cursor_.type)
  internal::CursorPlan cursor_;
  std::string cursor_type_;
  std::string CursorSql(const std::string& value_sql) const {
    return internal::CursorValueSql(cursor_, value_sql);
  }
  Status DecideCursor(const std::string& values_sql);
  std::optional<std::string> cursor_before_;
  std::optional<std::string> lower_;
  int64_t good_ = 0, rejected_ = 0, deduplicated_ = 0;
  // Files: the data write the streamed parts are copied into (aborted unless committed), the
  // good rows it holds, and the rows of the good table (slow-path parts).
  std::optional<lake::Staging> staging_;
  int64_t streamed_good_ = 0, table_good_ = 0;
};

Result<json::array> Run::Rows(const std::string& sql) {
  sql::QueryRequest q;
  q.sql = sql;
  q.limit = int64_t{1} << 40;
  q.timeout_ms = 0;
  ASSIGN_OR_RETURN(sql::QueryReply reply, engine_->Run(q));
  ASSIGN_OR_RETURN(json::object o, ParseJsonObject(reply.body));
  return o.at("rows").as_array();
}

Result<std::string> Run::NormaliseType(const std::string& column, const std::string& type) {
  auto cols = Describe("SELECT CAST(NULL AS " + type + ") AS x");
  if (!cols.ok() || cols->size() != 1) {
    return InvalidArgument(spec_.file_name + ": column '" + column + "': '" + type +
                           "' is not a DuckDB type");
  }
  return (*cols)[0].type;
}

Status Run::Prepare() {
  now_ = NowMicros();
  batch_id_ = options_.batch_id.empty() ? NewUuid() : options_.batch_id;
  ref_ = Ingestor::TableFor(spec_);
  rejected_ref_ = Ingestor::RejectedTableFor(spec_);
  schema_ = QuoteIdentifier("ingest_" + RandomHex(8));
  RETURN_IF_ERROR(Exec("CREATE SCHEMA " + schema_));
  auto t = lake_->GetTable(ref_);
  if (t.ok()) {
    if (t->current_version > 0) table_ = *t;
  } else if (t.status().code() != Code::kNotFound) {
    return t.status();
  }
  for (const auto& c : spec_.schema) {
    ASSIGN_OR_RETURN(std::string type, NormaliseType(c.name, c.type));
    declared_.push_back({c.name, type});
  }
  if (table_) {
    for (const auto& d : declared_) {
      const auto* have = Find(table_->schema, d.name);
      if (have != nullptr && have->type != d.type) {
        return Conflict("column '" + d.name + "' is declared " + d.type + " but " +
                        ref_.ToString() + " has " + have->type +
                        " (a type change is not supported; full_refresh replaces the table)");
      }
    }
  }
  // Shared by both the data table and the rejects of every part.
  RETURN_IF_ERROR(
      Exec("CREATE TABLE " + schema_ +
           ".rej (source_file VARCHAR, line BIGINT, source_key VARCHAR, reason "
           "VARCHAR, record VARCHAR, column_name VARCHAR, cast_error BOOLEAN, grp BIGINT)"));
  return Status::Ok();
}

Result<std::set<std::string>> Run::CommittedWriteIds() {
  std::set<std::string> ids;
  for (const auto& ref : {ref_, rejected_ref_}) {
    auto snaps = lake_->ListSnapshots(ref);
    if (!snaps.ok()) {
      if (snaps.status().code() == Code::kNotFound) continue;
      return snaps.status();
    }
    for (const auto& s : *snaps) ids.insert(s.write_id);
  }
  return ids;
}

// A run interrupted between its lake commit and its catalog bookkeeping left "pending" rows that
// name the lake write: if that write is committed the bookkeeping is completed, else dropped.
Status Run::SettlePending() {
  ASSIGN_OR_RETURN(auto files, catalog_->Query("SELECT DISTINCT pending_write_id FROM ingest_files "
                                               "WHERE source = ? AND pending_write_id IS NOT NULL",
                                               {spec_.name}));
  ASSIGN_OR_RETURN(auto cursors,
                   catalog_->Query("SELECT pending_write_id FROM ingest_cursors WHERE source = ? "
                                   "AND pending_write_id IS NOT NULL",
                                   {spec_.name}));
  if (files.empty() && cursors.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(auto committed, CommittedWriteIds());
  ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
  for (size_t i = 0; i < files.size(); ++i) {
    std::string w = files.Text(i, 0);
    if (committed.count(w)) {
      RETURN_IF_ERROR(txn->Exec(
          "UPDATE ingest_files SET write_id = pending_write_id, batch_id = pending_batch_id, "
          "loaded_at = pending_loaded_at, pending_write_id = NULL "
          "WHERE source = ? AND pending_write_id = ?",
          {spec_.name, w}));
    } else {
      RETURN_IF_ERROR(
          txn->Exec("DELETE FROM ingest_files WHERE source = ? AND "
                    "pending_write_id = ? AND write_id IS NULL",
                    {spec_.name, w}));
      RETURN_IF_ERROR(
          txn->Exec("UPDATE ingest_files SET pending_write_id = NULL WHERE source = ? "
                    "AND pending_write_id = ?",
                    {spec_.name, w}));
    }
  }
  for (size_t i = 0; i < cursors.size(); ++i) {
    std::string w = cursors.Text(i, 0);
    if (committed.count(w)) {
      RETURN_IF_ERROR(
          txn->Exec("UPDATE ingest_cursors SET cursor_value = pending_value, "
                    "cursor_type = pending_type, updated_at = pending_updated_at, "
                    "pending_write_id = NULL WHERE source = ?",
                    {spec_.name}));
    } else {
      RETURN_IF_ERROR(txn->Exec(
          "UPDATE ingest_cursors SET pending_write_id = NULL WHERE source = ?", {spec_.name}));
    }
  }
  return txn->Commit();
}

Result<LoadResult> Run::GoInner() {
  RETURN_IF_ERROR(Prepare());
  RETURN_IF_ERROR(SettlePending());
  if (spec_.type == SourceType::kFiles) return RunFiles();
  return RunDb();
}

// ---- files --------------------------------------------------------------------------------------

Result<std::vector<InputFile>> Run::ListFiles() {
  std::filesystem::path pattern(spec_.path);
  if (pattern.is_relative()) pattern = project_dir_ / pattern;
  std::error_code ec;
  std::vector<std::filesystem::path> found;
  std::string text = pattern.generic_string();
  if (text.find_first_of("*?[") == std::string::npos) {
    if (std::filesystem::is_directory(pattern, ec)) {
      for (auto it = std::filesystem::recursive_directory_iterator(pattern, ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        std::filesystem::path rel = std::filesystem::relative(it->path(), pattern);
        if (it->is_regular_file() && !Hidden(rel) && HasExtensionFor(spec_.format, it->path())) {
          found.push_back(it->path());
        }
      }
    } else if (std::filesystem::is_regular_file(pattern, ec)) {
      found.push_back(pattern);
    } else {
      return InvalidArgument(spec_.file_name + ": path '" + spec_.path + "' does not exist");
    }
  } else {
    size_t wild = text.find_first_of("*?[");
    size_t slash = text.rfind('/', wild);
    std::filesystem::path base = text.substr(0, slash == std::string::npos ? 0 : slash);
    std::string rel_pattern = text.substr(slash == std::string::npos ? 0 : slash + 1);
    if (std::filesystem::is_directory(base, ec)) {
      for (auto it = std::filesystem::recursive_directory_iterator(base, ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        std::string rel = std::filesystem::relative(it->path(), base).generic_string();
        if (it->is_regular_file() && !Hidden(rel) && GlobMatch(rel_pattern, rel)) {
          found.push_back(it->path());
        }
      }
    }
  }
  if (ec) return IoError("listing " + spec_.path + ": " + ec.message());
  std::sort(found.begin(), found.end());
  std::vector<InputFile> out;
  std::filesystem::path project = std::filesystem::weakly_canonical(project_dir_, ec);
  for (const auto& p : found) {
    InputFile f;
    f.abs = std::filesystem::weakly_canonical(p, ec);
    std::filesystem::path rel = f.abs.lexically_relative(project);
    f.shown = (!rel.empty() && *rel.begin() != "..") ? rel.generic_string() : f.abs.string();
    f.size = static_cast<int64_t>(std::filesystem::file_size(f.abs, ec));
    if (ec) return IoError("stat " + f.shown + ": " + ec.message());
    ASSIGN_OR_RETURN(f.sha256, Sha256File(f.abs));
    out.push_back(std::move(f));
  }
  return out;
}

// Learns a file's columns without reading all of it (CSV: the sniff, types pinned to what the
// table or definition fixes; Parquet: the footer). JSON lines are read whole here: their keys and
// types come from every line.
Result<Part> Run::SniffFile(const InputFile& f, size_t index) {
  Part p;
  p.origin = f.shown;
  p.table = schema_ + ".f_" + std::to_string(index);
  p.src = QuoteLiteral(f.abs.string());
  const std::string& src = p.src;
  auto unreadable = [&](const Status& s) {
    return InvalidArgument("cannot read '" + f.shown + "': " + s.message());
  };
  switch (spec_.format) {
    case sql::FileFormat::kCsv: {
      p.csv = true;
      std::string opts = ", header = " + std::string(spec_.csv.header ? "true" : "false") +
                         ", delim = " + QuoteLiteral(spec_.csv.delimiter);
      // The sniff tolerates bad lines (the read reports them).
      auto sniffed = Describe("SELECT * FROM read_csv(" + src + opts + ", ignore_errors = true)");
      if (!sniffed.ok()) return unreadable(sniffed.status());
      // Pin the types the table (or the definition) already fixes; sniff the rest.
      std::string types;
      for (auto& c : *sniffed) {
        std::optional<std::string> fixed = FixedType(c.name);
        if (!fixed) continue;
        types += (types.empty() ? "" : ", ") + QuoteLiteral(c.name) + ": " + QuoteLiteral(*fixed);
        c.type = *fixed;
      }
      if (!types.empty()) opts += ", types = {" + types + "}";
      p.csv_opts = opts;
      p.columns = *sniffed;
      break;
    }
    case sql::FileFormat::kJson: {
      p.json_lines = true;
      p.read = true;
      // One row per physical line, so line numbers are exact; parsed per column when typing.
      Status read =
          Exec("CREATE TABLE " + p.table +
               " AS SELECT _line, row_number() OVER () AS _ord FROM read_csv(" + src +
               ", columns = {'_line': 'VARCHAR'}, header = false, delim = " + QuoteLiteral("\x01") +
               ", quote = '', escape = '', auto_detect = false, " + LongLineOptions(f.size) + ")");
      if (!read.ok()) return unreadable(read);
      // Columns: the keys of the object lines in order of appearance, typed by the structure of
      // their values (read_json's own sniffing gives up on a file with one non-object line).
      auto keys = Rows(
          "SELECT e.key, CAST(json_group_structure(e.value) AS VARCHAR), min(_ord * 1000000 + "
          "e.id) AS first FROM (SELECT _ord, CASE WHEN json_valid(_line) THEN CASE WHEN "
          "json_type(_line) = 'OBJECT' THEN _line END END AS _doc FROM " +
          p.table + ") d, json_each(d._doc) e GROUP BY e.key ORDER BY first");
      if (!keys.ok()) return unreadable(keys.status());
      for (const auto& row : *keys) {
        Column c{JsonText(row.as_array().at(0)), "VARCHAR"};
        auto structure = ParseJson(JsonText(row.as_array().at(1)));
        if (structure.ok()) c.type = TypeOfStructure(*structure);
        if (auto fixed = FixedType(c.name)) c.type = *fixed;
        p.columns.push_back(c);
      }
      break;
    }
    case sql::FileFormat::kParquet: {
      auto cols = Describe("SELECT * FROM read_parquet(" + src + ")");
      if (!cols.ok()) return unreadable(cols.status());
      p.columns = *cols;
      break;
    }
  }
  for (const auto& c : p.columns) {
    if (c.name == kLoadedAt || c.name == kBatchId || c.name == kLoadDate || c.name == "_ord" ||
        c.name == "_line") {
      return InvalidArgument("'" + f.shown + "' has a column named '" + c.name +
                             "', which ingest reserves");
    }
  }
  if (p.read) {
    ASSIGN_OR_RETURN(auto n, Rows("SELECT count(*) FROM " + p.table));
    p.rows = JsonInt(n.at(0).as_array().at(0));
  }
  return p;
}

// read_csv of a sniffed part with DuckDB's rejects stored in two new temporary tables (per
// connection: whoever reads them must do so in the same Exec call, then drop them).
std::string Run::RejectingCsv(const Part& p, std::string* rj, std::string* rs) const {
  *rj = "ingest_rj_" + RandomHex(6);
  *rs = "ingest_rs_" + RandomHex(6);
  return "read_csv(" + p.src + p.csv_opts +
         ", store_rejects = true, rejects_table = " + QuoteLiteral(*rj) +
         ", rejects_scan = " + QuoteLiteral(*rs) + ")";
}

// The slow path: every row of the file into p.table with its ordinal (_ord), DuckDB's CSV
// rejects into <schema>.rej; TypePart types it into <schema>.good.
Status Run::ReadPart(Part& p) {
  if (p.read) return Status::Ok();
  auto unreadable = [&](const Status& s) {
    return InvalidArgument("cannot read '" + p.origin + "': " + s.message());
  };
  if (p.csv) {
    std::string rj, rs;
    std::string reader = RejectingCsv(p, &rj, &rs);
    // The rejects tables are temporary (per connection): copy them in the same call.
    Status read =
        Exec("CREATE TABLE " + p.table + " AS SELECT *, row_number() OVER () AS _ord FROM " +
             reader + ";\n" + "INSERT INTO " + schema_ + ".rej SELECT " + QuoteLiteral(p.origin) +
             ", line, NULL, CASE WHEN column_name IS NULL THEN error_message ELSE 'column \"' || "
             "column_name || '\": ' || error_message END, csv_line, column_name, "
             "CAST(error_type AS VARCHAR) = 'CAST', line FROM " +
             rj + ";\n" + "DROP TABLE " + rj + "; DROP TABLE " + rs + ";");
    if (!read.ok()) {
      (void)Exec("DROP TABLE IF EXISTS " + rj + "; DROP TABLE IF EXISTS " + rs);
      return unreadable(read);
    }
  } else {
    Status read = Exec("CREATE TABLE " + p.table + " AS SELECT *, file_row_number + 1 AS _ord " +
                       "FROM read_parquet(" + p.src + ", file_row_number = true)");
    if (!read.ok()) return unreadable(read);
  }
  p.read = true;
  ASSIGN_OR_RETURN(auto n, Rows("SELECT count(*) FROM " + p.table));
  p.rows = JsonInt(n.at(0).as_array().at(0));
  return Status::Ok();
}

// A CSV or Parquet part whose columns already have the table's types (nothing to TRY_CAST) can be
// streamed straight from the file into the data write.
bool Run::Streamable(const Part& p) const {
  if (p.read || p.json_lines) return false;
  for (const auto& c : p.columns) {
    const Column* t = Find(target_, c.name);
    if (t == nullptr || t->type != c.type) return false;
  }
  // A file without a required column rejects every row (and a WHERE false would skip the read).
  for (const auto& r : spec_.required) {
    if (Find(p.columns, r) == nullptr) return false;
  }
  if (!spec_.cursor.empty() && Find(p.columns, spec_.cursor) == nullptr) return false;
  return true;
}

// Rows in the staged files whose name starts with `prefix` (from the Parquet footers).
Result<int64_t> Run::StagedRows(const std::string& prefix) {
  int64_t rows = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(staging_->local_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".parquet" ||
        !it->path().filename().string().starts_with(prefix)) {
      continue;
    }
    ASSIGN_OR_RETURN(auto n, Rows("SELECT CAST(COALESCE(SUM(num_rows), 0) AS BIGINT) FROM "
                                  "parquet_file_metadata(" +
                                  QuoteLiteral(it->path().string()) + ")"));
    rows += JsonInt(n.at(0).as_array().at(0));
  }
  if (ec) return IoError("listing staging: " + ec.message());
  return rows;
}

// The fast path: one parallel pass from the file into the data write, as TypePart would type it.
// Rows DuckDB rejects (malformed, cast errors) are in its rejects table with their lines; rows
// missing a required value are counted by a second (projected, parallel) scan, and only when
// there are any, found with their ordinals by a third and typed by TypePart into <schema>.rej.
// The share threshold is decided after every part: the write is aborted if it fails.
Status Run::StreamPart(Part& p, size_t index) {
  auto unreadable = [&](const Status& s) {
    return InvalidArgument("cannot read '" + p.origin + "': " + s.message());
  };
  std::set<std::string> required(spec_.required.begin(), spec_.required.end());
  if (!spec_.cursor.empty()) required.insert(spec_.cursor);
  std::string cols, ok;
  for (const auto& c : target_) {
    const bool in = Find(p.columns, c.name) != nullptr;
    const std::string q = QuoteIdentifier(c.name);
    // A no-op cast (the types match, see Streamable), unless the read re-sniffs a column to
    // another type than the sniff did: then it converts as INSERT INTO <schema>.good would.
    cols += "CAST(" + (in ? q : std::string("NULL")) + " AS " + c.type + ") AS " + q + ", ";
    if (required.count(c.name)) ok += std::string(ok.empty() ? "" : " AND ") + q + " IS NOT NULL";
  }
  // _batch_id as a one-value ENUM: Parquet gets the same column (BYTE_ARRAY UTF8, dictionary
  // encoded, read back as VARCHAR), written from the enum's dictionary instead of hashing the
  // same string for every row (a quarter of the CPU of a narrow CSV's load).
  const std::string batch = QuoteLiteral(batch_id_);
  const std::string select = "SELECT " + cols + Ts() + " AS " + kLoadedAt + ", CAST(" + batch +
                             " AS ENUM(" + batch + ")) AS " + kBatchId + ", CAST(" + Ts() +
                             " AS DATE) AS " + kLoadDate;
  const std::string prefix = "p" + std::to_string(index) + "_";
  const std::string copy_options =
      " (FORMAT parquet, PARTITION_BY (" + std::string(kLoadDate) +
      "), COMPRESSION zstd, OVERWRITE_OR_IGNORE true, FILENAME_PATTERN " +
      QuoteLiteral(prefix + "{i}") + ")";
  const std::string to = QuoteLiteral(staging_->local_dir.string());
  const std::string where = ok.empty() ? "" : " WHERE " + ok;
  int64_t missing = 0;  // rows without a required value
  if (p.csv) {
    std::string rj, rs;
    std::string reader = RejectingCsv(p, &rj, &rs);
    Status read =
        Exec("COPY (" + select + " FROM " + reader + where + ") TO " + to + copy_options + ";\n" +
             "INSERT INTO " + schema_ + ".rej SELECT " + QuoteLiteral(p.origin) +
             ", line, NULL, CASE WHEN column_name IS NULL THEN error_message ELSE 'column \"' || "
             "column_name || '\": ' || error_message END, csv_line, column_name, "
             "CAST(error_type AS VARCHAR) = 'CAST', line FROM " +
             rj + ";\n" + "DROP TABLE " + rj + "; DROP TABLE " + rs + ";");
    if (!read.ok()) {
      (void)Exec("DROP TABLE IF EXISTS " + rj + "; DROP TABLE IF EXISTS " + rs);
      return unreadable(read);
    }
    if (!ok.empty()) {
      // Counted in the same call that drops the (per connection) rejects tables again.
      reader = RejectingCsv(p, &rj, &rs);
      const std::string counted = schema_ + ".missing_" + std::to_string(index);
      Status s = Exec("CREATE TABLE " + counted + " AS SELECT count(*) AS n FROM " + reader +
                      " WHERE NOT (" + ok + ");\nDROP TABLE IF EXISTS " + rj +
                      "; DROP TABLE IF EXISTS " + rs);
      if (!s.ok()) {
        (void)Exec("DROP TABLE IF EXISTS " + rj + "; DROP TABLE IF EXISTS " + rs);
        return unreadable(s);
      }
      ASSIGN_OR_RETURN(auto n, Rows("SELECT n FROM " + counted));
      missing = JsonInt(n.at(0).as_array().at(0));
      if (missing > 0) {
        // The ordinal of a row among those DuckDB accepted, as ReadPart numbers them.
        reader = RejectingCsv(p, &rj, &rs);
        Status s = Exec("CREATE TABLE " + p.table +
                        " AS SELECT * FROM (SELECT *, row_number() OVER () AS _ord FROM " + reader +
                        ") WHERE NOT (" + ok + ");\nDROP TABLE " + rj + "; DROP TABLE " + rs);
        if (!s.ok()) {
          (void)Exec("DROP TABLE IF EXISTS " + rj + "; DROP TABLE IF EXISTS " + rs);
          return unreadable(s);
        }
      }
    }
  } else {
    Status read = Exec("COPY (" + select + " FROM read_parquet(" + p.src + ")" + where + ") TO " +
                       to + copy_options);
    if (!read.ok()) return unreadable(read);
    if (!ok.empty()) {
      Status s = Exec("CREATE TABLE " + p.table +
                      " AS SELECT * FROM (SELECT *, file_row_number + 1 AS _ord FROM "
                      "read_parquet(" +
                      p.src + ", file_row_number = true)) WHERE NOT (" + ok + ")");
      if (!s.ok()) return unreadable(s);
      ASSIGN_OR_RETURN(auto n, Rows("SELECT count(*) FROM " + p.table));
      missing = JsonInt(n.at(0).as_array().at(0));
    }
  }
  ASSIGN_OR_RETURN(int64_t good, StagedRows(prefix));
  streamed_good_ += good;
  p.rows = good + missing;
  // p.table holds only the rows missing a required value: TypePart rejects each of them (and puts
  // nothing into <schema>.good); it also checks for type changes, as without missing values.
  if (missing > 0) return TypePart(p, "NULL");
  return CheckTypeChanges(p, {});
}

// The table's data columns after this run: the table's, then columns new in the input (in input
// order). New columns fail the run unless on_new_column is evolve.
Status Run::PlanSchema(const std::vector<Part>& parts) {
  target_.clear();
  if (table_ && !overwrite_) {
    for (const auto& c : table_->schema) {
      if (c.name != kLoadedAt && c.name != kBatchId) target_.push_back({c.name, c.type});
    }
  }
  const size_t existing = target_.size();
  std::vector<std::string> added_in;
  for (const auto& p : parts) {
    for (const auto& c : p.columns) {
      if (Find(target_, c.name) != nullptr) continue;
      const Column* declared = Find(declared_, c.name);
      target_.push_back({c.name, declared ? declared->type : c.type});
      added_in.push_back(p.origin);
    }
  }
  if (table_ && !overwrite_ && target_.size() > existing) {
    if (spec_.on_new_column == OnNewColumn::kFail) {
      const Column& c = target_[existing];
      return Conflict("new column '" + c.name + "' (" + c.type + ") in " +
                      (added_in[0].empty() ? spec_.name : "'" + added_in[0] + "'") + " is not in " +
                      ref_.ToString() + " (set on_new_column: evolve to add it)");
    }
    evolved_ = true;
  }
  // Declared columns missing from the input still exist (NULL).
  for (const auto& d : declared_) {
    if (Find(target_, d.name) == nullptr) target_.push_back(d);
  }
  for (const auto& r : spec_.required) {
    if (Find(target_, r) == nullptr) {
      return InvalidArgument(spec_.file_name + ": required column '" + r +
                             "' is not in the data (nor in 'schema')");
    }
  }
  if (target_.empty()) return InvalidArgument("the data has no columns");
  std::string ddl;
  for (const auto& c : target_) {
    ddl += (ddl.empty() ? "" : ", ") + QuoteIdentifier(c.name) + " " + c.type;
  }
  return Exec("CREATE OR REPLACE TABLE " + schema_ + ".good (" + ddl + ", _cursor_ok BOOLEAN)");
}

// Types one part into <schema>.good (rows without a problem) and <schema>.rej (with the reasons).
Status Run::TypePart(const Part& p, const std::string& key_expr) {
  std::set<std::string> required(spec_.required.begin(), spec_.required.end());
  if (!spec_.cursor.empty()) required.insert(spec_.cursor);
  std::string typed, reasons, record, fail_counts;
  std::vector<std::string> fail_names;
  for (const auto& c : target_) {
    const Column* in = Find(p.columns, c.name);
    const std::string q = QuoteIdentifier(c.name);
    std::string value;  // typed value expression
    if (in == nullptr) {
      value = "CAST(NULL AS " + c.type + ")";
    } else {
      std::string raw = q;
      if (p.json_lines) {
        // _doc is the line when it is a JSON object, else NULL (json functions throw on bad JSON).
        std::string path = QuoteLiteral("$." + QuoteIdentifier(c.name));
        raw = IsNested(c.type)
                  ? "CASE WHEN json_type(_doc, " + path +
                        ") = 'NULL' THEN NULL ELSE json_extract(_doc, " + path + ") END"
                  : "json_extract_string(_doc, " + path + ")";
      }
      if (!p.json_lines && in->type == c.type) {
        value = raw;
      } else {
        value = "TRY_CAST(" + raw + " AS " + c.type + ")";
        std::string fail = "(" + raw + " IS NOT NULL AND " + value + " IS NULL)";
        reasons += ", CASE WHEN " + fail + " THEN " +
                   QuoteLiteral("column \"" + c.name + "\": cannot read '") + " || left(CAST(" +
                   raw + " AS VARCHAR), 100) || " + QuoteLiteral("' as " + c.type) + " END";
        fail_counts += ", count_if(" + fail + ")";
        fail_names.push_back(c.name);
      }
      if (!p.json_lines) record += std::string(record.empty() ? "" : ", ") + q + " := " + q;
    }
    if (required.count(c.name)) {
      reasons += ", CASE WHEN " + value + " IS NULL THEN " +
                 QuoteLiteral("required column \"" + c.name + "\" is missing") + " END";
    }
    if (c.name == spec_.cursor && cursor_.type != cursor_.column_type) {
      reasons += ", CASE WHEN " + value + " IS NOT NULL AND " + CursorSql(value) +
                 " IS NULL THEN " + QuoteLiteral("cursor \"" + c.name + "\": cannot read '") +
                 " || left(CAST(" + value + " AS VARCHAR), 100) || " +
                 QuoteLiteral("' as " + std::string(internal::CursorKindName(cursor_.kind))) +
                 " END";
    }
    typed += (typed.empty() ? "" : ", ") + value + " AS " + q;
  }
  std::string from = p.table;
  std::string reason_expr = "concat_ws('; ', CAST(NULL AS VARCHAR)" + reasons + ")";
  std::string record_expr =
      record.empty() ? "NULL" : "CAST(to_json(struct_pack(" + record + ")) AS VARCHAR)";
  if (p.json_lines) {
    // Blank lines are skipped; a line that is not a JSON object is rejected as a whole.
    from =
        "(SELECT *, CASE WHEN _kind = 1 THEN _line END AS _doc FROM (SELECT *, CASE WHEN NOT "
        "json_valid(_line) THEN 0 WHEN json_type(_line) = 'OBJECT' THEN 1 ELSE 2 END AS _kind "
        "FROM " +
        p.table + " WHERE trim(_line) <> ''))";
    reason_expr = "CASE _kind WHEN 0 THEN 'not valid JSON' WHEN 2 THEN 'not a JSON object' ELSE " +
                  reason_expr + " END";
    record_expr = "_line";
  }
  std::string cursor_ok = "true";
  if (!spec_.cursor.empty() && lower_) {
    cursor_ok = "(" + CursorSql(QuoteIdentifier(spec_.cursor)) + " > CAST(" +
                QuoteLiteral(*lower_) + " AS " + cursor_type_ + "))";
  }
  const std::string t = schema_ + ".t";
  RETURN_IF_ERROR(Exec("CREATE OR REPLACE TABLE " + t + " AS SELECT " + typed + ", " + reason_expr +
                       " AS _reason, " + record_expr + " AS _record, " + key_expr +
                       " AS _key, _ord FROM " + from));
  std::vector<std::pair<std::string, int64_t>> fails;
  if (!fail_names.empty()) {
    ASSIGN_OR_RETURN(auto counts, Rows("SELECT count(*)" + fail_counts + " FROM " + from));
    const auto& row = counts.at(0).as_array();
    for (size_t i = 0; i < fail_names.size(); ++i) {
      fails.emplace_back(fail_names[i], JsonInt(row.at(i + 1)));
    }
  }
  RETURN_IF_ERROR(CheckTypeChanges(p, fails));
  std::string cols;
  for (const auto& c : target_) cols += QuoteIdentifier(c.name) + ", ";
  RETURN_IF_ERROR(Exec("INSERT INTO " + schema_ + ".good SELECT " + cols + cursor_ok + " FROM " +
                       t + " WHERE _reason = ''"));
  // CSV: the line of a row DuckDB accepted is the _ord-th line it did not reject (exact unless an
  // earlier record spans several lines). JSON lines: _ord is the line. Parquet: the row number.
  std::string line = "_ord";
  std::string join;
  if (p.csv) {
    const int64_t header = spec_.csv.header ? 1 : 0;
    const std::string rej_lines =
        "(SELECT line FROM " + schema_ + ".rej WHERE source_file = " + QuoteLiteral(p.origin) + ")";
    join = " LEFT JOIN (SELECT l, row_number() OVER (ORDER BY l) AS n FROM range(" +
           std::to_string(header + 1) + ", " + std::to_string(header + 1 + p.rows) +
           " + (SELECT count(DISTINCT line) FROM " + rej_lines + ")) r(l) WHERE l NOT IN " +
           rej_lines + ") lines ON lines.n = _ord";
    line = "lines.l";
  }
  // A bad row at or below the stored cursor was re-read by the lookback and reported before.
  std::string fresh = "true";
  if (!spec_.cursor.empty() && cursor_before_ && !overwrite_) {
    // A row whose cursor does not read as the kind cannot be placed: it was reported by the run
    // that first read it (a text timestamp source skips it after; see README).
    const std::string cur = CursorSql(QuoteIdentifier(spec_.cursor));
    fresh = "NOT coalesce(" + cur + " <= CAST(" + QuoteLiteral(*cursor_before_) + " AS " +
            cursor_type_ + "), " + cur + " IS NULL AND " + QuoteIdentifier(spec_.cursor) +
            " IS NOT NULL, false)";
  }
  return Exec("INSERT INTO " + schema_ + ".rej SELECT " +
              (p.origin.empty() ? std::string("NULL") : QuoteLiteral(p.origin)) + ", " +
              (p.origin.empty() ? std::string("NULL") : line) + ", _key, _reason, _record, NULL, " +
              "false, " + line + " FROM " + t + join + " WHERE _reason <> '' AND " + fresh);
}

// A column whose values mostly fail to convert to the table's type has changed type: that fails
// the run (naming the column) instead of rejecting most of the rows one by one.
Status Run::CheckTypeChanges(const Part& p,
                             const std::vector<std::pair<std::string, int64_t>>& typed_fails) {
  std::map<std::string, int64_t> fails;
  for (const auto& [name, n] : typed_fails) fails[name] += n;
  int64_t total = p.rows;
  if (p.csv) {
    ASSIGN_OR_RETURN(auto r, Rows("SELECT column_name, count(DISTINCT line) FROM " + schema_ +
                                  ".rej WHERE source_file = " + QuoteLiteral(p.origin) +
                                  " AND cast_error GROUP BY 1"));
    for (const auto& row : r)
      fails[JsonText(row.as_array().at(0))] += JsonInt(row.as_array().at(1));
    ASSIGN_OR_RETURN(auto n, Rows("SELECT count(DISTINCT line) FROM " + schema_ +
                                  ".rej WHERE source_file = " + QuoteLiteral(p.origin)));
    total += JsonInt(n.at(0).as_array().at(0));
  }
  for (const auto& [name, n] : fails) {
    if (n > 0 && n * 2 > total) {
      const Column* c = Find(target_, name);
      const Column* in = Find(p.columns, name);
      std::string where = p.origin.empty() ? spec_.name : "'" + p.origin + "'";
      return Conflict("column '" + name + "' changed type: " + std::to_string(n) + " of " +
                      std::to_string(total) + " values in " + where + " cannot be read as " +
                      (c ? c->type : "?") +
                      (in && !p.csv ? " (the input has " + in->type + ")" : "") + ", the type of " +
                      ref_.ToString() + "." + name);
    }
  }
  return Status::Ok();
}

Status Run::CheckShare() {
  ASSIGN_OR_RETURN(auto g, Rows("SELECT count(*) FROM " + schema_ + ".good"));
  table_good_ = JsonInt(g.at(0).as_array().at(0));
  good_ = streamed_good_ + table_good_;
  ASSIGN_OR_RETURN(auto r, Rows("SELECT count(*) FROM (SELECT DISTINCT source_file, grp FROM " +
                                schema_ + ".rej)"));
  rejected_ = JsonInt(r.at(0).as_array().at(0));
  if (rejected_ == 0) return Status::Ok();
  const double share = static_cast<double>(rejected_) / static_cast<double>(good_ + rejected_);
  if (share <= spec_.max_rejected_share) return Status::Ok();
  ASSIGN_OR_RETURN(auto first, Rows("SELECT source_file, line, source_key, reason FROM " + schema_ +
                                    ".rej ORDER BY source_file, grp LIMIT 1"));
  const auto& f = first.at(0).as_array();
  std::string where = JsonText(f.at(0));
  if (!f.at(1).is_null()) where += ":" + JsonText(f.at(1));
  if (!f.at(2).is_null()) where += (where.empty() ? "" : " ") + JsonText(f.at(2));
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4g > max_rejected_share %.4g", share,
                spec_.max_rejected_share);
  return Conflict(std::to_string(rejected_) + " of " + std::to_string(good_ + rejected_) +
                  " rows rejected (" + buf + "); nothing committed. First: " + where + ": " +
                  JsonText(f.at(3)));
}

Result<lake::Snapshot> Run::CopyAndCommit(const lake::TableRef& ref, const std::string& select,
                                          lake::WriteMode mode, std::optional<int64_t> expected,
                                          const BeforeCommit& before_commit,
                                          std::optional<lake::Staging> staged) {
  lake::Staging staging;
  if (staged) {
    staging = std::move(*staged);
  } else {
    ASSIGN_OR_RETURN(staging, lake_->BeginWrite(ref));
  }
  auto fail = [&](Status s) -> Status {
    Status aborted = lake_->AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("ingest: abort write: {}", aborted.ToString());
    return s;
  };
  if (staging.local_dir.empty())
    return fail(Status(Code::kUnimplemented, "ingest needs a local object store"));
  if (!select.empty()) {
    Status copied = Exec("COPY (" + select + ") TO " + QuoteLiteral(staging.local_dir.string()) +
                         " (FORMAT parquet, PARTITION_BY (" + std::string(kLoadDate) +
                         "), COMPRESSION zstd, OVERWRITE_OR_IGNORE true)");
    if (!copied.ok()) return fail(copied);
  }
  lake::CommitRequest commit;
  commit.staging = staging;
  commit.owner = lake::Owner{"source", spec_.name};  // raw.<source> and its __rejected table
  commit.mode = mode;
  commit.partition_by = {kLoadDate};
  commit.expected_version = expected;
  std::error_code ec;
  std::string any;
  for (auto it = std::filesystem::recursive_directory_iterator(staging.local_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".parquet") continue;
    std::string key = std::filesystem::relative(it->path(), staging.local_dir).generic_string();
    auto n = Rows("SELECT CAST(COALESCE(SUM(num_rows), 0) AS BIGINT) FROM parquet_file_metadata(" +
                  QuoteLiteral(it->path().string()) + ")");
    if (!n.ok()) return fail(n.status());
    commit.files.push_back({key, JsonInt(n->at(0).as_array().at(0))});
    any = it->path().string();
  }
  if (ec) return fail(IoError("listing staging: " + ec.message()));
  if (commit.files.empty()) return fail(Internal("COPY wrote no files"));
  auto cols =
      Describe("SELECT * FROM read_parquet(" + QuoteLiteral(any) + ", hive_partitioning = false)");
  if (!cols.ok()) return fail(cols.status());
  for (const auto& c : *cols) commit.schema.push_back({c.name, c.type});
  if (before_commit) {
    Status s = before_commit(staging.write_id);
    if (!s.ok()) return fail(s);
  }
  CrashPoint("ingest.before_commit");
  auto snap = lake_->Commit(commit);
  if (!snap.ok()) return fail(snap.status());
  return snap;
}

Result<lake::Snapshot> Run::CommitData(bool overwrite, const BeforeCommit& before_commit,
                                       std::optional<lake::Staging> staged) {
  std::string cols;
  for (const auto& c : target_) cols += QuoteIdentifier(c.name) + ", ";
  std::string select;
  // Streamed parts are already in `staged`; the good table holds the rest (if any).
  if (!staged || table_good_ > 0) {
    select = "SELECT " + cols + Ts() + " AS " + kLoadedAt + ", " + QuoteLiteral(batch_id_) +
             " AS " + kBatchId + ", CAST(" + Ts() + " AS DATE) AS " + kLoadDate + " FROM " +
             schema_ + ".good";
  }
  lake::WriteMode mode = overwrite ? lake::WriteMode::kOverwrite : lake::WriteMode::kAppend;
  if (evolved_ && table_ && !overwrite) {
    // The lake appends only files of the table's schema: a new column rewrites the table (its
    // current files, NULL in the new column) and this batch as one overwrite commit.
    ASSIGN_OR_RETURN(auto files, lake_->SnapshotFiles(ref_));
    if (!files.empty()) {
      std::string list;
      for (const auto& f : files) {
        list += (list.empty() ? "" : ", ") + QuoteLiteral(lake_->store()->Locate(f.key));
      }
      std::string old_cols;
      for (const auto& c : target_) {
        old_cols += (Find(table_->schema, c.name) ? QuoteIdentifier(c.name)
                                                  : "CAST(NULL AS " + c.type + ")") +
                    " AS " + QuoteIdentifier(c.name) + ", ";
      }
      select += (select.empty() ? "" : " UNION ALL ") + std::string("SELECT ") + old_cols +
                kLoadedAt + ", " + kBatchId + ", " + kLoadDate + " FROM read_parquet([" + list +
                "], hive_partitioning = true)";
    }
    mode = lake::WriteMode::kOverwrite;
  }
  // Compare-and-swap on the version this run read: an overlapping run of the source loses.
  std::optional<int64_t> expected = table_ ? table_->current_version : 0;
  return CopyAndCommit(ref_, select, mode, expected, before_commit, std::move(staged));
}

Result<lake::Snapshot> Run::CommitRejected(const BeforeCommit& before_commit) {
  // One row per rejected record (DuckDB may report several errors for one CSV line).
  std::string select =
      "SELECT CAST(source_file AS VARCHAR) AS source_file, CAST(any_value(line) AS BIGINT) AS "
      "line, CAST(any_value(source_key) AS VARCHAR) AS source_key, CAST(string_agg(DISTINCT "
      "reason, '; ' ORDER BY reason) AS VARCHAR) AS reason, CAST(any_value(record) AS VARCHAR) AS "
      "record, " +
      Ts() + " AS " + kLoadedAt + ", " + QuoteLiteral(batch_id_) + " AS " + kBatchId + ", CAST(" +
      Ts() + " AS DATE) AS " + kLoadDate + " FROM " + schema_ +
      ".rej GROUP BY source_file, grp ORDER BY source_file, grp";
  return CopyAndCommit(rejected_ref_, select, lake::WriteMode::kAppend, std::nullopt,
                       before_commit);
}

Result<LoadResult> Run::RunFiles() {
  LoadResult result;
  result.batch_id = batch_id_;
  overwrite_ = options_.full_refresh;
  PhaseTimer timer(spec_.name);
  ASSIGN_OR_RETURN(auto files, ListFiles());
  timer.Lap("list and hash " + std::to_string(files.size()) + " files");
  std::vector<InputFile> fresh;
  for (auto& f : files) {
    ASSIGN_OR_RETURN(auto seen, catalog_->Query("SELECT 1 FROM ingest_files WHERE source = ? AND "
                                                "path = ? AND sha256 = ? AND write_id IS NOT NULL",
                                                {spec_.name, f.shown, f.sha256}));
    if (!seen.empty() && !options_.full_refresh) {
      ++result.files_skipped;
      continue;
    }
    fresh.push_back(std::move(f));
  }
  if (fresh.empty()) return result;
  std::vector<Part> parts;
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSIGN_OR_RETURN(Part p, SniffFile(fresh[i], i));
    parts.push_back(std::move(p));
  }
  RETURN_IF_ERROR(PlanSchema(parts));
  timer.Lap("sniff and plan");
  // Parts already typed as the table wants are streamed into the data write (never committed
  // when a later check fails: ~Run aborts it); the others go through <schema>.good.
  ASSIGN_OR_RETURN(lake::Staging staging, lake_->BeginWrite(ref_));
  staging_ = std::move(staging);
  if (staging_->local_dir.empty()) {  // not a local store: CopyAndCommit says so
    (void)lake_->AbortWrite(*staging_);
    staging_.reset();
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    if (staging_ && Streamable(p)) {
      RETURN_IF_ERROR(StreamPart(p, i));
      timer.Lap("stream '" + p.origin + "'");
    } else {
      RETURN_IF_ERROR(ReadPart(p));
      RETURN_IF_ERROR(TypePart(p, "NULL"));
      timer.Lap("read and type '" + p.origin + "'");
    }
  }
  RETURN_IF_ERROR(CheckShare());
  timer.Lap("check share");

  // Commit: the data, then the rejects, then the file records. The records are first written
  // as "pending" naming the lake write (just before its commit point), so a crash after the
  // commit is settled by the next run (SettlePending) instead of loading the files twice.
  auto record_pending = [&](const std::string& write_id) -> Status {
    ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
    for (const auto& f : fresh) {
      RETURN_IF_ERROR(
          txn->Exec("INSERT INTO ingest_files (source, path, sha256, size, pending_write_id, "
                    "pending_batch_id, pending_loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (source, path, sha256) DO UPDATE SET pending_write_id = "
                    "excluded.pending_write_id, pending_batch_id = excluded.pending_batch_id, "
                    "pending_loaded_at = excluded.pending_loaded_at",
                    {spec_.name, f.shown, f.sha256, f.size, write_id, batch_id_, now_}));
    }
    return txn->Commit();
  };
  auto drop_pending = [&](const std::string& write_id) {
    (void)catalog_->Exec(
        "DELETE FROM ingest_files WHERE source = ? AND pending_write_id = ? AND "
        "write_id IS NULL",
        {spec_.name, write_id});
    (void)catalog_->Exec(
        "UPDATE ingest_files SET pending_write_id = NULL WHERE source = ? AND "
        "pending_write_id = ?",
        {spec_.name, write_id});
  };
  std::string intent;  // the write the records are pending on
  auto remember = [&](const std::string& write_id) -> Status {
    intent = write_id;
    return record_pending(write_id);
  };
  std::optional<lake::Snapshot> data;
  if (good_ > 0) {
    std::optional<lake::Staging> staged = std::move(staging_);
    staging_.reset();  // CopyAndCommit owns it now (commits or aborts it)
    auto snap = CommitData(overwrite_, remember, std::move(staged));
    if (!snap.ok()) {
      if (!intent.empty()) drop_pending(intent);
      return snap.status();
    }
    data = *snap;
    timer.Lap("commit data");
  }
  if (rejected_ > 0) {
    // The data is committed: a failure here loses only the rejects report of this batch.
    auto rej = CommitRejected(data ? BeforeCommit() : BeforeCommit(remember));
    if (!rej.ok()) {
      if (!data) {
        if (!intent.empty()) drop_pending(intent);
        return rej.status();
      }
      spdlog::error("ingest {}: committing rejected rows failed (data committed): {}", spec_.name,
                    rej.status().ToString());
    } else {
      result.rejected_snapshot_version = rej->version;
    }
  }
  if (intent.empty()) {
    // Nothing to commit (empty files): record them as loaded directly.
    intent = "none-" + NewUuid();
    RETURN_IF_ERROR(record_pending(intent));
  }
  ASSIGN_OR_RETURN(auto txn, catalog_->Begin());
  RETURN_IF_ERROR(
      txn->Exec("UPDATE ingest_files SET write_id = pending_write_id, batch_id = pending_batch_id, "
                "loaded_at = pending_loaded_at, pending_write_id = NULL WHERE source = ? AND "
                "pending_write_id = ?",
                {spec_.name, intent}));
  if (options_.full_refresh && data) {
    // The overwrite replaced every earlier load: forget files no longer matched.
    std::set<std::string> keep;
    for (const auto& f : fresh) keep.insert(f.shown + "\n" + f.sha256);
    ASSIGN_OR_RETURN(auto all, txn->Query("SELECT path, sha256 FROM ingest_files WHERE source = ?",
                                          {spec_.name}));
    for (size_t i = 0; i < all.size(); ++i) {
      if (!keep.count(all.Text(i, 0) + "\n" + all.Text(i, 1))) {
        RETURN_IF_ERROR(
            txn->Exec("DELETE FROM ingest_files WHERE source = ? AND path = ? AND "
                      "sha256 = ?",
                      {spec_.name, all.Text(i, 0), all.Text(i, 1)}));
      }
    }
  }
  RETURN_IF_ERROR(txn->Commit());
  timer.Lap("commit rejects and file records");
  result.rows_loaded = good_;
  result.rows_rejected = rejected_;
  result.files_loaded = static_cast<int64_t>(fresh.size());
  result.snapshot_version = data ? data->version : 0;
  result.schema_evolved = evolved_;
  return result;
}

// ---- databases ----------------------------------------------------------------------------------

// Decides a cursor kind left open by the definition from the values of `values_sql` (a query with
// one text column `v`), then checks the lookback against it.
Status Run::DecideCursor(const std::string& values_sql) {
  const std::string v = "v";
  ASSIGN_OR_RETURN(auto r, Rows("SELECT count(v), count(" + internal::TextTimestampSql(v) +
                                "), max(TRY_CAST(v AS DOUBLE)) FROM (" + values_sql + ")"));
  const auto& row = r.at(0).as_array();
  std::optional<double> max_number;
  if (!row.at(2).is_null()) max_number = row.at(2).to_number<double>();
  ASSIGN_OR_RETURN(cursor_, internal::DecideCursor(spec_, cursor_, JsonInt(row.at(0)),
                                                   JsonInt(row.at(1)), max_number));
  return internal::CheckLookback(spec_, cursor_);
}

Result<LoadResult> Run::RunDb() {
  LoadResult result;
  result.batch_id = batch_id_;
  const bool incremental = !spec_.cursor.empty() && !options_.full_refresh;
  overwrite_ = !incremental;

  // Connect (credentials resolved here only, and masked out of every message).
  std::unique_ptr<internal::DbReader> reader;
  if (spec_.type == SourceType::kSqlite) {
    ASSIGN_OR_RETURN(internal::Resolved db, internal::ResolveEnv(spec_.database, "database"));
    secrets_.insert(secrets_.end(), db.secrets.begin(), db.secrets.end());
    std::filesystem::path path(db.text);
    if (path.is_relative()) path = project_dir_ / path;
    ASSIGN_OR_RETURN(reader, internal::OpenSqlite(path, spec_.table, spec_.query));
  } else {
    ASSIGN_OR_RETURN(internal::Resolved dsn, internal::ResolveEnv(spec_.dsn, "dsn"));
    secrets_.insert(secrets_.end(), dsn.secrets.begin(), dsn.secrets.end());
    ASSIGN_OR_RETURN(
        reader, internal::OpenPostgres(dsn.text, spec_.table, spec_.query,
                                       {spec_.connect_timeout_ms, spec_.statement_timeout_ms}));
  }
  Part p;
  p.table = schema_ + ".f_0";
  for (auto c : reader->Columns()) {
    const Column* fixed = Find(declared_, c.name);
    if (fixed) c.type = fixed->type;
    p.columns.push_back(c);
  }
  for (const auto& c : p.columns) {
    if (c.name == kLoadedAt || c.name == kBatchId || c.name == kLoadDate || c.name == "_ord") {
      return InvalidArgument("the source has a column named '" + c.name +
                             "', which ingest reserves");
    }
  }
  std::vector<std::string> key_cols = spec_.key;
  if (!spec_.cursor.empty()) {
    if (!Find(p.columns, spec_.cursor)) {
      return InvalidArgument(spec_.file_name + ": cursor column '" + spec_.cursor +
                             "' is not in the source");
    }
    for (const auto& k : key_cols) {
      if (!Find(p.columns, k)) {
        return InvalidArgument(spec_.file_name + ": key column '" + k + "' is not in the source");
      }
    }
  }

  // The cursor's type is the table's (or the source's when the table is new).
  ASSIGN_OR_RETURN(auto stored, catalog_->Query("SELECT cursor_value, cursor_type FROM "
                                                "ingest_cursors WHERE source = ? AND "
                                                "cursor_value IS NOT NULL",
                                                {spec_.name}));
  if (!spec_.cursor.empty()) {
    const auto* in_table = table_ ? Find(table_->schema, spec_.cursor) : nullptr;
    const std::string column_type = in_table ? in_table->type : Find(p.columns, spec_.cursor)->type;
    std::optional<std::string> stored_type;
    if (!stored.empty() && table_) stored_type = stored.Text(0, 1);
    ASSIGN_OR_RETURN(cursor_, internal::PlanCursor(spec_, column_type, stored_type));
    if (stored_type) {
      // The stored value is normalised when it was recorded with this plan's kind; a cursor
      // recorded in the column's own type (before kinds existed) is normalised here.
      const std::string lit = QuoteLiteral(stored.Text(0, 0));
      const bool raw =
          *stored_type != internal::StoredCursorType(cursor_) && *stored_type == column_type;
      if (!cursor_.decided) {
        RETURN_IF_ERROR(DecideCursor("SELECT CAST(" + lit + " AS VARCHAR) AS v"));
      }
      const std::string expr = raw ? CursorSql("TRY_CAST(" + lit + " AS " + column_type + ")")
                                   : "TRY_CAST(" + lit + " AS " + cursor_.type + ")";
      ASSIGN_OR_RETURN(auto v, Rows("SELECT CAST(" + expr + " AS VARCHAR)"));
      if (v.at(0).as_array().at(0).is_null()) {
        return InvalidArgument(spec_.file_name + ": the stored cursor '" + stored.Text(0, 0) +
                               "' of column '" + spec_.cursor + "' does not read as " +
                               std::string(internal::CursorKindName(cursor_.kind)) +
                               ": load it again with `lakeloop run source " + spec_.name +
                               " --full-refresh`");
      }
      cursor_before_ = JsonText(v.at(0).as_array().at(0));
      result.cursor_before = *cursor_before_;
    }
    cursor_type_ = cursor_.type;
    if (cursor_.decided) RETURN_IF_ERROR(internal::CheckLookback(spec_, cursor_));
  }
  if (incremental && cursor_before_) {
    std::string base = "CAST(" + QuoteLiteral(*cursor_before_) + " AS " + cursor_type_ + ")";
    std::string expr = base;
    if (spec_.lookback) {
      const Lookback& lb = *spec_.lookback;
      expr = lb.is_duration ? "CAST(" + base + " - to_microseconds(" + std::to_string(lb.micros) +
                                  ") AS " + cursor_type_ + ")"
                            : base + " - " + std::to_string(lb.number);
    }
    auto lower = Rows("SELECT CAST(" + expr + " AS VARCHAR)");
    if (!lower.ok()) {
      return InvalidArgument(
          spec_.file_name + ": lookback '" + (spec_.lookback ? spec_.lookback->text : "") +
          "' does not fit cursor column '" + spec_.cursor + "' of type " + cursor_type_ + ": " +
          lower.status().message().substr(0, lower.status().message().find('\n')));
    }
    lower_ = JsonText(lower->at(0).as_array().at(0));
  }

  // Extract to a spool file, then read it as text (typed below).
  std::error_code ec;
  std::filesystem::path scratch = ingest_options_.scratch_dir.empty()
                                      ? std::filesystem::temp_directory_path(ec)
                                      : ingest_options_.scratch_dir;
  spool_ = scratch / ("lakeloop-ingest-" + NewUuid());
  std::filesystem::create_directories(spool_, ec);
  if (ec) return IoError("create spool folder: " + ec.message());
  std::filesystem::path csv = spool_ / "extract.csv";
  // Push the lower bound down in the source's own terms (a superset; typed rows are filtered
  // exactly by the normalised cursor below).
  std::string push_type = cursor_.column_type;
  std::optional<std::string> push_lower = lower_;
  if (lower_ && cursor_.kind == internal::CursorKind::kTextTimestamp) {
    push_type = "TIMESTAMP";  // sqlite: julianday(); postgres text has no safe comparison
    if (spec_.type == SourceType::kPostgres) push_lower.reset();
  } else if (lower_ && (cursor_.kind == internal::CursorKind::kUnixSeconds ||
                        cursor_.kind == internal::CursorKind::kUnixMillis)) {
    const char* div = cursor_.kind == internal::CursorKind::kUnixSeconds ? "1000" : "1";
    ASSIGN_OR_RETURN(auto b, Rows("SELECT CAST(floor(epoch_ms(CAST(" + QuoteLiteral(*lower_) +
                                  " AS TIMESTAMP)) / " + div + ") - 1 AS BIGINT)"));
    push_type = "BIGINT";
    push_lower = std::to_string(JsonInt(b.at(0).as_array().at(0)));
  } else if (lower_ && cursor_.kind == internal::CursorKind::kInteger) {
    push_lower.reset();  // numbers stored as text do not compare as numbers at the source
  }
  RETURN_IF_ERROR(reader->ExtractCsv(spec_.cursor, push_type, push_lower, csv).status());
  reader.reset();  // release the source connection before the (longer) lake work
  std::string columns;
  for (const auto& c : p.columns) {
    columns += (columns.empty() ? "" : ", ") + QuoteLiteral(c.name) + ": 'VARCHAR'";
  }
  std::error_code size_ec;
  const auto spool_size = static_cast<int64_t>(std::filesystem::file_size(csv, size_ec));
  RETURN_IF_ERROR(Exec("CREATE TABLE " + p.table +
                       " AS SELECT *, row_number() OVER () AS _ord FROM read_csv(" +
                       QuoteLiteral(csv.string()) + ", columns = {" + columns +
                       "}, header = true, auto_detect = false, delim = ',', quote = '\"', "
                       "escape = '\"', allow_quoted_nulls = false, " +
                       LongLineOptions(size_ec ? 100'000'000 : spool_size) + ")"));
  // New columns take the source's mapped (or declared) types; the part itself is text, typed to
  // the table's types by TypePart.
  RETURN_IF_ERROR(PlanSchema({p}));
  if (!spec_.cursor.empty() && !cursor_.decided) {
    RETURN_IF_ERROR(
        DecideCursor("SELECT " + QuoteIdentifier(spec_.cursor) + " AS v FROM " + p.table));
    cursor_type_ = cursor_.type;
  }
  for (auto& c : p.columns) c.type = "VARCHAR";
  if (key_cols.empty() && !spec_.cursor.empty()) key_cols.push_back(spec_.cursor);
  std::string key_expr = "NULL";
  if (!key_cols.empty()) {
    key_expr = "concat_ws(', '";
    for (const auto& k : key_cols) {
      // The typed value where it converts (a timestamp reads as the table shows it).
      const Column* t = Find(target_, k);
      std::string q = QuoteIdentifier(k);
      key_expr += ", " + QuoteLiteral(k + "=") + " || coalesce(CAST(TRY_CAST(" + q + " AS " +
                  (t ? t->type : std::string("VARCHAR")) + ") AS VARCHAR), " + q + ", 'NULL')";
    }
    key_expr += ")";
  }
  ASSIGN_OR_RETURN(auto n, Rows("SELECT count(*) FROM " + p.table));
  p.rows = JsonInt(n.at(0).as_array().at(0));
  RETURN_IF_ERROR(TypePart(p, key_expr));
  RETURN_IF_ERROR(Exec("DELETE FROM " + schema_ + ".good WHERE NOT _cursor_ok"));

  // De-duplicate against what the table already holds above the lower bound: rows with the same
  // key and cursor value were loaded by an earlier run (the lookback window re-reads them; a crash
  // between a commit and its cursor update re-reads them too).
  if (incremental && lower_ && table_) {
    ASSIGN_OR_RETURN(auto files, lake_->SnapshotFiles(ref_));
    if (!files.empty()) {
      std::vector<std::string> match = spec_.key;
      if (match.empty()) {
        for (const auto& c : target_) {
          if (Find(table_->schema, c.name)) match.push_back(c.name);
        }
      }
      if (std::find(match.begin(), match.end(), spec_.cursor) == match.end()) {
        match.push_back(spec_.cursor);
      }
      std::string list, on, sel;
      for (const auto& f : files) {
        list += (list.empty() ? "" : ", ") + QuoteLiteral(lake_->store()->Locate(f.key));
      }
      for (const auto& m : match) {
        sel += (sel.empty() ? "" : ", ") + QuoteIdentifier(m);
        on += (on.empty() ? "" : " AND ") + std::string("o.") + QuoteIdentifier(m) +
              " IS NOT DISTINCT FROM g." + QuoteIdentifier(m);
      }
      ASSIGN_OR_RETURN(auto before, Rows("SELECT count(*) FROM " + schema_ + ".good"));
      RETURN_IF_ERROR(Exec("CREATE TABLE " + schema_ + ".seen AS SELECT DISTINCT " + sel +
                           " FROM read_parquet([" + list + "], hive_partitioning = false) WHERE " +
                           CursorSql(QuoteIdentifier(spec_.cursor)) + " > CAST(" +
                           QuoteLiteral(*lower_) + " AS " + cursor_type_ + ");\n" + "DELETE FROM " +
                           schema_ + ".good g WHERE EXISTS (SELECT 1 FROM " + schema_ +
                           ".seen o WHERE " + on + ")"));
      ASSIGN_OR_RETURN(auto after, Rows("SELECT count(*) FROM " + schema_ + ".good"));
      deduplicated_ =
          JsonInt(before.at(0).as_array().at(0)) - JsonInt(after.at(0).as_array().at(0));
    }
  }
  RETURN_IF_ERROR(CheckShare());

  // The new cursor: the largest cursor read (loaded or rejected: a rejected row is reported once,
  // not on every run), never below the stored one.
  std::optional<std::string> cursor_after = cursor_before_;
  if (!spec_.cursor.empty()) {
    ASSIGN_OR_RETURN(auto m, Rows("SELECT CAST(max(" + CursorSql(QuoteIdentifier(spec_.cursor)) +
                                  ") AS VARCHAR) FROM " + schema_ + ".t"));
    const auto& v = m.at(0).as_array().at(0);
    if (!v.is_null()) {
      std::string mx = JsonText(v);
      if (!cursor_before_ || options_.full_refresh) {
        cursor_after = mx;
      } else {
        ASSIGN_OR_RETURN(auto g, Rows("SELECT CAST(greatest(CAST(" + QuoteLiteral(*cursor_before_) +
                                      " AS " + cursor_type_ + "), CAST(" + QuoteLiteral(mx) +
                                      " AS " + cursor_type_ + ")) AS VARCHAR)"));
        cursor_after = JsonText(g.at(0).as_array().at(0));
      }
    }
  }
  result.cursor_after = cursor_after.value_or("");
  result.rows_loaded = good_;
  result.rows_rejected = rejected_;
  result.rows_deduplicated = deduplicated_;
  if (good_ == 0 && rejected_ == 0) return result;

  // Commit the data (or, without rows, the rejects), then the cursor. The cursor is first
  // recorded as pending on the lake write just before its commit point: a crash after the commit
  // is settled next run; the key de-duplication above is the second line of defence.
  const bool move_cursor = !spec_.cursor.empty() && cursor_after && cursor_after != cursor_before_;
  std::string intent;
  auto remember = [&](const std::string& write_id) -> Status {
    if (!move_cursor) return Status::Ok();
    intent = write_id;
    return catalog_->Exec(
        "INSERT INTO ingest_cursors (source, pending_value, pending_type, pending_updated_at, "
        "pending_write_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
        "pending_value = excluded.pending_value, pending_type = excluded.pending_type, "
        "pending_updated_at = excluded.pending_updated_at, pending_write_id = "
        "excluded.pending_write_id",
        {spec_.name, *cursor_after, internal::StoredCursorType(cursor_), now_, write_id});
  };
  auto drop_intent = [&]() {
    if (!intent.empty()) {
      (void)catalog_->Exec("UPDATE ingest_cursors SET pending_write_id = NULL WHERE source = ?",
                           {spec_.name});
    }
  };
  std::optional<lake::Snapshot> data;
  if (good_ > 0) {
    auto snap = CommitData(overwrite_, remember);
    if (!snap.ok()) {
      drop_intent();
      return snap.status();
    }
    data = *snap;
    result.snapshot_version = snap->version;
    result.schema_evolved = evolved_;
  }
  if (rejected_ > 0) {
    auto rej = CommitRejected(data ? BeforeCommit() : BeforeCommit(remember));
    if (!rej.ok()) {
      if (!data) {
        drop_intent();
        return rej.status();
      }
      spdlog::error("ingest {}: committing rejected rows failed (data committed): {}", spec_.name,
                    internal::Mask(rej.status(), secrets_).ToString());
    } else {
      result.rejected_snapshot_version = rej->version;
    }
  }
  CrashPoint("ingest.before_cursor");
  if (!intent.empty()) {
    RETURN_IF_ERROR(catalog_->Exec(
        "UPDATE ingest_cursors SET cursor_value = pending_value, cursor_type = pending_type, "
        "updated_at = pending_updated_at, pending_write_id = NULL WHERE source = ? AND "
        "pending_write_id = ?",
        {spec_.name, intent}));
  }
  return result;
}

}  // namespace

// ---- Ingestor -----------------------------------------------------------------------------------

Ingestor::Ingestor(sql::Engine* engine, lake::Lake* lake, catalog::Store* catalog,
                   std::filesystem::path project_dir, IngestorOptions options)
    : engine_(engine),
      lake_(lake),
      catalog_(catalog),
      project_dir_(std::move(project_dir)),
      options_(std::move(options)) {}

std::vector<catalog::Migration> Ingestor::Migrations() {
  return {{"ingest", 1,
           "CREATE TABLE ingest_files ("
           " source TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,"
           " size BIGINT NOT NULL, batch_id TEXT, write_id TEXT, loaded_at BIGINT,"
           " pending_write_id TEXT, pending_batch_id TEXT, pending_loaded_at BIGINT,"
           " PRIMARY KEY (source, path, sha256));"
           "CREATE TABLE ingest_cursors ("
           " source TEXT PRIMARY KEY, cursor_value TEXT, cursor_type TEXT, updated_at BIGINT,"
           " pending_value TEXT, pending_type TEXT, pending_updated_at BIGINT,"
           " pending_write_id TEXT)"}};
}

Result<LoadResult> Ingestor::Run(const SourceSpec& spec, const RunOptions& options) {
  class Run run(engine_, lake_, catalog_, project_dir_, options_, spec, options);
  return run.Go();
}

Result<std::optional<std::string>> Ingestor::Cursor(const std::string& source) {
  ASSIGN_OR_RETURN(auto r, catalog_->Query("SELECT cursor_value FROM ingest_cursors WHERE source "
                                           "= ? AND cursor_value IS NOT NULL",
                                           {source}));
  if (r.empty()) return std::optional<std::string>();
  return std::optional<std::string>(r.Text(0, 0));
}

}  // namespace lakeloop::ingest
