"""Latency measurement: a closed-loop HTTP load generator (wrk + a Lua script that reports p50/p99
as JSON, run on the load cores) and an in-process timing helper."""
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

LUA = Path(__file__).with_name("post_json.lua")


def wrk(url, connections, duration_s, body=None, pinning=None, lua=LUA, env=None, threads=None,
        timeout_s=10, keys=None):
    """Runs wrk against url for duration_s at `connections`; POSTs `body` (a str or a JSON-able
    value) when given; with keys=N each request puts a random integer in [0, N) where the body
    says __KEY__. Returns requests, rps, p50/p90/p99/max in µs, errors and non-2xx counts.
    A run with errors or non-2xx answers is reported, not hidden: check r["ok"]."""
    if not shutil.which("wrk"):
        raise FileNotFoundError("wrk is not installed (scripts/setup.sh installs it)")
    e = dict(os.environ if env is None else env)
    if body is not None:
        e["WRK_BODY"] = body if isinstance(body, str) else json.dumps(body)
    else:
        e.pop("WRK_BODY", None)
    if keys:
        e["WRK_KEYS"] = str(keys)
    else:
        e.pop("WRK_KEYS", None)
    threads = threads or (1 if connections == 1 else 2)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", f"--timeout",
           f"{timeout_s}s", "-s", str(lua), url]
    if pinning:
        cmd = pinning.load(cmd)
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, check=True,
                         timeout=duration_s + timeout_s + 30).stdout
    line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError("wrk printed no JSON line:\n" + out)
    r = json.loads(line[5:])
    r["connections"] = connections
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["ok"] = r["errors"] == 0 and r["non2xx"] == 0 and r["requests"] > 0
    return r


def time_calls(fn, calls=1000, warmup=50, max_seconds=None):
    """Calls fn() `warmup` times, then up to `calls` times (or until max_seconds), timing each.
    Returns per-call figures in microseconds: mean, p50, p99 and the number of calls timed."""
    for _ in range(warmup):
        fn()
    samples = []
    t_end = time.perf_counter() + max_seconds if max_seconds else None
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
        if t_end and time.perf_counter() > t_end:
            break
    samples.sort()
    return {"calls": len(samples), "mean_us": statistics.fmean(samples),
            "p50_us": samples[len(samples) // 2],
            "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))]}
