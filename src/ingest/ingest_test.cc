#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "core/time.h"
#include "ingest/ingest_test_util.h"

namespace lakeloop::ingest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Str(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
}

constexpr const char* kCsvSource = "type: files\npath: landing/orders\nformat: csv\n";

class FilesTest : public IngestFixture {};

TEST_F(FilesTest, FirstRunLoadsAllRerunLoadsNothing) {
  Write("landing/orders/a.csv", "id,name,amount\n1,a,1.5\n2,b,2.5\n");
  Write("landing/orders/b.csv", "id,name,amount\n3,c,3.5\n");
  Write("landing/orders/notes.md", "ignored: wrong extension\n");
  auto spec = Spec(kCsvSource);
  auto r = RunSource(spec, false, "batch-1");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->files_loaded, 2);
  EXPECT_EQ(r->files_skipped, 0);
  EXPECT_EQ(r->rows_rejected, 0);
  EXPECT_EQ(r->snapshot_version, 1);
  EXPECT_EQ(r->batch_id, "batch-1");
  EXPECT_EQ(Count("orders"), 3);

  // _loaded_at (TIMESTAMP, UTC), _batch_id, and the load_date hive folder.
  auto table = lake_->GetTable({"raw", "orders"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->partition_by, std::vector<std::string>{"load_date"});
  std::vector<lake::Column> want = {{"id", "BIGINT"},
                                    {"name", "VARCHAR"},
                                    {"amount", "DOUBLE"},
                                    {"_loaded_at", "TIMESTAMP"},
                                    {"_batch_id", "VARCHAR"}};
  EXPECT_EQ(table->schema, want);
  std::string today = FormatRfc3339(NowMicros()).substr(0, 10);
  auto files = lake_->SnapshotFiles({"raw", "orders"});
  ASSERT_TRUE(files.ok());
  ASSERT_FALSE(files->empty());
  for (const auto& f : *files) EXPECT_THAT(f.key, HasSubstr("/load_date=" + today + "/"));
  auto rows = Query(
      "SELECT DISTINCT _batch_id, CAST(load_date AS VARCHAR), "
      "abs(epoch_us(_loaded_at) - epoch_us(now()::TIMESTAMP)) < 600000000 FROM " +
      From("orders"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(Str(rows[0].as_array()[0]), "batch-1");
  EXPECT_EQ(Str(rows[0].as_array()[1]), today);
  EXPECT_TRUE(rows[0].as_array()[2].as_bool());

  auto again = RunSource(spec);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->rows_loaded, 0);
  EXPECT_EQ(again->files_loaded, 0);
  EXPECT_EQ(again->files_skipped, 2);
  EXPECT_EQ(again->snapshot_version, 0);
  EXPECT_EQ(Version("orders"), 1);
  EXPECT_FALSE(again->batch_id.empty());
}

TEST_F(FilesTest, NewFileLoadsExactlyItsRowsAndRewrittenFileIsNoticed) {
  Write("landing/orders/a.csv", "id,name,amount\n1,a,1.5\n2,b,2.5\n");
  auto spec = Spec(kCsvSource);
  ASSERT_TRUE(RunSource(spec).ok());
  Write("landing/orders/c.csv", "id,name,amount\n10,x,1\n11,y,2\n12,z,3\n");
  auto r = RunSource(spec, false, "b2");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->files_loaded, 1);
  EXPECT_EQ(r->files_skipped, 1);
  EXPECT_EQ(Count("orders"), 5);
  auto ids =
      Query("SELECT list(id ORDER BY id) FROM " + From("orders") + " WHERE _batch_id = 'b2'");
  EXPECT_EQ(Str(ids[0].as_array()[0]), "[10,11,12]");

  // A rewritten file (same name, new content) is loaded again as a new batch; the old rows stay.
  Write("landing/orders/a.csv", "id,name,amount\n1,a,9.5\n2,b,2.5\n3,c,4\n");
  r = RunSource(spec, false, "b3");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 1);
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(Count("orders"), 8);
  // The same content again is not.
  r = RunSource(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->files_loaded, 0);
  // The catalog remembers both versions of a.csv by content hash.
  auto rec = catalog_->Query(
      "SELECT count(*) FROM ingest_files WHERE source = 'orders' AND path = "
      "'landing/orders/a.csv' AND write_id IS NOT NULL");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->Int(0, 0), 2);
}

TEST_F(FilesTest, GlobSelectsFiles) {
  Write("landing/2026/a.csv", "id\n1\n");
  Write("landing/2026/sub/b.csv", "id\n2\n");
  Write("landing/2026/c.txt", "id\n3\n");
  auto spec = Spec("type: files\npath: landing/**/*.csv\n");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 2);
  auto spec2 = Spec("name: only_top\ntype: files\npath: landing/2026/*.csv\n");
  r = RunSource(spec2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 1);
}

