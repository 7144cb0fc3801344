#include "lake/lake.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "core/crash_point.h"
#include "core/ids.h"

namespace lakeloop::lake {
namespace {
namespace fs = std::filesystem;

const std::vector<Column> kSchema = {{"id", "BIGINT"}, {"name", "VARCHAR"}};

class LakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lakeloop-lake-" + RandomHex(6));
    fs::create_directories(dir_ / "lake");
    Open();
  }
  void TearDown() override {
    lake_.reset();
    catalog_.reset();
    fs::remove_all(dir_);
  }
  void Open(LakeOptions options = {}) {
    lake_.reset();
    catalog_.reset();
    auto c = catalog::OpenSqlite(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok());
    catalog_ = std::move(*c);
    ASSERT_TRUE(catalog::Migrate(*catalog_, Lake::Migrations()).ok());
    store_ = NewLocalObjectStore(dir_ / "lake");
    lake_ = std::make_unique<Lake>(store_.get(), catalog_.get(), options);
  }
  // Stages `n` files (fake content: the lake never reads it) and commits them.
  Result<Snapshot> Write(const TableRef& t, WriteMode mode, int n,
                         std::vector<Column> schema = kSchema,
                         std::optional<int64_t> expected = std::nullopt) {
    ASSIGN_OR_RETURN(Staging s, lake_->BeginWrite(t));
    CommitRequest req;
    req.staging = s;
    req.mode = mode;
    req.schema = schema;
    req.expected_version = expected;
    for (int i = 0; i < n; ++i) {
      std::string key = "data_" + std::to_string(i) + ".parquet";
      RETURN_IF_ERROR(store_->Put(s.prefix + key, "parquet-bytes-" + std::to_string(i)));
      req.files.push_back({key, 10});
    }
    return lake_->Commit(req);
  }
  // Parquet files a folder reader (pyarrow, Spark) would see: no '_' or '.' folders or files.
  std::set<std::string> FolderView(const TableRef& t) {
    std::set<std::string> out;
    auto all = store_->List(t.zone + "/" + t.name);
    for (const auto& o : *all) {
      std::string rel = o.key.substr(t.zone.size() + t.name.size() + 2);
      if (rel[0] == '_' || rel[0] == '.' || rel.find("/_") != std::string::npos) continue;
      out.insert(o.key);
    }
    return out;
  }
  // Every Parquet file anywhere below the table folder, underscore folders included: what
  // DuckDB's read_parquet('<table>/**/*.parquet') reads.
  std::set<std::string> ParquetUnder(const TableRef& t) {
    std::set<std::string> out;
    auto all = store_->List(t.zone + "/" + t.name);
    for (const auto& o : *all) {
      if (o.key.ends_with(".parquet")) out.insert(o.key);
    }
    return out;
  }
  std::set<std::string> Keys(const std::vector<DataFile>& files) {
    std::set<std::string> out;
    for (const auto& f : files) out.insert(f.key);
    return out;
  }
  std::set<std::string> LiveKeys(const std::vector<DataFile>& files) {
    std::set<std::string> out;
    for (const auto& f : files) out.insert(f.live_key);
    return out;
  }
  // The folder holds exactly the current snapshot, for every kind of reader.
  void ExpectFolderIsCurrent(const TableRef& t) {
    auto current = lake_->SnapshotFiles(t);
    ASSERT_TRUE(current.ok()) << current.status().ToString();
    EXPECT_EQ(LiveKeys(*current), FolderView(t));
    EXPECT_EQ(LiveKeys(*current), ParquetUnder(t));
    for (const auto& f : *current) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  }

  fs::path dir_;
  std::unique_ptr<catalog::Store> catalog_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<Lake> lake_;
  TableRef orders_{"raw", "orders"};
};

