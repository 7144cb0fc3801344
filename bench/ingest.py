#!/usr/bin/env python3
"""CSV -> lake ingest throughput: `lakeloop run source` on a generated CSV of at least 1 GB, beside
the anchor of raw DuckDB (same version, same thread count) COPYing the same file to Parquet in the
same run. Also the scheduler overhead per task for a chain of 40 trivial SQL models built by
`lakeloop build` (each model reads the previous one), beside the anchor of the same chain run as
plain DuckDB statements.

Usage: .venv/bin/python bench/ingest.py [--rows 12000000] [--out bench/results/batch.json]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "lakeloop"
SCHEMA = {"order_id": "BIGINT", "customer_id": "BIGINT", "product_id": "BIGINT",
          "quantity": "INTEGER", "amount": "DECIMAL(12,2)", "ordered_at": "TIMESTAMP"}


def cli(project, *args):
    t0 = time.monotonic()
    p = subprocess.run([str(BIN), "--project", str(project), *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{args} failed: {p.stdout}\n{p.stderr}")
    return time.monotonic() - t0, p.stdout


def ingest(work, rows, threads):
    project = work / "ingest"
    (project / "data").mkdir(parents=True)
    (project / "sources").mkdir()
    (project / "lakeloop.yaml").write_text(f"sql:\n  threads: {threads}\n  memory_limit: 4GB\n")
    csv = project / "data" / "orders.csv"
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(f"""COPY (SELECT i AS order_id, i % 50000 AS customer_id, i % 1000 AS product_id,
                   1 + i % 4 AS quantity, CAST((i % 100000) / 100.0 AS DECIMAL(12,2)) AS amount,
                   TIMESTAMP '2026-10-01' + to_seconds(i % 2592000) AS ordered_at
                   FROM range({rows}) t(i)) TO '{csv}' (HEADER)""")
    size = csv.stat().st_size
    schema = "\n".join(f"  {k}: {v}" for k, v in SCHEMA.items())
    (project / "sources" / "orders.yaml").write_text(
        f"type: files\npath: data/orders.csv\nformat: csv\nschema:\n{schema}\n")
    # Anchor: DuckDB alone, same file, same types, to Parquet.
    cols = ", ".join(f"'{k}': '{v}'" for k, v in SCHEMA.items())
    out = work / "anchor.parquet"
    t0 = time.monotonic()
    con.execute(f"COPY (SELECT * FROM read_csv('{csv}', header = true, columns = {{{cols}}})) "
                f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    anchor_s = time.monotonic() - t0
    con.close()
    cli(project, "apply")
    lake_s, stdout = cli(project, "run", "source", "orders")
    n = int(subprocess.run([str(BIN), "--project", str(project), "sql",
                            "SELECT count(*) FROM raw.orders", "--format", "csv"],
                           capture_output=True, text=True).stdout.split()[-1])
    assert n == rows, (n, rows)
    mb = size / 1e6
    return {"rows": rows, "csv_mb": round(mb, 1), "threads": threads,
            "lakeloop_s": round(lake_s, 2), "lakeloop_mb_s": round(mb / lake_s, 1),
            "lakeloop_rows_s": round(rows / lake_s),
            "anchor_duckdb_copy_s": round(anchor_s, 2), "anchor_mb_s": round(mb / anchor_s, 1),
            "ratio_lakeloop_to_anchor_time": round(lake_s / anchor_s, 2)}


def chain(work, models):
    project = work / "chain"
    (project / "data").mkdir(parents=True)
    (project / "sources").mkdir()
    (project / "models").mkdir()
    (project / "data" / "seed.csv").write_text("id,v\n1,1\n2,2\n")
    (project / "sources" / "seed.yaml").write_text("type: files\npath: data/seed.csv\nformat: csv\n")
    prev = "raw.seed"
    for i in range(models):
        (project / "models" / f"m{i:02d}.sql").write_text(f"SELECT id, v + 1 AS v FROM {prev}\n")
        prev = f"processed.m{i:02d}"
    cli(project, "apply")
    build_s, out = cli(project, "build")
    assert out.count("succeeded") == models + 1, out
    # Anchor: the same 40 statements as plain DuckDB tables (no scheduler, no lake, no catalog).
    con = duckdb.connect()
    t0 = time.monotonic()
    con.execute("CREATE TABLE seed AS SELECT * FROM (VALUES (1, 1), (2, 2)) t(id, v)")
    prev = "seed"
    for i in range(models):
        con.execute(f"CREATE TABLE m{i} AS SELECT id, v + 1 AS v FROM {prev}")
        prev = f"m{i}"
    anchor_s = time.monotonic() - t0
    return {"models": models, "build_s": round(build_s, 3),
            "per_task_ms": round(build_s * 1000 / (models + 1), 2),
            "anchor_plain_duckdb_per_statement_ms": round(anchor_s * 1000 / (models + 1), 3),
            "airflow_published_per_task_ms": 2600}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=12_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-batch-"))
    try:
        res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
               "load_avg_at_start": os.getloadavg()[0],
               "ingest": ingest(work, args.rows, args.threads), "chain": chain(work, 40)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
