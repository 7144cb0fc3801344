// PostgreSQL sources against a real server started by the test (initdb + pg_ctl as the postgres
// user, on a free port, in a temp dir), stopped at the end. The server binaries are
// $LAKELOOP_PG_BIN when set, else looked up in `pg_config --bindir`,
// /usr/lib/postgresql/<newest>/bin and PATH. When none has
// them the tests skip, except under CI=true (CI must run every real component): then they fail.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <future>

#include "core/fs.h"
#include "ingest/ingest_test_util.h"

namespace lakeloop::ingest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kPassword = "pw-Xq7!zz-secret";

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

int Sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string ShOut(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof(buf), f)) out += buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// The folder holding initdb and pg_ctl, or empty.
std::string FindPostgresBin() {
  std::error_code ec;
  auto has_server = [&](const std::string& dir) {
    return !dir.empty() && std::filesystem::exists(dir + "/initdb", ec) &&
           std::filesystem::exists(dir + "/pg_ctl", ec);
  };
  // An explicit choice is the only candidate (so a test can also point it at nothing).
  if (const char* env = std::getenv("LAKELOOP_PG_BIN")) return has_server(env) ? env : "";
  std::vector<std::string> candidates;
  candidates.push_back(ShOut("pg_config --bindir 2>/dev/null"));
  std::vector<std::filesystem::path> versions;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    versions.push_back(e.path() / "bin");
  }
  std::sort(versions.rbegin(), versions.rend());
  for (const auto& v : versions) candidates.push_back(v.string());
  std::string initdb = ShOut("command -v initdb 2>/dev/null");
  if (!initdb.empty()) candidates.push_back(std::filesystem::path(initdb).parent_path().string());
  for (const auto& c : candidates) {
    if (has_server(c)) return c;
  }
  return "";
}

bool UnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) != "" && std::string(ci) != "0" &&
         std::string(ci) != "false";
}

// One server for the whole suite (initdb costs seconds).
class PostgresServer {
 public:
  static PostgresServer* Get() {
    static PostgresServer* server = [] {
      auto* s = new PostgresServer();
      s->error_ = s->Start();
      return s;
    }();
    return server;
  }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  void Stop() {
    if (started_) {
      Sh("runuser -u postgres -- " + bin_ + "/pg_ctl -D " + (dir_ / "data").string() +
         " -m immediate -w stop > /dev/null 2>&1");
      started_ = false;
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  // Runs SQL as the superuser; empty on success, else the error.
  std::string Exec(const std::string& sql) {
    std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port_) +
                           " user=postgres dbname=postgres password=" + kPassword;
    PGconn* c = PQconnectdb(conninfo.c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = PQerrorMessage(c);
      }
      PQclear(r);
    }
    PQfinish(c);
    return err;
  }

