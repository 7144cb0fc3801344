"""Shared benchmark harness: every scenario in bench/ uses it.

- env:     paths, anchor virtual environments (.venv-bench/), telemetry-off environment
- cpu:     pinning of the measured server and the load generator to different cores (taskset)
- server:  start/stop of `lakeloop up` on a free port with a temporary data directory
- latency: wrk with a Lua script that prints p50/p99 as JSON; an in-process timing helper
- ladder:  run a step at growing sizes under a time and a peak-RSS budget (process tree, killed beyond)
- results: bench/results/<scenario>.json with machine, git commit, timestamps, figures and ratios

Scenario scripts run on the project's .venv (standard library only here); anchors run as child
processes in their own environment, so their memory and time are measured from outside.
"""
from .env import ROOT, BIN, anchor_python, anchor_env, anchor_version, require_anchor, free_port  # noqa: F401
from .cpu import Pinning  # noqa: F401
from .server import LakeloopServer, wait_http  # noqa: F401
from .latency import wrk, time_calls  # noqa: F401
from .ladder import Budget, run_ladder, run_measured  # noqa: F401
from .results import Results, Figure, NOT_BUILT  # noqa: F401
