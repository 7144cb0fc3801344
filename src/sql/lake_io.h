// sql/lake_io: the engine's two faces towards the lake. LakeViews keeps the sandboxed engine's
// views equal to the committed snapshots (<zone>.<table> for the current one,
// <zone>_snapshots.<table>_v<N> for every snapshot still retained: time travel). LoadFile turns a
// CSV / JSON-lines / Parquet file into a lake commit through an internal (unsandboxed) engine.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "lake/lake.h"
#include "sql/sql.h"
#include "sql/upload_limits.h"

namespace lakeloop::sql {

// Thread-safe (the engine is; refreshes of one table are serialised by the lake's commit order).
class LakeViews {
 public:
  LakeViews(Engine* engine, lake::Lake* lake) : engine_(engine), lake_(lake) {}
  // Creates every view from the catalog, then follows commits (registers a lake listener).
  Status Attach();
  // Re-creates the views of one table from the catalog.
  Status Refresh(const lake::TableInfo& table);

  static std::string SnapshotSchema(const std::string& zone) { return zone + "_snapshots"; }
  static std::string SnapshotView(const std::string& table, int64_t version) {
    return table + "_v" + std::to_string(version);
  }

 private:
  Engine* engine_;
  lake::Lake* lake_;
};

enum class FileFormat { kCsv, kJson, kParquet };
Result<FileFormat> ParseFileFormat(std::string_view name);  // csv | json | ndjson | jsonl | parquet
// From a file name's extension; kInvalidArgument when it says nothing known.
Result<FileFormat> FileFormatFromPath(const std::filesystem::path& path);

struct LoadRequest {
  lake::TableRef table;
  std::filesystem::path file;
  FileFormat format = FileFormat::kCsv;
  lake::WriteMode mode = lake::WriteMode::kAppend;
  std::optional<int64_t> expected_version;
  // Interrupts the load when set (the client went away); each query also has the loader
  // engine's time limit (EngineOptions::max_query_ms).
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Longest CSV record / JSON line DuckDB accepts (read_csv max_line_size).
  int64_t max_line_bytes = 8 << 20;
};

// Reads `file` with `loader` (an unsandboxed engine), writes it as Parquet into a staging folder
// and commits it. A file that does not parse gives kInvalidArgument naming the format and DuckDB's
// reason; nothing is committed on any error.
Result<lake::Snapshot> LoadFile(Engine& loader, lake::Lake& lake, const LoadRequest& request);

// The upload path of a table commit: checks `data` against `limits` before DuckDB sees it
// (kPayloadTooLarge naming the limit), writes it to a file in `scratch_dir`, LoadFile's it, and
// removes the file on every path. `request.file` is ignored.
Result<lake::Snapshot> LoadUpload(Engine& loader, lake::Lake& lake, LoadRequest request,
                                  std::string_view data, const UploadLimits& limits,
                                  const std::filesystem::path& scratch_dir);

}  // namespace lakeloop::sql