 private:
  std::string Start() {
    bin_ = FindPostgresBin();
    if (bin_.empty()) {
      return "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
             "(scripts/setup.sh) or set LAKELOOP_PG_BIN";
    }
    dir_ = std::filesystem::temp_directory_path() / ("ingest-pg-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "sock");
    { std::ofstream(dir_ / "pwfile") << kPassword << "\n"; }
    if (Sh("chown -R postgres:postgres " + dir_.string()) != 0) return "chown failed";
    port_ = FreePort();
    std::string d = dir_.string();
    if (Sh("runuser -u postgres -- " + bin_ + "/initdb -D " + d +
           "/data -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile=" + d +
           "/pwfile > " + d + "/initdb.log 2>&1") != 0) {
      return "initdb failed (see " + d + "/initdb.log)";
    }
    if (Sh("runuser -u postgres -- " + bin_ + "/pg_ctl -D " + d + "/data -l " + d +
           "/server.log -w -t 60 -o \"-p " + std::to_string(port_) + " -k " + d +
           "/sock -c listen_addresses=127.0.0.1 -c fsync=off\" start > /dev/null 2>&1") != 0) {
      return "pg_ctl start failed (see " + d + "/server.log)";
    }
    started_ = true;
    return "";
  }
  std::filesystem::path dir_;
  std::string bin_;
  int port_ = 0;
  bool started_ = false;
  std::string error_;
};

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresServer::Get()->Stop(); }
};
[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class PostgresTest : public IngestFixture {
 protected:
  void SetUp() override {
    IngestFixture::SetUp();
    server_ = PostgresServer::Get();
    if (!server_->error().empty()) {
      if (server_->error().find("not found") != std::string::npos && !UnderCi()) {
        GTEST_SKIP() << server_->error();
      }
      FAIL() << server_->error();
    }
    setenv("INGEST_TEST_PG_PASSWORD", kPassword, 1);
    static int n = 0;
    table_ = "orders_" + std::to_string(n++);
    ASSERT_EQ(server_->Exec("DROP TABLE IF EXISTS " + table_ + "; CREATE TABLE " + table_ +
                            " (id int PRIMARY KEY, amount numeric(10,2), note text, "
                            "paid boolean, meta jsonb, updated_at timestamptz NOT NULL)"),
              "");
  }

  std::string Dsn() const {
    return "postgresql://postgres:${INGEST_TEST_PG_PASSWORD}@127.0.0.1:" +
           std::to_string(server_->port()) + "/postgres";
  }

  SourceSpec OrdersSpec(const std::string& extra = "") {
    return Spec("type: postgres\ndsn: " + Dsn() + "\ntable: public." + table_ +
                "\ncursor: updated_at\nlookback: 1h\nkey: [id]\n" + extra);
  }

  PostgresServer* server_ = nullptr;
  std::string table_;
};

TEST_F(PostgresTest, IncrementalWithLookbackAndDedup) {
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ +
                          " VALUES "
                          "(1, 10.50, 'first', true, '{\"a\": 1}', '2026-11-26 08:00:00+00'),"
                          "(2, 20.00, 'quote \"x\", comma', false, NULL, '2026-11-26 09:00:00+00'),"
                          "(3, NULL, '', NULL, '[1,2]', '2026-11-26 12:00:00+02')"),  // 10:00 UTC
            "");
  auto spec = OrdersSpec();
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->cursor_after, "2026-11-26 10:00:00");
  auto table = lake_->GetTable({"raw", "orders"});
  ASSERT_TRUE(table.ok());
  std::vector<lake::Column> want = {{"id", "INTEGER"},
                                    {"amount", "DECIMAL(10,2)"},
                                    {"note", "VARCHAR"},
                                    {"paid", "BOOLEAN"},
                                    {"meta", "JSON"},
                                    {"updated_at", "TIMESTAMP"},
                                    {"_loaded_at", "TIMESTAMP"},
                                    {"_batch_id", "VARCHAR"}};
  EXPECT_EQ(table->schema, want);
  auto rows = Query("SELECT id, CAST(amount AS VARCHAR), note, paid FROM " + From("orders") +
                    " ORDER BY id");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(std::string(rows[1].as_array()[2].as_string()), "quote \"x\", comma");
  EXPECT_EQ(std::string(rows[2].as_array()[2].as_string()), "");  // empty string, not NULL
  EXPECT_TRUE(rows[2].as_array()[1].is_null());
  EXPECT_TRUE(rows[0].as_array()[3].as_bool());

  // New row, an update, and a late row with an older cursor inside the lookback window.
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ +
                          " VALUES (4, 4, 'new', true, NULL, "
                          "'2026-11-26 11:00:00+00');"
                          "UPDATE " +
                          table_ +
                          " SET note = 'paid', updated_at = "
                          "'2026-11-26 11:30:00+00' WHERE id = 2;"
                          "INSERT INTO " +
                          table_ +
                          " VALUES (5, 5, 'late', true, NULL, "
                          "'2026-11-26 10:40:00+00')"),
            "");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 3);
  EXPECT_EQ(r->cursor_after, "2026-11-26 11:30:00");
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ +
                          " VALUES (6, 6, 'later', true, NULL, "
                          "'2026-11-26 11:10:00+00')"),
            "");
  r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 1);
  EXPECT_GE(r->rows_deduplicated, 2);
  r = RunSource(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_loaded, 0);
  EXPECT_EQ(Count("orders"), 7);

  // Full refresh: everything once, as an overwrite.
  r = RunSource(spec, /*full_refresh=*/true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 6);
  EXPECT_EQ(Count("orders"), 6);
}