TEST_F(FilesTest, CsvBadRowsGoToRejectedWithReasonFileAndLine) {
  Write("landing/orders/a.csv",
        "id,name,amount\n"  // line 1
        "1,a,1.5\n"         // 2
        "2,b,notanumber\n"  // 3: cast error
        "3,c,2.5\n"         // 4
        "4,,3.5\n"          // 5: name is required
        "5,e\n"             // 6: too few columns
        "6,f,4.5\n"         // 7
        "7,g,5.5\n"         // 8
        "8,h,6.5\n");       // 9
  auto spec = Spec(std::string(kCsvSource) +
                   "schema:\n  id: BIGINT\n  amount: DOUBLE\nrequired: [name]\n"
                   "max_rejected_share: 0.5\n");
  auto r = RunSource(spec, false, "bad-batch");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 5);
  EXPECT_EQ(r->rows_rejected, 3);
  EXPECT_GT(r->rejected_snapshot_version, 0);
  EXPECT_EQ(Count("orders"), 5);
  auto rej = Query("SELECT source_file, line, reason, record, _batch_id FROM " +
                   From("orders__rejected") + " ORDER BY line");
  ASSERT_EQ(rej.size(), 3u);
  EXPECT_EQ(Str(rej[0].as_array()[0]), "landing/orders/a.csv");
  EXPECT_EQ(rej[0].as_array()[1].to_number<int64_t>(), 3);
  EXPECT_THAT(Str(rej[0].as_array()[2]), HasSubstr("amount"));
  EXPECT_THAT(Str(rej[0].as_array()[3]), HasSubstr("notanumber"));
  EXPECT_EQ(rej[1].as_array()[1].to_number<int64_t>(), 5);
  EXPECT_THAT(Str(rej[1].as_array()[2]), HasSubstr("required column \"name\""));
  EXPECT_EQ(rej[2].as_array()[1].to_number<int64_t>(), 6);
  EXPECT_THAT(Str(rej[2].as_array()[2]), HasSubstr("Expected Number of Columns"));
  EXPECT_EQ(Str(rej[2].as_array()[4]), "bad-batch");
}

// A file already typed as the table wants is streamed straight into the data write; one whose
// sniffed types differ goes through the typing table. Both land in one commit, with the same
// rejects (required values found by their line) as either path alone.
TEST_F(FilesTest, StreamedAndTypedFilesCommitTogether) {
  Write("landing/orders/a.csv",
        "id,v,w,u\n"   // line 1
        "1,10,x,1\n"   // 2
        "2,11,,1\n"    // 3: w is required
        "3,12,z,1\n"   // 4
        "4,1x,y,1\n"   // 5: cast error (DuckDB's reject)
        "5,14,y,1\n"   // 6
        "6,15,,1\n");  // 7: w is required
  // u sniffs as VARCHAR here (BIGINT in a.csv): this file is typed, not streamed.
  Write("landing/orders/b.csv", "id,v,w,u\n7,16,q,abc\n8,20,r,2\n9,21,,3\n");
  auto spec = Spec(std::string(kCsvSource) +
                   "schema:\n  v: BIGINT\nrequired: [w]\nmax_rejected_share: 0.6\n");
  auto r = RunSource(spec, false, "mixed");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 4);
  EXPECT_EQ(r->rows_rejected, 5);
  EXPECT_EQ(r->snapshot_version, 1);
  auto ids = Query(
      "SELECT list(id ORDER BY id), min(_batch_id), max(_batch_id), "
      "typeof(any_value(v)) FROM " +
      From("orders"));
  EXPECT_EQ(Str(ids[0].as_array()[0]), "[1,3,5,8]");
  EXPECT_EQ(Str(ids[0].as_array()[1]), "mixed");
  EXPECT_EQ(Str(ids[0].as_array()[2]), "mixed");
  EXPECT_EQ(Str(ids[0].as_array()[3]), "BIGINT");
  auto table = lake_->GetTable({"raw", "orders"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->schema.back(), (lake::Column{"_batch_id", "VARCHAR"}));
  auto rej = Query("SELECT source_file, line, reason FROM " + From("orders__rejected") +
                   " ORDER BY source_file, line");
  ASSERT_EQ(rej.size(), 5u);
  EXPECT_EQ(rej[0].as_array()[1].to_number<int64_t>(), 3);
  EXPECT_THAT(Str(rej[0].as_array()[2]), HasSubstr("required column \"w\""));
  EXPECT_EQ(rej[1].as_array()[1].to_number<int64_t>(), 5);
  EXPECT_THAT(Str(rej[1].as_array()[2]), HasSubstr("column \"v\""));
  EXPECT_EQ(rej[2].as_array()[1].to_number<int64_t>(), 7);
  EXPECT_EQ(Str(rej[3].as_array()[0]), "landing/orders/b.csv");
  EXPECT_EQ(rej[3].as_array()[1].to_number<int64_t>(), 2);
  EXPECT_THAT(Str(rej[3].as_array()[2]), HasSubstr("column \"u\": cannot read 'abc' as BIGINT"));
  EXPECT_EQ(rej[4].as_array()[1].to_number<int64_t>(), 4);

  // Over the threshold: the streamed write is abandoned, nothing is committed or recorded.
  Write("landing/orders/c.csv", "id,v,w\n10,1,a\n11,2,\n12,3,\n");
  r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_THAT(r.status().message(), HasSubstr("landing/orders/c.csv:3"));
  EXPECT_EQ(Version("orders"), 1);
  EXPECT_EQ(Count("orders"), 4);
  auto rec = catalog_->Query("SELECT count(*) FROM ingest_files WHERE path LIKE '%c.csv'");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->Int(0, 0), 0);
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root_ / "lake", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    EXPECT_THAT(it->path().string(), Not(HasSubstr("_staging/"))) << "left behind";
  }
}

