#!/usr/bin/env python3
"""Posts an NDJSON file of events to a running server's stream, in file order (the generator writes
them in event-time order), in batches: POST /api/v1/streams/<stream>/events with a JSON array body
and Content-Type: application/json.

Usage: post_events.py URL FILE [--stream clicks] [--batch 5000] [--token T] [--if-empty]
--if-empty: do nothing when the stream already holds events (a restart of `make run`).
Every batch must be accepted whole (duplicates of a re-sent batch count as accepted); a rejected
event or an HTTP error stops with exit code 1. 429 (ingest queue full) and 503 are retried.
Prints {"events": N, "batches": B, "seconds": S}.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def request(url, body=None, token=None, timeout=60):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def post(url, lines, token):
    body = ("[" + ",".join(lines) + "]").encode()
    for attempt in range(50):
        try:
            return request(url, body, token)
        except urllib.error.HTTPError as e:
            if e.code in (429, 503) and attempt < 49:
                time.sleep(min(2.0, 0.05 * (attempt + 1)))
                continue
            raise SystemExit(f"post_events: HTTP {e.code}: {e.read().decode(errors='replace')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("file")
    ap.add_argument("--stream", default="clicks")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--token")
    ap.add_argument("--if-empty", action="store_true")
    args = ap.parse_args()
    base = args.url.rstrip("/") + f"/api/v1/streams/{args.stream}"
    if args.if_empty and request(base, token=args.token)["events"]["total"] > 0:
        print(json.dumps({"events": 0, "batches": 0, "seconds": 0, "skipped": "not empty"}))
        return
    started = time.monotonic()
    events = batches = 0
    batch = []
    with open(args.file) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            batch.append(line)
            if len(batch) == args.batch:
                events += send(base, batch, args.token)
                batches += 1
                batch = []
    if batch:
        events += send(base, batch, args.token)
        batches += 1
    print(json.dumps({"events": events, "batches": batches,
                      "seconds": round(time.monotonic() - started, 3)}))


def send(base, batch, token):
    reply = post(base + "/events", batch, token)
    if reply.get("rejected") or reply["accepted"] + reply["duplicates"] != len(batch):
        sys.exit(f"post_events: events rejected: {json.dumps(reply)[:2000]}")
    return len(batch)


if __name__ == "__main__":
    main()
