// Test fixture for ingest: a real catalog (SQLite), lake (local files) and internal DuckDB engine
// in a temp directory, with helpers to write inputs and read tables back.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "catalog/catalog.h"
#include "core/json.h"
#include "ingest/ingest.h"
#include "lake/lake.h"
#include "sql/sql.h"

namespace lakeloop::ingest {

class IngestFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    root_ = std::filesystem::temp_directory_path() /
            ("ingest-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(root_);
    project_ = root_ / "project";
    std::filesystem::create_directories(project_);
    auto store = catalog::OpenSqlite(root_ / "catalog.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    catalog_ = std::move(store).value();
    auto migrations = lake::Lake::Migrations();
    for (auto& m : Ingestor::Migrations()) migrations.push_back(m);
    ASSERT_TRUE(catalog::Migrate(*catalog_, migrations).ok());
    objects_ = lake::NewLocalObjectStore(root_ / "lake");
    lake_ = std::make_unique<lake::Lake>(objects_.get(), catalog_.get(), lake::LakeOptions{});
    sql::EngineOptions eo;
    eo.sandboxed = false;
    eo.scratch_dir = root_ / "scratch";
    auto engine = sql::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    IngestorOptions io;
    io.scratch_dir = root_ / "spool";
    std::filesystem::create_directories(io.scratch_dir);
    ingestor_ =
        std::make_unique<Ingestor>(engine_.get(), lake_.get(), catalog_.get(), project_, io);
  }

  void TearDown() override {
    ingestor_.reset();
    engine_.reset();
    lake_.reset();
    catalog_.reset();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  void Write(const std::string& rel, const std::string& text) {
    auto p = project_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  }

  SourceSpec Spec(const std::string& yaml, const std::string& name = "sources/orders.yaml") {
    auto s = ParseSource(yaml, name);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : SourceSpec{};
  }

  Result<LoadResult> RunSource(const SourceSpec& spec, bool full_refresh = false,
                               const std::string& batch = "") {
    RunOptions o;
    o.batch_id = batch;
    o.full_refresh = full_refresh;
    return ingestor_->Run(spec, o);
  }

  // read_parquet over the current snapshot of zone.table (with the hive partition column).
  std::string From(const std::string& table) {
    auto files = lake_->SnapshotFiles({"raw", table});
    EXPECT_TRUE(files.ok()) << files.status().ToString();
    std::string list;
    for (const auto& f : *files) {
      list += (list.empty() ? "" : ", ") + sql::QuoteLiteral(objects_->Locate(f.key));
    }
    return "read_parquet([" + list + "], hive_partitioning = true, union_by_name = true)";
  }

  // Rows of a query as JSON arrays.
  boost::json::array Query(const std::string& sql) {
    sql::QueryRequest q;
    q.sql = sql;
    q.timeout_ms = 0;
    auto r = engine_->Run(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString() << "\n" << sql;
    if (!r.ok()) return {};
    auto o = ParseJsonObject(r->body);
    return o->at("rows").as_array();
  }

  int64_t Count(const std::string& table) {
    auto rows = Query("SELECT count(*) FROM " + From(table));
    return rows.empty() ? -1 : rows.at(0).as_array().at(0).to_number<int64_t>();
  }

  int64_t Version(const std::string& table) {
    auto t = lake_->GetTable({"raw", table});
    return t.ok() ? t->current_version : 0;
  }

  std::filesystem::path root_, project_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<lake::ObjectStore> objects_;
  std::unique_ptr<lake::Lake> lake_;
  std::unique_ptr<sql::Engine> engine_;
  std::unique_ptr<Ingestor> ingestor_;
};

}  // namespace lakeloop::ingest
