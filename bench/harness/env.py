"""Paths, anchor environments and the telemetry-off environment every anchor runs with."""
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "build" / "lakeloop"
BENCH_VENVS = ROOT / ".venv-bench"

# Every anchor runs offline with its usage reporting off. Checked in the installed sources:
# MLflow 3.17 reads MLFLOW_DISABLE_TELEMETRY and DO_NOT_TRACK (mlflow/telemetry/utils.py),
# Evidently 0.7 DO_NOT_TRACK (evidently/telemetry.py), BentoML 1.4 BENTOML_DO_NOT_TRACK
# (bentoml/_internal/utils/analytics/usage_stats.py). Feast 0.67 has no usage module any more;
# FEAST_USAGE=False is what older Feast read. SCARF_ANALYTICS for Scarf-instrumented packages.
TELEMETRY_OFF = {
    "FEAST_USAGE": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "True",
    "DO_NOT_TRACK": "true",
    "SCARF_ANALYTICS": "false",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}


class AnchorMissing(RuntimeError):
    pass


def under_ci():
    """CI=true (any value but empty/0/false): a missing real component fails instead of skipping."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def anchor_python(venv="anchors"):
    """The interpreter of a bench-only anchor environment (created by scripts/setup_bench.sh), or
    None when it is not installed."""
    py = BENCH_VENVS / venv / "bin" / "python"
    return py if py.exists() else None


def require_anchor(venv="anchors", module=None):
    """Returns the anchor interpreter. A missing anchor is a skipped comparison locally (None) and a
    failure under CI=true, where a benchmark run must measure both sides."""
    py = anchor_python(venv)
    ok = py is not None
    if ok and module:
        ok = subprocess.run([str(py), "-c", f"import {module}"], env=anchor_env(),
                            capture_output=True).returncode == 0
    if ok:
        return py
    msg = (f"anchor environment .venv-bench/{venv}" + (f" (module {module})" if module else "") +
           " is missing: run scripts/setup_bench.sh")
    if under_ci():
        raise AnchorMissing(msg)
    print("bench: " + msg + "; the anchor side is skipped", file=sys.stderr)
    return None


def anchor_env(extra=None):
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    if extra:
        env.update(extra)
    return env


def anchor_version(package, venv="anchors"):
    py = anchor_python(venv)
    if py is None:
        return None
    r = subprocess.run([str(py), "-c",
                        f"import importlib.metadata as m; print(m.version({package!r}))"],
                       capture_output=True, text=True, env=anchor_env())
    return r.stdout.strip() or None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