TEST_F(LakeTest, TableRefsAreValidated) {
  EXPECT_TRUE(ParseTableRef("raw.orders").ok());
  for (const char* bad : {"orders", "raw.orders.x", "Raw.orders", "raw.ord-ers", "raw.",
                          "x_snapshots.t", "main.t", "raw.a;drop", "_files.t", "_staging.t"}) {
    EXPECT_EQ(ParseTableRef(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST_F(LakeTest, AppendCommitsAreVisibleWithFilesAndManifest) {
  std::vector<TableInfo> seen;
  lake_->AddCommitListener([&](const TableInfo& t) { seen.push_back(t); });
  auto v1 = Write(orders_, WriteMode::kAppend, 2);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->total_rows, 20);
  auto v2 = Write(orders_, WriteMode::kAppend, 1);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->total_rows, 30);
  EXPECT_EQ(v2->file_count, 3);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].current_version, 2);
  EXPECT_EQ(lake_->SnapshotFiles(orders_, 1)->size(), 2u);
  auto current = lake_->SnapshotFiles(orders_);
  ASSERT_TRUE(current.ok());
  ExpectFolderIsCurrent(orders_);
  for (const auto& f : *current) {
    EXPECT_EQ(f.key, "_files/" + f.live_key);
    EXPECT_TRUE(*store_->Exists(f.key));
  }
  auto manifest = store_->Get("raw/orders/_manifests/current.json");
  ASSERT_TRUE(manifest.ok());
  EXPECT_NE(manifest->find("\"version\":2"), std::string::npos);
  EXPECT_NE(manifest->find("\"row_count\":30"), std::string::npos);
  EXPECT_TRUE(store_->List("_staging/raw/orders")->empty());
  EXPECT_FALSE(*store_->Exists("_staging"));  // emptied staging folders go too
  auto snaps = lake_->ListSnapshots(orders_);
  ASSERT_EQ(snaps->size(), 2u);
  EXPECT_EQ((*snaps)[0].operation, "append");
}

TEST_F(LakeTest, OverwriteKeepsHistoryReadableAndFolderCurrent) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 2).ok());
  auto old_files = *lake_->SnapshotFiles(orders_, 1);
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1, {{"id", "INTEGER"}}).ok());
  auto table = lake_->GetTable(orders_);
  EXPECT_EQ(table->schema, (std::vector<Column>{{"id", "INTEGER"}}));
  // As soon as Commit returns, without any garbage collection, the table folder holds exactly
  // the current snapshot: the superseded files left it during the roll forward.
  ExpectFolderIsCurrent(orders_);
  EXPECT_EQ(ParquetUnder(orders_).size(), 1u);
  for (const auto& f : old_files) EXPECT_FALSE(*store_->Exists(f.live_key)) << f.live_key;
  // A query bound to v1 before the overwrite reads immutable names, which stay (time travel).
  auto v1 = lake_->SnapshotFiles(orders_, 1);
  ASSERT_TRUE(v1.ok());
  ASSERT_EQ(v1->size(), 2u);
  EXPECT_EQ(Keys(*v1), Keys(old_files));
  for (const auto& f : *v1) {
    EXPECT_EQ(f.key.rfind("_files/raw/orders/part-", 0), 0u) << f.key;
    EXPECT_EQ(store_->Get(f.key)->rfind("parquet-bytes-", 0), 0u);
  }
  auto gc = lake_->CollectGarbage(NowMicros(), NowMicros());
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->files_deleted, 0);  // v1 is retained
  for (const auto& f : *v1) EXPECT_TRUE(*store_->Exists(f.key));
}

// An overwrite that empties a partition folder removes it: a hive reader sees no empty partition.
TEST_F(LakeTest, OverwriteRemovesEmptiedPartitionFolders) {
  auto write = [&](const std::string& dir, WriteMode mode) -> Result<Snapshot> {
    ASSIGN_OR_RETURN(Staging s, lake_->BeginWrite(orders_));
    RETURN_IF_ERROR(store_->Put(s.prefix + dir + "/f.parquet", "x"));
    CommitRequest req{.staging = s, .mode = mode, .files = {{dir + "/f.parquet", 1}}};
    req.schema = kSchema;
    req.partition_by = {"dt"};
    return lake_->Commit(req);
  };
  ASSERT_TRUE(write("dt=2026-11-25", WriteMode::kAppend).ok());
  ASSERT_TRUE(write("dt=2026-11-26", WriteMode::kAppend).ok());
  ASSERT_TRUE(write("dt=2026-11-26", WriteMode::kOverwrite).ok());
  EXPECT_FALSE(fs::exists(dir_ / "lake/raw/orders/dt=2026-11-25"));
  EXPECT_TRUE(fs::exists(dir_ / "lake/raw/orders/dt=2026-11-26"));
  ExpectFolderIsCurrent(orders_);
  EXPECT_EQ(FolderView(orders_).size(), 1u);
  EXPECT_EQ(lake_->SnapshotFiles(orders_, 2)->size(), 2u);  // time travel still reads both
}

