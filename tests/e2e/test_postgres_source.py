"""A PostgreSQL source through the real binary, against a real PostgreSQL server this test starts.

The server binaries are $LAKELOOP_PG_BIN when set, else looked up in `pg_config --bindir`,
/usr/lib/postgresql/<newest>/bin and PATH. Missing binaries skip these tests on a developer machine,
but fail them under CI=true: CI must never pass without the real component (scripts/setup.sh
installs it).
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, require_component, run_cli

PASSWORD = "e2e-secret-pw"


def find_pg_bin():
    """The folder holding initdb and pg_ctl, or None."""
    def has_server(d):
        return (d / "initdb").exists() and (d / "pg_ctl").exists()

    if os.environ.get("LAKELOOP_PG_BIN"):  # an explicit choice is the only candidate
        d = Path(os.environ["LAKELOOP_PG_BIN"])
        return d if has_server(d) else None
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name),
                          reverse=True)
        candidates += [v / "bin" for v in versions]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for c in candidates:
        if has_server(c):
            return c
    return None


@pytest.fixture(scope="module")
def postgres():
    pg_bin = find_pg_bin()
    require_component(pg_bin is not None,
                      "PostgreSQL server binaries (initdb, pg_ctl; or set LAKELOOP_PG_BIN)")
    PG_BIN = pg_bin  # noqa: N806
    d = Path(tempfile.mkdtemp(prefix="lakeloop-e2e-pg-"))
    (d / "sock").mkdir()
    (d / "pwfile").write_text(PASSWORD + "\n")
    subprocess.run(["chown", "-R", "postgres:postgres", str(d)], check=True)
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(PG_BIN / "initdb"), "-D", str(d / "data"), "-U", "postgres",
                            "--auth-local=trust", "--auth-host=scram-sha-256",
                            f"--pwfile={d / 'pwfile'}"], check=True, capture_output=True)
    subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(d / "data"), "-l", str(d / "log"),
                            "-w", "-t", "60", "-o",
                            f"-p {port} -k {d / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off",
                            "start"], check=True, capture_output=True)

    def psql(sql):
        subprocess.run(as_pg + [str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else "psql", "-h", str(d / "sock"), "-p", str(port), "-d", "postgres",
                                "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                       capture_output=True)

    try:
        yield port, psql
    finally:
        subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate",
                                "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_postgres_source_incremental_with_lookback(postgres, tmp_path):
    port, psql = postgres
    psql("DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id INT PRIMARY KEY, "
         "name TEXT, balance NUMERIC(12,2), updated_at TIMESTAMPTZ NOT NULL)")
    psql("INSERT INTO accounts SELECT g, 'a' || g, g * 1.5, TIMESTAMPTZ '2026-11-01 00:00:00+00' "
         "+ g * INTERVAL '1 minute' FROM generate_series(1, 100) g")
    project = tmp_path / "p"
    (project / "sources").mkdir(parents=True)
    (project / "sources" / "accounts.yaml").write_text(
        "type: postgres\n"
        f"dsn: postgresql://postgres:${{LAKELOOP_E2E_PG_PASSWORD}}@127.0.0.1:{port}/postgres\n"
        "table: accounts\ncursor: updated_at\nlookback: 1h\nkey: [id]\n")
    data = tmp_path / "data"
    env = dict(os.environ, LAKELOOP_E2E_PG_PASSWORD=PASSWORD)
    run_cli(project, data, "apply", env=env)
    p = run_cli(project, data, "run", "source", "accounts", env=env)
    assert "succeeded" in p.stdout and " 100 " in p.stdout.split("\n")[1], p.stdout
    # A row committed late with an older cursor value inside the lookback, and a new one.
    psql("INSERT INTO accounts VALUES (101, 'late', 1, TIMESTAMPTZ '2026-11-01 01:30:00+00'), "
         "(102, 'new', 2, TIMESTAMPTZ '2026-11-01 03:00:00+00')")
    p = run_cli(project, data, "run", "source", "accounts", env=env)
    assert "succeeded" in p.stdout, p.stdout
    out = run_cli(project, data, "sql", "SELECT count(*), count(DISTINCT id) FROM raw.accounts",
                  "--format", "csv", env=env).stdout.splitlines()
    assert out[1] == "102,102"  # both new rows, none twice
    # The password is nowhere in the catalog.
    assert PASSWORD.encode() not in (data / "catalog.db").read_bytes()
    wal = data / "catalog.db-wal"
    assert not wal.exists() or PASSWORD.encode() not in wal.read_bytes()
    # Without the variable the run fails and names it, without leaking anything.
    env2 = {k: v for k, v in env.items() if k != "LAKELOOP_E2E_PG_PASSWORD"}
    p = run_cli(project, data, "run", "source", "accounts", env=env2, check=False)
    assert p.returncode != 0 and "LAKELOOP_E2E_PG_PASSWORD" in p.stdout + p.stderr


def test_postgres_statement_timeout_fails_the_run_cleanly(postgres, tmp_path):
    """A query past the source's statement_timeout fails its run (no snapshot, no cursor) and the
    next run within the limit succeeds: a stalled PostgreSQL no longer holds a job forever."""
    port, psql = postgres
    psql("DROP TABLE IF EXISTS slow_src; CREATE TABLE slow_src (id INT PRIMARY KEY, "
         "updated_at TIMESTAMPTZ NOT NULL); INSERT INTO slow_src VALUES (1, now())")
    project = tmp_path / "p"
    (project / "sources").mkdir(parents=True)
    source = project / "sources" / "slow.yaml"

    def define(timeout):
        source.write_text(
            "type: postgres\n"
            f"dsn: postgresql://postgres:${{LAKELOOP_E2E_PG_PASSWORD}}@127.0.0.1:{port}/postgres\n"
            "query: SELECT s.id, s.updated_at FROM slow_src s, pg_sleep(3)\n"
            f"cursor: updated_at\nstatement_timeout: {timeout}\nconnect_timeout: 5s\n")

    data = tmp_path / "data"
    env = dict(os.environ, LAKELOOP_E2E_PG_PASSWORD=PASSWORD)
    define("1s")
    run_cli(project, data, "apply", env=env)
    p = run_cli(project, data, "run", "source", "slow", env=env, check=False)
    assert p.returncode != 0, p.stdout
    assert "statement timeout" in p.stdout + p.stderr, p.stdout + p.stderr
    tables = run_cli(project, data, "tables", "--format", "json", env=env).stdout
    assert "raw.slow" not in tables
    define("1m")
    run_cli(project, data, "apply", env=env)
    p = run_cli(project, data, "run", "source", "slow", env=env)
    assert "succeeded" in p.stdout, p.stdout
    assert "raw.slow" in run_cli(project, data, "tables", "--format", "json", env=env).stdout
