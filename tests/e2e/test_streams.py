"""Streams through the real binary: ingest, online features, archive to the lake, malformed input,
and kill -9 while a client streams events."""
import json
import os
import random
import shutil
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import ROOT, Server, error_code, run_cli

JSON = "application/json"
SHOP = ROOT / "examples" / "shop"
BASE = datetime(2026, 10, 5, 12, 0, tzinfo=timezone.utc)  # historical event times on purpose
KILL_ROUNDS = int(os.environ.get("LAKELOOP_KILL_ROUNDS", "100" if os.environ.get("LAKELOOP_SLOW") else "20"))


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "rt"
    p.mkdir()
    shutil.copytree(SHOP / "streams", p / "streams")
    shutil.copytree(SHOP / "features", p / "features")
    (p / "lakeloop.yaml").write_text("server:\n  worker_threads: 2\n  max_body_bytes: 4194304\n")
    return p


@pytest.fixture
def stream_server(project, tmp_path):
    data = tmp_path / "data"
    run_cli(project, data, "apply")
    s = Server(project, data).start()
    yield s
    s.stop()


def post(s, events, ndjson=False, stream="clicks"):
    if ndjson:
        body = "\n".join(json.dumps(e) for e in events) + "\n"
    else:
        body = json.dumps(events)
    return requests.post(f"{s.url}/api/v1/streams/{stream}/events", data=body, timeout=30,
                         headers={"Content-Type": JSON})


def online(s, key, at=None):
    params = {"at": ts(at)} if at else None
    r = requests.get(f"{s.url}/api/v1/features/online/customer_activity/{key}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_applied(s, total, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = requests.get(f"{s.url}/api/v1/streams/clicks", timeout=10).json()
        if st["views"] and st["views"][0]["lag"] == 0 and st["events"]["total"] >= total:
            return st
        time.sleep(0.01)
    raise AssertionError(f"features did not catch up: {st}")


def test_posted_events_are_features_at_once(stream_server):
    s = stream_server
    t0 = BASE
    r = post(s, [{"customer_id": 1, "ts": ts(t0), "event_type": "click", "event_id": "a"},
                 {"customer_id": 1, "ts": ts(t0 + timedelta(seconds=1)), "event_type": "add_to_cart", "event_id": "b"},
                 {"customer_id": 1, "ts": ts(t0 + timedelta(seconds=2)), "event_type": "purchase", "value": 30.5, "event_id": "c"}])
    assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    start = time.monotonic()
    while True:
        v = online(s, 1, t0 + timedelta(seconds=30))
        if v["features"]["clicks_5m"] == 1 and v["features"]["spend_24h"] == 30.5:
            break
        assert time.monotonic() - start < 2, v
        time.sleep(0.001)
    assert v["features"]["cart_adds_5m"] == 1
    # Idle keys decay: an hour later the 5-minute window is empty, the 24-hour one is not.
    later = online(s, 1, t0 + timedelta(hours=1))
    assert later["features"]["clicks_5m"] == 0 and later["features"]["spend_24h"] == 30.5
    # Duplicates inside the de-duplication window are stored once.
    r = post(s, [{"customer_id": 1, "ts": ts(t0), "event_type": "click", "event_id": "a"}])
    assert r.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    st = requests.get(f"{s.url}/api/v1/streams/clicks").json()
    assert st["events"]["total"] == 3 and st["events"]["duplicates_since_start"] == 1


def test_malformed_events_are_rejected_and_the_rest_accepted(stream_server):
    s = stream_server
    future = datetime.now(timezone.utc) + timedelta(hours=2)
    events = [
        {"customer_id": 5, "ts": ts(BASE), "event_type": "click"},                 # ok
        {"customer_id": "five", "ts": ts(BASE), "event_type": "click"},            # wrong type
        {"ts": ts(BASE), "event_type": "click"},                                   # missing key
        {"customer_id": 5, "event_type": "click"},                                 # missing time
        {"customer_id": 5, "ts": ts(future), "event_type": "click"},               # far future
        {"customer_id": 5, "ts": "yesterday", "event_type": "click"},              # bad time
        {"customer_id": 5, "ts": ts(BASE), "event_type": "click", "color": "red"}, # unknown field
        {"customer_id": 6, "ts": ts(BASE), "event_type": "click"},                 # ok
    ]
    r = post(s, events)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    rejected = {e["index"]: e["error"] for e in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5, 6]
    assert "customer_id" in rejected[1] and "customer_id" in rejected[2] and "ts" in rejected[3]
    assert "future" in rejected[4]
    # NDJSON with one unparsable line: that line only.
    body = json.dumps({"customer_id": 8, "ts": ts(BASE), "event_type": "click"}) + "\n{nope\n"
    r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data=body, headers={"Content-Type": JSON})
    assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["rejected"][0]["index"] == 1
    r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data="[{", headers={"Content-Type": JSON})
    assert r.status_code == 400 and error_code(r) in ("malformed_request", "invalid_argument")
    r = post(s, [{"customer_id": 1, "ts": ts(BASE), "event_type": "click"}], stream="nope")
    assert r.status_code == 404
    r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data="[" + ",".join(
        [json.dumps({"customer_id": 1, "ts": ts(BASE), "event_type": "x" * 1000})] * 5000) + "]",
        headers={"Content-Type": JSON})
    assert r.status_code == 413
    st = wait_applied(s, 3)
    assert st["events"]["total"] == 3


