#!/usr/bin/env python3
"""Generates the feature-store benchmark data as Parquet, seeded, shared by lakeloop and Feast.

Feature views `view_0` .. `view_{k-1}`: columns customer_id (int64), event_timestamp (timestamp[us,
UTC]), f0..f9 (float32). Entity rows: customer_id, event_timestamp, label.

  online:     --customers N --rows-per-customer 1, timestamps in the hour before --end
  historical: --customers E/10, feature rows 10 x E per view over 180 days, E entity rows

Runs with numpy + pyarrow (the anchor environment has both).
Usage: features_data.py --out DIR --views 3 --customers 100000 --feature-rows 10000000
                        [--entity-rows 1000000] [--span-days 180] [--seed 7]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = 10
END = np.datetime64("2026-11-01T00:00:00", "us")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--customers", type=int, required=True)
    ap.add_argument("--feature-rows", type=int, required=True, help="rows per view")
    ap.add_argument("--entity-rows", type=int, default=0)
    ap.add_argument("--span-days", type=float, default=180)
    ap.add_argument("--end", default=None, help="ISO time the data ends at (default 2026-11-01)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    end = np.datetime64(a.end, "us") if a.end else END
    span_us = int(a.span_days * 86400e6)
    rng = np.random.default_rng(a.seed)
    chunk = 2_000_000  # bounded memory while writing 10M-row views
    for v in range(a.views):
        path = out / f"view_{v}.parquet"
        writer = None
        done = 0
        while done < a.feature_rows:
            n = min(chunk, a.feature_rows - done)
            if a.feature_rows == a.customers:  # one row per customer (online data)
                ids = np.arange(done, done + n, dtype=np.int64)
            else:
                ids = rng.integers(0, a.customers, n, dtype=np.int64)
            ts = end - rng.integers(0, span_us, n).astype("timedelta64[us]")
            cols = {"customer_id": pa.array(ids),
                    "event_timestamp": pa.array(ts.astype("datetime64[us]"),
                                                type=pa.timestamp("us", tz="UTC"))}
            for f in range(FEATURES):
                cols[f"f{f}"] = pa.array(rng.random(n, dtype=np.float32))
            t = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(path, t.schema)
            writer.write_table(t)
            done += n
        writer.close()
    if a.entity_rows:
        ids = rng.integers(0, a.customers, a.entity_rows, dtype=np.int64)
        ts = end - rng.integers(0, span_us, a.entity_rows).astype("timedelta64[us]")
        t = pa.table({"customer_id": pa.array(ids),
                      "event_timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
                      "label": pa.array(rng.integers(0, 2, a.entity_rows, dtype=np.int8))})
        pq.write_table(t, out / "entities.parquet")
    meta = {k: v for k, v in vars(a).items()}
    meta["end"] = str(end)
    meta["features_per_view"] = FEATURES
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
