#!/usr/bin/env python3
"""Feature store benchmarks: lakeloop beside Feast (installed from PyPI into .venv-bench/anchors by
scripts/setup_bench.sh; local provider, SQLite online store, file offline store, telemetry off), on
the same generated Parquet data (bench/features_data.py), in the same run.

  (a) online retrieval over HTTP: 1 entity x 20 features from 2 views (random entity among
      --customers per request), at 1 and 32 connections, wrk on the load core, server on the other:
      `feast serve -w 1 --max-requests 0` vs lakeloop's POST /api/v1/features/online
  (b) online retrieval in process: Feast's get_online_features vs lakeloop's C++ call path
  (c) historical (point-in-time) retrieval: entity rows 10k / 100k / 1M against 3 views of 10x as
      many feature rows each, on a size ladder with a time and a memory budget per step (peak RSS
      of the process tree), so each side is measured at the largest size it finishes.

lakeloop's side of each is one function below (lakeloop_online_http, lakeloop_online_inprocess,
lakeloop_historical); one that is not built yet reports "not built yet" and the results file
records lakeloop's figure and the ratio as null.

Usage: .venv/bin/python bench/features.py [--duration 8] [--sizes 10000,100000,1000000]
       [--time-budget 900] [--memory-budget-mb 6144] [--no-pin] [--skip-online] [--skip-historical]
Results: bench/results/features.json
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (NOT_BUILT, Budget, Figure, Pinning, Results, anchor_env,  # noqa: E402
                     anchor_version, free_port, require_anchor, run_ladder, run_measured, wait_http,
                     wrk)
from harness.env import BIN, ROOT  # noqa: E402
from harness import LakeloopServer  # noqa: E402
import requests  # noqa: E402

BIN_PATH = BIN

HERE = Path(__file__).resolve().parent
DATA_GEN = HERE / "features_data.py"
FEAST = HERE / "anchors" / "feast_anchor.py"
ONLINE_VIEWS = 2
HIST_VIEWS = 3
FEATURES_PER_VIEW = 10
TTL_DAYS = 30  # anchors/feast_anchor.py


def online_body(features_key="__KEY__"):
    feats = [f"view_{v}:f{i}" for v in range(ONLINE_VIEWS) for i in range(FEATURES_PER_VIEW)]
    # full_feature_names: the views share feature names (f0..f9), as Feast requires then.
    return '{"features": ' + json.dumps(feats) + ', "entities": {"customer_id": [' + \
        features_key + ']}, "full_feature_names": true}'


# ---------------------------------------------------------------------------------------------
# lakeloop's side. Each function gets the same inputs as the anchor and returns a dict of figures
# (or {"status": NOT_BUILT}). Fill these in when the feature store's retrieval lands.
# ---------------------------------------------------------------------------------------------

_LAKELOOP_ONLINE = {}  # data_dir -> the running LakeloopServer (set up once for both runs)


def _lakeloop_online_server(data_dir, pinning):
    """A project whose batch views view_0 and view_1 read raw.view_0 / raw.view_1 (the Parquet
    files in data_dir, loaded with `lakeloop load`), applied, served and materialized."""
    key = str(data_dir)
    if key in _LAKELOOP_ONLINE:
        return _LAKELOOP_ONLINE[key]
    project = Path(data_dir) / "lakeloop"
    shutil.rmtree(project, ignore_errors=True)
    (project / "entities").mkdir(parents=True)
    (project / "features").mkdir()
    (project / "lakeloop.yaml").write_text("name: bench\nserver:\n  worker_threads: 2\n")
    (project / "entities" / "customer.yaml").write_text(
        "name: customer\njoin_key: customer_id\ntype: int64\n")
    for v in range(ONLINE_VIEWS):
        feats = "".join(f"  - {{name: f{i}, type: double}}\n" for i in range(FEATURES_PER_VIEW))
        (project / "features" / f"view_{v}.yaml").write_text(
            f"name: view_{v}\nkind: batch\nsource: raw.view_{v}\nentity: customer\n"
            f"timestamp: event_timestamp\nfeatures:\n{feats}")
    data = project / ".data"
    base = [str(BIN_PATH), "--project", str(project), "--data", str(data)]
    for v in range(ONLINE_VIEWS):
        subprocess.run(base + ["load", f"raw.view_{v}", str(Path(data_dir) / f"view_{v}.parquet")],
                       check=True, capture_output=True)
    server = LakeloopServer(project, pinning, data=data, apply=True).start()
    atexit.register(server.stop)
    for v in range(ONLINE_VIEWS):
        r = requests.post(f"{server.url}/api/v1/features/views/view_{v}/materialize",
                          params={"full": "true"}, timeout=600)
        r.raise_for_status()
        log(f"lakeloop materialize view_{v}: {r.json()['rows_loaded']} rows")
    _LAKELOOP_ONLINE[key] = server
    return server


def lakeloop_online_http(data_dir, customers, connections, duration, pinning):
    """POST /api/v1/features/online, 1 entity x 20 features from view_0 and view_1 (the Parquet
    files in data_dir loaded as batch views and materialized), wrk at `connections`. Return the
    harness.wrk() dict (rps, p50_us, p99_us, ok)."""
    server = _lakeloop_online_server(data_dir, pinning)
    url = server.url + "/api/v1/features/online"
    body = online_body()
    probe = requests.post(url, data=body.replace("__KEY__", "1"),
                          headers={"Content-Type": "application/json"}, timeout=10)
    probe.raise_for_status()
    statuses = [v["status"] for v in probe.json()["entities"][0]["features"].values()]
    if statuses != ["present"] * (ONLINE_VIEWS * FEATURES_PER_VIEW):
        return {"status": f"probe failed: {statuses}"}
    r = wrk(url, connections, duration, body=body, pinning=pinning, keys=customers)
    log(f"lakeloop c={connections}: {r['rps']:.0f} req/s p50 {r['p50_us']} us "
        f"p99 {r['p99_us']} us ok={r['ok']}")
    return r


def lakeloop_online_inprocess(data_dir, customers, pinning):
    """The features module's C++ read path for 1 entity x 20 features (a Google Benchmark binary
    printing JSON). Return {"p50_us", "p99_us", "mean_us"}."""
    binary = ROOT / "build" / "src" / "features" / "online_benchmark"
    if not binary.exists():
        return {"status": "online_benchmark is not built (cmake --build build --target "
                          "online_benchmark)"}
    cmd = pinning.server([str(binary), "--benchmark_format=json"])
    env = dict(os.environ, LAKELOOP_BENCH_CUSTOMERS=str(customers))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    # BM_OnlineGet/0: the 20 "view:feature" names of the HTTP body, resolved per call (the
    # figure); BM_OnlineGet/1: the same 20 features as a feature service (resolved at apply).
    b, svc = json.loads(out)["benchmarks"][:2]
    if min(b.get("present_fraction", 0), svc.get("present_fraction", 0)) < 1:
        return {"status": f"not every lookup found its entity: {b.get('present_fraction')}"}
    r = {"mean_us": round(b["real_time"], 3), "p50_us": round(b["p50_ns"] / 1000, 3),
         "p99_us": round(b["p99_ns"] / 1000, 3), "iterations": b["iterations"],
         "service_p50_us": round(svc["p50_ns"] / 1000, 3),
         "service_p99_us": round(svc["p99_ns"] / 1000, 3)}
    log(f"lakeloop OnlinePlan::Get: mean {r['mean_us']} us p50 {r['p50_us']} us "
        f"p99 {r['p99_us']} us")
    return r


def lakeloop_historical(data_dir, entity_rows, budget):
    """Point-in-time dataset of entities.parquet against view_0..view_2 in data_dir() (a call:
    it generates the files on first use). Return the harness.run_measured() dict of the command
    that builds it (status, seconds, peak_rss_mb).

    Untimed setup: a project whose Parquet sources load view_i.parquet and entities.parquet into
    raw.view_i / raw.entities (`lakeloop build`), an entity `customer`, batch views view_i
    (timestamp event_timestamp, the anchor's TTL). Timed: `lakeloop features dataset create`
    (embedded: the process opens the data directory, builds datasets.bench with its own engine,
    commits it), 30 features, the same rows and ASOF-within-TTL semantics as Feast's
    get_historical_features."""
    data = Path(data_dir()).resolve()
    proj = data / "lakeloop-project"
    store = data / "lakeloop-data"
    shutil.rmtree(proj, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    for d in ("sources", "entities", "features"):
        (proj / d).mkdir(parents=True)
    (proj / "data").symlink_to(data)
    threads = max(1, min(4, os.cpu_count() or 1))
    (proj / "lakeloop.yaml").write_text(
        "name: bench\nsql:\n  threads: 1\nlimits:\n"
        f"  loads_threads: {threads}\n  loads_memory_limit: 4GB\n  loads_query_timeout_ms: 0\n"
        f"  datasets_threads: {threads}\n  datasets_memory_limit: 4GB\n")
    names = [f"view_{v}" for v in range(HIST_VIEWS)] + ["entities"]
    for n in names:
        (proj / "sources" / f"{n}.yaml").write_text(
            f"type: files\npath: data/{n}.parquet\nformat: parquet\nschedule: \"@daily\"\n")
    (proj / "entities" / "customer.yaml").write_text(
        "name: customer\njoin_key: customer_id\ntype: int64\n")
    feats = []
    for v in range(HIST_VIEWS):
        body = (f"name: view_{v}\nkind: batch\nsource: raw.view_{v}\nentity: customer\n"
                f"timestamp: event_timestamp\nttl: {TTL_DAYS * 24}h\nfeatures:\n")
        for i in range(FEATURES_PER_VIEW):
            body += f"  - {{name: f{i}, type: double}}\n"
            feats.append(f"view_{v}:f{i}")
        (proj / "features" / f"view_{v}.yaml").write_text(body)
    base = [str(BIN), "--project", str(proj), "--data", str(store)]
    for cmd in (["apply"], ["build"]):
        p = subprocess.run(base + cmd, capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            return {"status": "failed", "output_tail": (p.stdout + p.stderr)[-2000:]}
    cmd = base + ["features", "dataset", "create", "bench", "--entities-table", "raw.entities",
                  "--features", *feats]
    return run_measured(cmd, budget)


# ---------------------------------------------------------------------------------------------

def log(msg):
    print(f"[features] {msg}", flush=True)


def run_anchor(py, *args, budget=Budget(seconds=1800, memory_mb=8192), pin=None):
    cmd = [str(py), str(FEAST), *map(str, args)]
    if pin:
        cmd = pin(cmd)
    r = run_measured(cmd, budget, env=anchor_env(), cwd=str(ROOT))
    if r["status"] != "ok":
        raise RuntimeError(f"feast {args[0]}: {r['status']}\n{r['output_tail']}")
    return r


def generate(py, out, **kw):
    """Generates a data set once: reuses out/ when it was generated with the same arguments."""
    out = Path(out)
    marker = out / ".generated-with.json"
    want = json.dumps(kw, sort_keys=True, default=str)
    if marker.exists() and marker.read_text() == want:
        return out
    args = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    t0 = time.monotonic()
    subprocess.run([str(py), str(DATA_GEN), f"--out={out}", *args], check=True, env=anchor_env())
    marker.write_text(want)
    log(f"generated {out.name} in {time.monotonic() - t0:.1f} s")
    return out


def feast_serve(py, repo, pinning):
    """Starts `feast serve -w 1 --max-requests 0` in its own session on the server cores."""
    port = free_port()
    feast_bin = Path(py).parent / "feast"
    cmd = [str(feast_bin), "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
           "--max-requests", "0", "--no-access-log"]
    cmd = pinning.server(cmd)
    proc = subprocess.Popen(cmd, env=anchor_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc, timeout_s=180)
    return proc, url


def stop_session(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def online(args, py, version, res, pinning, work):
    end = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat()
    data = generate(py, work / "online", views=ONLINE_VIEWS, customers=args.customers,
                    feature_rows=args.customers, span_days=1 / 24, end=end)
    end = json.loads((data / "meta.json").read_text())["end"]
    repo = data / "feast"
    shutil.rmtree(repo, ignore_errors=True)  # a fresh registry and online store every run
    run_anchor(py, "repo", "--repo", repo, "--data", data, "--views", ONLINE_VIEWS)
    m = run_anchor(py, "materialize", "--repo", repo, "--end", end)
    log(f"feast materialize {ONLINE_VIEWS} x {args.customers} rows: "
        f"{m['result']['materialize_s']:.1f} s")
    res.extra["online_setup"] = {"customers": args.customers, "views": ONLINE_VIEWS,
                                 "features_per_request": ONLINE_VIEWS * FEATURES_PER_VIEW,
                                 "feast_materialize_s": m["result"]["materialize_s"]}

    body = online_body()
    # Feast over HTTP (server on the server cores, wrk on the load cores).
    anchor = {}
    proc, url = feast_serve(py, repo, pinning)
    try:
        # A correctness probe before timing: a known entity answers with 20 present values.
        probe = wrk_probe(url + "/get-online-features", body.replace("__KEY__", "1"))
        res.extra["feast_http_probe"] = probe
        for c in (1, 32):
            r = wrk(url + "/get-online-features", c, args.duration, body=body, pinning=pinning,
                    keys=args.customers)
            log(f"feast serve c={c}: {r['rps']:.0f} req/s p50 {r['p50_us']} us "
                f"p99 {r['p99_us']} us ok={r['ok']}")
            anchor[c] = r
    finally:
        stop_session(proc)

    for c in (1, 32):
        a = anchor[c]
        mine = lakeloop_online_http(data, args.customers, c, args.duration, pinning)
        st = mine.get("status", "ok") if "rps" not in mine else "ok"
        ast = "ok" if a["ok"] else f"errors={a['errors']} non2xx={a['non2xx']}"
        common = dict(anchor_name="feast serve -w 1", anchor_version=version, lakeloop_status=st,
                      anchor_status=ast, details={"connections": c, "anchor_wrk": a,
                                                  "lakeloop_wrk": mine if st == "ok" else None})
        res.add(Figure(f"online_http_c{c}_throughput", "requests/s", "higher",
                       lakeloop=mine.get("rps"), anchor=round(a["rps"], 1), **common))
        res.add(Figure(f"online_http_c{c}_p50", "ms", "lower",
                       lakeloop=ms(mine.get("p50_us")), anchor=ms(a["p50_us"]), **common))
        res.add(Figure(f"online_http_c{c}_p99", "ms", "lower",
                       lakeloop=ms(mine.get("p99_us")), anchor=ms(a["p99_us"]), **common))

    # In process: Feast's get_online_features on the server core (no load generator involved).
    r = run_anchor(py, "online", "--repo", repo, "--views", ONLINE_VIEWS, "--customers",
                   args.customers, "--calls", args.calls, pin=pinning.server)
    a = r["result"]
    log(f"feast get_online_features: mean {a['mean_us']:.0f} us p50 {a['p50_us']:.0f} us "
        f"p99 {a['p99_us']:.0f} us")
    mine = lakeloop_online_inprocess(data, args.customers, pinning)
    st = mine.get("status", "ok") if "p50_us" not in mine else "ok"
    for stat in ("p50", "p99"):
        res.add(Figure(f"online_inprocess_{stat}", "us per call", "lower",
                       lakeloop=mine.get(f"{stat}_us"), anchor=round(a[f"{stat}_us"], 1),
                       anchor_name="feast get_online_features", anchor_version=version,
                       lakeloop_status=st, details={"anchor": a, "anchor_peak_rss_mb":
                                                    r["peak_rss_mb"]}))


def ms(us):
    return None if us is None else round(us / 1000.0, 3)


def wrk_probe(url, body):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"feast serve answered {e.code}: {e.read()[:1000]!r}") from e
    present = 0
    for col in out.get("results", [])[1:]:
        present += sum(1 for s in col.get("statuses", []) if s == "PRESENT")
    names = out.get("metadata", {}).get("feature_names", [])
    if present != ONLINE_VIEWS * FEATURES_PER_VIEW:
        raise RuntimeError(f"feast serve answered {present} present values: {str(out)[:500]}")
    return {"feature_names": len(names), "present": present}


def historical(args, py, version, res, work):
    sizes = sorted(int(s) for s in args.sizes.split(","))
    budget = Budget(seconds=args.time_budget, memory_mb=args.memory_budget_mb)

    def data_for(e):
        # 1M entity rows against 3 views of 10M rows: feature rows 10x the entity rows, over
        # 180 days, customers = entity rows / 10 (100 feature rows per customer per view).
        return generate(py, work / f"hist-{e}", views=HIST_VIEWS, customers=max(1, e // 10),
                        feature_rows=10 * e, entity_rows=e, span_days=180)

    def feast_step(e):
        data = data_for(e)
        repo = data / "feast"
        shutil.rmtree(repo, ignore_errors=True)
        run_anchor(py, "repo", "--repo", repo, "--data", data, "--views", HIST_VIEWS)
        cmd = [str(py), str(FEAST), "historical", "--repo", str(repo), "--data", str(data),
               "--views", str(HIST_VIEWS)]
        return {"cmd": cmd, "env": anchor_env(), "cwd": str(ROOT)}

    def lakeloop_step(e):
        return lakeloop_historical(lambda: data_for(e), e, budget)

    feast_ladder = run_ladder(sizes, feast_step, budget, label="feast historical", log=log)
    lake_ladder = run_ladder(sizes, lakeloop_step, budget, label="lakeloop historical", log=log)
    res.extra["historical_ladders"] = {"feast": feast_ladder, "lakeloop": lake_ladder,
                                       "views": HIST_VIEWS, "features_per_view": FEATURES_PER_VIEW,
                                       "feature_rows_per_view": "10 x entity rows"}
    by_size = {s["size"]: s for s in feast_ladder["steps"]}
    mine = {s["size"]: s for s in lake_ladder["steps"]}
    skipped = {"status": "not run (a smaller size did not finish)"}
    for e in sizes:
        a = by_size.get(e, skipped)
        m = mine.get(e, {"status": NOT_BUILT} if lake_ladder["steps"][0]["status"] == NOT_BUILT
                     else skipped)
        inner = (a.get("result") or {}).get("seconds")
        res.add(Figure(f"historical_{e}_rows_seconds", "s", "lower",
                       lakeloop=m.get("seconds") if m["status"] == "ok" else None,
                       anchor=round(inner, 2) if a["status"] == "ok" and inner else None,
                       anchor_name="feast get_historical_features", anchor_version=version,
                       lakeloop_status=m["status"], anchor_status=a["status"],
                       details={"entity_rows": e, "feature_rows_per_view": 10 * e,
                                "anchor_process_seconds": a.get("seconds"),
                                "anchor_peak_rss_mb": a.get("peak_rss_mb"),
                                "anchor_result": a.get("result"),
                                "lakeloop_peak_rss_mb": m.get("peak_rss_mb")}))
        res.add(Figure(f"historical_{e}_rows_peak_rss", "MB", "lower",
                       lakeloop=m.get("peak_rss_mb") if m["status"] == "ok" else None,
                       anchor=a.get("peak_rss_mb") if a["status"] == "ok" else None,
                       anchor_name="feast get_historical_features", anchor_version=version,
                       lakeloop_status=m["status"], anchor_status=a["status"],
                       details={"anchor_peak_rss_mb_when_stopped": a.get("peak_rss_mb")}))
    res.add(Figure("historical_largest_finished", "entity rows", "higher",
                   lakeloop=lake_ladder["largest_finished"],
                   anchor=feast_ladder["largest_finished"],
                   anchor_name="feast get_historical_features", anchor_version=version,
                   lakeloop_status="ok" if lake_ladder["largest_finished"] else NOT_BUILT,
                   anchor_status="ok" if feast_ladder["largest_finished"] else "none finished",
                   details={"budget": budget.as_dict()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--customers", type=int, default=10000, help="entities for online retrieval")
    ap.add_argument("--calls", type=int, default=2000, help="in-process calls timed")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="historical entity rows")
    ap.add_argument("--time-budget", type=float, default=900, help="seconds per ladder step")
    ap.add_argument("--memory-budget-mb", type=float, default=6144,
                    help="peak RSS of a ladder step's process tree")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and load to cores")
    ap.add_argument("--skip-online", action="store_true")
    ap.add_argument("--skip-historical", action="store_true")
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "features"),
                    help="generated data (kept between runs, regenerated when sizes change)")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    pinning = Pinning(enabled=not args.no_pin)
    py = require_anchor("anchors", "feast")
    if py is None:
        sys.exit("bench/features.py: the Feast anchor is not installed (scripts/setup_bench.sh); "
                 "nothing to compare")
    version = anchor_version("feast")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cmd = "bench/features.py " + " ".join(sys.argv[1:])
    res = Results("features", cmd.strip(), out_dir=args.out_dir,
                  config=dict(vars(args), pinning=pinning.describe(), feast_version=version))
    try:
        if not args.skip_online:
            online(args, py, version, res, pinning, work)
        if not args.skip_historical:
            historical(args, py, version, res, work)
    finally:
        res.write()


if __name__ == "__main__":
    main()
