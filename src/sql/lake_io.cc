#include "sql/lake_io.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <fstream>

#include "core/ids.h"
#include "core/json.h"

namespace lakeloop::sql {

namespace {
std::vector<Column> ToSql(const std::vector<lake::Column>& in) {
  std::vector<Column> out;
  for (const auto& c : in) out.push_back({c.name, c.type});
  return out;
}
}  // namespace

Status LakeViews::Attach() {
  ASSIGN_OR_RETURN(auto tables, lake_->ListTables());
  for (const auto& t : tables) RETURN_IF_ERROR(Refresh(t));
  lake_->AddCommitListener([this](const lake::TableInfo& t) {
    Status s = Refresh(t);
    if (!s.ok()) spdlog::error("sql: refreshing views of {}: {}", t.ref.ToString(), s.ToString());
  });
  return Status::Ok();
}

Status LakeViews::Refresh(const lake::TableInfo& t) {
  ViewOptions opts;
  opts.hive_partitioning = !t.partition_by.empty();
  auto locate = [&](const std::vector<lake::DataFile>& files) {
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(lake_->store()->Locate(f.key));
    return paths;
  };
  // The current view first: a snapshot view that cannot be built must not leave it stale.
  ASSIGN_OR_RETURN(auto current, lake_->SnapshotFiles(t.ref));
  RETURN_IF_ERROR(
      engine_->ReplaceView(t.ref.zone, t.ref.name, locate(current), ToSql(t.schema), opts));
  ASSIGN_OR_RETURN(auto snaps, lake_->ListSnapshots(t.ref));
  Status first_error;
  for (const auto& s : snaps) {
    std::string schema = SnapshotSchema(t.ref.zone);
    std::string view = SnapshotView(t.ref.name, s.version);
    Status st;
    if (s.expired) {
      st = engine_->DropView(schema, view);
    } else {
      auto files = lake_->SnapshotFiles(t.ref, s.version);
      st = files.ok() ? engine_->ReplaceView(schema, view, locate(*files), ToSql(s.schema), opts)
                      : files.status();
    }
    if (!st.ok() && first_error.ok()) {
      first_error = st.WithContext(schema + "." + view);
    }
  }
  return first_error;
}

Result<FileFormat> ParseFileFormat(std::string_view name) {
  if (name == "csv") return FileFormat::kCsv;
  if (name == "json" || name == "ndjson" || name == "jsonl") return FileFormat::kJson;
  if (name == "parquet") return FileFormat::kParquet;
  return InvalidArgument("format must be csv, json (JSON lines) or parquet, not '" +
                         std::string(name) + "'");
}

Result<FileFormat> FileFormatFromPath(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  if (!ext.empty()) ext = ext.substr(1);
  for (char& c : ext) c = static_cast<char>(std::tolower(c));
  auto f = ParseFileFormat(ext);
  if (!f.ok()) {
    return InvalidArgument("cannot tell the format of '" + path.filename().string() +
                           "' from its extension; give --format csv|json|parquet");
  }
  return f;
}

Result<lake::Snapshot> LoadFile(Engine& loader, lake::Lake& lake, const LoadRequest& req) {
  std::string src = QuoteLiteral(req.file.string());
  std::string reader;
  std::string what;
  switch (req.format) {
    case FileFormat::kCsv:
      reader = "read_csv(" + src + ", header = true, auto_detect = true, max_line_size = " +
               std::to_string(std::max<int64_t>(req.max_line_bytes + 2, 2 << 20)) + ")";
      what = "CSV";
      break;
    case FileFormat::kJson:
      reader = "read_json(" + src + ", format = 'auto', maximum_object_size = " +
               std::to_string(std::max<int64_t>(req.max_line_bytes + 2, 16 << 20)) + ")";
      what = "JSON";
      break;
    case FileFormat::kParquet:
      reader = "read_parquet(" + src + ")";
      what = "Parquet";
      break;
  }
  ASSIGN_OR_RETURN(lake::Staging staging, lake.BeginWrite(req.table));
  auto fail = [&](Status s) -> Status {
    Status aborted = lake.AbortWrite(staging);
    if (!aborted.ok()) spdlog::warn("lake: abort write: {}", aborted.ToString());
    return s;
  };
  const std::string name = "data_0.parquet";
  std::string out = QuoteLiteral((staging.local_dir / name).string());
  ExecOptions exec;
  exec.cancelled = req.cancelled;
  Status copied = loader.Exec(
      "COPY (SELECT * FROM " + reader + ") TO " + out + " (FORMAT parquet, COMPRESSION zstd)",
      exec);
  if (copied.code() == Code::kDeadlineExceeded || copied.code() == Code::kCancelled ||
      copied.code() == Code::kUnavailable || copied.code() == Code::kResourceExhausted) {
    return fail(copied);
  }
  if (!copied.ok()) {
    return fail(InvalidArgument("could not read the " + what + " data: " + copied.message()));
  }
  auto columns = loader.Describe("SELECT * FROM read_parquet(" + out + ")");
  if (!columns.ok()) return fail(columns.status());
  if (columns->empty()) return fail(InvalidArgument("the " + what + " data has no columns"));
  QueryRequest count;
  count.sql =
      "SELECT CAST(COALESCE(SUM(num_rows), 0) AS BIGINT) FROM parquet_file_metadata(" + out + ")";
  count.timeout_ms = 0;  // the loader's cap applies
  count.cancelled = req.cancelled;
  auto reply = loader.Run(count);
  if (!reply.ok()) return fail(reply.status());
  auto parsed = ParseJsonObject(reply->body);
  if (!parsed.ok()) return fail(Internal("row count reply: " + parsed.status().message()));
  const auto& cell = parsed->at("rows").as_array().at(0).as_array().at(0);
  int64_t rows = cell.is_int64() ? cell.as_int64() : std::stoll(std::string(cell.as_string()));

  lake::CommitRequest commit;
  commit.staging = staging;
  commit.mode = req.mode;
  commit.files.push_back({name, rows});
  for (const auto& c : *columns) commit.schema.push_back({c.name, c.type});
  commit.expected_version = req.expected_version;
  auto snap = lake.Commit(commit);
  if (!snap.ok()) return fail(snap.status());
  return snap;
}

}  // namespace lakeloop::sql

namespace lakeloop::sql {

Result<lake::Snapshot> LoadUpload(Engine& loader, lake::Lake& lake, LoadRequest request,
                                  std::string_view data, const UploadLimits& limits,
                                  const std::filesystem::path& scratch_dir) {
  if (data.empty()) return InvalidArgument("the request body (the data to commit) is empty");
  switch (request.format) {
    case FileFormat::kCsv:
      RETURN_IF_ERROR(CheckCsvUpload(data, limits));
      break;
    case FileFormat::kJson:
      RETURN_IF_ERROR(CheckJsonUpload(data, limits));
      break;
    case FileFormat::kParquet:
      RETURN_IF_ERROR(CheckParquetUpload(data, limits));
      break;
  }
  static constexpr const char* kExt[] = {"csv", "json", "parquet"};
  ScratchFile upload;
  upload.path =
      scratch_dir / ("upload-" + NewUuid() + "." + kExt[static_cast<int>(request.format)]);
  {
    std::ofstream out(upload.path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) return IoError("could not write the upload to " + upload.path.string());
  }
  request.file = upload.path;
  request.max_line_bytes = limits.max_line_bytes;
  return LoadFile(loader, lake, request);
}

}  // namespace lakeloop::sql