TEST_F(LakeTest, RetentionExpiresOldSnapshotsAndDeletesTheirFiles) {
  Open(LakeOptions{.snapshot_retention_s = 0});
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1).ok());
  std::string history = (*lake_->SnapshotFiles(orders_, 1))[0].key;
  Micros later = NowMicros() + 1000000;
  auto gc = lake_->CollectGarbage(later, later);
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->snapshots_expired, 1);
  EXPECT_EQ(lake_->SnapshotFiles(orders_, 1).status().code(), Code::kNotFound);
  EXPECT_TRUE(*store_->Exists(history));  // may still be bound by a running query
  ASSERT_TRUE(lake_->CollectGarbage(later, NowMicros() + 2000000).ok());
  EXPECT_FALSE(*store_->Exists(history));
  EXPECT_EQ(lake_->SnapshotFiles(orders_)->size(), 1u);  // current never expires
}

TEST_F(LakeTest, CompareAndSwapLosesCleanly) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  auto stale = Write(orders_, WriteMode::kAppend, 1, kSchema, /*expected=*/0);
  EXPECT_EQ(stale.status().code(), Code::kConflict);
  EXPECT_EQ(lake_->GetTable(orders_)->current_version, 1);
  EXPECT_EQ(FolderView(orders_).size(), 1u);
  EXPECT_EQ(store_->List("_files")->size(), 1u);  // the loser's immutable names were undone
  EXPECT_TRUE(Write(orders_, WriteMode::kAppend, 1, kSchema, /*expected=*/1).ok());
}