def reference(events, key, t, window, pred, field=None, agg="count"):
    """What a window aggregate must be at read time t: tail rounded to the tile (1 min up to 1h
    windows, 1 h beyond), head exact; late events excluded by the caller."""
    h = 60 if window <= 3600 else 3600
    tt = t.timestamp()
    ceil_t = -(-tt // h) * h
    lo = ceil_t - window
    xs = [e for e in events if e["customer_id"] == key and pred(e)
          and lo < e["_t"] <= tt]
    if agg == "count":
        return len(xs)
    return sum(e[field] for e in xs)


def test_aggregates_match_sql_over_the_archived_events(stream_server):
    """Every window aggregate, read while events arrive (out of order, some late), equals the same
    aggregate computed with SQL over the archived events without the late ones."""
    s = stream_server
    rnd = random.Random(11)
    events = []
    reads = []  # (number of events posted before the read, key, read time, features)
    t = BASE
    for chunk in range(30):
        batch = []
        for _ in range(100):
            i = len(events) + len(batch)
            t += timedelta(seconds=rnd.randint(0, 20))
            jitter = timedelta(seconds=-rnd.randint(0, 240)) if rnd.random() < 0.2 else timedelta(0)
            if rnd.random() < 0.02:
                jitter = timedelta(minutes=-30)  # far late: dropped from aggregation, archived
            kind = rnd.choice(["click", "click", "add_to_cart", "purchase", "view"])
            e = {"customer_id": rnd.randint(1, 8), "ts": ts(t + jitter), "event_type": kind,
                 "event_id": f"e{i}"}
            if kind == "purchase":
                e["value"] = round(rnd.uniform(1, 100), 2)
            batch.append(e)
        r = post(s, batch, ndjson=chunk % 2 == 1)
        assert r.json()["accepted"] == len(batch)
        events += batch
        wait_applied(s, len(events))
        for _ in range(5):
            key = rnd.randint(1, 8)
            at = t + timedelta(seconds=rnd.uniform(0, 400))
            reads.append((len(events), key, at, online(s, key, at)))
    requests.post(f"{s.url}/api/v1/streams/clicks/archive", timeout=60)
    res = s.sql("SELECT event_id, customer_id, epoch_us(ts) AS t, event_type, value, _late "
                "FROM raw.clicks", body={"limit": 100000}).json()
    assert res["row_count"] == len(events)
    cols = [c["name"] for c in res["columns"]]
    archived = {row[0]: dict(zip(cols, row)) for row in res["rows"]}
    late = [a for a in archived.values() if a["_late"]]
    assert 0 < len(late) < len(events) * 0.1
    st = requests.get(f"{s.url}/api/v1/streams/clicks").json()
    assert st["views"][0]["late_events"] == len(late)
    for n, key, at, v in reads:
        kept = []
        for e in events[:n]:
            a = archived[e["event_id"]]
            if not a["_late"]:
                kept.append({"customer_id": a["customer_id"], "_t": a["t"] / 1e6,
                             "event_type": a["event_type"], "value": a["value"]})
        f = v["features"]
        assert all(v["exact"].values()), v
        assert f["clicks_5m"] == reference(kept, key, at, 300, lambda e: e["event_type"] == "click")
        assert f["clicks_1h"] == reference(kept, key, at, 3600, lambda e: e["event_type"] == "click")
        assert f["cart_adds_5m"] == reference(kept, key, at, 300, lambda e: e["event_type"] == "add_to_cart")
        assert f["cart_adds_1h"] == reference(kept, key, at, 3600, lambda e: e["event_type"] == "add_to_cart")
        spend = reference(kept, key, at, 86400, lambda e: e["event_type"] == "purchase", "value", "sum")
        assert f["spend_24h"] == pytest.approx(spend, abs=1e-6)
    assert len(reads) == 150


def test_kill_while_streaming_loses_no_acknowledged_event(project, tmp_path):
    data = tmp_path / "data"
    run_cli(project, data, "apply")
    acked = set()
    seq = [0]
    rnd = random.Random(5)
    for round_ in range(KILL_ROUNDS):
        s = Server(project, data).start()
        stop = threading.Event()

        def client():
            while not stop.is_set():
                batch = []
                for _ in range(rnd.randint(1, 50)):
                    seq[0] += 1
                    batch.append({"customer_id": seq[0] % 13, "ts": ts(BASE + timedelta(seconds=seq[0])),
                                  "event_type": "click", "event_id": f"k{seq[0]}"})
                try:
                    r = post(s, batch)
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    acked.update(e["event_id"] for e in batch)

        th = threading.Thread(target=client)
        th.start()
        time.sleep(rnd.uniform(0.05, 0.4))
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(timeout=30)
        stop.set()
        th.join(30)
        s.log.close()
    s = Server(project, data).start()
    try:
        assert len(acked) > KILL_ROUNDS
        requests.post(f"{s.url}/api/v1/streams/clicks/archive", timeout=120)
        res = s.sql("SELECT event_id, count(*) AS n, bool_or(_late) AS late FROM raw.clicks GROUP BY 1",
                    body={"limit": 1000000}).json()
        counts = {row[0]: row[1] for row in res["rows"]}
        late = {row[0] for row in res["rows"] if row[2]}
        missing = acked - set(counts)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        assert all(n == 1 for n in counts.values()), "an event archived twice"
        # Aggregates agree with the archived events after all the kills.
        st = wait_applied(s, len(counts))
        assert st["views"][0]["events_applied"] + st["views"][0]["late_events"] == len(counts)
        at = BASE + timedelta(seconds=seq[0] + 60)
        kept = [{"customer_id": int(e[1:]) % 13, "event_type": "click",
                 "_t": (BASE + timedelta(seconds=int(e[1:]))).timestamp()}
                for e in counts if e not in late]
        for key in range(13):
            want = reference(kept, key, at, 3600, lambda e: True)
            assert online(s, key, at)["features"]["clicks_1h"] == want, key
    finally:
        s.stop()
