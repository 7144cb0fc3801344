#!/usr/bin/env bash
# make run, before the server starts: generates the shop's data (deterministic, 20k customers over
# the 180 days before now) on first start, applies the project's definitions and builds everything
# once. Later starts keep the data and only re-apply.
#   load.sh BIN PROJECT
# The historical click events (data/clicks.ndjson) go through the stream API once the server is up:
# scripts/run.sh calls seed/post_events.py with --if-empty.
set -euo pipefail
bin="$1"
project="$2"
if [ ! -d "$project/data/orders" ]; then
  echo "shop: generating example data (seed/generate.py)..." >&2
  python3 "$project/seed/generate.py" "$project/data" >/dev/null
fi
"$bin" --project "$project" apply
if ! "$bin" --project "$project" tables --format json | grep -q '"processed.customer_daily"'; then
  "$bin" --project "$project" build
fi