// Ownership: a table registered to a definition takes commits from that owner only.
TEST_F(LakeTest, OwnedTablesTakeCommitsFromTheirOwnerOnly) {
  TableRef revenue{"processed", "daily_revenue"};
  Owner model{"model", "daily_revenue"};
  ASSERT_TRUE(Write(revenue, WriteMode::kAppend, 1).ok());  // unowned: anyone commits
  ASSERT_TRUE(lake_->RegisterOwner(revenue, model).ok());
  ASSERT_TRUE(lake_->RegisterOwner(revenue, model).ok());  // idempotent
  EXPECT_EQ(lake_->RegisterOwner(revenue, {"source", "x"}).code(), Code::kConflict);
  auto owner = lake_->OwnerOf(revenue);
  ASSERT_TRUE(owner.ok() && owner->has_value());
  EXPECT_EQ(**owner, model);
  auto files_before = store_->List("");
  auto commit = [&](std::optional<Owner> who, WriteMode mode) -> Result<Snapshot> {
    ASSIGN_OR_RETURN(Staging s, lake_->BeginWrite(revenue));
    RETURN_IF_ERROR(store_->Put(s.prefix + "f.parquet", "x"));
    CommitRequest req{.staging = s, .mode = mode, .files = {{"f.parquet", 1}}, .schema = kSchema};
    req.owner = who;
    auto r = lake_->Commit(req);
    if (!r.ok()) RETURN_IF_ERROR(lake_->AbortWrite(s));
    return r;
  };
  for (auto who : {std::optional<Owner>(), std::optional<Owner>(Owner{"model", "other"}),
                   std::optional<Owner>(Owner{"source", "daily_revenue"})}) {
    auto r = commit(who, WriteMode::kOverwrite);
    EXPECT_EQ(r.status().code(), Code::kConflict);
    EXPECT_NE(r.status().message().find(
                  "processed.daily_revenue is owned by model daily_revenue; run the model"),
              std::string::npos)
        << r.status().message();
  }
  // Nothing changed: same version, same files (no staging or _files left behind).
  EXPECT_EQ(lake_->GetTable(revenue)->current_version, 1);
  auto files_after = store_->List("");
  ASSERT_EQ(files_after->size(), files_before->size());
  for (size_t i = 0; i < files_after->size(); ++i) {
    EXPECT_EQ((*files_after)[i].key, (*files_before)[i].key);
  }
  auto ok = commit(model, WriteMode::kOverwrite);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->version, 2);
  // Apply's declarative form: the model's definition removed -> the table is released (it keeps
  // its data) and direct commits are allowed again.
  TableRef orders{"raw", "orders"};
  ASSERT_TRUE(lake_->SetOwners("source", {{orders, {"source", "orders"}}}).ok());
  ASSERT_TRUE(lake_->SetOwners("model", {}).ok());
  EXPECT_FALSE(lake_->OwnerOf(revenue)->has_value());
  EXPECT_EQ(lake_->GetTable(revenue)->current_version, 2);
  EXPECT_TRUE(commit(std::nullopt, WriteMode::kAppend).ok());
  auto owners = lake_->ListOwners();
  ASSERT_TRUE(owners.ok());
  ASSERT_EQ(owners->size(), 1u);
  EXPECT_EQ((*owners)[0].table, orders);
  // A table claimed by another owner stays with it; the rest applies; the conflict is reported.
  Status clash = lake_->SetOwners(
      "stream", {{{"raw", "clicks"}, {"stream", "clicks"}}, {orders, {"stream", "orders"}}});
  EXPECT_EQ(clash.code(), Code::kConflict);
  EXPECT_NE(clash.message().find("owned by source orders"), std::string::npos) << clash.message();
  EXPECT_EQ(**lake_->OwnerOf(orders), (Owner{"source", "orders"}));
  EXPECT_EQ(**lake_->OwnerOf({"raw", "clicks"}), (Owner{"stream", "clicks"}));
  ASSERT_TRUE(lake_->SetOwners("stream", {}).ok());
  EXPECT_EQ(lake_->SetOwners("stream", {{orders, {"model", "orders"}}}).code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(lake_->ReleaseOwner(orders, {"source", "orders"}).ok());
  EXPECT_TRUE(lake_->ListOwners()->empty());
}

// Pins: retention never expires a pinned snapshot, so its files and rows stay until unpinned.
TEST_F(LakeTest, PinnedSnapshotsSurviveRetention) {
  Open(LakeOptions{.snapshot_retention_s = 0});
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 2).ok());
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1).ok());
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1).ok());
  ASSERT_TRUE(lake_->PinSnapshot(orders_, 1, "model churn v3", "training data").ok());
  EXPECT_EQ(lake_->PinSnapshot(orders_, 9, "x", "").code(), Code::kNotFound);
  EXPECT_EQ(lake_->PinSnapshot({"raw", "nope"}, 1, "x", "").code(), Code::kNotFound);
  auto pinned = *lake_->SnapshotFiles(orders_, 1);
  auto unpinned = *lake_->SnapshotFiles(orders_, 2);
  Micros later = NowMicros() + 1000000;
  for (int i = 0; i < 2; ++i) {  // the second pass unlinks what the first released
    ASSERT_TRUE(lake_->CollectGarbage(later, later + 1000000 * (i + 1)).ok());
  }
  EXPECT_EQ(lake_->SnapshotFiles(orders_, 2).status().code(), Code::kNotFound);
  for (const auto& f : unpinned) EXPECT_FALSE(*store_->Exists(f.key));
  auto v1 = lake_->SnapshotFiles(orders_, 1);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(Keys(*v1), Keys(pinned));
  for (const auto& f : pinned) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  EXPECT_FALSE(lake_->GetSnapshot(orders_, 1)->expired);
  auto pins = lake_->ListPins(orders_);
  ASSERT_TRUE(pins.ok());
  ASSERT_EQ(pins->size(), 1u);
  EXPECT_EQ((*pins)[0].holder, "model churn v3");
  EXPECT_EQ((*pins)[0].version, 1);
  // An expired snapshot cannot be pinned; unpinning lets retention take v1.
  EXPECT_EQ(lake_->PinSnapshot(orders_, 2, "late", "").code(), Code::kNotFound);
  ASSERT_TRUE(lake_->UnpinSnapshot(orders_, 1, "model churn v3").ok());
  EXPECT_TRUE(lake_->ListPins()->empty());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(lake_->CollectGarbage(later, later + 1000000 * (i + 3)).ok());
  }
  EXPECT_EQ(lake_->SnapshotFiles(orders_, 1).status().code(), Code::kNotFound);
  for (const auto& f : pinned) EXPECT_FALSE(*store_->Exists(f.key));
  ExpectFolderIsCurrent(orders_);
}

