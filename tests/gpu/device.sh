#!/usr/bin/env bash
# The GPU tests on a machine with an NVIDIA GPU, no Docker and no network:
#
#   bash tests/gpu/device.sh        (from the repository root)
#
# 1. builds HAMi-core's libvgpu.so from .hami/HAMi-core (cmake + the CUDA toolkit, as
#    HAMi-core's build.sh configures it) into /tmp/gpupool-hami;
# 2. installs the wheels carried in .whl/ (what gpupool imports and the machine lacks,
#    e.g. jsonschema) into /tmp/gpupool-site, with no index. The agent's tests
#    (test_agent.py) and the NVML discovery import pynvml: where the machine lacks it,
#    carry nvidia-ml-py's wheel (pure Python):
#      .venv/bin/pip download --no-deps --only-binary=:all: -d .whl nvidia-ml-py
#    They import only the agent's HTTP-free modules, so Tornado and traitlets are not needed;
# 3. makes `import gpupool` work (a /tmp link gpupool -> spawner) and runs the tests
#    marked gpu, with GPUPOOL_HAMI_CORE naming the built library.
# Output goes to $OUT/log, figures to $OUT/figures.json (OUT defaults to /tmp/gpupool-gpu).
# .hami/ holds HAMi-core's source (git archive of its HEAD, commit in .hami/HAMi-core.commit)
# and, where the toolkit lacks it, nvml.h in .hami/include; neither is committed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/gpupool-gpu}
mkdir -p "$OUT"
BUILD=/tmp/gpupool-hami
SITE=/tmp/gpupool-site
PYLINK=/tmp/gpupool-py

say() { printf '\n== %s\n' "$*"; }

machine() {
  say machine
  nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version --format=csv || true
  uname -r
  nvcc --version | tail -n 2 || true
  cmake --version | head -n 1 || true
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' || true
  [ -f .hami/HAMi-core.commit ] && echo "HAMi-core $(cat .hami/HAMi-core.commit)"
}

cuda_home() {
  local d h
  for d in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-*; do
    if [ -n "$d" ] && [ -f "$d/include/cuda.h" ]; then echo "$d"; return; fi
  done
  h=$(find /usr /opt -name cuda.h -path '*/include/cuda.h' -not -path '/usr/include/*' 2>/dev/null | head -n 1)
  [ -n "$h" ] && dirname "$(dirname "$h")"
}

driver_lib() {  # the driver's libcuda.so.1 / libnvidia-ml.so.1
  local p
  p=$(ldconfig -p | awk -v l="$1.so.1" '$1 == l && /x86-64/ {print $NF; exit}')
  [ -z "$p" ] && p=$(find /usr/local/nvidia /usr/lib /usr/lib64 /usr/local -name "$1.so.1" 2>/dev/null | head -n 1)
  echo "$p"
}

build_hami() {
  # the same script the hami-core image runs (images/hami-core/build-libvgpu.sh), linked
  # against this machine's driver libraries instead of the toolkit's stubs
  say "build HAMi-core"
  local src=.hami/HAMi-core cuda cflags="" lib p
  [ -f "$src/CMakeLists.txt" ] || { echo "no HAMi-core source in $src"; return 1; }
  rm -rf "$BUILD" && mkdir -p "$BUILD/libs"
  cuda=$(cuda_home)
  [ -n "$cuda" ] || { echo "no CUDA toolkit (cuda.h) found"; return 1; }
  if [ ! -f "$cuda/include/nvml.h" ]; then
    [ -f .hami/include/nvml.h ] || { echo "no nvml.h in $cuda/include or .hami/include"; return 1; }
    cflags="-I$PWD/.hami/include"
  fi
  for lib in libcuda libnvidia-ml; do
    p=$(driver_lib "$lib")
    [ -n "$p" ] || { echo "the driver's $lib.so.1 was not found"; return 1; }
    ln -sf "$p" "$BUILD/libs/$lib.so"
  done
  echo "CUDA_HOME=$cuda extra C flags: ${cflags:-none}; driver libs: $(readlink "$BUILD"/libs/*)"
  CUDA_HOME=$cuda LINK_DIR=$BUILD/libs EXTRA_CFLAGS=$cflags \
    bash images/hami-core/build-libvgpu.sh "$src" "$BUILD/out" >"$BUILD/build.log" 2>&1 \
    || { grep -E 'error|Error' "$BUILD/build.log" | head -n 40; tail -n 20 "$BUILD/build.log"; return 1; }
  lib="$BUILD/out/libvgpu.so"
  ls -l "$lib"
  export GPUPOOL_HAMI_CORE=$lib
}

python_deps() {
  say "python packages"
  # gpupool.* as installed: spawner/ is the package, labextension/gpupool_lab/ its .lab
  rm -rf "$PYLINK" && mkdir -p "$PYLINK/gpupool"
  for f in "$PWD"/spawner/*; do ln -sfn "$f" "$PYLINK/gpupool/$(basename "$f")"; done
  ln -sfn "$PWD/labextension/gpupool_lab" "$PYLINK/gpupool/lab"
  if compgen -G '.whl/*.whl' >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || return 1
    ls "$SITE"
  fi
  export PYTHONPATH=$PYLINK:$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}
  python3 -c 'import gpupool.catalog, gpupool.container, gpupool.localnode, gpupool.pool.scheduler, gpupool.lab.metrics, pynvml; print("gpupool imports: ok")'
}

main() {
  machine
  python_deps || echo "!! gpupool does not import; carry the missing wheels in .whl/"
  build_hami || echo "!! HAMi-core was not built; the tests that need it will skip"
  mkdir -p /tmp/vgpulock
  say "pytest -m gpu tests/gpu"
  GPUPOOL_GPU_FIGURES=$OUT/figures.json PYTHONUNBUFFERED=1 \
    python3 -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider
}

main 2>&1 | tee "$OUT/log"
exit "${PIPESTATUS[0]}"