// Parquet files stream too; a missing required value is found by its row number.
TEST_F(FilesTest, ParquetRequiredValuesByRowNumber) {
  std::filesystem::create_directories(project_ / "landing/pq");
  ASSERT_TRUE(engine_
                  ->Exec("COPY (SELECT range AS id, CASE WHEN range % 3 = 1 THEN NULL ELSE 'n' || "
                         "range END AS name FROM range(6)) TO " +
                         sql::QuoteLiteral((project_ / "landing/pq/p1.parquet").string()) +
                         " (FORMAT parquet)")
                  .ok());
  auto spec = Spec(
      "type: files\npath: landing/pq\nformat: parquet\nrequired: [name]\n"
      "max_rejected_share: 0.5\n",
      "sources/pq.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 4);
  EXPECT_EQ(r->rows_rejected, 2);
  auto rej = Query("SELECT line, record FROM " + From("pq__rejected") + " ORDER BY line");
  ASSERT_EQ(rej.size(), 2u);
  EXPECT_EQ(rej[0].as_array()[0].to_number<int64_t>(), 2);
  EXPECT_EQ(Str(rej[0].as_array()[1]), "{\"id\":1,\"name\":null}");
  EXPECT_EQ(rej[1].as_array()[0].to_number<int64_t>(), 5);
}

TEST_F(FilesTest, OverThresholdFailsAndCommitsNothing) {
  Write("landing/orders/a.csv", "id,amount\n1,1.5\n2,2.5\n");
  auto spec = Spec(std::string(kCsvSource) + "max_rejected_share: 0.2\n");
  ASSERT_TRUE(RunSource(spec).ok());
  ASSERT_EQ(Version("orders"), 1);
  // Second file: 1 bad row of 3 (33% > 20%).
  Write("landing/orders/b.csv", "id,amount\n3,3.5\n4,oops\n5,5.5\n");
  auto r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_THAT(r.status().message(), HasSubstr("1 of 3 rows rejected"));
  EXPECT_THAT(r.status().message(), HasSubstr("landing/orders/b.csv:3"));
  EXPECT_EQ(Version("orders"), 1);
  EXPECT_EQ(Version("orders__rejected"), 0);
  auto rec = catalog_->Query("SELECT count(*) FROM ingest_files WHERE path LIKE '%b.csv'");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->Int(0, 0), 0);
  // With a looser threshold the same file loads (the file was not marked as loaded).
  spec.max_rejected_share = 0.5;
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 2);
  EXPECT_EQ(r->rows_rejected, 1);
  EXPECT_EQ(Version("orders"), 2);
  EXPECT_EQ(Version("orders__rejected"), 1);
}

TEST_F(FilesTest, NewColumnFailsByDefault) {
  Write("landing/orders/a.csv", "id,name\n1,a\n");
  auto spec = Spec(kCsvSource);
  ASSERT_TRUE(RunSource(spec).ok());
  Write("landing/orders/b.csv", "id,name,coupon\n2,b,X1\n");
  auto r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_THAT(r.status().message(), HasSubstr("new column 'coupon'"));
  EXPECT_THAT(r.status().message(), HasSubstr("b.csv"));
  EXPECT_EQ(Version("orders"), 1);
}