TEST_F(PostgresTest, CredentialsNeverLeak) {
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ + " VALUES (1, 1, 'a', true, NULL, now())"), "");
  auto spec = OrdersSpec();
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();

  // Nothing in the catalog holds the password.
  for (const char* table : {"ingest_files", "ingest_cursors", "lake_tables", "lake_snapshots"}) {
    auto rows = catalog_->Query(std::string("SELECT * FROM ") + table);
    ASSERT_TRUE(rows.ok());
    for (size_t i = 0; i < rows->size(); ++i) {
      for (size_t j = 0; j < rows->columns().size(); ++j) {
        EXPECT_THAT(rows->Text(i, j), Not(HasSubstr(kPassword))) << table;
      }
    }
  }
  auto db = ReadFile(root_ / "catalog.db");
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->find(kPassword), std::string::npos);

  // A wrong password: the error does not repeat it.
  setenv("INGEST_TEST_PG_PASSWORD", "wrong-pw-12345", 1);
  r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_THAT(r.status().message(), Not(HasSubstr("wrong-pw-12345")));
  EXPECT_THAT(r.status().message(), Not(HasSubstr(kPassword)));

  // An error that would echo the DSN (bad database name made of the secret) is masked too.
  setenv("INGEST_TEST_PG_PASSWORD", kPassword, 1);
  setenv("INGEST_TEST_PG_DB", "db-secret-name-777", 1);
  auto bad =
      Spec("type: postgres\ndsn: postgresql://postgres:${INGEST_TEST_PG_PASSWORD}@127.0.0.1:" +
               std::to_string(server_->port()) + "/${INGEST_TEST_PG_DB}\ntable: t\n",
           "sources/bad.yaml");
  r = RunSource(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), Not(HasSubstr("db-secret-name-777")));
  EXPECT_THAT(r.status().message(), HasSubstr("***"));

  unsetenv("INGEST_TEST_PG_PASSWORD");
  r = RunSource(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("INGEST_TEST_PG_PASSWORD is not set"));
}

TEST_F(PostgresTest, QueryWithBadRows) {
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ +
                          " VALUES (1, 1, 'a', true, NULL, "
                          "'2026-11-26 08:00:00+00'), (2, 2, NULL, true, NULL, "
                          "'2026-11-26 09:00:00+00')"),
            "");
  auto spec = Spec("type: postgres\ndsn: " + Dsn() + "\nquery: SELECT id, note, updated_at FROM " +
                       table_ + "\ncursor: updated_at\nrequired: [note]\nmax_rejected_share: 0.5\n",
                   "sources/q.yaml");
  auto r = RunSource(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 1);
  EXPECT_EQ(r->rows_rejected, 1);
  auto rej = Query("SELECT source_key, reason FROM " + From("q__rejected"));
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(std::string(rej[0].as_array()[0].as_string()), "updated_at=2026-11-26 09:00:00");
}

