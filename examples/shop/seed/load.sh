#!/usr/bin/env bash
# make run: generates the shop's data (deterministic) on first start, applies the project's
# definitions and builds everything once. Later starts keep the data and only re-apply.
set -euo pipefail
bin="$1"
project="$2"
if [ ! -d "$project/data/orders" ]; then
  python3 "$project/seed/generate.py" "$project/data" >/dev/null
fi
"$bin" --project "$project" apply
if ! "$bin" --project "$project" tables --format json | grep -q '"processed.customer_profile"'; then
  "$bin" --project "$project" build
fi
