"""The feature store's online side through `lakeloop up` on a small example shop: batch views
materialized on their source's commit, POST /api/v1/features/online against a brute-force SQL
reference and the stream view's own route, statuses (present / missing / expired), bad requests,
the features CLI and the refusal of an incompatible change."""
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import ROOT, Server, error_code, run_cli

SHOP = ROOT / "examples" / "shop"
JSON = "application/json"
TTL = timedelta(days=3)  # examples/shop/features/customer_daily.yaml
BATCH = ["orders_7d", "orders_30d", "spend_30d", "days_since_last_order", "days_since_signup",
         "plan", "marketing_opt_in"]  # the churn service's customer_daily features, in order
STREAM = ["clicks_5m", "clicks_1h", "cart_adds_5m", "cart_adds_1h", "spend_24h", "event_types_1h",
          "last_value_1h"]


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def shop(tmp_path):
    """A small shop (500 customers, the 3 days before now), applied and built; its server."""
    p = tmp_path / "shop"
    shutil.copytree(SHOP, p, ignore=shutil.ignore_patterns(".lakeloop", "data"))
    subprocess.run([sys.executable, str(p / "seed" / "generate.py"), str(p / "data"),
                    "--customers", "500", "--days", "3"], capture_output=True, check=True)
    data = tmp_path / "data"
    run_cli(p, data, "apply")
    run_cli(p, data, "build", timeout=300)
    s = Server(p, data).start()
    yield p, data, s
    s.stop()


def online(s, body):
    return requests.post(f"{s.url}/api/v1/features/online", data=json.dumps(body),
                         headers={"Content-Type": JSON}, timeout=30)


