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
  std::set<std::string> Keys(const std::vector<DataFile>& files) {
    std::set<std::string> out;
    for (const auto& f : files) out.insert(f.key);
    return out;
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
                          "x_snapshots.t", "main.t", "raw.a;drop"}) {
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
  EXPECT_EQ(Keys(*current), FolderView(orders_));
  for (const auto& f : *current) EXPECT_TRUE(*store_->Exists(f.key));
  auto manifest = store_->Get("raw/orders/_manifests/current.json");
  ASSERT_TRUE(manifest.ok());
  EXPECT_NE(manifest->find("\"version\":2"), std::string::npos);
  EXPECT_NE(manifest->find("\"row_count\":30"), std::string::npos);
  EXPECT_TRUE(store_->List("raw/orders/_staging")->empty());
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
  // Time travel: v1 is served from _history names, with the same content.
  auto v1 = lake_->SnapshotFiles(orders_, 1);
  ASSERT_TRUE(v1.ok());
  ASSERT_EQ(v1->size(), 2u);
  for (const auto& f : *v1) {
    EXPECT_NE(f.key.find("/_history/"), std::string::npos);
    EXPECT_EQ(store_->Get(f.key)->rfind("parquet-bytes-", 0), 0u);
  }
  // A query that started before the overwrite may still read the old live names...
  ASSERT_TRUE(lake_->CollectGarbage(NowMicros(), /*oldest_query_start=*/0).ok());
  EXPECT_TRUE(*store_->Exists(old_files[0].key));
  // ...and once none runs, the table folder holds exactly the current snapshot.
  auto gc = lake_->CollectGarbage(NowMicros(), NowMicros());
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->files_deleted, 2);
  EXPECT_EQ(Keys(*lake_->SnapshotFiles(orders_)), FolderView(orders_));
  EXPECT_EQ(FolderView(orders_).size(), 1u);
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
  EXPECT_TRUE(Write(orders_, WriteMode::kAppend, 1, kSchema, /*expected=*/1).ok());
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
  EXPECT_TRUE(store_->List("raw/orders/_staging")->empty());
}

TEST_F(LakeTest, RecoverRemovesOrphans) {
  ASSERT_TRUE(Write(orders_, WriteMode::kAppend, 1).ok());
  ASSERT_TRUE(store_->Put("raw/orders/_staging/dead-write/x.parquet", "x").ok());
  ASSERT_TRUE(store_->Put("raw/orders/part-stray.parquet", "x").ok());
  ASSERT_TRUE(store_->Put("raw/newtable/_staging/w/x.parquet", "x").ok());
  Open();
  ASSERT_TRUE(lake_->Recover().ok());
  EXPECT_FALSE(*store_->Exists("raw/orders/_staging/dead-write/x.parquet"));
  EXPECT_FALSE(*store_->Exists("raw/orders/part-stray.parquet"));
  EXPECT_FALSE(*store_->Exists("raw/newtable/_staging/w/x.parquet"));
  EXPECT_FALSE(*store_->Exists("raw/orders/_staging"));  // folders too, not just files
  EXPECT_EQ(Keys(*lake_->SnapshotFiles(orders_)), FolderView(orders_));
}

// Replace (compaction): the listed files leave and the new ones arrive in one version; older
// versions still read the replaced files (from _history); a stale list is a conflict.
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
  // Time travel: v3 still reads its three files (now under _history).
  auto old = lake_->SnapshotFiles(orders_, 3);
  ASSERT_TRUE(old.ok());
  ASSERT_EQ(old->size(), 3u);
  for (const auto& f : *old) {
    EXPECT_NE(f.key.find("/_history/"), std::string::npos) << f.key;
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
  // After the garbage collector, the replaced live names are gone; _history stays for v3.
  ASSERT_TRUE(lake_->CollectGarbage(NowMicros(), NowMicros() + 1).ok());
  for (const auto& k : keys) EXPECT_FALSE(*store_->Exists(k)) << k;
  EXPECT_EQ(Keys(*now), FolderView(orders_));
  auto v3 = lake_->SnapshotFiles(orders_, 3);
  ASSERT_TRUE(v3.ok());
  for (const auto& f : *v3) EXPECT_TRUE(*store_->Exists(f.key));
  // A replaced file in a partition folder keeps that folder under _history (hive readers of the
  // old snapshot still see the partition column).
  ASSERT_TRUE(ReplaceFiles(*this, *lake_, *store_, orders_, {now->front().key}, 30).ok());
  auto v4 = lake_->SnapshotFiles(orders_, 4);
  ASSERT_TRUE(v4.ok());
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_NE(v4->front().key.find("raw/orders/_history/dt=2026-11-26/part-"), std::string::npos);
  EXPECT_TRUE(*store_->Exists(v4->front().key));
}

// kill -9 at each step of a commit (append and overwrite), then restart: the table is either at
// the old version with the old files or at the new one with all of its files; the folder shows
// exactly the current snapshot; no staging is left.
class LakeCrashTest : public LakeTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(LakeCrashTest, CommitIsAllOrNothing) {
  for (WriteMode mode : {WriteMode::kAppend, WriteMode::kOverwrite}) {
    if (mode == WriteMode::kAppend && std::string(GetParam()) == "lake.roll.history_link") continue;
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
    EXPECT_EQ(Keys(*files), FolderView(t));
    EXPECT_TRUE(store_->List(t.zone + "/" + t.name + "/_staging")->empty());
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
  EXPECT_EQ(Keys(*files), FolderView(t));
  EXPECT_TRUE(store_->List(t.zone + "/" + t.name + "/_staging")->empty());
  if (v == 3) {
    auto old = lake_->SnapshotFiles(t, 2);
    ASSERT_TRUE(old.ok());
    for (const auto& f : *old) EXPECT_TRUE(*store_->Exists(f.key)) << f.key;
  }
}

INSTANTIATE_TEST_SUITE_P(Steps, LakeCrashTest,
                         ::testing::Values("lake.commit.staged", "lake.commit.before_catalog",
                                           "lake.commit.after_catalog", "lake.roll.history_link",
                                           "lake.roll.moved_file", "lake.roll.manifest",
                                           "lake.roll.published"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '.' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace lakeloop::lake
