"""The example shop's data (examples/shop/seed/generate.py) through the real binary: deterministic,
big enough, with a real signal, its click history sent through the stream API in event-time order
and archived, and customer_daily snapshots that use nothing after their day.

One module-scoped shop at the default size (20k customers, 180 days) with --now pinned: generated,
applied, built embedded, then served while seed/post_events.py sends data/clicks.ndjson."""
import csv
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Server, run_cli

SHOP = ROOT / "examples" / "shop"
NOW = "2026-11-20T15:30:00Z"
DAY = dt.timedelta(days=1)


def generate(out, *args):
    p = subprocess.run([sys.executable, str(SHOP / "seed" / "generate.py"), str(out), *args],
                       capture_output=True, text=True, check=True, timeout=300)
    return json.loads(p.stdout)


def files_of(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def parse_ts(text):
    """'2026-06-01T00:01:46Z', '2026-06-01 00:01:46', '2026-06-01T00:01:46.000000Z' -> naive UTC."""
    text = text.replace("T", " ").rstrip("Z")
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shopdata")
    project = tmp / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    started = time.monotonic()
    facts = generate(project / "data", "--now", NOW)
    generated_s = time.monotonic() - started
    data = tmp / "lake"
    run_cli(project, data, "apply")
    p = run_cli(project, data, "build", timeout=600)
    assert p.stdout.count("succeeded") == 9, p.stdout
    built_s = time.monotonic() - started
    s = Server(project, data).start()
    try:
        started = time.monotonic()
        p = subprocess.run([sys.executable, str(project / "seed" / "post_events.py"), s.url,
                            str(project / "data" / "clicks.ndjson"), "--if-empty"],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        posted = json.loads(p.stdout)
        posted_s = time.monotonic() - started
        print(f"\nshop data: generate {generated_s:.1f} s, generate+apply+build {built_s:.1f} s, "
              f"post {posted['events']} clicks {posted_s:.1f} s")
        yield {"project": project, "data": data, "server": s, "facts": facts, "posted": posted}
    finally:
        s.stop()


def q(shop, query):
    r = shop["server"].sql(query, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def test_same_seed_gives_identical_files_and_another_seed_does_not(shop, tmp_path):
    """Determinism: a second run with the same seed and --now gives byte-identical files (the
    SQLite app database included); another seed gives other data."""
    again = tmp_path / "again"
    facts = generate(again, "--now", NOW)
    assert facts == shop["facts"]
    first = files_of(shop["project"] / "data")
    second = files_of(again)
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name] == second[name], f"{name} differs between two runs with one seed"
    other = tmp_path / "other"
    generate(other, "--now", NOW, "--seed", "8", "--customers", "2000", "--days", "30")
    small = tmp_path / "small"
    generate(small, "--now", NOW, "--customers", "2000", "--days", "30")
    assert files_of(other)["clicks.ndjson"] != files_of(small)["clicks.ndjson"]


def test_sizes_and_the_period_ends_at_generation_time(shop, tmp_path):
    """At least 20k customers over at least 180 days, ending at --now (default: the current time)."""
    assert q(shop, "SELECT count(*), count(DISTINCT customer_id) FROM raw.customers") == [[20000, 20000]]
    first, last, days = q(shop, "SELECT CAST(min(ordered_at) AS VARCHAR), CAST(max(ordered_at) AS VARCHAR), "
                                "count(DISTINCT CAST(ordered_at AS DATE)) FROM raw.orders")[0]
    assert days >= 180
    now = parse_ts(NOW)
    assert parse_ts(last) < now and now - parse_ts(last) < dt.timedelta(hours=2)
    assert now - parse_ts(first) >= dt.timedelta(days=180)
    assert q(shop, "SELECT count(DISTINCT day) FROM processed.customer_daily")[0][0] >= 180
    # Without --now the data ends now.
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    facts = generate(tmp_path / "now", "--customers", "300", "--days", "2")
    after = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert before <= parse_ts(facts["end"]) <= after
    # The hidden propensity is written nowhere the model could read it.
    for table in ("raw.customers", "raw.customer_history", "raw.orders", "raw.clicks"):
        cols = [c["name"] for c in shop["server"].sql(f"SELECT * FROM {table} LIMIT 1").json()["columns"]]
        assert not any("propens" in c or c in ("z", "score") for c in cols), (table, cols)


def test_the_signal_is_real(shop):
    """Churn (no order in the 30 days after a cutoff, among customers who ordered before it) differs
    strongly between the quintiles of click activity in the 30 days before the cutoff; click counts
    correlate with order counts; the plan a customer is on goes with how much they buy."""
    rows = q(shop, """
        WITH cut AS (SELECT TIMESTAMP '2026-09-15 00:00:00' AS t),
        active AS (SELECT DISTINCT customer_id FROM raw.orders, cut WHERE ordered_at < t),
        activity AS (
            SELECT a.customer_id, count(c.customer_id) AS clicks
            FROM active a CROSS JOIN cut
            LEFT JOIN raw.clicks c ON c.customer_id = a.customer_id AND c.ts < cut.t
                                  AND c.ts >= cut.t - INTERVAL 30 DAY
            GROUP BY a.customer_id),
        labelled AS (
            SELECT a.*, NOT EXISTS (SELECT 1 FROM raw.orders o, cut
                                    WHERE o.customer_id = a.customer_id AND o.ordered_at >= cut.t
                                      AND o.ordered_at < cut.t + INTERVAL 30 DAY) AS churned
            FROM activity a)
        SELECT q, count(*), avg(CAST(churned AS INTEGER))
        FROM (SELECT *, ntile(5) OVER (ORDER BY clicks, customer_id) AS q FROM labelled)
        GROUP BY q ORDER BY q""")
    assert len(rows) == 5 and all(r[1] >= 500 for r in rows), rows
    churn = [r[2] for r in rows]
    assert churn[0] - churn[4] > 0.35, churn  # measured: 0.84 vs 0.22
    assert churn == sorted(churn, reverse=True), churn
    corr = q(shop, """
        SELECT corr(c.n, coalesce(o.n, 0))
        FROM (SELECT customer_id, count(*) AS n FROM raw.clicks WHERE event_type = 'click' GROUP BY 1) c
        LEFT JOIN (SELECT customer_id, count(*) AS n FROM raw.orders GROUP BY 1) o USING (customer_id)""")
    assert corr[0][0] > 0.6, corr
    plans = dict((r[0], r[1]) for r in q(shop, "SELECT plan, avg(orders) FROM processed.customer_profile GROUP BY 1"))
    assert plans["free"] < plans["plus"] < plans["pro"], plans
    # The batch features, joined point-in-time to the labels, carry the signal too.
    by_orders = q(shop, """
        SELECT least(d.orders_30d, 2) AS o30, count(*), avg(CAST(l.churned AS INTEGER))
        FROM processed.churn_labels l
        ASOF JOIN processed.customer_daily d ON d.customer_id = l.customer_id AND l.label_time >= d.as_of
        GROUP BY 1 ORDER BY 1""")
    print(f"\nsignal: churn by click quintile {[round(c, 2) for c in churn]}, clicks~orders "
          f"corr {corr[0][0]:.2f}, churn by orders_30d (0, 1, 2+) {[round(r[2], 2) for r in by_orders]}")
    assert [r[0] for r in by_orders] == [0, 1, 2] and by_orders[0][2] - by_orders[2][2] > 0.3, by_orders


def test_clicks_arrive_in_event_time_order_and_land_in_raw_clicks(shop):
    """The file is in event-time order; every line was accepted by the stream API; the archive
    holds each event exactly once, none of them late, with the orders' purchases among them."""
    path = shop["project"] / "data" / "clicks.ndjson"
    previous = None
    n = 0
    ids = set()
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            t = parse_ts(e["ts"])
            assert previous is None or t >= previous, line
            previous = t
            ids.add(e["event_id"])
            n += 1
    assert n == shop["facts"]["clicks"] == shop["posted"]["events"] and len(ids) == n
    s = shop["server"]
    deadline = time.monotonic() + 120
    while True:
        requests.post(f"{s.url}/api/v1/streams/clicks/archive", timeout=120)
        st = requests.get(f"{s.url}/api/v1/streams/clicks", timeout=10).json()
        if st["archive"]["lag"] == 0:
            break
        assert time.monotonic() < deadline, st
    assert st["events"]["total"] == n and st["archive"]["late"] == 0, st
    assert all(v["late_events"] == 0 for v in st["views"]), st
    got = q(shop, "SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE _late) FROM raw.clicks")
    assert got == [[n, n, 0]]
    # Every order is a purchase event of the same customer, value and time.
    missing = q(shop, """
        SELECT count(*) FROM raw.orders o
        WHERE NOT EXISTS (SELECT 1 FROM raw.clicks c WHERE c.event_type = 'purchase'
                          AND c.customer_id = o.customer_id AND c.ts = o.ordered_at
                          AND CAST(c.value AS DECIMAL(12, 2)) = o.amount)""")
    assert missing == [[0]]


def test_churn_labels_follow_the_definition(shop):
    """processed.churn_labels: weekly cutoffs whose 30-day horizon lies in the data, every customer
    with an order before the cutoff, churned = no order in [t, t + 30 days): sampled rows and the
    count per cutoff recomputed from the generator's CSV files."""
    orders, _, first, last = load_sources(shop["project"])
    end = dt.datetime.combine(last + DAY, dt.time())
    cutoffs = []
    t = dt.datetime.combine(first + 30 * DAY, dt.time())
    while t + 30 * DAY <= end:
        cutoffs.append(t)
        t += 7 * DAY
    got = q(shop, "SELECT CAST(label_time AS VARCHAR), count(*), count(*) FILTER (WHERE churned) "
                  "FROM processed.churn_labels GROUP BY 1 ORDER BY 1")
    want = []
    for t in cutoffs:
        eligible = [times for times in ({o[0] for o in v} for v in orders.values()) if min(times) < t]
        churned = sum(not any(t <= x < t + 30 * DAY for x in times) for times in eligible)
        want.append([t.strftime("%Y-%m-%d %H:%M:%S"), len(eligible), churned])
    assert got == want


def load_sources(project):
    """The generator's files, read without the lake: orders per customer, versions per customer."""
    orders = defaultdict(list)
    first = last = None
    for path in sorted((project / "data" / "orders").glob("*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                t = parse_ts(row["ordered_at"])
                orders[int(row["customer_id"])].append((t, Decimal(row["amount"])))
                first = t.date() if first is None else min(first, t.date())
                last = t.date() if last is None else max(last, t.date())
    versions = defaultdict(list)
    with sqlite3.connect(project / "data" / "app.db") as conn:
        for cid, version, country, plan, opt_in, signup, changed in conn.execute(
                "SELECT customer_id, version, country, plan, marketing_opt_in, signup_date, "
                "changed_at FROM customer_history"):
            versions[cid].append((parse_ts(changed), version, country, plan, opt_in,
                                  dt.date.fromisoformat(signup)))
    return orders, versions, first, last


def test_customer_daily_has_one_row_per_customer_per_day_and_never_looks_ahead(shop):
    """One row per customer per day from max(signup, first day) to the last day; sampled rows
    recomputed from the generator's own files (CSV, SQLite): every value is what was known at the
    end of that day, nothing later."""
    orders, versions, first, last = load_sources(shop["project"])
    expected_rows = 0
    for cid, vs in versions.items():
        signup = vs[0][5]
        if signup <= last:
            expected_rows += (last - max(signup, first)).days + 1
    got = q(shop, "SELECT count(*), count(DISTINCT (customer_id, day)), CAST(min(day) AS VARCHAR), "
                  "CAST(max(day) AS VARCHAR), count(*) FILTER (WHERE as_of <> day + 1) "
                  "FROM processed.customer_daily")
    assert got == [[expected_rows, expected_rows, first.isoformat(), last.isoformat(), 0]]
    assert q(shop, "SELECT count(*) FROM processed.customer_daily WHERE last_order_at >= as_of") == [[0]]
    sample = q(shop, """
        (SELECT customer_id, CAST(day AS VARCHAR) FROM processed.customer_daily
         WHERE orders_30d > 0 AND profile_version > 1 ORDER BY hash(customer_id, day) LIMIT 40)
        UNION ALL
        (SELECT customer_id, CAST(day AS VARCHAR) FROM processed.customer_daily
         ORDER BY hash(day, customer_id) LIMIT 20)""")
    assert len(sample) == 60
    keys = ", ".join(f"({c}, DATE '{d}')" for c, d in sample)
    rows = q(shop, f"""
        SELECT customer_id, CAST(day AS VARCHAR), orders_total, CAST(spend_total AS VARCHAR),
               orders_7d, orders_30d, CAST(spend_30d AS VARCHAR), CAST(last_order_at AS VARCHAR),
               days_since_last_order, country, plan, marketing_opt_in, profile_version,
               days_since_signup
        FROM processed.customer_daily
        JOIN (VALUES {keys}) AS k(customer_id, day) USING (customer_id, day)""")
    assert len(rows) == 60
    for (cid, day, total, spend, o7, o30, s30, last_at, since_last, country, plan, opt_in, version,
         since_signup) in rows:
        day = dt.date.fromisoformat(day)
        as_of = dt.datetime.combine(day + DAY, dt.time())
        known = [(t, a) for t, a in orders[cid] if t < as_of]
        in_7 = [a for t, a in known if t >= as_of - 7 * DAY]
        in_30 = [a for t, a in known if t >= as_of - 30 * DAY]
        want_last = max((t for t, _ in known), default=None)
        v = max(x for x in versions[cid] if x[0] < as_of)
        want = (len(known), sum((a for _, a in known), Decimal(0)), len(in_7), len(in_30),
                sum(in_30, Decimal(0)), want_last,
                (day - want_last.date()).days if want_last else None,
                v[2], v[3], v[4], v[1], (day - v[5]).days)
        have = (total, Decimal(spend), o7, o30, Decimal(s30), parse_ts(last_at) if last_at else None,
                since_last, country, plan, opt_in, version, since_signup)
        assert have == want, (cid, day.isoformat())


def test_drift_mode_shifts_the_distributions_and_the_relation(tmp_path):
    """--drift: identical before the drift point; after it, more visits per day, dearer purchases,
    and visits no longer follow the customer's earlier activity."""
    args = ("--now", NOW, "--customers", "4000", "--days", "90", "--drift-days", "30")
    base = generate(tmp_path / "base", *args)
    drift = generate(tmp_path / "drift", *args, "--drift")
    cut = parse_ts(drift["drift_at"])

    def read(name):
        before, after = [], []
        with open(tmp_path / name / "clicks.ndjson") as f:
            for line in f:
                e = json.loads(line)
                (before if parse_ts(e["ts"]) < cut else after).append(e)
        return before, after

    b_before, b_after = read("base")
    d_before, d_after = read("drift")
    assert b_before == d_before  # the past is the same world

    def clicks(events):
        return sum(e["event_type"] == "click" for e in events)

    def mean_purchase(events):
        values = [e["value"] for e in events if e["event_type"] == "purchase"]
        return sum(values) / len(values)

    # 1.8x the visit rate, fewer customers left (double churn): measured 1.3x the clicks
    assert clicks(d_after) > 1.2 * clicks(b_after), (clicks(d_after), clicks(b_after))
    assert mean_purchase(d_after) > 1.15 * mean_purchase(b_after)

    def corr_before_after(before, after):
        n0, n1 = defaultdict(int), defaultdict(int)
        for e in before:
            n0[e["customer_id"]] += 1
        for e in after:
            n1[e["customer_id"]] += 1
        keys = sorted(n0)  # customers active before the drift point
        xs, ys = [n0[k] for k in keys], [n1[k] for k in keys]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        vx = sum((x - mx) ** 2 for x in xs)
        vy = sum((y - my) ** 2 for y in ys)
        return cov / (vx * vy) ** 0.5

    related, drifted = corr_before_after(b_before, b_after), corr_before_after(d_before, d_after)
    print(f"\ndrift: clicks x{clicks(d_after) / clicks(b_after):.2f}, purchase value "
          f"x{mean_purchase(d_after) / mean_purchase(b_after):.2f}, per-customer clicks before/after "
          f"correlation {related:.2f} -> {drifted:.2f}")
    assert related > 0.4 and drifted < related - 0.2, (related, drifted)


def test_make_run_sends_the_click_history_once_and_forwards_sigterm(tmp_path):
    """scripts/run.sh (make run) on a small shop: builds, serves, sends data/clicks.ndjson through
    the stream API once the server answers; SIGTERM to the script stops the server and the script
    exits with its status; a second start re-applies only and does not send the events again."""
    import os
    import signal
    from conftest import BIN, free_port
    project = tmp_path / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    facts = generate(project / "data", "--customers", "300", "--start", "2026-10-01", "--days", "5")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LAKELOOP_BIN=str(BIN))

    def start():
        log = open(tmp_path / "run.log", "ab")
        return subprocess.Popen([str(ROOT / "scripts" / "run.sh"), str(project), f"127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT, env=env), log

    def wait_events(proc, total, runs):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                st = requests.get(f"{url}/api/v1/streams/clicks", timeout=5).json()
                posts = (tmp_path / "run.log").read_text().count('{"events": ')
                if st["events"]["total"] >= total and posts == runs:  # post_events.py is done
                    return st
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError((tmp_path / "run.log").read_text())

    def stop(proc, log):
        # SIGTERM first: run.sh forwards it (a SIGKILL would leave its server running).
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()

    proc, log = start()
    try:
        st = wait_events(proc, facts["clicks"], 1)
        assert st["events"]["total"] == facts["clicks"] and st["events"]["rejected_since_start"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(requests.RequestException):
            requests.get(f"{url}/api/v1/health", timeout=2)
    finally:
        stop(proc, log)
    proc, log = start()
    try:
        st = wait_events(proc, facts["clicks"], 2)
        text = (tmp_path / "run.log").read_text()
        assert '"skipped": "not empty"' in text, text
        assert st["events"]["total"] == facts["clicks"]
        assert text.count("model:customer_daily") == 1  # built once, on the first start
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc, log)
