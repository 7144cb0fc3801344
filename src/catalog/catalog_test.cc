// Conformance suite for catalog::Store backends (parameterised over a factory), plus tokens.
#include "catalog/catalog.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "core/ids.h"
#include "core/time.h"

namespace lakeloop::catalog {
namespace {
namespace fs = std::filesystem;

struct Backend {
  std::string name;
  // Opens a store on `dir`; a second call with the same dir opens the same catalog.
  std::function<Result<std::unique_ptr<Store>>(const fs::path& dir)> open;
};

class StoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lakeloop-catalog-" + RandomHex(6));
    fs::create_directories(dir_);
    auto s = GetParam().open(dir_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::unique_ptr<Store> store_;
};

const std::vector<Migration> kMigrations = {
    {"m", 1, "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"},
    {"m", 2, "ALTER TABLE kv ADD COLUMN note TEXT; CREATE INDEX kv_v ON kv (v)"},
    {"other", 1, "CREATE TABLE other_t (id BIGINT PRIMARY KEY)"},
};

TEST_P(StoreConformance, MigrationsApplyOnceAndRecordVersions) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());  // idempotent
  auto versions = SchemaVersions(*store_);
  ASSERT_TRUE(versions.ok());
  std::vector<std::pair<std::string, int>> want = {{"m", 2}, {"other", 1}};
  EXPECT_EQ(*versions, want);
  EXPECT_TRUE(store_
                  ->Exec("INSERT INTO kv (k, v, note) VALUES (?, ?, ?)",
                         {std::string("a"), int64_t{1}, std::string("n")})
                  .ok());
}

TEST_P(StoreConformance, RefusesCatalogFromNewerBinary) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  std::vector<Migration> older = {kMigrations[0]};
  EXPECT_EQ(Migrate(*store_, older).code(), Code::kConflict);
}

TEST_P(StoreConformance, FailedMigrationLeavesVersionUnchanged) {
  ASSERT_TRUE(Migrate(*store_, {kMigrations[0]}).ok());
  std::vector<Migration> broken = {kMigrations[0], {"m", 2, "ALTER TABLE nope ADD COLUMN x TEXT"}};
  EXPECT_FALSE(Migrate(*store_, broken).ok());
  auto versions = SchemaVersions(*store_);
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ((*versions)[0].second, 1);
}

TEST_P(StoreConformance, UncommittedTransactionRollsBack) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  {
    auto txn = store_->Begin();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->Exec("INSERT INTO kv (k, v) VALUES ('a', 1)").ok());
  }
  auto rows = store_->Query("SELECT count(*) FROM kv");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Int(0, 0), 0);
}

TEST_P(StoreConformance, ConstraintViolationIsConflictAndChangesNothing) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  ASSERT_TRUE(store_->Exec("INSERT INTO kv (k, v) VALUES ('a', 1)").ok());
  auto txn = store_->Begin();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE((*txn)->Exec("UPDATE kv SET v = 5").ok());
  EXPECT_EQ((*txn)->Exec("INSERT INTO kv (k, v) VALUES ('a', 2)").code(), Code::kConflict);
  txn->reset();
  EXPECT_EQ(store_->Query("SELECT v FROM kv")->Int(0, 0), 1);
}

TEST_P(StoreConformance, ConcurrentTransactionsSerialise) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  ASSERT_TRUE(store_->Exec("INSERT INTO kv (k, v) VALUES ('n', 0)").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto txn = store_->Begin();
        ASSERT_TRUE(txn.ok());
        auto cur = (*txn)->Query("SELECT v FROM kv WHERE k = 'n'");
        ASSERT_TRUE(cur.ok());
        ASSERT_TRUE((*txn)->Exec("UPDATE kv SET v = ? WHERE k = 'n'", {cur->Int(0, 0) + 1}).ok());
        ASSERT_TRUE((*txn)->Commit().ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store_->Query("SELECT v FROM kv WHERE k = 'n'")->Int(0, 0), 200);
}

TEST_P(StoreConformance, SecondHandleSeesCommittedData) {
  ASSERT_TRUE(Migrate(*store_, kMigrations).ok());
  ASSERT_TRUE(store_->Exec("INSERT INTO kv (k, v) VALUES ('x', 42)").ok());
  auto other = GetParam().open(dir_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->Query("SELECT v FROM kv WHERE k = 'x'")->Int(0, 0), 42);
}

TEST_P(StoreConformance, ValuesRoundTrip) {
  ASSERT_TRUE(store_->Exec("CREATE TABLE t (i BIGINT, r DOUBLE PRECISION, s TEXT, n TEXT)").ok());
  ASSERT_TRUE(store_
                  ->Exec("INSERT INTO t VALUES (?, ?, ?, ?)",
                         {int64_t{1} << 60, 2.5, std::string("it's"), Value{}})
                  .ok());
  auto rows = store_->Query("SELECT i, r, s, n FROM t");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Int(0, 0), int64_t{1} << 60);
  EXPECT_EQ(rows->Real(0, 1), 2.5);
  EXPECT_EQ(rows->Text(0, 2), "it's");
  EXPECT_TRUE(rows->IsNull(0, 3));
}

