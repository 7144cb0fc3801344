"""Paths, anchor environments and the telemetry-off environment every anchor runs with."""
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "build" / "lakeloop"
BENCH_VENVS = ROOT / ".venv-bench"

# Every anchor runs offline with its usage reporting off (variables documented by each project:
# Feast FEAST_USAGE, MLflow MLFLOW_DISABLE_TELEMETRY, BentoML BENTOML_DO_NOT_TRACK, Evidently and
# others DO_NOT_TRACK, Scarf-based packages SCARF_ANALYTICS).
TELEMETRY_OFF = {
    "FEAST_USAGE": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "True",
    "DO_NOT_TRACK": "true",
    "SCARF_ANALYTICS": "false",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}


class AnchorMissing(RuntimeError):
    pass


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
    if os.environ.get("CI") == "true":
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