// Text timestamps (read whole: PostgreSQL text has no safe push-down) and unix seconds (pushed
// down as numbers) with a duration lookback, run after run.
TEST_F(PostgresTest, TextAndUnixCursorsWithLookback) {
  ASSERT_EQ(server_->Exec("DROP TABLE IF EXISTS ev; CREATE TABLE ev (id int PRIMARY KEY, "
                          "t_text text NOT NULL, t_unix bigint NOT NULL);"
                          "INSERT INTO ev VALUES (1, '2026-11-26 08:00:00', 1795680000),"
                          "(2, '2026-11-26T09:00:00Z', 1795683600),"
                          "(3, '2026-11-26T12:00:00+02:00', 1795687200)"),
            "");
  auto text = Spec("type: postgres\ndsn: " + Dsn() +
                       "\nquery: SELECT id, t_text FROM ev\ncursor: t_text\nlookback: 90m\n"
                       "key: [id]\n",
                   "sources/ev_text.yaml");
  auto unix = Spec("type: postgres\ndsn: " + Dsn() +
                       "\nquery: SELECT id, t_unix FROM ev\ncursor: t_unix\ncursor_type: "
                       "unix_seconds\nlookback: 90m\nkey: [id]\n",
                   "sources/ev_unix.yaml");
  for (const auto* spec : {&text, &unix}) {
    auto r = RunSource(*spec);
    ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 3);
    EXPECT_EQ(r->cursor_after, "2026-11-26 10:00:00");
    for (int i = 0; i < 2; ++i) {
      r = RunSource(*spec);
      ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
      EXPECT_EQ(r->rows_loaded, 0);
      EXPECT_EQ(r->rows_deduplicated, 2);  // 09:00 and 10:00 are inside 90 minutes
    }
  }
  ASSERT_EQ(server_->Exec("INSERT INTO ev VALUES (4, '2026-11-26T09:30:00Z', 1795685400)"), "");
  for (const auto* spec : {&text, &unix}) {
    auto r = RunSource(*spec);
    ASSERT_TRUE(r.ok()) << spec->name << ": " << r.status().ToString();
    EXPECT_EQ(r->rows_loaded, 1);
    EXPECT_EQ(Count(spec->name), 4);
  }
}

// Issue 7 item 5: a statement past statement_timeout fails the run cleanly, nothing committed.
TEST_F(PostgresTest, StatementTimeoutFailsTheRunAndCommitsNothing) {
  ASSERT_EQ(server_->Exec("INSERT INTO " + table_ +
                          " VALUES (1, 1, 'a', true, NULL, '2026-11-26 08:00:00+00')"),
            "");
  auto slow = [&](const std::string& timeout) {
    return Spec("type: postgres\ndsn: " + Dsn() + "\nquery: SELECT t.id, t.updated_at FROM " +
                    table_ + " t, pg_sleep(3)\ncursor: updated_at\nstatement_timeout: " + timeout +
                    "\n",
                "sources/slow.yaml");
  };
  auto r = RunSource(slow("1s"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("statement timeout"));
  EXPECT_EQ(Version("slow"), 0);
  EXPECT_EQ(Version("slow__rejected"), 0);
  auto cursor = ingestor_->Cursor("slow");
  ASSERT_TRUE(cursor.ok());
  EXPECT_FALSE(cursor->has_value());
  // The same query within its time limit loads.
  r = RunSource(slow("30s"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->rows_loaded, 1);
}

// A server that accepts the TCP connection and never answers (a black hole): the run fails with
// kDeadlineExceeded after connect_timeout instead of hanging the job.
TEST_F(PostgresTest, BlackHoleServerFailsWithinConnectTimeout) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 16), 0);  // never accept()ed: the kernel completes the handshake only
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto spec =
      Spec("type: postgres\ndsn: postgresql://postgres:${INGEST_TEST_PG_PASSWORD}@127.0.0.1:" +
               std::to_string(ntohs(a.sin_port)) + "/postgres\ntable: t\nconnect_timeout: 2s\n",
           "sources/hole.yaml");
  auto run = std::async(std::launch::async, [&] { return RunSource(spec); });
  // Bounded wait (not a timing assertion): without a connect timeout libpq waits forever.
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  auto r = run.get();
  close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("connect_timeout"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr(kPassword)));
  EXPECT_EQ(Version("hole"), 0);
}

}  // namespace
}  // namespace lakeloop::ingest
