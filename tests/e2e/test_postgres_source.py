"""A PostgreSQL source through the real binary, against a real PostgreSQL server this test starts."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, run_cli

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "e2e-secret-pw"


@pytest.fixture(scope="module")
def postgres():
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed (scripts/setup.sh installs them)")
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
        subprocess.run(as_pg + ["psql", "-h", str(d / "sock"), "-p", str(port), "-d", "postgres",
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
