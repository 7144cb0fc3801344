#!/usr/bin/env bash
# make run: loads the example project's seed data into the lake on first start, then serves.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="${1:-examples/shop}"
listen="${2:-127.0.0.1:8080}"
bin="$here/build/lakeloop"
if [ -x "$project/seed/load.sh" ]; then
  "$project/seed/load.sh" "$bin" "$project"
fi
exec "$bin" --project "$project" up --listen "$listen"
