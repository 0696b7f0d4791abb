#!/usr/bin/env bash
# images/build.sh [--image singleuser|trainer|agent|hub|all] [--host DOCKER_HOST] [--tag TAG] [--base IMAGE]
#                 [--force] [--print-hash]
#
# Builds an image of images/<image>/Dockerfile on one Docker engine:
# - singleuser (default): JupyterLab, jupyterhub-singleuser (the JupyterHub version of
#   this checkout's venv) and gpupool from this checkout, in a venv at /opt/gpupool, user
#   jovyan (uid 1000);
# - agent: gpupool-agent (gpupool[agent] from this checkout), user 10001;
# - trainer: the single-user image (built first, --singleuser TAG) plus PyTorch and
#   Pillow, for trainings (gpupool-train, torchrun). PyTorch comes from $GPUPOOL_TORCH_WHEEL,
#   else a torch-*-cp311 wheel in $PIP_FIND_LINKS or /opt/wheels, else TORCH_SPEC
#   (default "torch") from the index;
# - hub: JupyterHub, configurable-http-proxy (this machine's, else npm's) and
#   gpupool[hub,postgres,oauth] with jupyterhub_config.py (deploy/compose runs it).
# - hami-core: HAMi-core's libvgpu.so for the nodes (images/hami-core/), on a CUDA devel
#   base (--base nvidia/cuda:...-devel-...); not part of "all".
#
#   --host URL     the engine (default $DOCKER_HOST or unix:///var/run/docker.sock); for a
#                  TLS engine also set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH
#   --image NAME   singleuser, trainer, agent, hub, or all (the four, in that order)
#   --tag TAG      default gpupool/<image>:latest
#   --base IMAGE   default $GPUPOOL_BASE_IMAGE or gpupool/base:bookworm, which images/base.sh
#                  makes with debootstrap if the engine lacks it. A real GPU deployment
#                  passes a CUDA image from its registry here.
#   --hami-src DIR (hami-core) a HAMi-core checkout to build instead of the pinned commit
#   --force        build even if TAG exists with the same build hash
#   --print-hash   print the hash of the build inputs and exit (needs no engine)
#
# The image carries the hash of its inputs (Dockerfile, pyproject.toml, README.md,
# spawner/, base, versions) as the label org.gpupool.build-hash; when TAG already has the
# current hash nothing is built.
#
# Package index: the build runs with --network host and the same index as this machine's
# pip (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL or pip's config files), with this machine's CA
# bundle (PIP_CERT, pip's `cert`, or /etc/ssl/certs/ca-certificates.crt). file:// indexes
# are served to the build over loopback for the duration of the build when the engine is
# local (GPUPOOL_BUILD_LOCAL_INDEXES=0 turns that off). Neither the bundle nor the index
# URLs end up in the final image: pip runs in a build stage, only the venv is copied.
#
# Environment: JUPYTERHUB_VERSION (default: the version in $GPUPOOL_VENV or .venv),
# JUPYTERLAB_SPEC (default "jupyterlab>=4,<5"), GPUPOOL_DOCKER (docker CLI),
# GPUPOOL_CACHE_DIR (base.sh's cache; build logs go there too).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DEFAULT_BASE="gpupool/base:bookworm"
HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
IMAGE="singleuser"
TAG=""
BASE="${GPUPOOL_BASE_IMAGE:-$DEFAULT_BASE}"
FORCE=""
PRINT_HASH=""
DOCKER="${GPUPOOL_DOCKER:-docker}"
CACHE="${GPUPOOL_CACHE_DIR:-/var/cache/gpupool}"
JUPYTERLAB_SPEC="${JUPYTERLAB_SPEC:-jupyterlab>=4,<5}"
HASH_LABEL="org.gpupool.build-hash"
SINGLEUSER="gpupool/singleuser:latest"
TORCH_SPEC="${TORCH_SPEC:-torch}"
HAMI_SRC=""

