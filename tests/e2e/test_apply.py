"""`lakeloop apply` on a running server changes only what changed (issue 7, item 12), and the CLI
chooses the running server's API or embedded mode (item 16)."""
import json
import sqlite3
import time

import requests

from conftest import Server, free_port, run_cli

STREAM = """name: clicks
fields:
  customer_id: {type: integer}
  ts: {type: timestamp}
  event_type: {type: string}
  value: {type: number, required: false}
key: customer_id
time: ts
partitions: 2
"""

ACTIVITY = """name: activity
kind: stream
stream: clicks
features:
  - {name: clicks_1h, agg: count, window: 1h, where: {event_type: click}}
"""

SPEND = """name: spend
kind: stream
stream: clicks
features:
  - {name: spend_1h, agg: sum, field: value, window: 1h}
"""


def write(project, rel, text):
    p = project / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def batch_project(project):
    # An SQLite source asks DuckDB for a 1.4 GiB block whatever the table's size (an ingest issue,
    # reported): the fixture's 1 GB limit fails it.
    (project / "lakeloop.yaml").write_text(
        (project / "lakeloop.yaml").read_text().replace("memory_limit: 1GB", "memory_limit: 2GB"))
    write(project, "sources/orders.yaml", "type: files\npath: data/orders/*.csv\nformat: csv\n")
    write(project, "data/orders/day1.csv", "order_id,amount\n1,10\n2,20\n3,5\n")
    write(project, "sources/customers.yaml",
          "type: sqlite\ndatabase: data/app.db\ntable: customers\n")
    db = sqlite3.connect(project / "data" / "app.db")
    db.execute("CREATE TABLE customers (customer_id INTEGER, name TEXT)")
    db.executemany("INSERT INTO customers VALUES (?, ?)", [(1, "a"), (2, "b")])
    db.commit()
    db.close()
    write(project, "models/order_count.sql", "SELECT count(*) AS n FROM raw.orders")
    write(project, "models/order_total.sql", "SELECT sum(amount) AS total FROM raw.orders")


