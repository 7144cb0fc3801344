"""Table ownership through the real binary: a table a definition owns (source, model, stream
archive, feature log) takes commits from that owner only; a direct commit with a writer or admin
token gets 409 naming the owner and changes nothing; uploads go to tables no definition owns; a
definition removed by apply releases its table."""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import requests

from conftest import ROOT, Server, error_code, run_cli

SHOP = ROOT / "examples" / "shop"
CSV = "day,orders,revenue\n2026-10-01,1,1.0\n"


@pytest.fixture
def shop(tmp_path):
    p = tmp_path / "shop"
    shutil.copytree(SHOP, p, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    subprocess.run([sys.executable, str(p / "seed" / "generate.py"), str(p / "data"), "--days", "2"],
                   capture_output=True, text=True, check=True)
    return p, tmp_path / "data"


def lake_fingerprint(data):
    """Every file below the lake with its content hash: byte-for-byte state."""
    out = {}
    for f in sorted((data / "lake").rglob("*")):
        if f.is_file():
            out[str(f.relative_to(data))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def tables(server):
    return {t["name"]: t["version"] for t in requests.get(server.url + "/api/v1/tables").json()["tables"]}


def test_owned_tables_refuse_direct_commits(shop):
    project, data = shop
    run_cli(project, data, "apply")
    s = Server(project, data).start()
    try:
        run_cli(project, data, "build", timeout=300)
        writer = run_cli(project, data, "token", "create", "--role", "writer").stdout.strip().splitlines()[-1]
        admin = s.admin_token()
        before_tables = tables(s)
        assert before_tables["processed.daily_revenue"] >= 1 and before_tables["raw.orders"] >= 1
        before = lake_fingerprint(data)
        owned = {
            "processed.daily_revenue": "processed.daily_revenue is owned by model daily_revenue; run the model instead",
            "raw.orders": "raw.orders is owned by source orders; run the source instead",
            "raw.orders__rejected": "raw.orders__rejected is owned by source orders",
            "raw.clicks": "raw.clicks is owned by stream clicks",
            "features.customer_activity": "features.customer_activity is owned by feature_view customer_activity",
        }
        for table, message in owned.items():
            for token in (writer, admin, None):
                for mode in ("append", "overwrite"):
                    r = s.commit(table, CSV, mode=mode, token=token)
                    assert r.status_code == 409, (table, r.status_code, r.text)
                    assert error_code(r) == "conflict"
                    assert message in r.json()["error"]["message"], r.text
        # Nothing changed: the same files with the same bytes, the same versions.
        assert lake_fingerprint(data) == before
        assert tables(s) == before_tables
        # The owner itself still commits: the model runs through the server.
        p = run_cli(project, data, "run", "model", "daily_revenue")
        assert "succeeded" in p.stdout, p.stdout
        assert tables(s)["processed.daily_revenue"] == before_tables["processed.daily_revenue"] + 1
        # Direct uploads go to tables no definition owns.
        r = s.commit("raw.uploads", "a,b\n1,2\n", token=writer)
        assert r.status_code == 201, r.text
        # The tables API names each table's owner.
        t = requests.get(s.url + "/api/v1/tables/processed.daily_revenue").json()
        assert t["owner"] == {"kind": "model", "name": "daily_revenue"} and t["pins"] == []
        assert requests.get(s.url + "/api/v1/tables/raw.orders").json()["owner"] == {
            "kind": "source", "name": "orders"}
        assert requests.get(s.url + "/api/v1/tables/raw.uploads").json()["owner"] is None
    finally:
        s.stop()


def test_removed_definition_releases_its_table(shop):
    project, data = shop
    run_cli(project, data, "apply")
    run_cli(project, data, "build", timeout=300)
    for f in ("daily_revenue.sql", "daily_revenue.yaml"):
        (project / "models" / f).unlink()
    p = run_cli(project, data, "apply")
    assert "daily_revenue" in p.stdout
    s = Server(project, data).start()
    try:
        version = tables(s)["processed.daily_revenue"]
        body = s.sql("SELECT count(*) FROM processed.daily_revenue").json()
        assert body["rows"][0][0] > 0  # the data stays
        assert requests.get(s.url + "/api/v1/tables/processed.daily_revenue").json()["owner"] is None
        r = s.commit("processed.daily_revenue", CSV, mode="overwrite")
        assert r.status_code == 201, r.text
        assert tables(s)["processed.daily_revenue"] == version + 1
        # The other definitions still own theirs.
        r = s.commit("raw.orders", CSV)
        assert r.status_code == 409 and "source orders" in r.json()["error"]["message"]
    finally:
        s.stop()
