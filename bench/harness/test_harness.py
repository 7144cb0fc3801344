"""Tests of the benchmark harness itself (no server, no anchors needed):
.venv/bin/python -m pytest -q bench/harness/test_harness.py"""
import http.server
import json
import sys
import threading

import pytest

from harness import Budget, Figure, Pinning, Results, run_ladder, run_measured, time_calls, wrk
from harness.env import TELEMETRY_OFF, anchor_env, require_anchor, AnchorMissing

PY = sys.executable


def test_measured_step_reports_result_and_peak_rss():
    r = run_measured([PY, "-c", "b = bytearray(64 << 20); print('RESULT', '{\"x\": 1}')"],
                     Budget(seconds=60, memory_mb=4096))
    assert r["status"] == "ok"
    assert r["result"] == {"x": 1}
    assert r["peak_rss_mb"] >= 0  # a 64 MB step may finish between two samples


def test_step_over_memory_is_killed_with_its_children():
    # The parent stays small; a child grows past the budget: the whole tree counts and is killed.
    child = "import time; b = [bytearray(32 << 20) for _ in range(40)]; time.sleep(60)"
    r = run_measured([PY, "-c", f"import subprocess; subprocess.run([{PY!r}, '-c', {child!r}])"],
                     Budget(seconds=60, memory_mb=300))
    assert r["status"] == "over_memory"
    assert r["peak_rss_mb"] > 300
    assert r["seconds"] < 60


def test_step_over_time_is_killed():
    r = run_measured([PY, "-c", "import time; time.sleep(60)"], Budget(seconds=1, memory_mb=4096))
    assert r["status"] == "over_time"
    assert r["seconds"] < 30


def test_failing_step_is_failed_not_ok():
    r = run_measured([PY, "-c", "raise SystemExit(3)"], Budget(seconds=60, memory_mb=4096))
    assert r["status"] == "failed" and r["returncode"] == 3


def test_ladder_reports_largest_finished_size_and_stops():
    # Size n allocates n * 100 MB: with a 350 MB budget, 1 and 2 finish, 4 does not, 8 never runs.
    def step(n):
        return [PY, "-c", f"import time; b = bytearray({n} * 100 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"]
    lad = run_ladder([8, 1, 4, 2], step, Budget(seconds=60, memory_mb=350), log=None)
    assert [s["size"] for s in lad["steps"]] == [1, 2, 4]
    assert [s["status"] for s in lad["steps"]] == ["ok", "ok", "over_memory"]
    assert lad["largest_finished"] == 2


def test_ladder_accepts_premeasured_steps():
    lad = run_ladder([1, 2], lambda n: {"status": "not built yet"}, Budget(), log=None)
    assert lad["largest_finished"] is None and len(lad["steps"]) == 1


def test_ratio_is_lakeloops_advantage_and_null_when_a_side_is_missing(tmp_path):
    assert Figure("p99", "ms", "lower", lakeloop=1.0, anchor=50.0).ratio() == 50.0
    assert Figure("rps", "1/s", "higher", lakeloop=100.0, anchor=400.0).ratio() == 0.25
    missing = Figure("rps", "1/s", "higher", lakeloop=None, lakeloop_status="not built yet",
                     anchor=400.0)
    assert missing.ratio() is None
    res = Results("unit", "cmd --x", out_dir=tmp_path)
    res.add(missing)
    data = json.loads(res.write().read_text())
    fig = data["figures"][0]
    assert fig["lakeloop"] is None and fig["ratio"] is None
    assert fig["lakeloop_status"] == "not built yet" and fig["anchor"] == 400.0
    for key in ("git_commit", "machine", "started_at", "finished_at", "command"):
        assert key in data
    assert data["machine"]["cpus"] >= 1


def test_pinning_puts_server_and_load_on_different_cores():
    p = Pinning(enabled=True, server_cpus=[0], load_cpus=[1])
    if p.enabled:
        assert p.server(["srv"]) == ["taskset", "-c", "0", "srv"]
        assert p.load(["wrk", "x"]) == ["taskset", "-c", "1", "wrk", "x"]
    off = Pinning(enabled=False)
    assert off.server(["srv", 1]) == ["srv", "1"] and off.describe() == {"pinned": False}