def wait_for(pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def materialize_runs(s):
    r = requests.get(f"{s.url}/api/v1/runs", params={"job": "features:materialize:customer_daily"},
                     timeout=10)
    assert r.status_code == 200, r.text
    return [x for x in r.json()["runs"] if x["status"] == "succeeded"]


def reference(s, now):
    """Brute force, no ASOF: each customer's newest customer_daily row with as_of within the TTL."""
    cutoff = ts(now - TTL)
    cols = ", ".join(f"d.{c}" for c in BATCH)
    q = (f"SELECT d.customer_id, epoch_us(d.as_of), {cols} FROM processed.customer_daily d "
         f"WHERE d.as_of >= TIMESTAMP '{cutoff[:-1]}' AND NOT EXISTS (SELECT 1 FROM "
         f"processed.customer_daily e WHERE e.customer_id = d.customer_id AND e.as_of > d.as_of)")
    r = s.sql(q, body={"limit": 100000})
    assert r.status_code == 200, r.text
    return {row[0]: row for row in r.json()["rows"]}


def test_churn_service_matches_sql_and_stream_route(shop):
    project, data, s = shop
    # The server caught up at start: the batch view was built while no server ran.
    wait_for(lambda: materialize_runs(s), "the start-up materialization")
    now = datetime.now(timezone.utc)
    ref = reference(s, now)
    assert len(ref) > 400  # the small shop's customers, nearly all within the TTL

    # Fresh click events for a few customers (the stream view's part of the service).
    events = []
    for i, key in enumerate([1, 2, 3, 2, 2, 5]):
        events.append({"customer_id": key, "ts": ts(now - timedelta(seconds=30 - i)),
                       "event_type": "click" if i % 2 == 0 else "purchase", "value": 10.0 + i,
                       "event_id": f"e{i}"})
    r = requests.post(f"{s.url}/api/v1/streams/clicks/events", data=json.dumps(events),
                      headers={"Content-Type": JSON}, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text

    def stream_has(key):
        g = requests.get(f"{s.url}/api/v1/features/online/customer_activity/{key}", timeout=10)
        return g.status_code == 200 and g.json()["features"]["last_value_1h"] is not None

    wait_for(lambda: stream_has(1) and stream_has(5), "the stream view to apply the events")

    keys = sorted(ref) + [999999, 1000000]  # two customers that do not exist
    at = ts(datetime.now(timezone.utc))
    r = online(s, {"feature_service": "churn", "entities": {"customer_id": keys}, "at": at})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["join_key"] == "customer_id"
    assert body["features"] == [f"customer_daily:{c}" for c in BATCH] + \
        [f"customer_activity:{c}" for c in STREAM]
    assert [e["customer_id"] for e in body["entities"]] == keys
    for ent in body["entities"]:
        key, feats = ent["customer_id"], ent["features"]
        if key not in ref:
            assert all(v["status"] == "missing" and v["value"] is None and
                       v["event_timestamp"] is None for v in feats.values()), ent
            continue
        row = ref[key]
        for i, c in enumerate(BATCH):
            v = feats[f"customer_daily:{c}"]
            assert v["status"] == "present", (key, c, v)
            want = row[2 + i]
            if c == "spend_30d":
                assert v["value"] == pytest.approx(float(want)), (key, c)
            else:
                assert v["value"] == want, (key, c, v, want)
            as_of = datetime.fromtimestamp(row[1] / 1e6, timezone.utc)
            assert v["event_timestamp"] == ts(as_of), (key, v)
    # The stream features equal the stream view's own route at the same read time.
    for ent in body["entities"]:
        key = ent["customer_id"]
        if key in (999999, 1000000):
            continue
        g = requests.get(f"{s.url}/api/v1/features/online/customer_activity/{key}",
                         params={"at": at}, timeout=10)
        assert g.status_code == 200
        mine = ent["features"]
        if key in (1, 2, 3, 5):
            for c in STREAM:
                assert mine[f"customer_activity:{c}"]["status"] == "present"
                assert mine[f"customer_activity:{c}"]["value"] == g.json()["features"][c], (key, c)
        else:  # no click ever for this key: missing, never zeros
            assert all(mine[f"customer_activity:{c}"]["status"] == "missing" for c in STREAM)

    # Read far in the future: every batch row is past its TTL (expired), never a stale value.
    later = ts(datetime.now(timezone.utc) + timedelta(days=10))
    r = online(s, {"features": ["customer_daily:plan", "customer_daily:orders_30d"],
                   "entities": {"customer_id": [keys[0]]}, "at": later})
    assert r.status_code == 200, r.text
    for v in r.json()["entities"][0]["features"].values():
        assert v["status"] == "expired" and v["value"] is None and v["event_timestamp"]

    # The CLI asks the running server.
    out = run_cli(project, data, "features", "get", "churn", "--entity", f"customer_id={keys[0]}").stdout
    assert "customer_daily:orders_30d" in out and "present" in out
    out = run_cli(project, data, "features", "list").stdout
    assert "view    customer_daily (batch from processed.customer_daily" in out
    assert "service churn:" in out


def test_source_commit_materializes_incrementally(shop):
    project, data, s = shop
    wait_for(lambda: materialize_runs(s), "the start-up materialization")
    before = len(materialize_runs(s))
    # A new snapshot of the source (a full rebuild of the model) triggers the view's job.
    r = requests.post(f"{s.url}/api/v1/runs", data=json.dumps(
        {"job": "model:customer_daily", "params": {"full_refresh": True}, "wait": True}),
        headers={"Content-Type": JSON}, timeout=300)
    assert r.status_code == 200, r.text
    runs = wait_for(lambda: (lambda x: x if len(x) > before else None)(materialize_runs(s)),
                    "the triggered materialization")
    detail = runs[0]["detail"] if isinstance(runs[0]["detail"], dict) else json.loads(runs[0]["detail"])
    assert detail["full"] is False  # incremental: from the last watermark
    # Only the rows at or after the watermark (the newest day's) are reloaded.
    assert 0 < detail["rows_loaded"] <= 500
    # --full through the CLI (the server runs it as a run of the same job).
    out = run_cli(project, data, "features", "materialize", "customer_daily", "--full").stdout
    assert "(full)" in out and "entities from version" in out


def test_bad_requests_are_4xx_and_change_nothing(shop):
    _, _, s = shop
    cases = [
        ({"feature_service": "nope", "entities": {"customer_id": [1]}}, 404, "not_found"),
        ({"features": ["customer_daily:nope"], "entities": {"customer_id": [1]}}, 404, "not_found"),
        ({"features": ["ghost:x"], "entities": {"customer_id": [1]}}, 404, "not_found"),
        ({"features": ["no_colon"], "entities": {"customer_id": [1]}}, 400, "invalid_argument"),
        ({"feature_service": "churn", "entities": {"customer_id": ["1"]}}, 400, "invalid_argument"),
        ({"feature_service": "churn", "entities": {"customer_id": [1.5]}}, 400, "invalid_argument"),
        ({"feature_service": "churn", "entities": {"user_id": [1]}}, 400, "invalid_argument"),
        ({"feature_service": "churn", "entities": {"customer_id": []}}, 400, "invalid_argument"),
        ({"feature_service": "churn"}, 400, "invalid_argument"),
        ({"feature_service": "churn", "features": ["customer_daily:plan"],
          "entities": {"customer_id": [1]}}, 400, "invalid_argument"),
        ({"feature_service": "churn", "entities": {"customer_id": [1]}, "colour": 1}, 400,
         "invalid_argument"),
    ]
    for body, status, code in cases:
        r = online(s, body)
        assert r.status_code == status, (body, r.text)
        assert error_code(r) == code, (body, r.text)
    r = requests.post(f"{s.url}/api/v1/features/online", data="{not json",
                      headers={"Content-Type": JSON}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "malformed_request"
    r = requests.post(f"{s.url}/api/v1/features/views/nope/materialize", timeout=10)
    assert r.status_code == 404


def test_incompatible_change_to_a_served_view_is_refused(shop):
    project, data, s = shop
    view = project / "features" / "customer_daily.yaml"
    old = view.read_text()
    view.write_text(old.replace("{name: orders_30d, type: int64}", "{name: orders_30d, type: double}"))
    r = requests.post(f"{s.url}/api/v1/apply", data=json.dumps({"dry_run": False}),
                      headers={"Content-Type": JSON}, timeout=60)
    assert r.status_code == 400, r.text
    msg = r.json()["error"]["message"]
    assert "feature_services/churn.yaml:6:" in msg and "retypes from int64 to double" in msg, msg
    # Removing a feature the service names is refused too.
    view.write_text(old.replace("  - {name: orders_7d, type: int64}\n", ""))
    r = requests.post(f"{s.url}/api/v1/apply", data=json.dumps({"dry_run": False}),
                      headers={"Content-Type": JSON}, timeout=60)
    assert r.status_code == 400 and "feature_services/churn.yaml:5:" in r.json()["error"]["message"]
    # Nothing changed: the service still answers with the old definition.
    r = online(s, {"feature_service": "churn", "entities": {"customer_id": [1]}})
    assert r.status_code == 200 and "customer_daily:orders_7d" in r.json()["features"]