TEST_F(FilesTest, NewColumnEvolves) {
  Write("landing/orders/a.csv", "id,name\n1,a\n2,b\n");
  auto spec = Spec(std::string(kCsvSource) + "on_new_column: evolve\n");
  ASSERT_TRUE(RunSource(spec).ok());
  // A file without a known column and with a new one.
  Write("landing/orders/b.csv", "id,coupon\n3,X1\n");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->schema_evolved);
  EXPECT_EQ(r->rows_loaded, 1);
  auto table = lake_->GetTable({"raw", "orders"});
  ASSERT_TRUE(table.ok());
  std::vector<std::string> names;
  for (const auto& c : table->schema) names.push_back(c.name);
  EXPECT_EQ(names, (std::vector<std::string>{"id", "name", "coupon", "_loaded_at", "_batch_id"}));
  auto rows = Query("SELECT id, name, coupon FROM " + From("orders") + " ORDER BY id");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows[0].as_array()[2].is_null());  // old rows read NULL for the new column
  EXPECT_EQ(Str(rows[0].as_array()[1]), "a");
  EXPECT_TRUE(rows[2].as_array()[1].is_null());
  EXPECT_EQ(Str(rows[2].as_array()[2]), "X1");
  // Old rows keep their load_date partition and batch.
  auto parts = Query(
      "SELECT count(DISTINCT _batch_id), count(*) FILTER (WHERE load_date IS NULL) "
      "FROM " +
      From("orders"));
  EXPECT_EQ(parts[0].as_array()[0].to_number<int64_t>(), 2);
  EXPECT_EQ(parts[0].as_array()[1].to_number<int64_t>(), 0);
  // Appends continue with the evolved schema.
  Write("landing/orders/c.csv", "id,name,coupon\n4,d,Y\n");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->schema_evolved);
  EXPECT_EQ(Count("orders"), 4);
}

TEST_F(FilesTest, TypeChangeFailsNamingTheColumn) {
  Write("landing/orders/a.csv", "id,amount\n1,1.5\n2,2.5\n");
  auto spec = Spec(std::string(kCsvSource) + "max_rejected_share: 1\n");
  ASSERT_TRUE(RunSource(spec).ok());
  Write("landing/orders/b.csv", "id,amount\n3,high\n4,low\n5,1.0\n");
  auto r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_THAT(r.status().message(), HasSubstr("column 'amount' changed type"));
  EXPECT_THAT(r.status().message(), HasSubstr("DOUBLE"));
  EXPECT_EQ(Version("orders"), 1);

  // A declared type that differs from the table's is refused too.
  auto declared = Spec(std::string(kCsvSource) + "schema:\n  amount: VARCHAR\n");
  r = RunSource(declared);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("column 'amount'"));
}

TEST_F(FilesTest, JsonLinesWithBadLines) {
  Write("landing/events/e1.jsonl",
        "{\"id\": 1, \"kind\": \"click\", \"meta\": {\"x\": 1}}\n"  // 1
        "{\"id\": \"two\", \"kind\": \"view\"}\n"                   // 2: id not a number
        "not json at all\n"                                         // 3
        "\n"                                                        // 4: blank, skipped
        "{\"id\": 4, \"kind\": \"click\"}\n"                        // 5
        "[1, 2]\n");                                                // 6: not an object
  auto spec = Spec(
      "type: files\npath: landing/events\nformat: json\nschema:\n  id: BIGINT\n"
      "max_rejected_share: 0.9\n",
      "sources/events.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 2) << boost::json::serialize(Query("SELECT * FROM " + From("events")));
  EXPECT_EQ(r->rows_rejected, 3);
  auto rej = Query("SELECT line, reason FROM " + From("events__rejected") + " ORDER BY line");
  ASSERT_EQ(rej.size(), 3u);
  EXPECT_EQ(rej[0].as_array()[0].to_number<int64_t>(), 2);
  EXPECT_THAT(Str(rej[0].as_array()[1]), HasSubstr("column \"id\": cannot read 'two'"));
  EXPECT_EQ(rej[1].as_array()[0].to_number<int64_t>(), 3);
  EXPECT_THAT(Str(rej[1].as_array()[1]), HasSubstr("not valid JSON"));
  EXPECT_EQ(rej[2].as_array()[0].to_number<int64_t>(), 6);
  auto rows = Query("SELECT id, kind, meta.x FROM " + From("events") + " ORDER BY id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].as_array()[2].to_number<int64_t>(), 1);
}

TEST_F(FilesTest, ParquetFiles) {
  std::filesystem::create_directories(project_ / "landing/pq");
  ASSERT_TRUE(engine_
                  ->Exec("COPY (SELECT range AS id, 'n' || range AS name FROM range(5)) TO " +
                         sql::QuoteLiteral((project_ / "landing/pq/p1.parquet").string()) +
                         " (FORMAT parquet)")
                  .ok());
  auto spec = Spec("type: files\npath: landing/pq\nformat: parquet\n", "sources/pq.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 5);
  EXPECT_EQ(Count("pq"), 5);
}

TEST_F(FilesTest, FullRefreshOverwrites) {
  Write("landing/orders/a.csv", "id\n1\n2\n");
  auto spec = Spec(kCsvSource);
  ASSERT_TRUE(RunSource(spec).ok());
  Write("landing/orders/b.csv", "id\n3\n");
  ASSERT_TRUE(RunSource(spec).ok());
  EXPECT_EQ(Count("orders"), 3);
  std::filesystem::remove(project_ / "landing/orders/a.csv");
  auto r = RunSource(spec, /*full_refresh=*/true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 1);
  EXPECT_EQ(Count("orders"), 1);
  auto snap = lake_->GetSnapshot({"raw", "orders"}, r->snapshot_version);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->operation, "overwrite");
}

TEST_F(FilesTest, CrashAfterCommitIsSettledWithoutDuplicates) {
  // The state a crash between the lake commit and the file bookkeeping leaves: records pending on
  // a committed write. The next run completes them instead of loading the file again.
  Write("landing/orders/a.csv", "id\n1\n2\n");
  auto spec = Spec(kCsvSource);
  ASSERT_TRUE(RunSource(spec).ok());
  ASSERT_TRUE(catalog_
                  ->Exec("UPDATE ingest_files SET pending_write_id = write_id, "
                         "pending_batch_id = batch_id, pending_loaded_at = loaded_at, "
                         "write_id = NULL")
                  .ok());
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 0);
  EXPECT_EQ(r->files_skipped, 1);
  EXPECT_EQ(Count("orders"), 2);
  // A pending record on a write that never committed is dropped: the file loads.
  ASSERT_TRUE(
      catalog_->Exec("UPDATE ingest_files SET pending_write_id = 'never', write_id = NULL").ok());
  ASSERT_TRUE(catalog_->Exec("DELETE FROM ingest_files WHERE pending_write_id = 'never'").ok());
  ASSERT_TRUE(catalog_
                  ->Exec("INSERT INTO ingest_files (source, path, sha256, size, "
                         "pending_write_id) VALUES ('orders', 'x.csv', 'h', 1, 'never')")
                  .ok());
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_loaded, 1);
  auto left = catalog_->Query("SELECT count(*) FROM ingest_files WHERE path = 'x.csv'");
  EXPECT_EQ(left->Int(0, 0), 0);
}