TEST_F(LakeTest, InTransactionHookCommitsWithTheSnapshotOrAbortsIt) {
  ASSERT_TRUE(catalog_->Exec("CREATE TABLE offsets (name TEXT PRIMARY KEY, v BIGINT)").ok());
  auto write = [&](int64_t v, bool fail) -> Result<Snapshot> {
    ASSIGN_OR_RETURN(Staging s, lake_->BeginWrite(orders_));
    RETURN_IF_ERROR(store_->Put(s.prefix + "f.parquet", "x"));
    CommitRequest req{.staging = s, .files = {{"f.parquet", 1}}, .schema = kSchema};
    req.in_transaction = [&](catalog::Transaction& txn, const Snapshot& snap) -> Status {
      EXPECT_EQ(snap.version, v);
      RETURN_IF_ERROR(
          txn.Exec("INSERT INTO offsets VALUES ('a', ?) ON CONFLICT (name) DO UPDATE "
                   "SET v = excluded.v",
                   {v}));
      return fail ? Internal("injected") : Status::Ok();
    };
    auto r = lake_->Commit(req);
    if (!r.ok()) (void)lake_->AbortWrite(s);
    return r;
  };
  ASSERT_TRUE(write(1, false).ok());
  EXPECT_EQ(write(2, true).status().code(), Code::kInternal);
  EXPECT_EQ(lake_->GetTable(orders_)->current_version, 1);
  EXPECT_EQ(catalog_->Query("SELECT v FROM offsets")->Int(0, 0), 1);  // rolled back together
}

TEST_F(LakeTest, AppendWithAnotherSchemaIsRefused) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  auto bad = Write(orders_, WriteMode::kAppend, 1, {{"id", "VARCHAR"}, {"name", "VARCHAR"}});
  EXPECT_EQ(bad.status().code(), Code::kConflict);
  EXPECT_NE(bad.status().message().find("'id'"), std::string::npos) << bad.status().message();
  EXPECT_EQ(lake_->GetTable(orders_)->current_version, 1);
}

TEST_F(LakeTest, BadRequestsChangeNothing) {
  auto s = lake_->BeginWrite(orders_);
  ASSERT_TRUE(s.ok());
  CommitRequest req{.staging = *s, .schema = kSchema};
  req.files.push_back({"missing.parquet", 1});
  EXPECT_EQ(lake_->Commit(req).status().code(), Code::kInvalidArgument);
  req.files = {{"../../../etc/passwd", 1}};
  EXPECT_EQ(lake_->Commit(req).status().code(), Code::kInvalidArgument);
  req.files.clear();
  req.schema.clear();
  EXPECT_EQ(lake_->Commit(req).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(lake_->GetTable(orders_).status().code(), Code::kNotFound);
  ASSERT_TRUE(lake_->AbortWrite(*s).ok());
  EXPECT_TRUE(store_->List("_staging/raw/orders")->empty());
  EXPECT_TRUE(store_->List("_files")->empty());  // links made for the commit were undone
}

TEST_F(LakeTest, RecoverRemovesOrphans) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  ASSERT_TRUE(store_->Put("_staging/raw/orders/dead-write/x.parquet", "x").ok());
  ASSERT_TRUE(store_->Put("raw/orders/part-stray.parquet", "x").ok());
  ASSERT_TRUE(store_->Put("_files/raw/orders/part-stray.parquet", "x").ok());
  ASSERT_TRUE(store_->Put("_staging/raw/newtable/w/x.parquet", "x").ok());
  Open();
  ASSERT_TRUE(lake_->Recover().ok());
  EXPECT_FALSE(*store_->Exists("_staging/raw/orders/dead-write/x.parquet"));
  EXPECT_FALSE(*store_->Exists("raw/orders/part-stray.parquet"));
  EXPECT_FALSE(*store_->Exists("_files/raw/orders/part-stray.parquet"));
  EXPECT_FALSE(*store_->Exists("_staging/raw/newtable/w/x.parquet"));
  EXPECT_FALSE(*store_->Exists("_staging"));  // folders too, not just files
  ExpectFolderIsCurrent(orders_);
}

