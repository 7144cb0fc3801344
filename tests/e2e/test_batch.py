"""The batch data path through the real binary: apply, build, sources, models, runs, backfill,
data tests, triggers and crash safety, on the example shop project."""
import json
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Server, run_cli

SHOP = ROOT / "examples" / "shop"


# The generator's default is 20k customers over the 180 days before now (test_example_data.py); these
# tests pin a small shop: 500 customers, days from 2026-10-01.
SMALL = ("--customers", "500", "--start", "2026-10-01")
BUILD_JOBS = 9  # 4 sources (customers, customer_history, orders, products) + 5 models


def generate(project, *args):
    out = subprocess.run([sys.executable, str(project / "seed" / "generate.py"),
                          str(project / "data"), *SMALL, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.fixture
def shop(tmp_path):
    p = tmp_path / "shop"
    shutil.copytree(SHOP, p, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    facts = generate(p, "--days", "3")
    return p, tmp_path / "data", facts


def sql(project, data, query):
    out = run_cli(project, data, "sql", query, "--format", "json").stdout
    return json.loads(out)["rows"]


def runs_of(project, data):
    out = run_cli(project, data, "runs", "--limit", "100").stdout
    return out


def test_apply_then_build_gives_the_generators_numbers(shop):
    project, data, facts = shop
    p = run_cli(project, data, "apply", "--dry-run")
    assert "+ source orders" in p.stdout and "dry run" in p.stdout
    assert sql(project, data, "SELECT 1") == [[1]]
    p = run_cli(project, data, "apply")
    assert "+ model daily_revenue" in p.stdout
    assert "no changes" in run_cli(project, data, "apply").stdout
    p = run_cli(project, data, "build")
    assert p.stdout.count("succeeded") == BUILD_JOBS, p.stdout
    rows = sql(project, data, "SELECT count(*), CAST(sum(orders) AS BIGINT), CAST(sum(revenue) AS VARCHAR) "
                              "FROM processed.daily_revenue")
    assert rows == [[3, facts["orders"], facts["revenue"]]]
    for day, want in facts["per_day"].items():
        got = sql(project, data, f"SELECT orders, CAST(revenue AS VARCHAR) FROM processed.daily_revenue "
                                 f"WHERE day = DATE '{day}'")
        assert got == [[want["orders"], want["revenue"]]]
    assert sql(project, data, "SELECT count(*) FROM processed.customer_profile") == [[500]]
    assert sql(project, data, "SELECT CAST(sum(orders) AS BIGINT) FROM processed.customer_order_stats") == [[facts["orders"]]]
    # Every loaded row carries its load metadata, partitioned by load date.
    assert sql(project, data, "SELECT count(*) FROM raw.orders WHERE _batch_id IS NULL OR _loaded_at IS NULL") == [[0]]
    assert any(d.name.startswith("load_date=") for d in (data / "lake/raw/orders").iterdir())


def test_reruns_load_only_new_data_and_incremental_model_only_new_interval(shop):
    project, data, facts = shop
    run_cli(project, data, "apply")
    run_cli(project, data, "build")
    p = run_cli(project, data, "run", "source", "orders")
    assert " 0 " in p.stdout.split("\n")[1]  # nothing loaded twice
    assert sql(project, data, "SELECT count(*) FROM raw.orders") == [[facts["orders"]]]
    new = generate(project, "--days", "4", "--first-day", "3")
    p = run_cli(project, data, "run", "source", "orders")
    assert f" {new['orders']} " in p.stdout.split("\n")[1], p.stdout
    assert sql(project, data, "SELECT count(*) FROM raw.orders") == [[facts["orders"] + new["orders"]]]
    p = run_cli(project, data, "run", "model", "daily_revenue")
    # Only the newest day already built (late rows) and the new day are processed.
    assert "succeeded" in p.stdout and " 2 " in p.stdout.split("\n")[1], p.stdout
    rows = sql(project, data, "SELECT count(*), CAST(sum(orders) AS BIGINT) FROM processed.daily_revenue")
    assert rows == [[4, facts["orders"] + new["orders"]]]


def test_backfill_equals_building_in_order(shop):
    project, data, facts = shop
    run_cli(project, data, "apply")
    run_cli(project, data, "build")
    built = sql(project, data, "SELECT day, orders, CAST(revenue AS VARCHAR) FROM processed.daily_revenue ORDER BY day")
    p = run_cli(project, data, "backfill", "daily_revenue", "--from", "2026-10-01", "--to", "2026-10-04")
    assert p.stdout.count("succeeded") == 3, p.stdout
    after = sql(project, data, "SELECT day, orders, CAST(revenue AS VARCHAR) FROM processed.daily_revenue ORDER BY day")
    assert after == built
    # The three runs processed one day each, in order.
    runs = json.loads(requests_free_runs(project, data))["runs"]
    intervals = [r["interval"]["start"] for r in runs if r.get("backfill_id")]
    assert sorted(intervals) == ["2026-10-01T00:00:00.000000Z", "2026-10-02T00:00:00.000000Z",
                                 "2026-10-03T00:00:00.000000Z"]


def requests_free_runs(project, data):
    """The run history as JSON without a server (embedded CLI over the catalog)."""
    s = Server(project, data).start()
    try:
        return requests.get(s.url + "/api/v1/runs?limit=100").text
    finally:
        s.stop()


def test_bad_rows_are_rejected_with_reasons_and_too_many_fail_the_run(shop):
    project, data, facts = shop
    run_cli(project, data, "apply")
    run_cli(project, data, "build")
    good = [f"{900000 + i},{1 + i % 50},{1 + i % 100},1,10.00,2026-10-02T10:00:00Z" for i in range(300)]
    lines = ["order_id,customer_id,product_id,quantity,amount,ordered_at"] + good[:150] + \
            ["900999,7,3,1,not-a-number,2026-10-02T10:00:00Z"] + good[150:]
    (project / "data/orders/orders-extra.csv").write_text("\n".join(lines) + "\n")
    p = run_cli(project, data, "run", "source", "orders")
    assert "succeeded" in p.stdout
    assert sql(project, data, "SELECT count(*) FROM raw.orders") == [[facts["orders"] + 300]]
    rej = run_cli(project, data, "sql", "SELECT * FROM raw.orders__rejected", "--format", "json").stdout
    rej = json.loads(rej)
    assert rej["row_count"] == 1
    text = json.dumps(rej["rows"])
    assert "orders-extra.csv" in text and "152" in text  # the file and its line
    before = requests_free_tables(project, data)
    bad = ["order_id,customer_id,product_id,quantity,amount,ordered_at"] + \
          [f"{910000 + i},1,1,1,{'x' if i % 2 else '1.00'},2026-10-02T10:00:00Z" for i in range(100)]
    (project / "data/orders/orders-bad.csv").write_text("\n".join(bad) + "\n")
    p = run_cli(project, data, "run", "source", "orders", check=False)
    assert p.returncode != 0 and "failed" in p.stdout
    assert requests_free_tables(project, data) == before  # no table changed
    assert sql(project, data, "SELECT count(*) FROM raw.orders") == [[facts["orders"] + 300]]


def requests_free_tables(project, data):
    out = json.loads(run_cli(project, data, "tables", "--format", "json").stdout)
    return {t["name"]: t["version"] for t in out["tables"]}


def test_failing_error_test_keeps_previous_snapshot(shop):
    project, data, facts = shop
    run_cli(project, data, "apply")
    run_cli(project, data, "build")
    before = requests_free_tables(project, data)["processed.customer_profile"]
    rows_before = sql(project, data, "SELECT count(*) FROM processed.customer_profile")
    y = project / "models/customer_profile.yaml"
    y.write_text(y.read_text().replace("values: [KR, US, DE, JP, FR, BR, IN, GB]", "values: [US]"))
    run_cli(project, data, "apply")
    p = run_cli(project, data, "run", "model", "customer_profile", check=False)
    assert p.returncode != 0 and "failed" in p.stdout and "accepted_values" in p.stdout
    assert requests_free_tables(project, data)["processed.customer_profile"] == before
    assert sql(project, data, "SELECT count(*) FROM processed.customer_profile") == rows_before


def test_apply_reports_bad_files_and_applies_nothing(shop):
    project, data, _ = shop
    (project / "sources/broken.yaml").write_text("type: files\npath: x/*.csv\nformat: xml\n")
    (project / "models/broken.sql").write_text("SELECT * FROM processed.nope JOIN raw.orders\n")
    p = run_cli(project, data, "apply", check=False)
    assert p.returncode != 0
    assert "sources/broken.yaml" in p.stderr and ":3" in p.stderr
    assert "nothing was applied" in p.stderr
    (project / "sources/broken.yaml").unlink()
    (project / "models/broken.sql").unlink()
    assert "+ source orders" in run_cli(project, data, "apply", "--dry-run").stdout


def test_server_runs_lineage_and_data_aware_triggers(shop):
    project, data, facts = shop
    s = Server(project, data).start()
    try:
        assert "+ source orders" in run_cli(project, data, "apply").stdout
        assert "succeeded" in run_cli(project, data, "build").stdout
        lin = requests.get(s.url + "/api/v1/lineage/processed.customer_profile").json()
        assert {i["table"] for i in lin["inputs"]} == {"raw.customers", "processed.customer_order_stats"}
        lin = requests.get(s.url + "/api/v1/lineage/raw.orders").json()
        assert lin["source"]["type"] == "files"
        assert set(lin["downstream"]) >= {"processed.daily_revenue", "processed.customer_order_stats",
                                          "processed.customer_profile"}
        # A new drop, loaded through the API: models downstream rebuild by themselves.
        generate(project, "--days", "4", "--first-day", "3")
        r = requests.post(s.url + "/api/v1/runs", json={"job": "source:orders", "wait": True}, timeout=60)
        assert r.status_code == 200 and r.json()["status"] == "succeeded"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = requests.get(s.url + "/api/v1/runs?job=model:customer_profile").json()["runs"]
            if any(x["trigger"] == "upstream" and x["status"] == "succeeded" for x in runs):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no upstream-triggered run of customer_profile")
        n = s.sql("SELECT count(*) FROM processed.daily_revenue").json()["rows"]
        assert n == [[4]]
        run = requests.get(s.url + f"/api/v1/runs/{r.json()['id']}").json()
        assert run["job"] == "source:orders" and run["rows_out"] > 0
        assert requests.get(s.url + "/api/v1/runs/nope").status_code == 404
        bad = requests.post(s.url + "/api/v1/runs", json={"job": "source:nope"})
        assert bad.status_code == 404
        assert requests.post(s.url + "/api/v1/runs", json={}).status_code == 400
    finally:
        s.stop()


@pytest.mark.parametrize("job,point", [("source:orders", "lake.commit.before_catalog"),
                                       ("model:customer_order_stats", "lake.commit.staged")])
def test_kill_during_a_run_then_restart(shop, job, point):
    project, data, facts = shop
    run_cli(project, data, "apply")
    if job.startswith("model"):
        run_cli(project, data, "build")
    tables_before = requests_free_tables(project, data)
    s = Server(project, data).start(env={"LAKELOOP_CRASH_AT": point})
    with pytest.raises(requests.RequestException):
        requests.post(s.url + "/api/v1/runs", json={"job": job, "wait": True}, timeout=60)
    assert s.proc.wait(timeout=30) == -9
    s.log.close()
    s = Server(project, data).start()
    try:
        assert requests_tables(s) == tables_before  # no partial snapshot
        runs = requests.get(s.url + f"/api/v1/runs?job={job}").json()["runs"]
        assert runs[0]["status"] == "failed" and "restart" in runs[0]["error"]["message"]
        r = requests.post(s.url + "/api/v1/runs", json={"job": job, "wait": True}, timeout=60)
        assert r.json()["status"] == "succeeded", r.text
        if job == "source:orders":
            assert s.sql("SELECT count(*) FROM raw.orders").json()["rows"] == [[facts["orders"]]]
        else:
            assert s.sql("SELECT count(*) FROM processed.customer_order_stats").json()["rows"][0][0] > 0
    finally:
        s.stop()


def requests_tables(s):
    return {t["name"]: t["version"] for t in requests.get(s.url + "/api/v1/tables").json()["tables"]}


# ---- issue 7 item 8: the example builds again and again -------------------------------------------
# sources/customers.yaml reads an SQLite `updated_at TEXT` with a 1h lookback; the second build used
# to fail (DuckDB cannot subtract an interval from VARCHAR). Text timestamps are now read as
# timestamps for the cursor (detected from the values; `cursor_type:` declares it).

EXAMPLE_SOURCES = ("customers", "orders", "products")


def touch_customer(project, customer_id, updated_at):
    """An update in the shop's app database, written as applications write text timestamps."""
    import sqlite3
    with sqlite3.connect(project / "data" / "app.db") as conn:
        conn.execute("UPDATE customers SET name = name || ' (moved)', updated_at = ? "
                     "WHERE customer_id = ?", (updated_at, customer_id))


def customer_counts(query):
    # rows, distinct keys, distinct versions (key + cursor): no version is ever loaded twice
    return query("SELECT count(*), count(DISTINCT customer_id), "
                 "count(DISTINCT (customer_id, updated_at)) FROM raw.customers")[0]


def test_example_builds_twice_embedded_and_loads_only_the_window(shop):
    """`lakeloop build` twice in a row, embedded: both succeed, the second re-reads only the 1h
    lookback window of customers and loads nothing twice; a later update loads exactly one version."""
    project, data, _ = shop
    run_cli(project, data, "apply")
    for attempt in range(2):
        p = run_cli(project, data, "build", check=False)
        assert p.returncode == 0 and p.stdout.count("succeeded") == BUILD_JOBS, (attempt, p.stdout, p.stderr)
    q = lambda query: sql(project, data, query)  # noqa: E731
    assert customer_counts(q) == [500, 500, 500]
    # The second build re-read the lookback window and loaded nothing: still one load of raw.customers.
    assert q("SELECT count(DISTINCT _batch_id) FROM raw.customers") == [[1]]
    # An update (ISO text with 'T' and 'Z', newer than anything loaded) loads exactly that version.
    newest = q("SELECT max(updated_at) FROM raw.customers")[0][0]
    touch_customer(project, 7, newest.replace(" ", "T") + ".5Z")
    p = run_cli(project, data, "run", "source", "customers")
    assert "succeeded" in p.stdout and " 1 " in p.stdout.split("\n")[1], p.stdout
    p = run_cli(project, data, "build")
    assert p.stdout.count("succeeded") == BUILD_JOBS, p.stdout
    assert customer_counts(q) == [501, 500, 501]


def test_example_builds_twice_served_and_scheduled_source_runs_stay_green(shop):
    """`lakeloop build` twice through a running server, then the scheduler's own jobs of every
    example source triggered again and again (API runs): every run succeeds, keys never double."""
    project, data, _ = shop
    s = Server(project, data).start()
    try:
        run_cli(project, data, "apply")
        for attempt in range(2):
            p = run_cli(project, data, "build", check=False)  # through the running server
            assert p.returncode == 0 and p.stdout.count("succeeded") == BUILD_JOBS, (attempt, p.stdout,
                                                                             p.stderr)
        q = lambda query: s.sql(query).json()["rows"]  # noqa: E731
        assert customer_counts(q) == [500, 500, 500]
        # The second build re-read only the lookback window and de-duplicated it: one load.
        assert q("SELECT count(DISTINCT _batch_id) FROM raw.customers") == [[1]]
        runs = requests.get(s.url + "/api/v1/runs?job=source:customers").json()["runs"]
        assert len(runs) == 2 and all(x["status"] == "succeeded" for x in runs), runs
        assert sorted(x["rows_out"] for x in runs) == [0, 500], runs
        # The scheduler's own jobs for every example source, again and again.
        newest = q("SELECT max(updated_at) FROM raw.customers")[0][0]
        for round_ in range(3):
            if round_ == 1:
                touch_customer(project, 11, newest[:10] + "T23:59:59+02:00")  # an offset
            for name in EXAMPLE_SOURCES:
                r = requests.post(s.url + "/api/v1/runs", json={"job": f"source:{name}", "wait": True},
                                  timeout=120)
                assert r.status_code == 200 and r.json()["status"] == "succeeded", (name, r.text)
        for name in EXAMPLE_SOURCES:
            runs = requests.get(s.url + f"/api/v1/runs?job=source:{name}").json()["runs"]
            assert len(runs) >= 5 and all(x["status"] == "succeeded" for x in runs), (name, runs)
        assert customer_counts(q) == [501, 500, 501]
    finally:
        s.stop()


def test_incompatible_cursor_fails_with_one_line_naming_the_fix(project, data_dir):
    """A lookback over text that is not time: the run fails with one line naming the file, the
    column, its type and the fix (never DuckDB's list of candidate functions); nothing loads."""
    import sqlite3
    with sqlite3.connect(project / "app.db") as conn:
        conn.execute("CREATE TABLE t (id INTEGER, code TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    (project / "sources").mkdir()
    (project / "sources" / "codes.yaml").write_text(
        "type: sqlite\ndatabase: app.db\ntable: t\ncursor: code\nlookback: 1h\nkey: [id]\n")
    run_cli(project, data_dir, "apply")
    p = run_cli(project, data_dir, "run", "source", "codes", check=False)
    assert p.returncode != 0 and "failed" in p.stdout, p.stdout + p.stderr
    s = Server(project, data_dir).start()
    try:
        r = requests.post(s.url + "/api/v1/runs", json={"job": "source:codes", "wait": True},
                          timeout=60).json()
        assert r["status"] == "failed", r
        message = r["error"]["message"]
        assert r["error"]["code"] == "invalid_argument", r
        assert "\n" not in message and "Binder Error" not in message, message
        assert message.startswith("sources/codes.yaml: cursor column 'code' (VARCHAR)"), message
        assert "cursor_type: text_timestamp" in message, message
        assert "raw.codes" not in {t["name"] for t in requests.get(s.url + "/api/v1/tables").json()["tables"]}
    finally:
        s.stop()
