#!/usr/bin/env bash
# Builds the JupyterLab extension into labextension/gpupool_lab/labextension/ (what pip
# installs as share/jupyter/labextensions/@gpupool/lab), as JupyterLab's extension
# template does: TypeScript with tsc, then @jupyterlab/builder's webpack against the
# installed JupyterLab (its staging/ names the shared packages and their versions).
#
#   bash labextension/build.sh [PYTHON]     PYTHON: one with jupyterlab (default: .venv)
#
# The notebook widgets' ES modules are bundled with esbuild into gpupool_lab/widgets/static/.
#
# Skips the work when the sources and the JupyterLab version are unchanged; runs the
# TypeScript unit tests (node --test) after a build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-$here/../.venv/bin/python}"
cd "$here"
if ! "$py" -c 'import jupyterlab' 2>/dev/null; then
    # a venv of its own for the build (the hub's venv has no JupyterLab)
    tools="$here/../.tools/labbuild"
    [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
    "$tools/bin/python" -c 'import jupyterlab' 2>/dev/null \
        || "$tools/bin/pip" install -q --disable-pip-version-check "${JUPYTERLAB_SPEC:-jupyterlab>=4.2,<5}"
    py="$tools/bin/python"
fi
core="$("$py" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
stamp="$( { "$py" -c 'import jupyterlab; print(jupyterlab.__version__)'; \
    find package.json package-lock.json tsconfig*.json src style -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)"
if [ -f .build-stamp ] && [ "$(cat .build-stamp)" = "$stamp" ] && [ -f gpupool_lab/labextension/package.json ] \
    && [ -f gpupool_lab/widgets/static/training_launcher.js ]; then
    exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
rm -rf lib lib-test gpupool_lab/labextension gpupool_lab/widgets/static tsconfig.tsbuildinfo
npx tsc --sourceMap false
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" . >build.log 2>&1 \
    || { tail -n 40 build.log >&2; exit 1; }
rm -f build.log
# the notebook widgets' front-ends: one ES module each, bundled (anywidget loads them as is)
npx esbuild src/widgets/graph_editor.ts src/widgets/gpu_monitor.ts src/widgets/dataset_picker.ts src/widgets/training_launcher.ts \
    --bundle --format=esm --target=es2020 --minify --log-level=warning --outdir=gpupool_lab/widgets/static
npx tsc -p tsconfig.test.json && node --test lib-test/test/ >/dev/null \
    || { node --test lib-test/test/; exit 1; }
echo "$stamp" > .build-stamp
echo "labextension/build.sh: built @gpupool/lab into labextension/gpupool_lab/labextension"
