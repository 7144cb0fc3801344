"""Point-in-time datasets through the real binary (POST /api/v1/features/historical) on the small
example shop: stream-view values at 1,000 random past times equal a brute-force recomputation from
the click events this test sent (the documented window and lateness rules), batch-view values
equal a reference written without ASOF, nothing stamped after a row's time leaks in, builds are
versions of datasets.<name>, rows download as Parquet, bad requests get a clear 4xx."""
import io
import json
import math
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest
import requests

from conftest import ROOT, Server, run_cli

SHOP = ROOT / "examples" / "shop"
SMALL = ("--customers", "500", "--start", "2026-10-01", "--days", "3")
JSON = "application/json"
US = 1_000_000
MIN = 60 * US
HOUR = 60 * MIN
LATENESS = 5 * MIN  # examples/shop/features/customer_activity.yaml
# customer_activity, as (name, agg, field, window, event_type filter)
FEATURES = [
    ("clicks_5m", "count", None, 5 * MIN, "click"),
    ("clicks_1h", "count", None, HOUR, "click"),
    ("cart_adds_5m", "count", None, 5 * MIN, "add_to_cart"),
    ("cart_adds_1h", "count", None, HOUR, "add_to_cart"),
    ("spend_24h", "sum", "value", 24 * HOUR, "purchase"),
    ("event_types_1h", "count_distinct", "event_type", HOUR, None),
    ("last_value_1h", "last", "value", HOUR, None),
]


def iso(us):
    return datetime.fromtimestamp(us / US, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hist")
    project = tmp / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    subprocess.run([sys.executable, str(project / "seed" / "generate.py"), str(project / "data"),
                    *SMALL], capture_output=True, text=True, check=True)
    data = tmp / "data"
    run_cli(project, data, "apply")
    run_cli(project, data, "build", timeout=300)
    s = Server(project, data).start()
    yield s
    s.stop()


def post_events(s, events):
    for i in range(0, len(events), 500):
        r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data=json.dumps(events[i:i + 500]),
                          headers={"Content-Type": JSON}, timeout=30)
        assert r.status_code == 200 and not r.json()["rejected"], r.text


