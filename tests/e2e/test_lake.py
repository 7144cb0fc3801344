"""Lake commits through the API: queryable views, folder readers, time travel, crash safety."""
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import duckdb

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import requests

from conftest import Server, error_code, run_cli

ORDERS_V1 = "order_id,customer_id,amount\n1,10,9.50\n2,11,20.00\n3,10,1.25\n"
ORDERS_V2 = "order_id,customer_id,amount\n4,12,3.00\n5,13,4.00\n"


def folder_rows(data_dir, zone, table):
    """What a reader without lakeloop sees: pyarrow over the table folder."""
    path = data_dir / "lake" / zone / table
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table().num_rows


def spark_trino_files(folder):
    """The Spark/Trino rule: list the tree, skipping names that begin with '_' or '.'."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        out += [os.path.join(root, f) for f in files
                if f.endswith(".parquet") and not f.startswith(("_", "."))]
    return sorted(out)


def assert_readers_see_current(server, data_dir, table, columns):
    """pyarrow, DuckDB's ** glob and the Spark/Trino rule each read exactly the rows of the table's
    current snapshot (as lakeloop's SQL returns them), right now."""
    zone, name = table.split(".")
    folder = data_dir / "lake" / zone / name
    cols = ", ".join(columns)
    want = server.sql(f"SELECT {cols} FROM {table} ORDER BY {cols}", body={"limit": 100000}).json()
    want_rows = [tuple(str(v) for v in r) for r in want["rows"]]
    t = requests.get(f"{server.url}/api/v1/tables/{table}").json()
    assert t["row_count"] == len(want_rows)

    # pyarrow: pq.read_table(folder) and pyarrow.dataset with hive partitioning.
    got = pq.read_table(str(folder)).select(columns)
    assert got.num_rows == len(want_rows), ("pyarrow read_table", got.num_rows, len(want_rows))
    assert sorted(str(v) for v in got.column(0).to_pylist()) == sorted(r[0] for r in want_rows)
    got = ds.dataset(str(folder), format="parquet", partitioning="hive").to_table(columns=columns)
    assert got.num_rows == len(want_rows), ("pyarrow dataset", got.num_rows, len(want_rows))
    # DuckDB with **: it does not skip underscore folders, so nothing else may be below the folder.
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet', "
                    "hive_partitioning=true)").fetchone()[0]
    assert n == len(want_rows), ("duckdb **", n, len(want_rows))
    first = con.execute(f"SELECT {columns[0]} FROM read_parquet('{folder}/**/*.parquet', "
                        "hive_partitioning=true)").fetchall()
    assert sorted(str(r[0]) for r in first) == sorted(r[0] for r in want_rows)
    assert sorted(str(p) for p in folder.rglob("*.parquet")) == spark_trino_files(folder)
    # Spark/Trino: every remaining file belongs to the current snapshot; together its rows.
    files = spark_trino_files(folder)
    manifest = json.loads((folder / "_manifests" / "current.json").read_text())
    assert manifest["version"] == t["version"]
    assert sorted(os.path.relpath(f, folder) for f in files) == sorted(f["path"] for f in manifest["files"])
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(want_rows)
    return want_rows


def test_commit_is_queryable_and_readable_by_pyarrow(server, data_dir):
    r = server.commit("raw.orders", ORDERS_V1)
    assert r.status_code == 201, r.text
    snap = r.json()["snapshot"]
    assert snap["version"] == 1 and snap["row_count"] == 3
    body = server.sql("SELECT count(*) AS n, sum(amount) AS total FROM raw.orders").json()
    assert body["rows"] == [[3, 30.75]]
    assert folder_rows(data_dir, "raw", "orders") == 3
    r = server.commit("raw.orders", ORDERS_V2)
    assert r.json()["snapshot"]["row_count"] == 5
    assert server.sql("SELECT count(*) FROM raw.orders").json()["rows"] == [[5]]
    assert folder_rows(data_dir, "raw", "orders") == 5
    manifest = json.loads((data_dir / "lake/raw/orders/_manifests/current.json").read_text())
    assert manifest["version"] == 2 and manifest["row_count"] == 5
    assert sum(f["rows"] for f in manifest["files"]) == 5