def test_anchor_env_turns_telemetry_off():
    env = anchor_env()
    assert env["FEAST_USAGE"] == "False" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["BENTOML_DO_NOT_TRACK"] == "True" and env["DO_NOT_TRACK"] == "true"
    assert set(TELEMETRY_OFF) <= set(env)


def test_missing_anchor_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(AnchorMissing):
        require_anchor("no-such-venv")
    monkeypatch.setenv("CI", "false")
    assert require_anchor("no-such-venv") is None


seen = set()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        seen.add(json.dumps(json.loads(body)))
        ok = json.loads(body).get("k") in (1, 3, 4, 5) and self.headers["Content-Type"] == "application/json"
        out = b'{"ok": true}'
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def test_wrk_posts_the_body_and_reports_percentiles():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/x"
        r = wrk(url, 1, 1, body={"k": 1})
        assert r["ok"], r
        assert r["requests"] > 0 and 0 < r["p50_us"] <= r["p99_us"]
        bad = wrk(url, 1, 1, body={"k": 2})
        assert not bad["ok"] and bad["non2xx"] > 0
        seen.clear()
        spread = wrk(url, 1, 1, body='{"k": __KEY__}', keys=3)  # keys 0..2: 0 and 2 answer 400
        assert spread["requests"] > 20 and {'{"k": 0}', '{"k": 1}', '{"k": 2}'} <= seen
    finally:
        srv.shutdown()


def test_time_calls_counts_and_orders_percentiles():
    r = time_calls(lambda: sum(range(100)), calls=200, warmup=5)
    assert r["calls"] == 200 and 0 < r["p50_us"] <= r["p99_us"]


def test_lakeloop_server_starts_pinned_on_a_free_port_and_cleans_up(tmp_path):
    import os
    import urllib.request
    from pathlib import Path
    from harness import LakeloopServer
    from harness.env import BIN
    binary = Path(os.environ.get("LAKELOOP_BIN", BIN))
    if not binary.exists():
        from harness.env import under_ci
        if under_ci():
            pytest.fail(f"{binary} is not built (make build); CI=true does not skip")
        pytest.skip(f"{binary} is not built (make build)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "lakeloop.yaml").write_text("server:\n  io_threads: 1\n  worker_threads: 1\n")
    pin = Pinning(enabled=True)
    with LakeloopServer(project, pin, binary=binary) as s:
        with urllib.request.urlopen(s.url + "/api/v1/health", timeout=5) as r:
            assert r.status == 200
        data = s.data
        assert data.exists()
        if pin.enabled:
            allowed = os.sched_getaffinity(s.proc.pid)
            assert allowed == set(pin.server_cpus)
    assert s.proc.poll() is not None
    assert not data.exists()


def test_report_says_plainly_when_lakeloop_is_slower_or_not_measured(tmp_path):
    from harness.report import render
    res = Results("unit", "bench/x.py", out_dir=tmp_path)
    res.add(Figure("p99", "ms", "lower", lakeloop=2.0, anchor=1.0, anchor_name="feast",
                   anchor_version="0.67.0"))
    res.add(Figure("rps", "requests/s", "higher", lakeloop=5000.0, anchor=500.0))
    res.add(Figure("hist", "s", "lower", lakeloop=None, lakeloop_status="not built yet",
                   anchor=57.6))
    text = render(json.loads(res.write().read_text()))
    rows = [line for line in text.splitlines() if line.startswith("| p99") or
            line.startswith("| rps") or line.startswith("| hist")]
    assert "**lakeloop slower**: 2x worse" in rows[0] and "feast 0.67.0" in rows[0]
    assert "lakeloop 10x better" in rows[1]
    assert "not compared (lakeloop: not built yet)" in rows[2]
    assert "bench/x.py" in text