say() { printf '\033[1m[gpupool build]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[gpupool build] error:\033[0m %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --image) IMAGE="$2"; shift 2 ;;
        --image=*) IMAGE="${1#*=}"; shift ;;
        --host) HOST="$2"; shift 2 ;;
        --host=*) HOST="${1#*=}"; shift ;;
        --tag) TAG="$2"; shift 2 ;;
        --tag=*) TAG="${1#*=}"; shift ;;
        --base) BASE="$2"; shift 2 ;;
        --base=*) BASE="${1#*=}"; shift ;;
        --singleuser) SINGLEUSER="$2"; shift 2 ;;
        --singleuser=*) SINGLEUSER="${1#*=}"; shift ;;
        --hami-src) HAMI_SRC="$2"; shift 2 ;;
        --hami-src=*) HAMI_SRC="${1#*=}"; shift ;;
        --force) FORCE=1; shift ;;
        --print-hash) PRINT_HASH=1; shift ;;
        -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$IMAGE" in
    singleuser|agent|trainer|hub|hami-core) ;;
    all)
        for one in singleuser trainer agent hub; do
            bash "$0" --image "$one" --host "$HOST" --base "$BASE" ${FORCE:+--force}
        done
        exit 0 ;;
    *) die "--image $IMAGE: no such image; allowed: singleuser, agent, trainer, hub, hami-core, all" ;;
esac

if [ "$IMAGE" = hami-core ]; then
    # HAMi-core's libvgpu.so (images/hami-core/Dockerfile): a CUDA devel base, no pip
    if [ "$BASE" = "$DEFAULT_BASE" ] || [[ "$BASE" == gpupool/base:* ]]; then
        die "--image hami-core needs a CUDA devel base image, e.g. --base nvidia/cuda:12.4.1-devel-ubuntu22.04 ($BASE has no CUDA toolkit). Without a registry, tests/gpu/device.sh builds libvgpu.so on a GPU machine with images/hami-core/build-libvgpu.sh."
    fi
    [ -z "$HAMI_SRC" ] || [ -f "$HAMI_SRC/CMakeLists.txt" ] || die "--hami-src $HAMI_SRC: no HAMi-core source there (no CMakeLists.txt)"
    TAG="${TAG:-gpupool/hami-core:latest}"
    CTX="$(mktemp -d)"
    trap 'rm -rf "$CTX"' EXIT
    cp "$HERE/hami-core/Dockerfile" "$HERE/hami-core/build-libvgpu.sh" "$HERE/hami-core/install-node.sh" "$CTX/"
    mkdir "$CTX/src"
    [ -z "$HAMI_SRC" ] || cp -a "$HAMI_SRC/." "$CTX/src/"
    say "building $TAG on $HOST (base $BASE, HAMi-core from ${HAMI_SRC:-GitHub, the pinned commit})"
    "$DOCKER" -H "$HOST" build --network host --build-arg "BASE=$BASE" \
        --build-arg "INSTALL_BASE=${GPUPOOL_INSTALL_BASE:-debian:bookworm-slim}" -t "$TAG" "$CTX"
    exit 0
fi
TAG="${TAG:-gpupool/$IMAGE:latest}"
IMAGE_DIR="$HERE/$IMAGE"

# ------------------------------------------------------------------ versions and hash
PY=""
for cand in "${GPUPOOL_VENV:-$ROOT/.venv}/bin/python" python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
done

if [ -z "${JUPYTERHUB_VERSION:-}" ]; then
    for cand in "${GPUPOOL_VENV:-$ROOT/.venv}/bin/python" python3; do
        JUPYTERHUB_VERSION="$("$cand" -c 'import jupyterhub; print(jupyterhub.__version__)' 2>/dev/null)" && break
        JUPYTERHUB_VERSION=""
    done
fi
[ -n "${JUPYTERHUB_VERSION:-}" ] || die "cannot tell the hub's JupyterHub version (no jupyterhub in ${GPUPOOL_VENV:-$ROOT/.venv}); set JUPYTERHUB_VERSION"

