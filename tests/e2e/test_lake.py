"""Lake commits through the API: queryable views, folder readers, time travel, crash safety."""
import io
import json
import subprocess

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
    staging = data_dir / "lake/raw/orders/_staging"
    assert not staging.exists() or not any(staging.iterdir())


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
                "lake.roll.history_link", "lake.roll.moved_file", "lake.roll.manifest",
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
        staging = data_dir / "lake/raw/orders/_staging"
        assert not staging.exists() or not any(staging.iterdir())
        if t["version"] == 2:
            assert s.sql("SELECT count(*) FROM raw_snapshots.orders_v1").json()["rows"] == [[3]]
        # And the table still takes commits.
        assert s.commit("raw.orders", ORDERS_V2).status_code == 201
    finally:
        s.stop()