TEST_P(StoreConformance, TokensAreHashedVerifiedAndRevocable) {
  ASSERT_TRUE(Migrate(*store_, TokenStore::Migrations()).ok());
  TokenStore tokens(store_.get());
  auto reader = tokens.Create(Role::kReader, "ci");
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*tokens.Verify(reader->token), Role::kReader);
  EXPECT_EQ(tokens.Verify("ll_wrong").status().code(), Code::kUnauthenticated);
  // Stored hashed: the clear token appears nowhere in the table.
  auto rows = store_->Query("SELECT token_sha256 FROM tokens");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Text(0, 0), Sha256Hex(reader->token));
  // Another handle (another process) verifies it through the store.
  auto other = GetParam().open(dir_);
  ASSERT_TRUE(other.ok());
  TokenStore tokens2(other->get());
  EXPECT_EQ(*tokens2.Verify(reader->token), Role::kReader);
  ASSERT_TRUE(tokens.Revoke(reader->id).ok());
  EXPECT_EQ(tokens.Verify(reader->token).status().code(), Code::kUnauthenticated);
  EXPECT_EQ(tokens.Revoke(reader->id).code(), Code::kNotFound);
}

// Verify reads the in-memory table only (it runs on network threads): a row written behind the
// TokenStore's back is unknown until Load; Create and Revoke refresh the table; expiry is honoured.
TEST_P(StoreConformance, TokenVerificationIsInMemory) {
  ASSERT_TRUE(Migrate(*store_, TokenStore::Migrations()).ok());
  TokenStore tokens(store_.get());
  auto writer = tokens.Create(Role::kWriter, "ci");
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ(*tokens.Verify(writer->token), Role::kWriter);
  ASSERT_TRUE(store_
                  ->Exec("INSERT INTO tokens (id, token_sha256, role, name, created_at) "
                         "VALUES ('tok_x', ?, 'admin', '', 0)",
                         {Sha256Hex("ll_behind_its_back")})
                  .ok());
  EXPECT_EQ(tokens.Verify("ll_behind_its_back").status().code(), Code::kUnauthenticated);
  ASSERT_TRUE(tokens.Load().ok());
  EXPECT_EQ(*tokens.Verify("ll_behind_its_back"), Role::kAdmin);
  // Expired tokens no longer verify; unexpired ones do.
  auto old = tokens.Create(Role::kReader, "old", NowMicros() - 1);
  auto fresh = tokens.Create(Role::kReader, "fresh", NowMicros() + 3'600'000'000LL);
  ASSERT_TRUE(old.ok() && fresh.ok());
  EXPECT_EQ(tokens.Verify(old->token).status().code(), Code::kUnauthenticated);
  EXPECT_EQ(*tokens.Verify(fresh->token), Role::kReader);
  ASSERT_TRUE(tokens.Revoke(fresh->id).ok());
  EXPECT_EQ(tokens.Verify(fresh->token).status().code(), Code::kUnauthenticated);
}

TEST_P(StoreConformance, DefinitionsDiffAndApply) {
  ASSERT_TRUE(Migrate(*store_, Definitions::Migrations()).ok());
  Definitions defs(store_.get());
  std::vector<Definitions::Definition> v1 = {
      {"source", "orders", "type: files", "sources/orders.yaml"},
      {"model", "daily", "SELECT 1", "models/daily.sql"}};
  auto diff = defs.Diff(v1, {"source", "model"});
  ASSERT_TRUE(diff.ok());
  ASSERT_EQ(diff->size(), 2u);
  EXPECT_EQ((*diff)[0].kind, Definitions::ChangeKind::kCreate);
  ASSERT_TRUE(defs.Apply(*diff).ok());
  EXPECT_TRUE(defs.Diff(v1, {"source", "model"})->empty());  // applying twice changes nothing
  std::vector<Definitions::Definition> v2 = {
      {"source", "orders", "type: sqlite", "sources/orders.yaml"}};
  diff = defs.Diff(v2, {"source", "model"});
  ASSERT_EQ(diff->size(), 2u);
  EXPECT_EQ((*diff)[0].kind, Definitions::ChangeKind::kUpdate);
  EXPECT_EQ((*diff)[1].kind, Definitions::ChangeKind::kDelete);
  EXPECT_EQ((*diff)[1].definition.name, "daily");
  // Kinds outside the diff are left alone.
  EXPECT_TRUE(defs.Diff({}, {"stream"})->empty());
  ASSERT_TRUE(defs.Apply(*diff).ok());
  auto all = defs.List();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].body, "type: sqlite");
  EXPECT_EQ((*all)[0].sha256, Sha256Hex("type: sqlite"));
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance,
                         ::testing::Values(Backend{
                             "sqlite",
                             [](const fs::path& dir) { return OpenSqlite(dir / "catalog.db"); }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace lakeloop::catalog