// A lake written with the first layout (_history/ and _staging/ inside the table folder, live
// names of superseded files not yet unlinked) is migrated by Recover: the folder then holds only
// the current snapshot and every retained snapshot reads its files from _files/.
TEST_F(LakeTest, RecoverMigratesTheFirstLayout) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 2).ok());
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1).ok());
  auto rows = catalog_->Query("SELECT live_key, history_key, removed_in FROM lake_files");
  ASSERT_TRUE(rows.ok());
  for (size_t i = 0; i < rows->size(); ++i) {
    std::string live = rows->Text(i, 0), name = rows->Text(i, 1);
    std::string old = "raw/orders/_history/" + live.substr(std::string("raw/orders/").size());
    if (!rows->IsNull(i, 2)) {
      ASSERT_TRUE(store_->Copy(name, old).ok());   // the old history name
      ASSERT_TRUE(store_->Copy(name, live).ok());  // a live name GC had not unlinked yet
    }
    ASSERT_TRUE(store_->Delete(name).ok());
    ASSERT_TRUE(
        catalog_->Exec("UPDATE lake_files SET history_key = ? WHERE live_key = ?", {old, live})
            .ok());
  }
  ASSERT_TRUE(store_->Put("raw/orders/_staging/w/x.parquet", "x").ok());
  ASSERT_EQ(ParquetUnder(orders_).size(), 6u);  // what DuckDB's ** glob counted
  Open();
  ASSERT_TRUE(lake_->Recover().ok());
  ExpectFolderIsCurrent(orders_);
  EXPECT_EQ(ParquetUnder(orders_).size(), 1u);
  EXPECT_FALSE(*store_->Exists("raw/orders/_history"));
  EXPECT_FALSE(*store_->Exists("raw/orders/_staging"));
  for (int64_t v : {1, 2}) {
    auto files = lake_->SnapshotFiles(orders_, v);
    ASSERT_TRUE(files.ok());
    for (const auto& f : *files) {
      EXPECT_EQ(f.key.rfind("_files/", 0), 0u) << f.key;
      EXPECT_EQ(store_->Get(f.key)->rfind("parquet-bytes-", 0), 0u) << f.key;
    }
  }
  ASSERT_TRUE(Write(orders_, WriteMode::kOverwrite, 1).ok());
  ExpectFolderIsCurrent(orders_);
}

// Replace (compaction): the listed files leave and the new ones arrive in one version; older
// versions still read the replaced files (from _files); a stale list is a conflict.
Result<Snapshot> ReplaceFiles(LakeTest& t, Lake& lake, ObjectStore& store, const TableRef& ref,
                              const std::vector<std::string>& replaces, int64_t rows,
                              std::optional<int64_t> expected = std::nullopt) {
  (void)t;
  ASSIGN_OR_RETURN(Staging s, lake.BeginWrite(ref));
  CommitRequest req;
  req.staging = s;
  req.schema = kSchema;
  req.replaces = replaces;
  req.expected_version = expected;
  RETURN_IF_ERROR(store.Put(s.prefix + "dt=2026-11-26/merged.parquet", "merged"));
  req.files.push_back({"dt=2026-11-26/merged.parquet", rows});
  return lake.Commit(req);
}