def poll(fn, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def get_run(s, run_id):
    return requests.get(f"{s.url}/api/v1/runs/{run_id}", timeout=10).json()


def test_apply_leaves_a_running_run_of_an_unchanged_source_alone(project, data_dir):
    batch_project(project)
    s = Server(project, data_dir).start()
    try:
        run_cli(project, data_dir, "apply")
        assert "succeeded" in run_cli(project, data_dir, "build").stdout
        assert s.sql("SELECT n FROM processed.order_count").json()["rows"] == [[3]]

        # The source's run blocks on the app database, which the test holds locked (SQLite's
        # busy timeout is 10 s: the rest happens well within it).
        lock = sqlite3.connect(project / "data" / "app.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        r = requests.post(s.url + "/api/v1/runs", json={"job": "source:customers"}, timeout=10)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        poll(lambda: get_run(s, run_id)["status"] == "running", what="the run to start")

        # An unrelated model changes, another is added, one is removed.
        write(project, "models/order_count.sql", "SELECT count(*) * 10 AS n FROM raw.orders")
        write(project, "models/order_max.sql", "SELECT max(amount) AS top FROM raw.orders")
        (project / "models" / "order_total.sql").unlink()
        dry = run_cli(project, data_dir, "apply", "--dry-run").stdout
        out = run_cli(project, data_dir, "apply").stdout
        assert dry == out + "(dry run: nothing was applied)\n", (dry, out)
        assert sorted(out.splitlines()) == [
            "+ model order_max",
            "- model order_total  (processed.order_total and its snapshots are kept; "
            "it is no longer built)",
            "~ model order_count"], out
        assert get_run(s, run_id)["status"] == "running"  # not interrupted by the apply

        lock.execute("ROLLBACK")
        lock.close()
        done = poll(lambda: (lambda x: x if x["status"] not in ("queued", "running") else None)(
            get_run(s, run_id)), what="the run to finish")
        assert done["status"] == "succeeded", done
        assert done["rows_out"] == 2

        # The changed model is rebuilt with its new SQL; the new one builds; the removed one is
        # no longer a job.
        r = requests.post(s.url + "/api/v1/runs", json={"job": "model:order_count", "wait": True},
                          timeout=60)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        assert s.sql("SELECT n FROM processed.order_count").json()["rows"] == [[30]]
        r = requests.post(s.url + "/api/v1/runs", json={"job": "model:order_max", "wait": True},
                          timeout=60)
        assert r.json()["status"] == "succeeded", r.text
        r = requests.post(s.url + "/api/v1/runs", json={"job": "model:order_total"}, timeout=10)
        assert r.status_code == 404
        assert s.sql("SELECT count(*) FROM processed.order_total").status_code == 200  # kept
    finally:
        s.stop()


def post_events(s, key, event_type, n, value=1.0):
    now = time.time() - 1
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    events = [{"customer_id": key, "ts": ts, "event_type": event_type, "value": value}
              for _ in range(n)]
    r = requests.post(f"{s.url}/api/v1/streams/clicks/events", json=events, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == n


def online(s, view, key):
    r = requests.get(f"{s.url}/api/v1/features/online/{view}/{key}", timeout=10)
    if r.status_code != 200:
        return None
    return list(r.json()["features"].values())


def view_info(s, view):
    st = requests.get(f"{s.url}/api/v1/streams/clicks", timeout=10).json()
    return next(v for v in st["views"] if v["view"] == view)


def test_apply_keeps_unchanged_feature_views_running(project, data_dir):
    write(project, "streams/clicks.yaml", STREAM)
    write(project, "features/activity.yaml", ACTIVITY)
    write(project, "features/spend.yaml", SPEND)
    s = Server(project, data_dir).start()
    try:
        run_cli(project, data_dir, "apply")
        post_events(s, 7, "click", 3, 2.0)
        poll(lambda: online(s, "activity", 7) == [3], what="activity = 3")
        poll(lambda: online(s, "spend", 7) == [6], what="spend = 6")
        since = view_info(s, "activity")["running_since"]
        spend_since = view_info(s, "spend")["running_since"]

        write(project, "features/spend.yaml",
              SPEND + "  - {name: events_1h, agg: count, window: 1h}\n")
        out = run_cli(project, data_dir, "apply").stdout
        assert "spend" in out and "activity" not in out, out
        assert view_info(s, "activity")["running_since"] == since  # same processor
        assert view_info(s, "spend")["running_since"] != spend_since

        post_events(s, 7, "click", 2, 2.0)
        # Continuous: the 3 events before the apply and the 2 after.
        poll(lambda: online(s, "activity", 7) == [5], what="activity = 5")
        poll(lambda: online(s, "spend", 7) == [10, 5], what="spend rebuilt = [10, 5]")
    finally:
        s.stop()


def test_cli_goes_through_the_api_of_a_live_server_and_embedded_otherwise(project, data_dir):
    write(project, "sources/orders.yaml", "type: files\npath: data/orders/*.csv\nformat: csv\n")
    write(project, "data/orders/day1.csv", "order_id,amount\n1,10\n")
    s = Server(project, data_dir).start()
    try:
        # The server holds the data directory's lock: a state-changing command can only succeed
        # through its API (embedded, it would be refused the lock).
        run_cli(project, data_dir, "apply")
        p = run_cli(project, data_dir, "run", "source", "orders")
        assert "succeeded" in p.stdout
        runs = requests.get(s.url + "/api/v1/runs?job=source:orders", timeout=10).json()["runs"]
        assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    finally:
        s.stop()
    assert not (data_dir / "server.json").exists()

    # A stale server.json (its process is gone, the lock is free) pointing at a dead port: the CLI
    # must not call it but run embedded.
    (data_dir / "server.json").write_text(json.dumps(
        {"url": f"http://127.0.0.1:{free_port()}", "pid": 999999, "auth_required": False}))
    write(project, "data/orders/day2.csv", "order_id,amount\n2,20\n")
    p = run_cli(project, data_dir, "run", "source", "orders", timeout=60)
    assert "succeeded" in p.stdout, p.stdout + p.stderr
    out = run_cli(project, data_dir, "sql", "SELECT count(*) AS n FROM raw.orders",
                  "--format", "json").stdout
    assert json.loads(out)["rows"] == [[2]]


def test_metrics_endpoint_serves_the_scheduler_figures(project, data_dir):
    write(project, "sources/orders.yaml", "type: files\npath: data/orders/*.csv\nformat: csv\n")
    write(project, "data/orders/day1.csv", "order_id,amount\n1,10\n")
    write(project, "models/order_count.sql", "SELECT count(*) AS n FROM raw.orders")
    s = Server(project, data_dir).start()
    try:
        run_cli(project, data_dir, "apply")
        assert "succeeded" in run_cli(project, data_dir, "build").stdout
        r = requests.get(s.url + "/metrics", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        lines = r.text.splitlines()
        assert "# TYPE lakeloop_scheduler_runs_finished_total counter" in lines
        values = {l.split(" ")[0]: float(l.split(" ")[1]) for l in lines if not l.startswith("#")}
        assert values["lakeloop_scheduler_runs_finished_total"] >= 2
        assert values["lakeloop_scheduler_jobs"] == 2
        assert values['lakeloop_build_info{version="0.1.0"}'] == 1
    finally:
        s.stop()
