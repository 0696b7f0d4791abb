# Shared setup for deploy/quickstart.sh and tests/run.sh: installs what gpupool needs on a
# fresh Debian-like machine, idempotently. Source it; do not run it.
# shellcheck shell=bash

GPUPOOL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GPUPOOL_VENV:-$GPUPOOL_ROOT/.venv}"
TOOLS="$GPUPOOL_ROOT/.tools"

say() { printf '\033[1m[gpupool]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[gpupool] error:\033[0m %s\n' "$*" >&2; exit 1; }

_apt_updated=""
apt_install() {
    # apt_install PKG...: install Debian packages (root only; otherwise say what to install)
    if [ "$(id -u)" != 0 ]; then
        die "missing: $*. Install them (as root: apt-get install -y $*) and run again."
    fi
    command -v apt-get >/dev/null || die "missing: $*, and this is not a Debian-like system (no apt-get). Install them and run again."
    if [ -z "$_apt_updated" ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    say "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_python() {
    command -v python3 >/dev/null || apt_install python3 python3-venv python3-pip
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python 3.10 or newer is needed (found $(python3 --version))"
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
}

ensure_venv() {
    # ensure_venv EXTRAS: a virtual environment with gpupool installed (editable) with those extras
    local extras="$1"
    ensure_python
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
    local stamp="$VENV/.gpupool-$extras"
    local want
    want="$(cat "$GPUPOOL_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c 'import gpupool' 2>/dev/null; then
        say "installing gpupool[$extras] into $VENV (a minute or two the first time)"
        local log="$VENV/pip-install.log"
        if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$GPUPOOL_ROOT[$extras]" >"$log" 2>&1; then
            grep -v '^WARNING: Location' "$log" | tail -30 >&2
            die "pip install failed (full log: $log)"
        fi
        echo "$want" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

ensure_proxy() {
    # configurable-http-proxy, the proxy JupyterHub drives; installed locally under .tools/
    if command -v configurable-http-proxy >/dev/null; then return; fi
    if [ -x "$TOOLS/node_modules/.bin/configurable-http-proxy" ]; then
        export PATH="$TOOLS/node_modules/.bin:$PATH"; return
    fi
    command -v npm >/dev/null || apt_install nodejs npm
    say "installing configurable-http-proxy into $TOOLS"
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" configurable-http-proxy >/dev/null 2>&1 \
        || die "npm install configurable-http-proxy failed (is the npm registry reachable?)"
    export PATH="$TOOLS/node_modules/.bin:$PATH"
}

ensure_postgres_server() {
    # the tests start their own PostgreSQL; they need the server binaries
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then return; fi
    apt_install postgresql
}

ensure_docker_engine() {
    # a Docker engine on /var/run/docker.sock: use a running one, else start dockerd,
    # else (root on Debian) install Debian's docker.io, else say what to install
    export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
    if docker info >/dev/null 2>&1; then return; fi
    if ! command -v dockerd >/dev/null; then
        apt_install docker.io
    fi
    command -v docker >/dev/null || die "dockerd is installed but the docker client is not; install docker.io (Debian) or docker-ce-cli"
    local log="$GPUPOOL_STATE_DIR/dockerd.log"
    mkdir -p "$GPUPOOL_STATE_DIR"
    [ "$(id -u)" = 0 ] || die "no Docker engine is running and only root can start one: start dockerd (or ask an admin), then run again"
    say "starting dockerd (log: $log)"
    (setsid dockerd >>"$log" 2>&1 &)
    for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && return; sleep 1; done
    # machines without iptables/bridge support: host networking only
    pkill -x dockerd 2>/dev/null; sleep 2
    say "dockerd did not come up with default networking; retrying with --bridge=none --iptables=false"
    (setsid dockerd --bridge=none --iptables=false --ip6tables=false >>"$log" 2>&1 &)
    for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && return; sleep 1; done
    tail -20 "$log" >&2
    die "dockerd did not start; see $log"
}

ensure_test_tools() {
    # what the integration and browser tests start themselves: Docker engines (images
    # from debootstrap), a C compiler for the HAMi-core stand-in, Debian's Chromium
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    command -v openssl >/dev/null || missing+=(openssl)
    # the compose deployment's test (Debian's Compose v1; `docker compose` v2 works too)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
        || missing+=(docker-compose)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    # SSH into a server (tests/lab/test_ssh.py): OpenSSH's server and client
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null && command -v sftp >/dev/null || missing+=(openssh-client)
    command -v rsync >/dev/null || missing+=(rsync)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

ensure_torch_cpu() {
    # CPU PyTorch for the graph compiler's tests, from a wheel in pip's find-links folder
    # (a plain `pip install torch` would pull a multi-GB CUDA build). Sets
    # GPUPOOL_TEST_TORCH so that those tests fail rather than skip when torch is missing.
    if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then export GPUPOOL_TEST_TORCH=1; return; fi
    local wheel
    wheel="$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-*+cpu-*.whl 2>/dev/null | head -1 || true)"
    if [ -z "$wheel" ]; then
        say "no CPU torch wheel in \$PIP_FIND_LINKS: the graph compiler's tests will be skipped"
        return
    fi
    say "installing CPU PyTorch from $wheel"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$wheel" >"$VENV/pip-torch.log" 2>&1 \
        || { tail -20 "$VENV/pip-torch.log" >&2; die "installing $wheel failed"; }
    export GPUPOOL_TEST_TORCH=1
}