# The JupyterLab extension, prebuilt (TypeScript + webpack) into labextension/gpupool_lab/
# before its files are hashed and copied; a no-op when nothing changed.
# The hub and agent images install gpupool too, whose setup.py wants the built front-end;
# their hash needs no build (it reads the stamp), so --print-hash does not build for them.
case "$IMAGE" in singleuser|hub|agent)
    if [ -n "$PRINT_HASH" ] && [ "$IMAGE" != singleuser ]; then :; else
    # its messages go to stderr: stdout may be the build hash (--print-hash)
    JUPYTERLAB_SPEC="$JUPYTERLAB_SPEC" bash "$ROOT/labextension/build.sh" "${PY:-python3}" >&2 \
        || die "building the JupyterLab extension failed"
    fi ;;
esac

# The gpupool sources that go into the image (what `pip install /src` needs).
src_files() {
    # setup.py checks the prebuilt front-end (build.sh is not in the context) and packages
    # hub_config/ as the starter catalog
    (cd "$ROOT" && find pyproject.toml setup.py MANIFEST.in README.md spawner kernels hub_config \
        labextension/gpupool_lab labextension/jupyter-config labextension/install.json -type f \
        ! -name '*.pyc' ! -name '*.pyo' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z)
}

chp_dir() {
    # the build machine's configurable-http-proxy (pure JavaScript), for the hub image
    local bin
    bin="$(command -v configurable-http-proxy 2>/dev/null)" || return 0
    bin="$(readlink -f "$bin")"
    local d="${bin%/bin/*}"
    [ -f "$d/package.json" ] && echo "$d"
    return 0
}

torch_wheel() {
    # the CPU wheel this machine has for the image's Python (Debian bookworm: 3.11)
    if [ -n "${GPUPOOL_TORCH_WHEEL:-}" ]; then echo "$GPUPOOL_TORCH_WHEEL"; return; fi
    local d
    for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
        d="${d#file://}"
        ls "$d"/torch-*-cp311-*.whl 2>/dev/null | head -1 && return
    done
    return 0
}

