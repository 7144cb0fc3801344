#!/usr/bin/env bash
# make run: loads the example project's seed data into the lake on first start, then serves.
# The server runs in the background of this script so that, once it answers, the project's
# historical stream events (seed/post_events.py + data/*.ndjson) can be sent through the stream API;
# SIGTERM/SIGINT are forwarded and the script exits with the server's status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="${1:-examples/shop}"
listen="${2:-127.0.0.1:8080}"
bin="${LAKELOOP_BIN:-$here/build/lakeloop}"
if [ -x "$project/seed/load.sh" ]; then
  "$project/seed/load.sh" "$bin" "$project"
fi
if [ ! -f "$project/seed/post_events.py" ] || [ ! -f "$project/data/clicks.ndjson" ]; then
  exec "$bin" --project "$project" up --listen "$listen"
fi

"$bin" --project "$project" up --listen "$listen" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT HUP
host="${listen%:*}"
case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
url="http://$host:${listen##*:}"
healthy=0
for _ in $(seq 1 300); do  # up to 30 s
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if curl -sf -o /dev/null "$url/api/v1/health"; then healthy=1; break; fi
  sleep 0.1
done
if [ "$healthy" = 1 ]; then
  echo "shop: sending the historical click events to the stream 'clicks'..." >&2
  python3 "$project/seed/post_events.py" "$url" "$project/data/clicks.ndjson" --stream clicks \
    --if-empty >&2 || echo "shop: sending click events failed (the server keeps running)" >&2
fi
set +e
wait "$pid"
rc=$?
while kill -0 "$pid" 2>/dev/null; do  # woken by a forwarded signal: wait for the exit itself
  wait "$pid"
  rc=$?
done
exit "$rc"
