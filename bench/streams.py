#!/usr/bin/env python3
"""Streaming benchmarks: durable ingest throughput over HTTP (events/s at batch sizes 1, 100 and
1000; 1 and 32 connections; every acknowledgement fsynced) beside this disk's fsync rate (the
anchor: what one-fsync-per-event would allow), and event-to-feature freshness p50/p99 measured by a
probe client (post one event, poll its online feature until it counts) with no load, under a
1-connection batch-100 load, and under the heaviest (32 connections, batch 1000) load.

Usage: .venv/bin/python bench/streams.py [--duration 5] [--out bench/results/streams.json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "lakeloop"
LUA = ROOT / "bench" / "stream_events.lua"
sys.path.insert(0, str(ROOT / "bench"))
from run import free_port, healthy  # noqa: E402


def fsync_rate(path, seconds=2.0):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        os.write(fd, b"x" * 64)
        os.fsync(fd)
        n += 1
    os.close(fd)
    return n / (time.monotonic() - t0)


def wrk(url, conns, duration, batch):
    env = dict(os.environ, BATCH=str(batch))
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "-s", str(LUA),
                          url + "/api/v1/streams/clicks/events"], capture_output=True, text=True,
                         env=env, check=True).stdout
    r = json.loads(next(l for l in out.splitlines() if l.startswith("JSON "))[5:])
    r["requests_s"] = r["requests"] / (r["duration_us"] / 1e6)
    r["events_s"] = r["requests_s"] * batch
    return r


def post(url, body):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def freshness_probe(url, stop, samples):
    """Posts one click for a probe key and polls its online value until it counts; records the time
    from sending the event to seeing it in the feature."""
    key = 900000000
    while not stop.is_set():
        key += 1
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        t0 = time.monotonic()
        post(url + "/api/v1/streams/clicks/events",
             json.dumps([{"customer_id": key, "ts": now, "event_type": "click"}]))
        while time.monotonic() - t0 < 30:
            v = get(f"{url}/api/v1/features/online/customer_activity/{key}")
            if v["features"]["clicks_5m"] >= 1:
                samples.append(time.monotonic() - t0)
                break
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "streams.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-streams-"))
    project = work / "project"
    project.mkdir()
    shutil.copytree(ROOT / "examples/shop/streams", project / "streams")
    shutil.copytree(ROOT / "examples/shop/features", project / "features",
                    ignore=shutil.ignore_patterns("customer_daily.yaml"))  # batch: needs the models
    (project / "lakeloop.yaml").write_text("server:\n  io_threads: 1\n  worker_threads: 2\n"
                                           "  max_body_bytes: 16777216\n")
    data = work / "data"
    subprocess.run([str(BIN), "--project", str(project), "--data", str(data), "apply"], check=True,
                   capture_output=True)
    results = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
               "load_avg_at_start": os.getloadavg()[0],
               "anchor_fsync_per_s": round(fsync_rate(data / "fsync-probe"))}
    port = free_port()
    p = subprocess.Popen([str(BIN), "--project", str(project), "--data", str(data), "up",
                          "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while not healthy(url):
            time.sleep(0.01)
        runs = []
        for batch in (1, 100, 1000):
            for conns in (1, 32):
                r = wrk(url, conns, args.duration, batch)
                r.update(batch=batch, connections=conns,
                         ratio_events_to_fsync_rate=round(r["events_s"] / results["anchor_fsync_per_s"], 1))
                runs.append(r)
                print(json.dumps(r), flush=True)
        results["ingest"] = runs
        def measure(conns, batch):
            # Let the processor catch up first, so each measurement starts from no lag.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and get(url + "/api/v1/streams/clicks")["views"][0]["lag"]:
                time.sleep(0.1)
            stop = threading.Event()
            samples = []
            probe = threading.Thread(target=freshness_probe, args=(url, stop, samples))
            probe.start()
            if conns:
                load = wrk(url, conns, max(args.duration, 5), batch)
            else:
                time.sleep(max(args.duration, 5))
                load = {"events_s": 0}
            stop.set()
            probe.join()
            samples.sort()
            lag = get(url + "/api/v1/streams/clicks")["views"][0]["lag"]
            return {"load_connections": conns, "load_batch": batch,
                    "load_events_s": round(load["events_s"]), "samples": len(samples),
                    "p50_ms": round(statistics.median(samples) * 1000, 2) if samples else None,
                    "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 2)
                    if samples else None,
                    "view_lag_at_end": lag}

        results["freshness"] = [measure(0, 0), measure(1, 100), measure(32, 1000)]
        st = get(url + "/api/v1/streams/clicks")
        results["stream_after"] = {"events_total": st["events"]["total"],
                                   "view_lag": st["views"][0]["lag"] if st["views"] else None}
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