def test_tables_endpoint_lists_snapshots(server):
    server.commit("raw.orders", ORDERS_V1)
    server.commit("raw.orders", ORDERS_V2)
    t = requests.get(server.url + "/api/v1/tables/raw.orders").json()
    assert t["version"] == 2 and t["row_count"] == 5
    assert [c["name"] for c in t["columns"]] == ["order_id", "customer_id", "amount"]
    assert [s["version"] for s in t["snapshots"]] == [2, 1]
    assert t["snapshots"][1]["query_as"] == "raw_snapshots.orders_v1"
    listed = requests.get(server.url + "/api/v1/tables").json()["tables"]
    assert [x["name"] for x in listed] == ["raw.orders"]
    r = requests.get(server.url + "/api/v1/tables/raw.nope")
    assert r.status_code == 404


def test_time_travel_after_overwrite(server, data_dir):
    server.commit("raw.orders", ORDERS_V1)
    r = server.commit("raw.orders", ORDERS_V2, mode="overwrite")
    assert r.status_code == 201
    assert server.sql("SELECT count(*) FROM raw.orders").json()["rows"] == [[2]]
    old = server.sql("SELECT count(*) FROM raw_snapshots.orders_v1").json()
    assert old["rows"] == [[3]]
    assert server.sql("SELECT count(*) FROM raw_snapshots.orders_v2").json()["rows"] == [[2]]


def test_folder_shows_current_snapshot_after_overwrite_and_restart(project, data_dir):
    s = Server(project, data_dir).start()
    s.commit("raw.orders", ORDERS_V1)
    s.commit("raw.orders", ORDERS_V2, mode="overwrite")
    s.stop()
    s = Server(project, data_dir).start()  # restart unlinks superseded live names
    try:
        assert folder_rows(data_dir, "raw", "orders") == 2
        assert s.sql("SELECT count(*) FROM raw_snapshots.orders_v1").json()["rows"] == [[3]]
    finally:
        s.stop()


def test_empty_table_view_is_typed(server):
    server.commit("raw.orders", ORDERS_V1)
    server.commit("raw.orders", "order_id,customer_id,amount\n", mode="overwrite")
    body = server.sql("SELECT * FROM raw.orders").json()
    assert body["row_count"] == 0
    assert [c["name"] for c in body["columns"]] == ["order_id", "customer_id", "amount"]


def test_bad_commits_change_nothing(server, data_dir):
    server.commit("raw.orders", ORDERS_V1)
    r = server.commit("raw.orders", "order_id,customer_id\nx,y\n")  # other schema
    assert r.status_code == 409 and error_code(r) == "conflict"
    r = server.commit("raw.orders", ORDERS_V2, expected_version="0")  # stale CAS
    assert r.status_code == 409
    r = server.commit("raw.orders", b"\x00\x01garbage", fmt="parquet")
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = server.commit("raw.orders", "", fmt="csv")
    assert r.status_code == 400
    r = server.commit("Raw.orders", ORDERS_V1)
    assert r.status_code == 400
    r = server.commit("raw.orders", ORDERS_V1, mode="upsert")
    assert r.status_code == 400
    assert server.sql("SELECT count(*) FROM raw.orders").json()["rows"] == [[3]]
    t = requests.get(server.url + "/api/v1/tables/raw.orders").json()
    assert t["version"] == 1
    staging = data_dir / "lake/_staging"
    assert not staging.exists() or not any(staging.rglob("*.parquet"))
    assert not (data_dir / "lake/raw/orders/_staging").exists()


def test_json_lines_and_parquet_uploads(server):
    r = server.commit("raw.products", '{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n', fmt="json")
    assert r.status_code == 201, r.text
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3]}), buf)
    r = server.commit("raw.numbers", buf.getvalue(), fmt="parquet")
    assert r.status_code == 201, r.text
    assert server.sql("SELECT sum(x) FROM raw.numbers").json()["rows"] == [["6"]]  # HUGEINT: a string


def test_cli_load_embedded_then_tables(project, data_dir, tmp_path):
    f = tmp_path / "orders.csv"
    f.write_text(ORDERS_V1)
    p = run_cli(project, data_dir, "load", "raw.orders", str(f))
    assert "version 1" in p.stdout
    p = run_cli(project, data_dir, "tables")
    assert "raw.orders" in p.stdout
    p = run_cli(project, data_dir, "sql", "SELECT count(*) AS n FROM raw.orders", "--format", "csv")
    assert p.stdout.splitlines() == ["n", "3"]