// ---- SQLite -------------------------------------------------------------------------------------

class SqliteTest : public IngestFixture {
 protected:
  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((project_ / "shop.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << message;
  }

  SourceSpec OrdersSpec(const std::string& extra = "") {
    return Spec(
        "type: sqlite\ndatabase: shop.db\ntable: orders\ncursor: updated_at\n"
        "lookback: 1h\nkey: [id]\n" +
        extra);
  }
};

TEST_F(SqliteTest, IncrementalWithLookbackAndDedup) {
  Sql("CREATE TABLE orders (id INTEGER, amount REAL, status TEXT, updated_at TIMESTAMP);"
      "INSERT INTO orders VALUES (1, 10.5, 'new', '2026-11-26 08:00:00'),"
      " (2, 20, 'new', '2026-11-26 09:00:00'), (3, 30, 'new', '2026-11-26 10:00:00');");
  auto spec = OrdersSpec();
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->cursor_before, "");
  EXPECT_EQ(r->cursor_after, "2026-11-26 10:00:00");
  auto table = lake_->GetTable({"raw", "orders"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->schema[0], (lake::Column{"id", "BIGINT"}));
  EXPECT_EQ(table->schema[1], (lake::Column{"amount", "DOUBLE"}));
  EXPECT_EQ(table->schema[3], (lake::Column{"updated_at", "TIMESTAMP"}));

  // Nothing new: nothing loaded, no snapshot (the lookback re-read is de-duplicated).
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 0);
  EXPECT_EQ(r->snapshot_version, 0);
  EXPECT_EQ(r->rows_deduplicated, 1);  // id 3 at 10:00 is inside the 1h window (> 09:00)

  // New rows, an update of id 2, and a row committed late with an older cursor inside the window.
  Sql("INSERT INTO orders VALUES (4, 40, 'new', '2026-11-26 11:00:00');"
      "UPDATE orders SET status = 'paid', updated_at = '2026-11-26 11:30:00' WHERE id = 2;"
      "INSERT INTO orders VALUES (5, 50, 'late', '2026-11-26 10:45:00');");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cursor_before, "2026-11-26 10:00:00");
  EXPECT_EQ(r->cursor_after, "2026-11-26 11:30:00");
  EXPECT_EQ(r->rows_loaded, 3);  // 4, 2 (paid), 5
  // Another late row with a cursor below the stored one but inside the lookback window.
  Sql("INSERT INTO orders VALUES (6, 60, 'late', '2026-11-26 10:50:00');");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 1);
  EXPECT_EQ(r->cursor_after, "2026-11-26 11:30:00");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_loaded, 0);

  auto rows = Query("SELECT id, status FROM " + From("orders") + " ORDER BY id, updated_at");
  ASSERT_EQ(rows.size(), 7u);  // 1, 2 new, 2 paid, 3, 4, 5, 6: each version of a row once
  auto dup = Query("SELECT count(*) FROM (SELECT id, updated_at FROM " + From("orders") +
                   " GROUP BY ALL HAVING count(*) > 1)");
  EXPECT_EQ(dup[0].as_array()[0].to_number<int64_t>(), 0);
  auto cursor = ingestor_->Cursor("orders");
  ASSERT_TRUE(cursor.ok());
  EXPECT_EQ(cursor->value_or(""), "2026-11-26 11:30:00");
}

