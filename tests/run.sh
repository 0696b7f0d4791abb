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
ensure_torch_cpu

# the test engines' data-roots and the image cache live outside the checkout and outlast it
for d in "${GPUPOOL_TEST_DOCKER_ROOT:-/var/lib/gpupool-test}" "${GPUPOOL_CACHE_DIR:-/var/cache/gpupool}"; do
    mkdir -p "$d"
    free_gb="$(df -P -BG "$d" | awk 'NR == 2 { sub("G", "", $4); print $4 }')"
    say "disk: $free_gb GB free for $d ($(du -sh "$d" 2>/dev/null | cut -f1) used by it)"
    [ "$free_gb" -ge 12 ] || echo "warning: the docker tests need about 12 GB free for $d; they may fail with 'no space left on device'" >&2
done

say "ruff check + format check"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check . >/dev/null || { "$VENV/bin/ruff" format --check .; die "run: .venv/bin/ruff format ."; }

say "lab extension: TypeScript build and unit tests (labextension/build.sh)"
bash labextension/build.sh "$VENV/bin/python"

say "pytest"
export PYTHONDONTWRITEBYTECODE=1
"$VENV/bin/python" -m pytest -q -ra --durations=10 --ignore=tests/lab "$@"
# the lab server extension's tests run under pytest-jupyter, whose event-loop fixtures
# and pytest-asyncio's cannot share one run
say "pytest: the lab server extension (pytest-jupyter)"
rc=0
"$VENV/bin/python" -m pytest -q -ra -p pytest_jupyter.jupyter_server -p no:asyncio tests/lab "$@" || rc=$?
[ "$rc" = 5 ] && rc=0  # arguments that select none of these tests are fine here
exit "$rc"