build_hash() {
    if [ "$IMAGE" = trainer ]; then
        # the single-user image it is built on, by that image's own hash
        {
            echo "gpupool-trainer v1"
            bash "$0" --image singleuser --base "$BASE" --print-hash
            echo "torch=$(basename "$(torch_wheel)" 2>/dev/null) spec=$TORCH_SPEC"
            cat "$IMAGE_DIR"/* | sha256sum
        } | sha256sum | cut -c1-16
        return
    fi
    {
        echo "gpupool-$IMAGE v1"
        echo "base=$BASE"
        # our own base is defined by base.sh; a registry base by its name
        if [ "$BASE" = "$DEFAULT_BASE" ]; then sha256sum <"$HERE/base.sh"; fi
        echo "jupyterhub=$JUPYTERHUB_VERSION"
        echo "jupyterlab=$JUPYTERLAB_SPEC"
        cat "$IMAGE_DIR"/* | sha256sum
        # the lab extension's built files by what they are built from (labextension/build.sh's
        # stamp): webpack numbers a module by its absolute path, so the same sources built
        # in another checkout give another remoteEntry.js, and would rebuild every image
        (cd "$ROOT" && src_files | grep -zv -e '^labextension/gpupool_lab/labextension/' \
            -e '^labextension/gpupool_lab/widgets/static/' | xargs -0 sha256sum)
        echo "lab=$(cat "$ROOT/labextension/.build-stamp" 2>/dev/null)"
        if [ "$IMAGE" = hub ]; then
            sha256sum <"$ROOT/jupyterhub_config.py"
            local chp; chp="$(chp_dir)"
            echo "chp=${chp:+$(grep -m1 '"version"' "$chp/package.json")}"
            sha256sum <"$HERE/copy_node_package.py"
        fi
    } | sha256sum | cut -c1-16
}
HASH="$(build_hash)"
if [ -n "$PRINT_HASH" ]; then echo "$HASH"; exit 0; fi

# ------------------------------------------------------------------ engine
dk() { "$DOCKER" -H "$HOST" "$@"; }
command -v "$DOCKER" >/dev/null || die "no docker CLI ($DOCKER); install Debian's docker.io"
dk version >/dev/null 2>&1 || die "the Docker engine at $HOST does not answer"

have="$(dk image inspect --format "{{index .Config.Labels \"$HASH_LABEL\"}}" "$TAG" 2>/dev/null || true)"
if [ -z "$FORCE" ] && [ "$have" = "$HASH" ]; then
    say "$TAG is up to date on $HOST (build hash $HASH)"
    exit 0
fi

if [ "$IMAGE" = trainer ]; then
    bash "$0" --image singleuser --host "$HOST" --base "$BASE" --tag "$SINGLEUSER"
elif [ "$BASE" = "$DEFAULT_BASE" ] || [[ "$BASE" == gpupool/base:* ]]; then
    GPUPOOL_DOCKER="$DOCKER" bash "$HERE/base.sh" --host "$HOST" --tag "$BASE"
fi

# ------------------------------------------------------------------ pip index and CA
pip_setting() {
    # pip_setting KEY: the value this machine's pip uses (environment over install. over
    # global. sections of its config files); pip config list shows all of them
    [ -n "$PY" ] || return 0
    "$PY" -m pip config list 2>/dev/null | awk -v key="$1" '
        { i = index($0, "="); name = substr($0, 1, i - 1); val = substr($0, i + 1)
          gsub(/^'\''|'\''$/, "", val) }
        name == ":env:." key { envv = val }
        name == "install." key { inst = val }
        name == "global." key { glob = val }
        END { if (envv != "") print envv; else if (inst != "") print inst; else print glob }'
}

engine_is_local() {
    case "$HOST" in
        unix://*|tcp://127.0.0.1:*|tcp://localhost:*|tcp://\[::1\]:*) return 0 ;;
        *) return 1 ;;
    esac
}

SERVER_PIDS=()
CTX=""
cleanup() {
    local p
    for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$CTX" ] || rm -rf "$CTX"
}
trap cleanup EXIT

serve_file_index() {
    # serve_file_index file:///path/simple: sets SERVED to http://127.0.0.1:PORT/simple/,
    # a loopback server rooted at the index's parent folder (where its relative file links
    # point), stopped when this script ends
    SERVED=""
    local dir="${1#file://}"
    dir="${dir%/}"
    [ -d "$dir" ] || return 1
    local portfile port
    portfile="$(mktemp)"
    # The port is part of the index URL, a build arg: a stable port per folder keeps the
    # builder's layer cache valid between builds (61000-64999: above Linux's ephemeral
    # ports and the ports the tests pick).
    local want=$((61000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 4000))
    python3 - "$(dirname "$dir")" "$want" >"$portfile" 2>/dev/null <<'PYEOF' &
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[1])
want = int(sys.argv[2])
for port in [*range(want, want + 10), 0]:
    try:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        break
    except OSError:
        continue
print(srv.server_address[1], flush=True)
srv.serve_forever()
PYEOF
    SERVER_PIDS+=("$!")
    for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
    port="$(head -1 "$portfile")"
    rm -f "$portfile"
    [ -n "$port" ] || return 1
    SERVED="http://127.0.0.1:$port/$(basename "$dir")/"
}

map_index() {
    # map_index URL: sets MAPPED to the URL the build container can use, or to nothing
    MAPPED=""
    case "$1" in
        http://127.0.0.1*|http://localhost*|https://127.0.0.1*|https://localhost*)
            if engine_is_local; then MAPPED="$1"; else say "skipping $1 (loopback of this machine, remote engine)"; fi ;;
        http://*|https://*) MAPPED="$1" ;;
        file://*)
            if [ "${GPUPOOL_BUILD_LOCAL_INDEXES:-1}" = 0 ]; then
                say "skipping the local index $1 (GPUPOOL_BUILD_LOCAL_INDEXES=0)"
            elif ! engine_is_local; then
                say "skipping the local index $1 (the engine is not on this machine)"
            elif serve_file_index "$1"; then
                MAPPED="$SERVED"
            else
                say "skipping the local index $1 (not a folder, or its server did not start)"
            fi ;;
        "") ;;
        *) say "skipping the index $1 (unsupported scheme)" ;;
    esac
}

INDEX_URL="$(pip_setting index-url)"
INDEX_URL="${INDEX_URL:-https://pypi.org/simple}"
map_index "$INDEX_URL"
if [ -z "$MAPPED" ]; then
    say "the index $INDEX_URL cannot be used in the build; using https://pypi.org/simple"
    MAPPED="https://pypi.org/simple"
fi
INDEX_URL="$MAPPED"
EXTRA_URLS=()
for u in $(pip_setting extra-index-url); do
    map_index "$u"
    [ -z "$MAPPED" ] || EXTRA_URLS+=("$MAPPED")
done
EXTRA_INDEX_URL="${EXTRA_URLS[*]:-}"

CA="$(pip_setting cert)"
[ -n "$CA" ] || CA="${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"

# ------------------------------------------------------------------ context and build
CTX="$(mktemp -d)"
cp "$IMAGE_DIR"/* "$CTX/"
mkdir "$CTX/src" "$CTX/wheels"
if [ "$IMAGE" = trainer ]; then
    wheel="$(torch_wheel)"
    if [ -n "$wheel" ]; then cp "$wheel" "$CTX/wheels/"; say "PyTorch from $wheel"; fi
fi
(cd "$ROOT" && src_files | xargs -0 cp --parents -t "$CTX/src")
if [ "$IMAGE" = hub ]; then
    cp "$ROOT/jupyterhub_config.py" "$CTX/"
    mkdir "$CTX/chp"
    chp="$(chp_dir)"
    if [ -n "$chp" ]; then
        # with the packages it needs (hoisted beside it in a local npm install)
        "${PY:-python3}" "$HERE/copy_node_package.py" "$chp" "$CTX/chp" \
            || die "could not copy configurable-http-proxy from $chp"
        say "configurable-http-proxy from $chp"
    fi
fi
# gpupool's runtime dependencies, for the image's cached dependency layer
# (the single-user image also gets the `lab` extra: jupyter-server, nvidia-ml-py)
extras=""
case "$IMAGE" in singleuser) extras=lab ;; hub) extras=hub,postgres,oauth ;; esac
"${PY:-python3}" - "$ROOT/pyproject.toml" "$extras" >"$CTX/requirements.txt" <<'PYEOF' \
    || die "cannot read the dependencies from pyproject.toml (needs Python >= 3.11 or tomli)"
import sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
deps = list(project.get("dependencies", []))
for extra in filter(None, sys.argv[2].split(",")):
    deps += project.get("optional-dependencies", {}).get(extra, [])
print("\n".join(deps))
PYEOF
if [ -f "$CA" ]; then cp "$CA" "$CTX/build-ca.crt"; else : >"$CTX/build-ca.crt"; fi

# The Dockerfile works with BuildKit and with the legacy builder; without buildx a recent
# CLI needs the legacy builder.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! "$DOCKER" buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

mkdir -p "$CACHE"
LOG="$CACHE/build-$(echo "$TAG" | tr '/:' '__').log"
say "building $TAG on $HOST (base $BASE, jupyterhub $JUPYTERHUB_VERSION, index $INDEX_URL${EXTRA_INDEX_URL:+ + $EXTRA_INDEX_URL}); log: $LOG"
start=$SECONDS
if ! dk build --network host \
        --build-arg "BASE=$BASE" \
        --build-arg "JUPYTERHUB_VERSION=$JUPYTERHUB_VERSION" \
        --build-arg "JUPYTERLAB_SPEC=$JUPYTERLAB_SPEC" \
        --build-arg "PIP_INDEX_URL=$INDEX_URL" \
        --build-arg "PIP_EXTRA_INDEX_URL=$EXTRA_INDEX_URL" \
        --build-arg "SINGLEUSER=$SINGLEUSER" \
        --build-arg "TORCH_SPEC=$TORCH_SPEC" \
        --label "$HASH_LABEL=$HASH" \
        --label "org.gpupool.base=$BASE" \
        --label "org.gpupool.jupyterhub=$JUPYTERHUB_VERSION" \
        -t "$TAG" "$CTX" >"$LOG" 2>&1; then
    tail -40 "$LOG" >&2
    die "docker build failed (full log: $LOG)"
fi
size="$(dk image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG in $((SECONDS - start)) s, $((size / 1000000)) MB, build hash $HASH"