TEST_F(LakeTest, ReplaceSwapsFilesAtomically) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  auto before = lake_->SnapshotFiles(orders_);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 3u);
  std::vector<std::string> keys;
  for (const auto& f : *before) keys.push_back(f.key);
  auto snap = ReplaceFiles(*this, *lake_, *store_, orders_, keys, 30, 3);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(snap->version, 4);
  EXPECT_EQ(snap->operation, "replace");
  EXPECT_EQ(snap->file_count, 1);
  EXPECT_EQ(snap->total_rows, 30);
  auto now = lake_->SnapshotFiles(orders_);
  ASSERT_EQ(now->size(), 1u);
  EXPECT_NE(now->front().key.find("raw/orders/dt=2026-11-26/part-"), std::string::npos);
  // The replaced files left the folder when Commit returned.
  ExpectFolderIsCurrent(orders_);
  for (const auto& f : *before) EXPECT_FALSE(*store_->Exists(f.live_key)) << f.live_key;
  // Time travel: v3 still reads its three files (by their _files names).
  auto old = lake_->SnapshotFiles(orders_, 3);
  ASSERT_TRUE(old.ok());
  ASSERT_EQ(old->size(), 3u);
  for (const auto& f : *old) {
    EXPECT_EQ(f.key.rfind("_files/raw/orders/", 0), 0u) << f.key;
    EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  }
  // Replacing files that are no longer live (or never were) is a conflict; nothing changes.
  auto stale = ReplaceFiles(*this, *lake_, *store_, orders_, {keys[0]}, 10);
  EXPECT_EQ(stale.status().code(), Code::kConflict);
  auto bogus = ReplaceFiles(*this, *lake_, *store_, orders_, {"raw/orders/nope.parquet"}, 10);
  EXPECT_EQ(bogus.status().code(), Code::kConflict);
  EXPECT_EQ(lake_->GetTable(orders_)->current_version, 4);
  // The version compare-and-swap applies too.
  auto cas = ReplaceFiles(*this, *lake_, *store_, orders_, {now->front().key}, 30, 3);
  EXPECT_EQ(cas.status().code(), Code::kConflict);
  // Not with overwrite.
  auto s = lake_->BeginWrite(orders_);
  CommitRequest req;
  req.staging = *s;
  req.mode = WriteMode::kOverwrite;
  req.schema = kSchema;
  req.replaces = {now->front().key};
  EXPECT_EQ(lake_->Commit(req).status().code(), Code::kInvalidArgument);
  // The garbage collector keeps v3's files (retained).
  ASSERT_TRUE(lake_->CollectGarbage(NowMicros(), NowMicros() + 1).ok());
  EXPECT_EQ(LiveKeys(*now), FolderView(orders_));
  auto v3 = lake_->SnapshotFiles(orders_, 3);
  ASSERT_TRUE(v3.ok());
  for (const auto& f : *v3) EXPECT_TRUE(*store_->Exists(f.key));
  // A replaced file in a partition folder keeps that folder under _files (hive readers of the
  // old snapshot still see the partition column); its emptied partition folder is removed.
  ASSERT_TRUE(ReplaceFiles(*this, *lake_, *store_, orders_, {now->front().live_key}, 30).ok());
  auto v4 = lake_->SnapshotFiles(orders_, 4);
  ASSERT_TRUE(v4.ok());
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ(v4->front().key.rfind("_files/raw/orders/dt=2026-11-26/part-", 0), 0u);
  EXPECT_TRUE(*store_->Exists(v4->front().key));
  ExpectFolderIsCurrent(orders_);
}