TEST_F(SqliteTest, CrashBetweenCommitAndCursorLoadsNothingTwice) {
  Sql("CREATE TABLE orders (id INTEGER, amount REAL, status TEXT, updated_at TIMESTAMP);"
      "INSERT INTO orders VALUES (1, 1, 'a', '2026-11-26 08:00:00'), (2, 2, 'b', "
      "'2026-11-26 09:00:00');");
  // Without a lookback: the key de-duplication alone must hold.
  auto spec = Spec(
      "type: sqlite\ndatabase: shop.db\ntable: orders\ncursor: updated_at\n"
      "key: [id]\n");
  ASSERT_TRUE(RunSource(spec).ok());
  Sql("INSERT INTO orders VALUES (3, 3, 'c', '2026-11-26 12:00:00');");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->rows_loaded, 1);
  // The crash: the commit stands but the cursor is still the old one (pending lost as well).
  ASSERT_TRUE(catalog_
                  ->Exec("UPDATE ingest_cursors SET cursor_value = '2026-11-26 09:00:00', "
                         "pending_write_id = NULL")
                  .ok());
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 0);
  EXPECT_EQ(r->rows_deduplicated, 1);
  EXPECT_EQ(r->cursor_after, "2026-11-26 12:00:00");
  EXPECT_EQ(Count("orders"), 3);

  // The crash with the pending cursor recorded: it is settled from the committed write.
  Sql("INSERT INTO orders VALUES (4, 4, 'd', '2026-11-26 13:00:00');");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok());
  auto snaps = lake_->ListSnapshots({"raw", "orders"});
  ASSERT_TRUE(snaps.ok());
  ASSERT_TRUE(catalog_
                  ->Exec("UPDATE ingest_cursors SET cursor_value = '2026-11-26 12:00:00', "
                         "pending_value = '2026-11-26 13:00:00', pending_type = 'TIMESTAMP', "
                         "pending_write_id = ?",
                         {snaps->back().write_id})
                  .ok());
  auto cursor = ingestor_->Cursor("orders");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cursor_before, "2026-11-26 13:00:00");
  EXPECT_EQ(r->rows_loaded, 0);
  EXPECT_EQ(Count("orders"), 4);
}

TEST_F(SqliteTest, FullRefreshOverwritesAndRejectsBadRows) {
  Sql("CREATE TABLE orders (id INTEGER, amount REAL, status TEXT, updated_at TIMESTAMP);"
      "INSERT INTO orders VALUES (1, 1, 'a', '2026-11-26 08:00:00'), (2, 2, 'b', "
      "'2026-11-26 09:00:00'), (3, 'lots', 'c', '2026-11-26 09:30:00'), (4, 4, NULL, "
      "'2026-11-26 09:40:00');");
  auto spec = OrdersSpec("required: [status]\nmax_rejected_share: 0.6\n");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 2);
  EXPECT_EQ(r->rows_rejected, 2);
  auto rej = Query("SELECT source_key, reason, source_file, line FROM " + From("orders__rejected") +
                   " ORDER BY source_key");
  ASSERT_EQ(rej.size(), 2u);
  EXPECT_EQ(Str(rej[0].as_array()[0]), "id=3");
  EXPECT_THAT(Str(rej[0].as_array()[1]), HasSubstr("column \"amount\": cannot read 'lots'"));
  EXPECT_EQ(Str(rej[1].as_array()[0]), "id=4");
  EXPECT_THAT(Str(rej[1].as_array()[1]), HasSubstr("required column \"status\""));
  EXPECT_TRUE(rej[0].as_array()[2].is_null());
  // The rejected rows are not reported again by later incremental runs.
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_rejected, 0);

  Sql("UPDATE orders SET amount = 3 WHERE id = 3; DELETE FROM orders WHERE id = 1;");
  r = RunSource(spec, /*full_refresh=*/true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 2);  // 2, 3 (4 still lacks its status)
  EXPECT_EQ(Count("orders"), 2);
  auto snap = lake_->GetSnapshot({"raw", "orders"}, r->snapshot_version);
  EXPECT_EQ(snap->operation, "overwrite");
  // The cursor passes rejected rows too (they are reported once, not on every run).
  EXPECT_EQ(r->cursor_after, "2026-11-26 09:40:00");
}

