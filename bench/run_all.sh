#!/usr/bin/env bash
# Run every benchmark from the repository root and write their markdown sections to stdout.
# Usage: bench/run_all.sh [--quick] > /tmp/benchmarks.md   (about 2-3 minutes; --quick: ~1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" bench/bench_kernels.py "$@"
"$PY" bench/bench_shk.py "$@"
"$PY" bench/bench_flows.py "$@"
"$PY" bench/bench_sinkhorn.py "$@"  # needs the bench extra: pip install -e '.[bench]'
"$PY" bench/bench_service.py "$@"  # starts a privflow serve process; several minutes
