#!/usr/bin/env bash
# Installs the bench-only anchor environment(s) under .venv-bench/ (never a test dependency of the
# server): Feast, MLflow, Evidently, BentoML, xgboost, scikit-learn, pandas, numpy from PyPI, pinned
# in bench/requirements-anchors.txt, into one Python 3.11 virtual environment. Idempotent: a stamp
# with the requirements' sha256 makes a second run return at once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

req="$here/bench/requirements-anchors.txt"
venv="$here/.venv-bench/anchors"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "setup_bench: ok (anchors up to date)"
  exit 0
fi

# The anchors pin Python 3.11 (feast 0.67 and bentoml 1.4 wheels and their dependency set were
# checked with it): prefer python3.11, else a python3 that is 3.11.
py=""
for c in python3.11 python3; do
  if command -v "$c" >/dev/null 2>&1 &&
     "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
    py="$(command -v "$c")"
    break
  fi
done
if [ -z "$py" ]; then
  echo "setup_bench: Python 3.11 is required for the anchors (apt-get install python3.11 python3.11-venv" \
       "or pyenv install 3.11)" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$req"
# Every anchor must import (a wheel that installed but cannot load counts as missing).
FEAST_USAGE=False MLFLOW_DISABLE_TELEMETRY=true BENTOML_DO_NOT_TRACK=True DO_NOT_TRACK=true \
SCARF_ANALYTICS=false "$venv/bin/python" - <<'PY'
import importlib, importlib.metadata as m
for mod, dist in [("feast", "feast"), ("mlflow", "mlflow"), ("evidently", "evidently"),
                  ("bentoml", "bentoml"), ("xgboost", "xgboost"), ("sklearn", "scikit-learn"),
                  ("pandas", "pandas"), ("numpy", "numpy")]:
    importlib.import_module(mod)
    print(f"setup_bench: {dist} {m.version(dist)}")
PY
echo "$want" > "$stamp"
echo "setup_bench: ok"
