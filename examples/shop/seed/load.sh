#!/usr/bin/env bash
# Loads the generated seed data into raw.* on a fresh data directory (make run). Idempotent: tables
# that already exist are left alone.
set -euo pipefail
bin="$1"
project="$2"
data="$project/.lakeloop"
existing="$("$bin" --project "$project" tables --format json 2>/dev/null || echo '{}')"
out="$data/seed"
python3 "$project/seed/generate.py" "$out" >/dev/null
for t in customers:customers.csv orders:orders.csv products:products.jsonl; do
  name="${t%%:*}"; file="${t#*:}"
  if ! grep -q "\"raw.$name\"" <<<"$existing"; then
    "$bin" --project "$project" load "raw.$name" "$out/$file"
  fi
done