TEST_F(SqliteTest, QueryWithNumericCursorAndNoCursorSnapshot) {
  Sql("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT);"
      "INSERT INTO events (body) VALUES ('a'), ('b'), ('c');");
  auto spec = Spec(
      "type: sqlite\ndatabase: shop.db\nquery: SELECT seq, upper(body) AS body FROM "
      "events;\ncursor: seq\nlookback: 1\nschema:\n  body: VARCHAR\n",
      "sources/events.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->cursor_after, "3");
  Sql("INSERT INTO events (body) VALUES ('d');");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 1);
  EXPECT_EQ(r->rows_deduplicated, 1);
  EXPECT_EQ(r->cursor_after, "4");

  // Without a cursor every run is a full snapshot (overwrite).
  auto snapshot = Spec("type: sqlite\ndatabase: shop.db\ntable: events\n", "sources/ev_all.yaml");
  ASSERT_TRUE(RunSource(snapshot).ok());
  r = RunSource(snapshot);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Count("ev_all"), 4);
}

// Issue 7 item 8: SQLite keeps time as text (ISO-8601 in every spelling) or as unix numbers; a
// lookback must work on them run after run (the second run used to fail: VARCHAR - INTERVAL).
TEST_F(SqliteTest, TextTimestampCursorWithLookbackRunsAgainAndAgain) {
  Sql("CREATE TABLE customers (id INTEGER, name TEXT, updated_at TEXT NOT NULL);"
      "INSERT INTO customers VALUES (1, 'a', '2026-11-26 08:00:00'),"
      " (2, 'b', '2026-11-26T09:00:00Z'), (3, 'c', '2026-11-26T11:30:00+02:00'),"  // 09:30 UTC
      " (4, 'd', '2026-11-26T10:00:00.250Z'), (5, 'e', 'garbage');");
  auto spec = Spec(
      "type: sqlite\ndatabase: shop.db\ntable: customers\ncursor: updated_at\nlookback: 1h\n"
      "key: [id]\nmax_rejected_share: 0.5\n",
      "sources/customers.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 4);
  EXPECT_EQ(r->rows_rejected, 1);  // 'garbage' cannot be placed against the cursor
  EXPECT_EQ(r->cursor_after, "2026-11-26 10:00:00.25");
  auto table = lake_->GetTable({"raw", "customers"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->schema[2], (lake::Column{"updated_at", "VARCHAR"}));  // loaded as it is
  auto rej = Query("SELECT source_key, reason FROM " + From("customers__rejected"));
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(Str(rej[0].as_array()[0]), "id=5");
  EXPECT_THAT(Str(rej[0].as_array()[1]), HasSubstr("as text_timestamp"));

  for (int i = 0; i < 3; ++i) {
    r = RunSource(spec);  // the lookback re-reads 09:30 and 10:00:00.25; both are de-duplicated
    ASSERT_TRUE(r.ok()) << "run " << i << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 0);
    EXPECT_EQ(r->rows_rejected, 0);  // the bad row is not reported again
    EXPECT_EQ(r->rows_deduplicated, 2);
    EXPECT_EQ(r->cursor_after, "2026-11-26 10:00:00.25");
  }
  // New rows, a late row inside the window (09:45 UTC written with an offset), an update.
  Sql("INSERT INTO customers VALUES (6, 'f', '2026-11-26 12:00:00'),"
      " (7, 'g', '2026-11-26T10:45:00+01:00');"
      "UPDATE customers SET name = 'b2', updated_at = '2026-11-26T12:30:00Z' WHERE id = 2;");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->cursor_before, "2026-11-26 10:00:00.25");
  EXPECT_EQ(r->cursor_after, "2026-11-26 12:30:00");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 0);
  auto dup = Query("SELECT count(*) FROM (SELECT id, updated_at FROM " + From("customers") +
                   " GROUP BY ALL HAVING count(*) > 1)");
  EXPECT_EQ(dup[0].as_array()[0].to_number<int64_t>(), 0);
  EXPECT_EQ(Count("customers"), 7);  // 1, 2, 3, 4, 6, 7, 2 (updated)

  // A cursor stored before cursor kinds existed (the text's max, typed VARCHAR) still works.
  ASSERT_TRUE(catalog_
                  ->Exec("UPDATE ingest_cursors SET cursor_value = '2026-11-26T12:30:00Z', "
                         "cursor_type = 'VARCHAR'")
                  .ok());
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cursor_before, "2026-11-26 12:30:00");
  EXPECT_EQ(r->rows_loaded, 0);
}

