#!/usr/bin/env bash
# Everything CI runs: unit tests (ctest over every gtest binary), then end-to-end tests through the
# real binary (pytest). Bounded crash tests included; long loops live in `make test-slow`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
build="${BUILD:-build}"
echo "== unit tests (ctest)"
(cd "$build" && ctest --output-on-failure -j "$(nproc)" --timeout 600)
echo "== end-to-end tests (pytest)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e
echo "== benchmark harness (its own tests; the benchmarks themselves run in make bench)"
.venv/bin/python -m pytest -q -p no:cacheprovider bench/harness/test_harness.py
