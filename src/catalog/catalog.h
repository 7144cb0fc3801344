// catalog: the single source of truth for what exists (tables and snapshots, tokens, and later
// runs, definitions, lineage). A small transactional SQL store with portable SQL ('?' placeholders,
// standard types), a schema version per module and per-module migrations: modules write their own
// queries against `Store` instead of one wide interface re-implemented per backend.
// Backends: SQLite (embedded default); PostgreSQL comes later behind the same `Store`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace lakeloop::catalog {

// A SQL value: NULL, integer, real or text.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

// A materialised query result. Rows are small here (catalog queries), so copying is fine.
class Rows {
 public:
  Rows() = default;
  Rows(std::vector<std::string> columns, std::vector<std::vector<Value>> rows)
      : columns_(std::move(columns)), rows_(std::move(rows)) {}
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  const std::vector<std::string>& columns() const { return columns_; }
  bool IsNull(size_t row, size_t col) const;
  int64_t Int(size_t row, size_t col) const;  // 0 for NULL
  double Real(size_t row, size_t col) const;
  std::string Text(size_t row, size_t col) const;  // "" for NULL
  const Value& At(size_t row, size_t col) const { return rows_[row][col]; }

 private:
  std::vector<std::string> columns_;
  std::vector<std::vector<Value>> rows_;
};

// Statements inside one transaction. Not thread-safe; use from one thread. Destroying an
// uncommitted transaction rolls it back.
class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual Status Exec(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  virtual Result<Rows> Query(std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Rows changed by the last Exec.
  virtual int64_t Changes() = 0;
  virtual Status Commit() = 0;
};

// A transactional SQL store. Thread-safe: transactions are serialised (the catalog is small and
// its transactions short; commits of data are cheap metadata updates).
class Store {
 public:
  virtual ~Store() = default;
  // A read-write transaction; it takes the write lock up front (BEGIN IMMEDIATE on SQLite).
  virtual Result<std::unique_ptr<Transaction>> Begin() = 0;
  // One statement in its own transaction.
  Status Exec(std::string_view sql, const std::vector<Value>& params = {});
  Result<Rows> Query(std::string_view sql, const std::vector<Value>& params = {});
  virtual std::string_view backend() const = 0;
};

// Opens (creating if needed) a SQLite catalog: WAL, synchronous=FULL, busy timeout.
Result<std::unique_ptr<Store>> OpenSqlite(const std::filesystem::path& file);

// A schema change owned by one module. Versions per module start at 1 and only grow.
struct Migration {
  std::string module;
  int version;
  std::string sql;  // one or more statements, portable SQL
};

// Applies, in one transaction per migration, every migration newer than the module's recorded
// version. Idempotent. Fails with kFailedPrecondition-like kConflict if the store is newer than
// this binary knows (a downgrade).
Status Migrate(Store& store, const std::vector<Migration>& migrations);
// The schema version per module currently recorded.
Result<std::vector<std::pair<std::string, int>>> SchemaVersions(Store& store);

// Roles of API tokens, weakest first.
enum class Role { kNone = 0, kReader = 1, kWriter = 2, kAdmin = 3 };
std::string_view RoleName(Role role);
Result<Role> ParseRole(std::string_view name);

// API tokens, stored hashed (SHA-256); the clear token is shown once at creation. Thread-safe.
// The table of active tokens (hash, role, expiry) is held in memory: loaded on first use and
// reloaded whenever Create or Revoke changes it, so Verify never touches the store (it runs on
// network threads, and an unknown token must cost no more than a known one). One process owns a
// data directory, so every change goes through this object.
class TokenStore {
 public:
  explicit TokenStore(Store* store) : store_(store) {}
  static std::vector<Migration> Migrations();

  struct Created {
    std::string id;
    std::string token;  // clear text, shown once
  };
  // `expires_at` (microseconds since the epoch) 0 = never.
  Result<Created> Create(Role role, std::string_view name, int64_t expires_at = 0);
  // kUnauthenticated for an unknown, expired or revoked token. In memory after the first call.
  Result<Role> Verify(std::string_view token);
  Status Revoke(std::string_view id);
  // (Re)loads the in-memory table from the store.
  Status Load();

 private:
  struct Entry {
    Role role;
    int64_t expires_at;  // 0 = never
  };
  using Table = std::unordered_map<std::string, Entry>;  // sha256 hex -> entry
  std::shared_ptr<const Table> table();

  Store* store_;
  std::mutex mu_;
  std::shared_ptr<const Table> table_;  // guarded by mu_; replaced, never changed in place
};

// Applied project definitions (sources, models, streams, ...): the text of each definition file as
// it was applied, so the server runs what `lakeloop apply` accepted, never what a file says now.
// Thread-safe.
class Definitions {
 public:
  explicit Definitions(Store* store) : store_(store) {}
  static std::vector<Migration> Migrations();

  struct Definition {
    std::string kind;  // "source", "model", "stream", ...
    std::string name;
    std::string body;    // the definition's text (YAML, SQL, or a JSON object of several files)
    std::string origin;  // the project-relative file(s) it came from
    std::string sha256;  // of body
    Micros applied_at = 0;
  };
  Result<std::vector<Definition>> List(std::string_view kind = {});

  enum class ChangeKind { kCreate, kUpdate, kDelete };
  struct Change {
    ChangeKind kind;
    Definition definition;  // for kDelete: kind and name
  };
  // What applying `wanted` (the complete set of definitions of `kinds`) would change.
  Result<std::vector<Change>> Diff(const std::vector<Definition>& wanted,
                                   const std::vector<std::string>& kinds);
  // Applies the changes in one transaction.
  Status Apply(const std::vector<Change>& changes);

 private:
  Store* store_;
};

}  // namespace lakeloop::catalog