CRASH_POINTS = ["lake.commit.staged", "lake.commit.before_catalog", "lake.commit.after_catalog",
                "lake.roll.history_link", "lake.roll.unlinked", "lake.roll.moved_file",
                "lake.roll.manifest",
                "lake.roll.published"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_commit_step(project, data_dir, point):
    """kill -9 at each step of an overwrite commit: no partial table, orphans cleaned on restart."""
    s = Server(project, data_dir).start()
    assert s.commit("raw.orders", ORDERS_V1).status_code == 201
    s.stop()
    s = Server(project, data_dir).start(env={"LAKELOOP_CRASH_AT": point})
    with pytest.raises(requests.RequestException):
        s.commit("raw.orders", ORDERS_V2, mode="overwrite")
    assert s.proc.wait(timeout=30) == -9
    s.log.close()
    s = Server(project, data_dir).start()
    try:
        t = requests.get(s.url + "/api/v1/tables/raw.orders").json()
        n = s.sql("SELECT count(*) FROM raw.orders").json()["rows"][0][0]
        assert (t["version"], n) in [(1, 3), (2, 2)], (point, t["version"], n)
        assert folder_rows(data_dir, "raw", "orders") == n
        assert_readers_see_current(s, data_dir, "raw.orders", ["order_id", "amount"])
        staging = data_dir / "lake/_staging"
        assert not staging.exists() or not any(staging.rglob("*"))
        if t["version"] == 2:
            assert s.sql("SELECT count(*) FROM raw_snapshots.orders_v1").json()["rows"] == [[3]]
        # And the table still takes commits.
        assert s.commit("raw.orders", ORDERS_V2).status_code == 201
    finally:
        s.stop()


# ---- Honest folders: every reader sees exactly the current snapshot right after each commit ----


def test_folder_readers_right_after_overwrite(server, data_dir):
    """No restart, no garbage collection: the superseded files leave the folder during the commit."""
    assert server.commit("raw.orders", ORDERS_V1).status_code == 201
    assert server.commit("raw.orders", ORDERS_V2).status_code == 201
    rows = assert_readers_see_current(server, data_dir, "raw.orders", ["order_id", "amount"])
    assert len(rows) == 5
    r = server.commit("raw.orders", "order_id,customer_id,amount\n9,1,7.00\n", mode="overwrite")
    assert r.status_code == 201
    rows = assert_readers_see_current(server, data_dir, "raw.orders", ["order_id", "amount"])
    assert [r[0] for r in rows] == ["9"]
    # No _history or _staging inside the table folder; the old snapshots still time-travel.
    folder = data_dir / "lake/raw/orders"
    assert not (folder / "_history").exists() and not (folder / "_staging").exists()
    assert server.sql("SELECT count(*) FROM raw_snapshots.orders_v2").json()["rows"] == [[5]]


def test_long_query_over_the_old_snapshot_completes_with_old_rows(server, data_dir):
    """A slow query over the view, started before an overwrite, completes with the old snapshot's
    rows although the overwrite removed those files from the table folder meanwhile."""
    for _ in range(3):  # several files
        assert server.commit("raw.orders", ORDERS_V1).status_code == 201
    # An md5 per (order, r) pair: nothing the optimizer can skip (a few seconds).
    slow = ("SELECT count(DISTINCT o.order_id) AS ids, count(*) AS n FROM raw.orders o, "
            "range(2000000) r WHERE md5(r.range::VARCHAR || o.order_id::VARCHAR) <> 'x'")
    result = {}

    def run():
        result["r"] = server.sql(slow, timeout=120)

    t = threading.Thread(target=run)
    t.start()
    # There is no "query started" signal to wait on: give the request a moment to bind the view.
    t.join(timeout=0.5)
    r = server.commit("raw.orders", ORDERS_V2, mode="overwrite")
    assert r.status_code == 201
    assert t.is_alive(), "the query finished before the overwrite; make it slower"
    assert_readers_see_current(server, data_dir, "raw.orders", ["order_id", "amount"])
    t.join(timeout=120)
    body = result["r"].json()
    assert result["r"].status_code == 200, body
    assert body["rows"] == [[3, 9 * 2000000]], body  # the old snapshot: 9 rows, ids 1-3
    assert server.sql("SELECT count(*) FROM raw.orders").json()["rows"] == [[2]]


SHOP = __import__("conftest").ROOT / "examples" / "shop"


def test_folder_readers_right_after_merge(tmp_path):
    """An incremental model with unique_key merges (an overwrite commit of old + new rows)."""
    project = tmp_path / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    gen = [sys.executable, str(project / "seed" / "generate.py"), str(project / "data")]
    subprocess.run(gen + ["--days", "2"], capture_output=True, check=True)
    data = tmp_path / "data"
    run_cli(project, data, "apply")
    s = Server(project, data).start()
    try:
        run_cli(project, data, "build", timeout=300)
        assert_readers_see_current(s, data, "processed.daily_revenue", ["day", "orders", "revenue"])
        subprocess.run(gen + ["--first-day", "2", "--days", "1"], capture_output=True, check=True)
        run_cli(project, data, "run", "source", "orders")
        before = requests.get(f"{s.url}/api/v1/tables/processed.daily_revenue").json()["version"]
        p = run_cli(project, data, "run", "model", "daily_revenue")
        assert "succeeded" in p.stdout, p.stdout
        t = requests.get(f"{s.url}/api/v1/tables/processed.daily_revenue").json()
        # (the source run also triggers the model: one or two merges)
        assert t["version"] > before and t["snapshots"][0]["operation"] == "overwrite"
        rows = assert_readers_see_current(s, data, "processed.daily_revenue", ["day", "orders", "revenue"])
        assert len(rows) == 3
        assert_readers_see_current(s, data, "raw.orders", ["order_id"])
    finally:
        s.stop()


def start_streams_server(tmp_path):
    """A served project holding only the example shop's streams; returns (server, data dir)."""
    project = tmp_path / "rt"
    project.mkdir()
    shutil.copytree(SHOP / "streams", project / "streams")
    (project / "lakeloop.yaml").write_text("server:\n  worker_threads: 2\n")
    data = tmp_path / "data"
    run_cli(project, data, "apply")
    return Server(project, data).start(), data


def test_folder_readers_right_after_compaction(tmp_path):
    """Stream archive compaction: a replace commit swaps many small files for one."""
    s, data = start_streams_server(tmp_path)
    try:
        base = datetime(2026, 10, 5, 12, 0, tzinfo=timezone.utc)
        for i in range(18):  # more than compact_min_files (16) small files for one date
            ev = {"customer_id": i, "ts": (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                  "event_type": "click", "event_id": f"e{i}"}
            r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data=json.dumps([ev]),
                              headers={"Content-Type": "application/json"}, timeout=30)
            assert r.status_code == 200, r.text
            r = requests.post(f"{s.url}/api/v1/streams/clicks/archive", timeout=60)
            assert r.status_code == 200 and r.json()["archive_now"]["done"], r.text
        folder = data / "lake/raw/clicks"
        assert len(spark_trino_files(folder)) >= 17
        assert_readers_see_current(s, data, "raw.clicks", ["customer_id", "_offset", "_partition"])
        r = requests.post(f"{s.url}/api/v1/streams/clicks/archive", params={"compact": "true"}, timeout=60)
        assert r.status_code == 200, r.text
        c = r.json()["archive_now"]["compaction"]
        assert c["files_removed"] >= 17 and c["files_added"] == 1, c
        rows = assert_readers_see_current(s, data, "raw.clicks", ["customer_id", "_offset", "_partition"])
        assert len(rows) == 18
        assert len(spark_trino_files(folder)) == 1
    finally:
        s.stop()


def test_archive_now_reports_what_is_left(tmp_path):
    """POST .../archive with a round limit answers 202 and the events remaining while work remains."""
    s, data = start_streams_server(tmp_path)
    try:
        r = requests.post(f"{s.url}/api/v1/streams/clicks/archive", params={"max_rounds": "0"}, timeout=30)
        assert r.status_code == 400
        r = requests.post(f"{s.url}/api/v1/streams/clicks/archive", params={"max_rounds": "1"}, timeout=30)
        assert r.status_code == 200 and r.json()["archive_now"] == {
            "done": True, "rounds": 1, "events_archived": 0, "events_remaining": 0}
    finally:
        s.stop()
