#!/usr/bin/env python3
"""Foundation benchmarks: POST /api/v1/sql (SELECT 1) throughput and latency at 1 and 32
connections with wrk, beside an anchor run in the same session (the same HTTP server stack with a
trivial handler on its worker pool, api_bench_server --worker), and the time from `lakeloop up` to healthy beside the
anchor of a bare process start (`lakeloop version`).

Usage: .venv/bin/python bench/run.py [--duration 10] [--out bench/results/foundation.json]
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "lakeloop"
ECHO = ROOT / "build" / "src" / "api" / "api_bench_server"
LUA = ROOT / "bench" / "sql_select1.lua"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url):
    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wrk(url, path, conns, duration, body=None):
    env = dict(os.environ)
    if body:
        env["WRK_BODY"] = body
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "-s", str(LUA),
                          url + path], capture_output=True, text=True, env=env, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("JSON "))
    r = json.loads(line[5:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def start_server(project, data, port):
    t0 = time.monotonic()
    p = subprocess.Popen([str(BIN), "--project", str(project), "--data", str(data), "up",
                          "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while not healthy(url):
        if p.poll() is not None:
            sys.exit("server exited")
        time.sleep(0.002)
    return p, url, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "foundation.json"))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-"))
    project = work / "project"
    project.mkdir()
    (project / "lakeloop.yaml").write_text("server:\n  io_threads: 1\n  worker_threads: 2\n")
    results = {"machine": f"{platform.node()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
               "duration_s": args.duration}

    # Start-up: bare process start (anchor) vs up-to-healthy, 5 runs each, fresh data dir each time.
    anchor = []
    for _ in range(5):
        t0 = time.monotonic()
        subprocess.run([str(BIN), "version"], capture_output=True, check=True)
        anchor.append(time.monotonic() - t0)
    ups = []
    for i in range(5):
        p, url, dt = start_server(project, work / f"data-{i}", free_port())
        ups.append(dt)
        p.terminate()
        p.wait()
    results["startup"] = {"up_to_healthy_ms_median": statistics.median(ups) * 1e3,
                          "anchor_process_start_ms_median": statistics.median(anchor) * 1e3}

    # Throughput: anchor (same Beast stack, trivial handler on the worker pool, like SQL's) then lakeloop's SQL endpoint.
    port = free_port()
    echo = subprocess.Popen([str(ECHO), str(port), "1", "--worker"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    p, url, _ = start_server(project, work / "data-sql", free_port())
    try:
        for conns in (1, 32):
            a = wrk(f"http://127.0.0.1:{port}", "/echo", conns, args.duration, body='{"x": 1}')
            s = wrk(url, "/api/v1/sql", conns, args.duration)
            results[f"c{conns}"] = {
                "sql_select1": s, "anchor_http_echo": a,
                "ratio_sql_to_anchor_rps": s["rps"] / a["rps"]}
    finally:
        p.terminate()
        p.wait()
        echo.terminate()
        echo.wait()
    shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
