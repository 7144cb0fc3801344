#include "catalog/catalog.h"

#include <algorithm>
#include <map>

#include "core/ids.h"
#include "core/time.h"

namespace lakeloop::catalog {

bool Rows::IsNull(size_t row, size_t col) const {
  return std::holds_alternative<std::monostate>(rows_[row][col]);
}
int64_t Rows::Int(size_t row, size_t col) const {
  const Value& v = rows_[row][col];
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  if (auto* s = std::get_if<std::string>(&v)) return std::stoll(*s);
  return 0;
}
double Rows::Real(size_t row, size_t col) const {
  const Value& v = rows_[row][col];
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return 0;
}
std::string Rows::Text(size_t row, size_t col) const {
  const Value& v = rows_[row][col];
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  return "";
}

Status Store::Exec(std::string_view sql, const std::vector<Value>& params) {
  ASSIGN_OR_RETURN(auto txn, Begin());
  RETURN_IF_ERROR(txn->Exec(sql, params));
  return txn->Commit();
}

Result<Rows> Store::Query(std::string_view sql, const std::vector<Value>& params) {
  ASSIGN_OR_RETURN(auto txn, Begin());
  ASSIGN_OR_RETURN(Rows rows, txn->Query(sql, params));
  RETURN_IF_ERROR(txn->Commit());
  return rows;
}

namespace {
constexpr std::string_view kVersionsTable =
    "CREATE TABLE IF NOT EXISTS schema_versions ("
    " module TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at BIGINT NOT NULL)";
}

Status Migrate(Store& store, const std::vector<Migration>& migrations) {
  RETURN_IF_ERROR(store.Exec(kVersionsTable));
  std::map<std::string, std::vector<const Migration*>> by_module;
  for (const auto& m : migrations) by_module[m.module].push_back(&m);
  for (auto& [module, list] : by_module) {
    std::sort(list.begin(), list.end(),
              [](const Migration* a, const Migration* b) { return a->version < b->version; });
    for (const Migration* m : list) {
      ASSIGN_OR_RETURN(auto txn, store.Begin());
      ASSIGN_OR_RETURN(
          Rows cur, txn->Query("SELECT version FROM schema_versions WHERE module = ?", {module}));
      int64_t have = cur.empty() ? 0 : cur.Int(0, 0);
      int64_t newest = list.back()->version;
      if (have > newest) {
        return Conflict("catalog: module '" + module + "' is at schema version " +
                        std::to_string(have) + " but this lakeloop knows only up to " +
                        std::to_string(newest) + " (a newer lakeloop wrote this catalog)");
      }
      if (m->version <= have) continue;
      RETURN_IF_ERROR(
          txn->Exec(m->sql).WithContext("migration " + module + " v" + std::to_string(m->version)));
      RETURN_IF_ERROR(
          txn->Exec("INSERT INTO schema_versions (module, version, applied_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (module) DO UPDATE SET version = excluded.version, "
                    "applied_at = excluded.applied_at",
                    {module, static_cast<int64_t>(m->version), NowMicros()}));
      RETURN_IF_ERROR(txn->Commit());
    }
  }
  return Status::Ok();
}

Result<std::vector<std::pair<std::string, int>>> SchemaVersions(Store& store) {
  RETURN_IF_ERROR(store.Exec(kVersionsTable));
  ASSIGN_OR_RETURN(Rows rows,
                   store.Query("SELECT module, version FROM schema_versions ORDER BY module"));
  std::vector<std::pair<std::string, int>> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    out.emplace_back(rows.Text(i, 0), static_cast<int>(rows.Int(i, 1)));
  }
  return out;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kWriter:
      return "writer";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

Result<Role> ParseRole(std::string_view name) {
  if (name == "reader") return Role::kReader;
  if (name == "writer") return Role::kWriter;
  if (name == "admin") return Role::kAdmin;
  return InvalidArgument("unknown role '" + std::string(name) + "' (reader|writer|admin)");
}

std::vector<Migration> TokenStore::Migrations() {
  return {{"tokens", 1,
           "CREATE TABLE tokens ("
           " id TEXT PRIMARY KEY,"
           " token_sha256 TEXT NOT NULL UNIQUE,"
           " role TEXT NOT NULL,"
           " name TEXT NOT NULL DEFAULT '',"
           " created_at BIGINT NOT NULL,"
           " revoked_at BIGINT)"},
          {"tokens", 2, "ALTER TABLE tokens ADD COLUMN expires_at BIGINT"}};
}

Status TokenStore::Load() {
  ASSIGN_OR_RETURN(Rows rows, store_->Query("SELECT token_sha256, role, expires_at FROM tokens "
                                            "WHERE revoked_at IS NULL",
                                            {}));
  auto table = std::make_shared<Table>();
  for (size_t i = 0; i < rows.size(); ++i) {
    auto role = ParseRole(rows.Text(i, 1));
    if (!role.ok()) continue;  // a role this binary does not know grants nothing
    int64_t expires = rows.IsNull(i, 2) ? 0 : rows.Int(i, 2);
    table->emplace(rows.Text(i, 0), Entry{*role, expires});
  }
  std::lock_guard<std::mutex> lock(mu_);
  table_ = std::move(table);
  return Status::Ok();
}

std::shared_ptr<const TokenStore::Table> TokenStore::table() {
  std::lock_guard<std::mutex> lock(mu_);
  return table_;
}

Result<TokenStore::Created> TokenStore::Create(Role role, std::string_view name,
                                               int64_t expires_at) {
  if (role == Role::kNone) return InvalidArgument("a token needs a role");
  Created c;
  c.id = "tok_" + RandomHex(6);
  c.token = "ll_" + RandomHex(24);
  std::string hash = Sha256Hex(c.token);
  RETURN_IF_ERROR(store_->Exec(
      "INSERT INTO tokens (id, token_sha256, role, name, created_at) VALUES (?, ?, ?, ?, ?)",
      {c.id, hash, std::string(RoleName(role)), std::string(name), NowMicros()}));
  if (expires_at > 0) {
    RETURN_IF_ERROR(
        store_->Exec("UPDATE tokens SET expires_at = ? WHERE id = ?", {expires_at, c.id}));
  }
  RETURN_IF_ERROR(Load());
  return c;
}

Result<Role> TokenStore::Verify(std::string_view token) {
  auto t = table();
  if (!t) {
    RETURN_IF_ERROR(Load());
    t = table();
  }
  auto it = t->find(Sha256Hex(token));
  if (it == t->end()) return Unauthenticated("unknown or revoked token");
  if (it->second.expires_at > 0 && it->second.expires_at <= NowMicros()) {
    return Unauthenticated("the token has expired");
  }
  return it->second.role;
}

Status TokenStore::Revoke(std::string_view id) {
  {
    ASSIGN_OR_RETURN(auto txn, store_->Begin());
    RETURN_IF_ERROR(
        txn->Exec("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                  {NowMicros(), std::string(id)}));
    if (txn->Changes() == 0) return NotFound("no active token with id '" + std::string(id) + "'");
    RETURN_IF_ERROR(txn->Commit());
  }  // the transaction releases the store's connection before Load uses it
  return Load();
}

std::vector<Migration> Definitions::Migrations() {
  return {{"definitions", 1,
           "CREATE TABLE definitions ("
           " kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, origin TEXT NOT NULL,"
           " sha256 TEXT NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (kind, name))"}};
}

Result<std::vector<Definitions::Definition>> Definitions::List(std::string_view kind) {
  std::string sql = "SELECT kind, name, body, origin, sha256, applied_at FROM definitions";
  std::vector<Value> params;
  if (!kind.empty()) {
    sql += " WHERE kind = ?";
    params.emplace_back(std::in_place_type<std::string>, kind);
  }
  sql += " ORDER BY kind, name";
  ASSIGN_OR_RETURN(Rows r, store_->Query(sql, params));
  std::vector<Definition> out;
  for (size_t i = 0; i < r.size(); ++i) {
    out.push_back(
        {r.Text(i, 0), r.Text(i, 1), r.Text(i, 2), r.Text(i, 3), r.Text(i, 4), r.Int(i, 5)});
  }
  return out;
}

Result<std::vector<Definitions::Change>> Definitions::Diff(const std::vector<Definition>& wanted,
                                                           const std::vector<std::string>& kinds) {
  ASSIGN_OR_RETURN(auto have, List());
  std::map<std::pair<std::string, std::string>, const Definition*> current;
  for (const auto& d : have) {
    if (std::find(kinds.begin(), kinds.end(), d.kind) != kinds.end()) {
      current[{d.kind, d.name}] = &d;
    }
  }
  std::vector<Change> out;
  for (const auto& w : wanted) {
    Definition d = w;
    d.sha256 = Sha256Hex(d.body);
    auto it = current.find({d.kind, d.name});
    if (it == current.end()) {
      out.push_back({ChangeKind::kCreate, d});
    } else {
      if (it->second->sha256 != d.sha256 || it->second->origin != d.origin) {
        out.push_back({ChangeKind::kUpdate, d});
      }
      current.erase(it);
    }
  }
  for (const auto& [key, d] : current) out.push_back({ChangeKind::kDelete, *d});
  return out;
}

Status Definitions::Apply(const std::vector<Change>& changes) {
  ASSIGN_OR_RETURN(auto txn, store_->Begin());
  Micros now = NowMicros();
  for (const auto& c : changes) {
    const Definition& d = c.definition;
    if (c.kind == ChangeKind::kDelete) {
      RETURN_IF_ERROR(
          txn->Exec("DELETE FROM definitions WHERE kind = ? AND name = ?", {d.kind, d.name}));
      continue;
    }
    RETURN_IF_ERROR(txn->Exec(
        "INSERT INTO definitions (kind, name, body, origin, sha256, applied_at) VALUES "
        "(?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, "
        "origin = excluded.origin, sha256 = excluded.sha256, applied_at = excluded.applied_at",
        {d.kind, d.name, d.body, d.origin, Sha256Hex(d.body), now}));
  }
  return txn->Commit();
}

}  // namespace lakeloop::catalog