// kill -9 at each step of a commit (append and overwrite), then restart: the table is either at
// the old version with the old files or at the new one with all of its files; the folder shows
// exactly the current snapshot; no staging is left.
class LakeCrashTest : public LakeTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(LakeCrashTest, CommitIsAllOrNothing) {
  for (WriteMode mode : {WriteMode::kAppend, WriteMode::kOverwrite}) {
    if (mode == WriteMode::kAppend && std::string(GetParam()) == "lake.roll.unlinked") continue;
    SCOPED_TRACE(std::string(WriteModeName(mode)));
    TableRef t{"raw", std::string("t_") + std::string(WriteModeName(mode))};
    ASSERT_TRUE(Write(t, WriteMode::kAppend, 2).ok());
    lake_.reset();
    catalog_.reset();
    pid_t pid = fork();
    if (pid == 0) {
      setenv("LAKELOOP_CRASH_AT", GetParam(), 1);
      ReloadCrashPoints();
      Open();
      auto r = Write(t, mode, 3);
      _exit(r.ok() ? 0 : 3);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "crash point not reached";
    Open();
    ASSERT_TRUE(lake_->Recover().ok());
    auto info = lake_->GetTable(t);
    ASSERT_TRUE(info.ok());
    int64_t v = info->current_version;
    ASSERT_TRUE(v == 1 || v == 2) << v;
    auto files = lake_->SnapshotFiles(t);
    ASSERT_TRUE(files.ok());
    size_t want = v == 1 ? 2 : (mode == WriteMode::kAppend ? 5 : 3);
    EXPECT_EQ(files->size(), want);
    for (const auto& f : *files) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
    ExpectFolderIsCurrent(t);
    EXPECT_TRUE(store_->List("_staging/" + t.zone + "/" + t.name)->empty());
    if (v == 2) {
      auto old = lake_->SnapshotFiles(t, 1);
      ASSERT_TRUE(old.ok());
      for (const auto& f : *old) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
      auto manifest = store_->Get(t.zone + "/" + t.name + "/_manifests/current.json");
      ASSERT_TRUE(manifest.ok());
      EXPECT_NE(manifest->find("\"version\":2"), std::string::npos);
    }
    // The next commit works.
    EXPECT_TRUE(Write(t, WriteMode::kAppend, 1).ok());
  }
}

// The same kill -9 at each step for a replace of two files by one.
TEST_P(LakeCrashTest, ReplaceIsAllOrNothing) {
  TableRef t{"raw", "t_replace"};
  ASSERT_TRUE(Write(t, WriteMode::kAppend, 1).ok());
  ASSERT_TRUE(Write(t, WriteMode::kAppend, 1).ok());
  std::vector<std::string> keys;
  auto current = lake_->SnapshotFiles(t);
  ASSERT_TRUE(current.ok());
  for (const auto& f : *current) keys.push_back(f.key);
  lake_.reset();
  catalog_.reset();
  pid_t pid = fork();
  if (pid == 0) {
    setenv("LAKELOOP_CRASH_AT", GetParam(), 1);
    ReloadCrashPoints();
    Open();
    auto r = ReplaceFiles(*this, *lake_, *store_, t, keys, 20);
    _exit(r.ok() ? 0 : 3);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "crash point not reached";
  Open();
  ASSERT_TRUE(lake_->Recover().ok());
  int64_t v = lake_->GetTable(t)->current_version;
  ASSERT_TRUE(v == 2 || v == 3) << v;
  auto files = lake_->SnapshotFiles(t);
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), v == 2 ? 2u : 1u);
  for (const auto& f : *files) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  ExpectFolderIsCurrent(t);
  EXPECT_TRUE(store_->List("_staging/" + t.zone + "/" + t.name)->empty());
  if (v == 3) {
    auto old = lake_->SnapshotFiles(t, 2);
    ASSERT_TRUE(old.ok());
    for (const auto& f : *old) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  }
}

INSTANTIATE_TEST_SUITE_P(Steps, LakeCrashTest,
                         ::testing::Values("lake.commit.staged", "lake.commit.before_catalog",
                                           "lake.commit.after_catalog", "lake.roll.history_link",
                                           "lake.roll.unlinked", "lake.roll.moved_file",
                                           "lake.roll.manifest", "lake.roll.published"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '.' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace lakeloop::lake