TEST_F(SqliteTest, UnixSecondsDeclaredAndUnixMillisDetected) {
  // 1795680000 = 2026-11-26 08:00:00 UTC
  Sql("CREATE TABLE s (id INTEGER, ts INTEGER); CREATE TABLE m (id INTEGER, ts INTEGER);"
      "INSERT INTO s VALUES (1, 1795680000), (2, 1795683600), (3, 1795687200);"
      "INSERT INTO m VALUES (1, 1795680000000), (2, 1795683600000), (3, 1795687200500);");
  auto secs = Spec(
      "type: sqlite\ndatabase: shop.db\ntable: s\ncursor: ts\ncursor_type: unix_seconds\n"
      "lookback: 90m\nkey: [id]\n",
      "sources/s.yaml");
  auto millis =
      Spec("type: sqlite\ndatabase: shop.db\ntable: m\ncursor: ts\nlookback: 90m\nkey: [id]\n",
           "sources/m.yaml");
  for (const auto* spec : {&secs, &millis}) {
    auto r = RunSource(*spec);
    ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 3);
    EXPECT_EQ(r->cursor_after, spec == &secs ? "2026-11-26 10:00:00" : "2026-11-26 10:00:00.5");
    r = RunSource(*spec);
    ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 0);
    EXPECT_EQ(r->rows_deduplicated, 2);  // 09:00 and 10:00 are inside 90 minutes
  }
  Sql("INSERT INTO s VALUES (4, 1795685400); INSERT INTO m VALUES (4, 1795685400000);");  // 09:30
  for (const auto* spec : {&secs, &millis}) {
    auto r = RunSource(*spec);
    ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 1);
    EXPECT_EQ(Count(spec->name), 4);
  }
  auto stored = catalog_->Query("SELECT source, cursor_type FROM ingest_cursors ORDER BY 1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->Text(0, 1), "unix_millis");
  EXPECT_EQ(stored->Text(1, 1), "unix_seconds");
}

TEST_F(SqliteTest, IncompatibleCursorIsOneLineNamingFileColumnTypeAndFix) {
  Sql("CREATE TABLE t (id INTEGER, code TEXT, flag BOOLEAN, n INTEGER);"
      "INSERT INTO t VALUES (1, 'x', 1, 5), (2, 'y', 0, 7);");
  struct Case {
    std::string yaml, want;
  } cases[] = {
      {"cursor: code\nlookback: 1h\n", "cursor_type: text_timestamp"},
      {"cursor: flag\n", "cannot order loads"},
      {"cursor: n\ncursor_type: timestamp\n", "cursor_type: unix_seconds"},
      {"cursor: n\nlookback: 1h\n", "numeric lookback"},
  };
  for (const auto& c : cases) {
    auto spec = Spec("type: sqlite\ndatabase: shop.db\ntable: t\n" + c.yaml, "sources/t.yaml");
    auto r = RunSource(spec);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.yaml;
    const std::string& m = r.status().message();
    EXPECT_THAT(m, HasSubstr("sources/t.yaml: cursor column '")) << m;
    EXPECT_THAT(m, HasSubstr(c.want)) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(Version("t"), 0) << "nothing committed: " << c.yaml;
  }
}

// read_csv allocated its whole buffer (16 x the 100 MB line limit = 1.5 GiB) up front, so every
// db source and JSON-lines file failed with "Out of Memory" under a memory_limit below that.
TEST_F(SqliteTest, DbAndJsonLinesLoadUnderASmallMemoryLimit) {
  ingestor_.reset();
  engine_.reset();
  sql::EngineOptions eo;
  eo.sandboxed = false;
  eo.scratch_dir = root_ / "scratch";
  eo.memory_limit = "256MB";
  auto engine = sql::Engine::Open(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  engine_ = std::move(engine).value();
  IngestorOptions io;
  io.scratch_dir = root_ / "spool";
  ingestor_ = std::make_unique<Ingestor>(engine_.get(), lake_.get(), catalog_.get(), project_, io);

  Sql("CREATE TABLE t (id INTEGER, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
  auto db = RunSource(Spec("type: sqlite\ndatabase: shop.db\ntable: t\n", "sources/t.yaml"));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(db->rows_loaded, 2);
  Write("landing/p.jsonl", "{\"a\": 1}\n{\"a\": 2}\n");
  auto json = RunSource(Spec("type: files\npath: landing/p.jsonl\n", "sources/p.yaml"));
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(json->rows_loaded, 2);
}

TEST_F(SqliteTest, MissingEnvVariableIsNamed) {
  unsetenv("INGEST_TEST_NO_SUCH_DB");
  auto spec = Spec("type: sqlite\ndatabase: ${INGEST_TEST_NO_SUCH_DB}\ntable: t\n");
  auto r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("INGEST_TEST_NO_SUCH_DB"));
}

}  // namespace
}  // namespace lakeloop::ingest