def wait_applied(s, total, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = requests.get(f"{s.url}/api/v1/streams/clicks", timeout=10).json()
        if st["views"] and all(v["lag"] == 0 for v in st["views"]) and st["events"]["total"] >= total:
            return st
        time.sleep(0.02)
    raise AssertionError(f"features did not catch up: {st}")


def build(s, body, expect=201):
    r = requests.post(f"{s.url}/api/v1/features/historical", json=body, timeout=300)
    assert r.status_code == expect, r.text
    return r.json()


def sql(s, query):
    r = s.sql(query, body={"limit": 100000})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def ceil_to(t, size):
    return -((-t) // size) * size


def reference(events, key, t):
    """What the docs promise: accepted events (not late by log order) of the key with
    ceil_h(t) - W < e <= t; h = 1 minute for windows <= 1h, 1 hour above. A key with no
    accepted event at or before t is missing: every value null (as the online service says)."""
    if not any(e["key"] == key and not e["late"] and e["t"] <= t for e in events):
        return {f[0]: None for f in FEATURES}
    out = {}
    for name, agg, field, w, etype in FEATURES:
        h = MIN if w <= HOUR else HOUR
        lo = ceil_to(t, h) - w
        sel = [e for e in events if e["key"] == key and not e["late"] and lo < e["t"] <= t
               and (etype is None or e["type"] == etype)]
        if agg == "count":
            out[name] = float(len(sel))
        elif agg == "sum":
            out[name] = float(sum(e["value"] for e in sel if e["value"] is not None))
        elif agg == "count_distinct":
            out[name] = float(len({e["type"] for e in sel}))
        elif agg == "last":
            withv = [e for e in sel if e["value"] is not None]
            # the newest event time wins; equal times: the later in log order
            best = None
            for e in withv:
                if best is None or e["t"] >= best["t"]:
                    best = e
            out[name] = best["value"] if best else None
    return out


def make_events(now_us, rng):
    """Click events in log order with their lateness judged as the processor does. Normal events
    move a global clock forward, some are up to 4 minutes behind it (within the 5-minute
    lateness), and some are sent 2 hours behind their key's previous event right after it (late
    in whatever partition the key hashes to)."""
    events = []
    start = now_us - 30 * HOUR
    clock = start
    last_of = {}
    types = ["click", "click", "add_to_cart", "purchase", "view"]
    while clock < now_us - 10 * MIN and len(events) < 3000:
        clock += rng.randrange(0, 90 * US)
        if rng.random() < 0.005:
            clock += 2 * HOUR
        if clock > now_us - 10 * MIN:
            break
        key = rng.randrange(1, 21)
        t = clock - (rng.randrange(0, 4 * MIN) if rng.random() < 0.2 else 0)
        t -= t % 1000
        etype = rng.choice(types)
        value = round(rng.uniform(1, 200), 2) if etype == "purchase" or rng.random() < 0.3 else None
        events.append({"key": key, "t": t, "type": etype, "value": value, "late": False})
        last_of[key] = max(last_of.get(key, t), t)
        if rng.random() < 0.03:
            lt = last_of[key] - 2 * HOUR
            events.append({"key": key, "t": lt, "type": "purchase", "value": 7.0, "late": True})
    return events, start


def to_payload(e):
    p = {"customer_id": e["key"], "ts": iso(e["t"]), "event_type": e["type"]}
    if e["value"] is not None:
        p["value"] = e["value"]
    return p


def entity_values(rows):
    return ", ".join(f"({i}, {k}, make_timestamp({t}))" for i, (k, t) in enumerate(rows))


def test_stream_views_equal_a_brute_force_reference_at_1000_past_times(shop):
    s = shop
    rng = random.Random(8)
    now_us = int(time.time() * US)
    events, start = make_events(now_us, rng)
    post_events(s, [to_payload(e) for e in events])
    wait_applied(s, len(events))
    rows = []
    for i in range(1000):
        key = rng.randrange(1, 23)  # 21, 22: no events
        t = rng.randrange(start - HOUR, now_us - 5 * MIN)
        if i % 10 == 0:
            t = rng.choice(events)["t"]  # exactly on an event: it counts
        rows.append((key, t - t % 1000))
    res = build(s, {"name": "clicks_pit",
                    "entities_sql": "SELECT * FROM (VALUES " + entity_values(rows) +
                                    ") t(id, customer_id, event_timestamp)",
                    "features": ["customer_activity:" + f[0] for f in FEATURES]})
    assert res["status"] == "succeeded" and res["rows"] == 1000 and res["build"] == 1
    assert res["table"] == "datasets.clicks_pit"
    stream_lineage = res["lineage"]["streams"][0]
    assert stream_lineage["view"] == "customer_activity" and stream_lineage["complete"]
    assert stream_lineage["events_late"] == sum(e["late"] for e in events)
    cols = ", ".join("customer_activity__" + f[0] for f in FEATURES)
    got = sql(s, f"SELECT id, {cols} FROM datasets.clicks_pit ORDER BY id")
    assert len(got) == 1000
    compared = 0
    for row in got:
        key, t = rows[row[0]]
        want = reference(events, key, t)
        for j, f in enumerate(FEATURES):
            w, v = want[f[0]], row[j + 1]
            if w is None:
                assert v is None, (key, t, f[0], v)
                continue
            assert v is not None, (key, t, f[0])
            tol = 0.05 * w + 0.01 if f[1] == "count_distinct" else 1e-6 * max(1.0, abs(w))
            assert math.isclose(v, w, abs_tol=tol), (key, iso(t), f[0], v, w)
            compared += 1
    assert compared > 5000


def test_nothing_stamped_after_the_label_time_is_used(shop):
    s = shop
    key = 4242
    T = int(time.time() * US) - 30 * MIN
    T -= T % US
    ev = lambda t, v: {"customer_id": key, "ts": iso(t), "event_type": "purchase", "value": v}
    # In log order: before T; after T; 20m before T (late: dropped); 1m after T (arrives late,
    # within the lateness, stamped after the label).
    for e in [ev(T - 10 * MIN, 1.0), ev(T + 3 * MIN, 100.0), ev(T - 20 * MIN, 1000.0),
              ev(T + MIN, 10000.0)]:
        post_events(s, [e])
    total = requests.get(f"{s.url}/api/v1/streams/clicks").json()["events"]["total"]
    wait_applied(s, total)
    res = build(s, {"name": "leak",
                    "entities_sql": f"SELECT {key} AS customer_id, make_timestamp({T}) AS "
                                    f"event_timestamp, 1 AS label UNION ALL SELECT {key}, "
                                    f"make_timestamp({T + 5 * MIN}), 0 ORDER BY label DESC",
                    "features": ["customer_activity:spend_24h", "customer_activity:last_value_1h"]})
    assert res["rows"] == 2
    got = sql(s, "SELECT label, customer_activity__spend_24h, customer_activity__last_value_1h "
                 "FROM datasets.leak ORDER BY label DESC")
    assert got == [[1, 1.0, 1.0], [0, 10101.0, 100.0]]


def test_batch_view_equals_a_reference_without_asof(shop):
    s = shop
    rng = random.Random(5)
    lo, hi = sql(s, "SELECT epoch_us(min(as_of)) - 86400000000, epoch_us(max(as_of)) + 4 * "
                    "86400000000 FROM processed.customer_daily")[0]
    as_ofs = [r[0] for r in sql(s, "SELECT DISTINCT epoch_us(as_of) FROM processed.customer_daily")]
    rows = []
    for i in range(1000):
        t = rng.randrange(lo, hi)
        if i % 10 == 0:
            t = rng.choice(as_ofs)  # exactly on a row's timestamp: that row is used
        rows.append((rng.randrange(1, 520), t - t % 1000))
    entities = "SELECT * FROM (VALUES " + entity_values(rows) + ") t(id, customer_id, event_timestamp)"
    res = build(s, {"name": "daily_pit", "entities_sql": entities,
                    "features": ["customer_daily:orders_30d", "customer_daily:plan",
                                 "customer_daily:spend_30d"]})
    assert res["rows"] == 1000
    assert res["lineage"]["batch"][0]["table"] == "processed.customer_daily"
    # Latest row at or before t by a correlated subquery, then the view's 3-day TTL.
    diff = sql(s, f"""
        WITH e AS ({entities}),
        ref AS (SELECT e.id, e.event_timestamp AS t,
                  (SELECT struct_pack(a := d.as_of, o := d.orders_30d, p := d.plan, s := d.spend_30d)
                   FROM processed.customer_daily d
                   WHERE d.customer_id = e.customer_id AND d.as_of <= e.event_timestamp
                   ORDER BY d.as_of DESC LIMIT 1) AS r FROM e),
        want AS (SELECT id, CASE WHEN r.a >= t - INTERVAL 3 DAY THEN r END AS r FROM ref)
        SELECT count(*) FILTER (WHERE want.r IS NOT NULL),
               count(*) FILTER (WHERE want.r.o IS DISTINCT FROM x.customer_daily__orders_30d
                                   OR want.r.p IS DISTINCT FROM x.customer_daily__plan
                                   OR want.r.s IS DISTINCT FROM x.customer_daily__spend_30d),
               count(*)
        FROM want JOIN datasets.daily_pit x USING (id)""")[0]
    assert diff[1] == 0 and diff[2] == 1000
    assert diff[0] > 100, diff  # enough rows found a value within the TTL


def test_builds_are_versions_downloadable_as_parquet(shop):
    s = shop
    body = {"name": "versions",
            "entities_sql": "SELECT 1 AS customer_id, now()::TIMESTAMP AS event_timestamp",
            "features": ["customer_activity:clicks_1h"]}
    first = build(s, body)
    second = build(s, body)
    assert (first["build"], second["build"]) == (1, 2)
    assert second["lake_version"] > first["lake_version"]
    builds = requests.get(f"{s.url}/api/v1/datasets/versions").json()["builds"]
    assert [b["build"] for b in builds] == [2, 1] and all(b["status"] == "succeeded" for b in builds)
    r = requests.get(f"{s.url}/api/v1/datasets/versions/parquet", params={"build": 1})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/vnd.apache.parquet")
    t = pq.read_table(io.BytesIO(r.content))
    assert t.num_rows == 1 and t.column_names == ["customer_id", "event_timestamp",
                                                  "customer_activity__clicks_1h"]
    assert any(d["name"] == "versions" for d in requests.get(f"{s.url}/api/v1/datasets").json()["datasets"])


def test_bad_requests_get_a_clear_4xx_and_change_nothing(shop):
    s = shop
    ok = {"name": "bad", "entities_sql": "SELECT 1 AS customer_id, now()::TIMESTAMP AS event_timestamp",
          "features": ["customer_activity:clicks_1h"]}
    cases = [
        ({**ok, "features": ["nope:x"]}, 404, "not_found"),
        ({**ok, "features": ["customer_activity:nope"]}, 404, "not_found"),
        ({k: v for k, v in ok.items() if k != "features"} | {"feature_service": "nope"}, 404, "not_found"),
        ({**ok, "feature_service": "churn"}, 400, "invalid_argument"),
        ({**ok, "features": "customer_activity:clicks_1h"}, 400, "invalid_argument"),
        ({**ok, "entities_sql": "SELECT 1 AS customer_id"}, 400, "invalid_argument"),
        ({**ok, "entities_sql": "SELECT now() AS event_timestamp"}, 400, "invalid_argument"),
        ({**ok, "entities_sql": "DELETE FROM raw.orders"}, 400, None),
        ({**ok, "name": "Bad Name"}, 400, "invalid_argument"),
        ({**ok, "extra": 1}, 400, "invalid_argument"),
        ({**ok, "name": "x", "entities_table": "raw.nope", "entities_sql": None}, 404, "not_found"),
    ]
    for body, status, code in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = requests.post(f"{s.url}/api/v1/features/historical", json=body, timeout=60)
        assert r.status_code == status, (body, r.text)
        if code:
            assert r.json()["error"]["code"] == code, (body, r.text)
    r = requests.post(f"{s.url}/api/v1/features/historical", data="{", headers={"Content-Type": JSON})
    assert r.status_code == 400
    # A name that is not this dataset's (here a table uploaded directly) is refused, untouched.
    assert s.commit("datasets.uploaded", "a\n1\n").status_code == 201
    r = requests.post(f"{s.url}/api/v1/features/historical", json={**ok, "name": "uploaded"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    assert sql(s, "SELECT * FROM datasets.uploaded") == [[1]]
    tables = requests.get(f"{s.url}/api/v1/tables").json()["tables"]
    assert not any(t["name"] == "bad" for t in tables)


def test_online_values_of_the_churn_service_equal_its_historical_values_at_now(shop):
    s = shop
    keys = list(range(1, 23)) + [4242]
    r = requests.post(f"{s.url}/api/v1/features/online", timeout=30,
                      json={"feature_service": "churn", "entities": {"customer_id": keys}})
    assert r.status_code == 200, r.text
    online = r.json()
    as_of = datetime.strptime(online["as_of"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    now_us = int(as_of.timestamp()) * US + as_of.microsecond
    rows = [(k, now_us) for k in keys]
    res = build(s, {"name": "churn_now", "feature_service": "churn",
                    "entities_sql": "SELECT * FROM (VALUES " + entity_values(rows) +
                                    ") t(id, customer_id, event_timestamp)"})
    names = online["features"]
    cols = ", ".join(n.replace(":", "__") for n in names)
    got = sql(s, f"SELECT id, {cols} FROM datasets.churn_now ORDER BY id")
    assert len(got) == len(keys) and len(res["columns"]) == 3 + len(names)
    nonzero = 0
    for row, ent in zip(got, online["entities"]):
        assert ent["customer_id"] == keys[row[0]]
        for j, name in enumerate(names):
            o = ent["features"][name]
            want = o["value"] if o["status"] == "present" else None
            h = row[j + 1]
            if (isinstance(want, float) or isinstance(h, float)) and want is not None:
                assert want is not None and h is not None and math.isclose(h, want, rel_tol=1e-9), (
                    keys[row[0]], name, o, h)
                nonzero += h != 0
            else:
                assert h == want, (keys[row[0]], name, o, h)
    assert nonzero > 0


def test_cli_dataset_create_list_show(shop):
    s = shop
    p = run_cli(s.project, s.data, "features", "dataset", "create", "from_cli", "--entities-sql",
                "SELECT 3 AS customer_id, now()::TIMESTAMP AS event_timestamp", "--features",
                "customer_activity:clicks_1h", "customer_activity:spend_24h")
    assert "datasets.from_cli build 1: succeeded, 1 rows" in p.stdout, p.stdout
    assert "from_cli" in run_cli(s.project, s.data, "features", "dataset", "list").stdout
    shown = run_cli(s.project, s.data, "features", "dataset", "show", "from_cli").stdout
    assert "succeeded" in shown
    p = run_cli(s.project, s.data, "features", "dataset", "create", "from_cli", "--entities-sql",
                "SELECT 1", "--service", "churn", check=False)
    assert p.returncode != 0 and "event_timestamp" in p.stderr + p.stdout


def test_a_timestamptz_event_timestamp_is_the_same_instant(shop):
    s = shop
    t = int(time.time() * US) - 20 * MIN
    t -= t % 1000
    feats = ["customer_activity:clicks_1h", "customer_activity:spend_24h", "customer_daily:plan"]
    naive = build(s, {"name": "tz_naive", "features": feats, "entities_sql":
                      f"SELECT c AS customer_id, make_timestamp({t}) AS event_timestamp FROM range(1, 21) r(c)"})
    aware = build(s, {"name": "tz_aware", "features": feats, "entities_sql":
                      f"SELECT c AS customer_id, make_timestamptz({t}) AS event_timestamp FROM range(1, 21) r(c)"})
    assert naive["rows"] == aware["rows"] == 20
    cols = ", ".join(f.replace(":", "__") for f in feats)
    a = sql(s, f"SELECT customer_id, {cols} FROM datasets.tz_naive ORDER BY 1")
    b = sql(s, f"SELECT customer_id, {cols} FROM datasets.tz_aware ORDER BY 1")
    assert a == b and any(r[2] for r in a)


def test_entities_from_a_lake_table_at_its_snapshot(shop):
    s = shop
    t = int(time.time() * US) - 15 * MIN
    csv = "customer_id,event_timestamp,label\n" + "".join(
        f"{c},{iso(t)},{c % 2}\n" for c in range(1, 11))
    assert s.commit("raw.labels", csv).status_code == 201
    res = build(s, {"name": "from_table", "entities_table": "raw.labels",
                    "features": ["customer_activity:spend_24h"]})
    assert res["rows"] == 10
    assert res["lineage"]["entities"] == {"table": "raw.labels", "version": 1}
    via_sql = build(s, {"name": "from_sql", "features": ["customer_activity:spend_24h"],
                        "entities_sql": "SELECT * FROM raw.labels"})
    a = sql(s, "SELECT * FROM datasets.from_table ORDER BY customer_id")
    assert a == sql(s, "SELECT * FROM datasets.from_sql ORDER BY customer_id") and len(a) == 10
    assert via_sql["lineage"]["entities"] == {"sql": "SELECT * FROM raw.labels"}


def test_wait_false_answers_202_and_the_build_is_followed_to_its_end(shop):
    s = shop
    r = requests.post(f"{s.url}/api/v1/features/historical", timeout=60, json={
        "name": "bg", "wait": False, "features": ["customer_activity:clicks_1h"],
        "entities_sql": "SELECT (i % 20) + 1 AS customer_id, now()::TIMESTAMP - to_seconds(i) "
                        "AS event_timestamp FROM range(5000) t(i)"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("running", "succeeded") and r.json()["build"] == 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        b = requests.get(f"{s.url}/api/v1/datasets/bg").json()["builds"][0]
        if b["status"] != "running":
            break
        time.sleep(0.05)
    assert b["status"] == "succeeded" and b["rows"] == 5000, b
    r = requests.post(f"{s.url}/api/v1/features/historical", json={
        "name": "bg", "wait": False, "features": ["nope:x"], "entities_sql": "SELECT 1"})
    assert r.status_code == 404
    r = requests.post(f"{s.url}/api/v1/features/historical", json={
        "name": "bg", "wait": "no", "features": ["customer_activity:clicks_1h"], "entities_sql": "SELECT 1"})
    assert r.status_code == 400
