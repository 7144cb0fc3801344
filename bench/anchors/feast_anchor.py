#!/usr/bin/env python3
"""The Feast side of bench/features.py. Runs inside the anchor environment
(.venv-bench/anchors, telemetry off) as a child process, so the harness measures its time and memory
from outside. Each command prints one line "RESULT {json}".

  repo --repo DIR --data DIR --views K     write feature_store.yaml (local provider, SQLite online
                                           store, file offline store) and apply K feature views
  materialize --repo DIR --end ISO         load the newest row per entity into the online store
  online --repo DIR --views K --customers N --calls C
                                           in-process get_online_features, 1 entity x 10K features
  historical --repo DIR --data DIR --views K
                                           get_historical_features of data/entities.parquet
"""
import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")

FEATURES = 10
TTL_DAYS = 30

STORE_YAML = """project: lakeloop_bench
registry: {repo}/registry.db
provider: local
online_store:
  type: sqlite
  path: {repo}/online_store.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def definitions(data, views):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    objs = [customer]
    for v in range(views):
        src = FileSource(name=f"view_{v}_source", path=str(Path(data) / f"view_{v}.parquet"),
                         timestamp_field="event_timestamp")
        objs.append(FeatureView(name=f"view_{v}", entities=[customer],
                                ttl=timedelta(days=TTL_DAYS),
                                schema=[Field(name=f"f{i}", dtype=Float32) for i in range(FEATURES)],
                                source=src, online=True))
    return objs


def feature_refs(views):
    return [f"view_{v}:f{i}" for v in range(views) for i in range(FEATURES)]


def cmd_repo(a):
    repo = Path(a.repo)
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(STORE_YAML.format(repo=repo.resolve()))
    from feast import FeatureStore
    t0 = time.perf_counter()
    store = FeatureStore(repo_path=str(repo))
    store.apply(definitions(a.data, a.views))
    result(apply_s=time.perf_counter() - t0)


def cmd_materialize(a):
    from feast import FeatureStore
    store = FeatureStore(repo_path=a.repo)
    end = datetime.fromisoformat(a.end).replace(tzinfo=timezone.utc) + timedelta(seconds=1)
    t0 = time.perf_counter()
    store.materialize(start_date=end - timedelta(days=TTL_DAYS), end_date=end)
    result(materialize_s=time.perf_counter() - t0)


def cmd_online(a):
    from feast import FeatureStore
    store = FeatureStore(repo_path=a.repo)
    refs = feature_refs(a.views)
    rnd = random.Random(1)

    def call(key):
        return store.get_online_features(features=refs, entity_rows=[{"customer_id": key}],
                                         full_feature_names=True).to_dict()

    # Correctness first: a known entity has every feature, an unknown one has none.
    got = call(1)
    present = sum(1 for r in refs if got[r.replace(":", "__")][0] is not None)
    missing = call(a.customers + 10)
    present_unknown = sum(1 for r in refs if missing[r.replace(":", "__")][0] is not None)
    if present != len(refs) or present_unknown != 0:
        sys.exit(f"feast online: {present}/{len(refs)} features for a known entity, "
                 f"{present_unknown} for an unknown one")
    for _ in range(a.warmup):
        call(rnd.randrange(a.customers))
    samples = []
    for _ in range(a.calls):
        key = rnd.randrange(a.customers)
        t0 = time.perf_counter_ns()
        call(key)
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    samples.sort()
    result(calls=len(samples), mean_us=sum(samples) / len(samples),
           p50_us=samples[len(samples) // 2],
           p99_us=samples[min(len(samples) - 1, int(len(samples) * 0.99))],
           features_per_call=len(refs))


def cmd_historical(a):
    import pandas as pd
    from feast import FeatureStore
    store = FeatureStore(repo_path=a.repo)
    entities = pd.read_parquet(Path(a.data) / "entities.parquet")
    t0 = time.perf_counter()
    df = store.get_historical_features(entity_df=entities,
                                       features=feature_refs(a.views),
                                       full_feature_names=True).to_df()
    seconds = time.perf_counter() - t0
    nulls = int(df["view_0__f0"].isna().sum()) if len(df) else None
    result(seconds=seconds, entity_rows=len(entities), rows_out=len(df), columns=len(df.columns),
           null_f0=nulls)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("repo")
    p.add_argument("--repo", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--views", type=int, required=True)
    p = sub.add_parser("materialize")
    p.add_argument("--repo", required=True)
    p.add_argument("--end", required=True)
    p = sub.add_parser("online")
    p.add_argument("--repo", required=True)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--customers", type=int, required=True)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p = sub.add_parser("historical")
    p.add_argument("--repo", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--views", type=int, default=3)
    a = ap.parse_args()
    {"repo": cmd_repo, "materialize": cmd_materialize, "online": cmd_online,
     "historical": cmd_historical}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
