#!/usr/bin/env bash
# Installs everything lakeloop needs to build, run and test on Debian 12. Idempotent: a second run
# checks and returns quickly.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

apt_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev libboost-json1.81-dev
  librocksdb-dev libsqlite3-dev libxgboost-dev xgboost
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev zlib1g-dev libpq-dev postgresql
  wrk clang-format
  python3 python3-venv
  chromium fonts-liberation
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The PostgreSQL tests start a real server: Debian's postgresql keeps initdb and pg_ctl in
# /usr/lib/postgresql/<version>/bin (not on PATH); the tests find them there, and under CI=true a
# missing one fails the run, so check here too.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ] || ! id postgres >/dev/null 2>&1; then
  echo "setup: PostgreSQL server binaries (initdb, pg_ctl) or the postgres user are missing:" \
       "reinstall Debian's postgresql package" >&2
  exit 1
fi

"$here/scripts/fetch_duckdb.sh"

# Python side for end-to-end tests and the client (a venv keeps it off the system interpreter).
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/python/requirements-dev.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/python/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
# The web UI (web/, TypeScript + Vite) is built into web/dist, which the server serves at `/`;
# rebuilt when anything under web/ (but node_modules and dist) changed, stamped by hash like the venv.
# Node >= 20.19 is needed by Vite; the browser tests drive Debian's chromium with playwright-core.
web="$here/web"
# (Node comes with the machine, NodeSource's nodejs package with npm; Debian 12's own is too old.)
if ! command -v npm >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)' 2>/dev/null; then
  echo "setup: Node.js >= 20.19 is needed to build the web UI (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
web_stamp="$web/dist/.build.sha256"
web_want="$(cd "$web" && find . \( -path ./node_modules -o -path ./dist \) -prune -o -type f -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ ! -f "$web_stamp" ] || [ "$(cat "$web_stamp")" != "$web_want" ] || [ ! -f "$web/dist/index.html" ]; then
  echo "setup: building the web UI (web/ -> web/dist)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
  echo "$web_want" > "$web_stamp"
fi
if [ ! -x /usr/bin/chromium ] || ! /usr/bin/chromium --headless --no-sandbox --version >/dev/null 2>&1; then
  echo "setup: /usr/bin/chromium (Debian's chromium) is missing or does not start: the browser tests need it" >&2
  exit 1
fi
echo "setup: ok"
