#!/usr/bin/env bash
# build-libvgpu.sh SRC OUT: builds HAMi-core's libvgpu.so from its source folder SRC into
# OUT/libvgpu.so, with the options HAMi-core's own build.sh sets (dlsym hook, multi-process
# limits, meminfo and NVML hooks). Needs cmake, make, a C compiler and the CUDA toolkit
# (cuda.h, nvml.h; CUDA_HOME, default /usr/local/cuda).
#
# LINK_DIR: where libcuda.so and libnvidia-ml.so are found at link time: the driver's
# (on a GPU node) or the toolkit's stubs (in an image build; the default). At run time the
# container's own driver libraries are used, as with every CUDA program.
# EXTRA_CFLAGS: e.g. -I<dir> for an nvml.h the toolkit lacks.
set -euo pipefail
SRC="$(cd "$1" && pwd)"
OUT="$2"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
LINK_DIR="${LINK_DIR:-$CUDA_HOME/lib64/stubs}"
[ -f "$SRC/CMakeLists.txt" ] || { echo "no HAMi-core source in $SRC" >&2; exit 1; }
[ -f "$CUDA_HOME/include/cuda.h" ] || { echo "no CUDA toolkit at $CUDA_HOME (cuda.h): HAMi-core needs a CUDA devel base" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -a "$SRC" "$WORK/src"
# only the library: HAMi-core's test programs need FindCUDA, which newer CMake dropped
sed -i 's/^add_subdirectory(test)/#&/' "$WORK/src/CMakeLists.txt"
mkdir -p "$WORK/libs"
for lib in libcuda libnvidia-ml; do
    found="$(ls "$LINK_DIR/$lib.so" "$LINK_DIR/$lib.so.1" 2>/dev/null | head -1 || true)"
    [ -n "$found" ] || { echo "no $lib.so in $LINK_DIR" >&2; exit 1; }
    ln -sf "$found" "$WORK/libs/$lib.so"
done
CUDA_HOME="$CUDA_HOME" cmake -S "$WORK/src" -B "$WORK/build" \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_BUILD_TYPE=Debug \
    -DDLSYM_HOOK_ENABLE=1 -DMULTIPROCESS_LIMIT_ENABLE=1 -DHOOK_MEMINFO_ENABLE=1 -DHOOK_NVML_ENABLE=1 \
    -DCMAKE_C_FLAGS="${EXTRA_CFLAGS:-}" -DCMAKE_SHARED_LINKER_FLAGS="-L$WORK/libs"
cmake --build "$WORK/build" --target vgpu -j "$(nproc)"
lib="$(find "$WORK/build" -name libvgpu.so | head -1)"
[ -n "$lib" ] || { echo "the build made no libvgpu.so" >&2; exit 1; }
mkdir -p "$OUT"
install -m 0644 "$lib" "$OUT/libvgpu.so"
echo "built $OUT/libvgpu.so ($(stat -c %s "$OUT/libvgpu.so") bytes)"
