#!/usr/bin/env bash
# Sets up and runs the whole gpupool test suite: lint, unit, integration (real JupyterHub,
# configurable-http-proxy, SQLite and PostgreSQL). Extra arguments go to pytest.
# Benchmarks (tests/bench/) are separate: see tests/bench/README.md.
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
cd "$GPUPOOL_ROOT"

ensure_venv test
ensure_proxy
ensure_postgres_server
ensure_test_tools

say "ruff check + format check"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check . >/dev/null || { "$VENV/bin/ruff" format --check .; die "run: .venv/bin/ruff format ."; }

say "pytest"
export PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" -m pytest -q -ra --durations=10 "$@"
