#!/usr/bin/env bash
# gpupool on this machine, in one command: installs what is missing (Docker engine,
# proxy, Python packages), builds the single-user image, serves this machine's engine as
# the pool's node, makes the logins, and runs the hub in the foreground at
# http://127.0.0.1:8000 (Ctrl-C stops it; servers keep running and the hub finds them again).
#
#   GPUPOOL_PORT=8000          public port (the proxy API uses PORT+1, the pool service PORT+2,
#                              the hub API PORT+81)
#   GPUPOOL_CONFIG_DIR=...     your catalog folder (default: hub_config/ with this machine as node)
#   GPUPOOL_STATE_DIR=...      databases, secrets, logins (default: .state/)
#   GPUPOOL_NETWORK=bridge     servers on gpupool's own network, isolated from each other and
#                              from this machine's loopback (checked before the hub starts);
#                              host: they share this machine's network (trusted users only)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GPUPOOL_ROOT"

ensure_venv hub
ensure_proxy

export GPUPOOL_STATE_DIR="${GPUPOOL_STATE_DIR:-$GPUPOOL_ROOT/.state}"
user_catalog="${GPUPOOL_CONFIG_DIR:-}"
export GPUPOOL_PORT="${GPUPOOL_PORT:-8000}"
network="${GPUPOOL_NETWORK:-bridge}"
case "$network" in bridge|host) ;; *) die "GPUPOOL_NETWORK=$network: use bridge or host" ;; esac
mkdir -p "$GPUPOOL_STATE_DIR"; chmod 700 "$GPUPOOL_STATE_DIR"

ensure_docker_engine
say "single-user image (the first build takes a few minutes)"
bash "$GPUPOOL_ROOT/images/build.sh" --host "$DOCKER_HOST" --tag gpupool/singleuser:latest
if [ "${GPUPOOL_SKIP_TRAINER:-0}" != 1 ]; then
    # PyTorch from $PIP_FIND_LINKS when it holds a wheel, else from the index (a CUDA build
    # there is large); GPUPOOL_SKIP_TRAINER=1 leaves trainings without an image
    say "trainer image: the single-user image plus PyTorch"
    bash "$GPUPOOL_ROOT/images/build.sh" --image trainer --host "$DOCKER_HOST" --tag gpupool/trainer:latest
fi
# the demo dataset: scikit-learn's bundled digits, no download
"$VENV/bin/python" -c 'import sklearn' 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --disable-pip-version-check scikit-learn

if [ -n "$user_catalog" ]; then
    export GPUPOOL_CONFIG_DIR="$user_catalog"
else
    # This machine's engine as the pool's node: real HAMi-core when installed, else a
    # demo node with simulated GPUs and a stand-in preload library that limits nothing.
    vgpu="$GPUPOOL_STATE_DIR/vgpu"; real=""
    if [ -f /usr/local/vgpu/libvgpu.so ] && [ -f /usr/local/vgpu/ld.so.preload ]; then
        hami=/usr/local/vgpu/libvgpu.so; real=--real-hami
    else
        hami="$vgpu/libvgpu.so"
        if [ ! -f "$hami" ]; then
            command -v gcc >/dev/null || apt_install gcc libc6-dev
            mkdir -p "$vgpu"
            gcc -shared -fPIC -O2 -o "$hami" "$GPUPOOL_ROOT/images/hami-stand-in/libvgpu.c"
            echo /usr/local/vgpu/libvgpu.so >"$vgpu/ld.so.preload"
        fi
    fi
    # HAMi-core's lock folder, mounted into sliced containers: usable by their user (else
    # Docker makes it root 0755 on first use)
    if [ "$(id -u)" = 0 ]; then mkdir -p /tmp/vgpulock && chmod 1777 /tmp/vgpulock; fi
    export GPUPOOL_CONFIG_DIR="$GPUPOOL_STATE_DIR/catalog"
    agent_args=()
    if [ -z "$real" ]; then
        # the demo node's agent: its declared GPUs simulated (gpupool.nvml.simulated), so
        # that the dashboard's utilization and GPU-idle notices move with the machine's load
        agent_port=$((GPUPOOL_PORT + 3))
        agent_token="$GPUPOOL_STATE_DIR/agent-token"
        [ -f "$agent_token" ] || (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$agent_token")
        agent_args=(--agent-url "http://127.0.0.1:$agent_port" --agent-token-file "$agent_token")
    fi
    "$VENV/bin/gpupool" local-catalog --source "$GPUPOOL_ROOT/hub_config" --out "$GPUPOOL_CONFIG_DIR" \
        --engine "$DOCKER_HOST" --hami-core "$hami" $real \
        --datasets-dir "$GPUPOOL_STATE_DIR/datasets" --network "$network" "${agent_args[@]}"
fi
"$VENV/bin/gpupool" check-config --config "$GPUPOOL_CONFIG_DIR"

# Bridge nodes: gpupool-users made and proved to isolate (two containers on it must not
# reach each other), before any user's server runs there. On this one machine the hub API
# and the pool service listen on this host's address on that network, which its servers
# reach; the proxy stays on loopback (GPUPOOL_IP) for the browser.
hub_host=127.0.0.1
if "$VENV/bin/python" -c 'import sys; from gpupool.catalog import load_catalog; sys.exit(not any(n.network == "bridge" for n in load_catalog(sys.argv[1]).nodes))' "$GPUPOOL_CONFIG_DIR"; then
    say "network gpupool-users: checking that its containers cannot reach each other"
    gateways="$("$VENV/bin/gpupool" user-network --config "$GPUPOOL_CONFIG_DIR" --probe-image gpupool/singleuser:latest)" \
        || die "servers would not be isolated from each other (see above). Fix the engine, or run with GPUPOOL_NETWORK=host if every user is trusted"
    if [ -z "$user_catalog" ]; then
        hub_host="$(echo "$gateways" | awk '$1 == "local" {print $2}')"
        [ -n "$hub_host" ] || die "no gateway for gpupool-users on this machine's engine"
        export GPUPOOL_HUB_IP="${GPUPOOL_HUB_IP:-$hub_host}" GPUPOOL_POOL_IP="${GPUPOOL_POOL_IP:-$hub_host}"
        export GPUPOOL_HUB_CONNECT_URL="${GPUPOOL_HUB_CONNECT_URL:-http://$GPUPOOL_HUB_IP:$((GPUPOOL_PORT + 81))}"
    fi
fi

# Logins, made once and kept (mode 600) so that a restart keeps them.
creds="$GPUPOOL_STATE_DIR/logins.env"
if [ ! -f "$creds" ]; then
    umask 077
    {
        echo "GPUPOOL_USER_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')"
        echo "GPUPOOL_ADMIN_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
        echo "GPUPOOL_API_TOKEN=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
    } >"$creds"
fi
set -a; source "$creds"; set +a
admin_user="$("$VENV/bin/python" -c 'import sys; from gpupool.catalog import load_catalog; u = load_catalog(sys.argv[1]).pool.access.admin_users; print(u[0] if u else "")' "$GPUPOOL_CONFIG_DIR")"

url="http://127.0.0.1:$GPUPOOL_PORT"
agent=""
if [ -n "${agent_port:-}" ]; then
    GPUPOOL_GPUS="$("$VENV/bin/python" -c 'import json, sys; from gpupool.catalog import load_catalog; print(json.dumps([{"uuid": g.uuid, "model": g.model, "memory_mib": g.memory_mib} for g in load_catalog(sys.argv[1]).nodes[0].gpus]))' "$GPUPOOL_CONFIG_DIR")" \
        "$VENV/bin/gpupool-agent" --nvml-module gpupool.nvml.simulated --node-name local \
        --ip 127.0.0.1 --port "$agent_port" --token-file "$agent_token" --docker-url "$DOCKER_HOST" \
        --AgentApp.hami_cache_dir= >"$GPUPOOL_STATE_DIR/agent.log" 2>&1 &
    agent=$!
    say "node agent with simulated GPUs on 127.0.0.1:$agent_port (log: $GPUPOOL_STATE_DIR/agent.log)"
fi
"$VENV/bin/jupyterhub" -f "$GPUPOOL_ROOT/jupyterhub_config.py" &
hub=$!
trap 'kill -TERM $hub $agent 2>/dev/null; wait $hub 2>/dev/null' INT TERM
# The hub's own API, then the pool service itself, then the service through the proxy
# (asking the proxy before its route exists makes it log errors).
wait_for() {
    for _ in $(seq 1 120); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        kill -0 $hub 2>/dev/null || die "the hub exited; see the messages above"
        sleep 0.5
    done
    die "no answer from $1 within a minute; see the messages above"
}
wait_for "http://${GPUPOOL_HUB_IP:-127.0.0.1}:$((GPUPOOL_PORT + 81))/hub/health"
wait_for "http://${GPUPOOL_POOL_IP:-127.0.0.1}:$((GPUPOOL_PORT + 2))/services/gpupool/api/openapi.json"
wait_for "$url/services/gpupool/api/openapi.json"

cat >&2 <<MSG

  gpupool is running at $url
  ------------------------------------------------------------------
  user login:   any user name, password  $GPUPOOL_USER_PASSWORD
MSG
[ -n "$admin_user" ] && echo "  admin login:  $admin_user, password  $GPUPOOL_ADMIN_PASSWORD" >&2
cat >&2 <<MSG
  my usage:     $url/services/gpupool/usage
  pool:         $url/services/gpupool/admin  (the "Pool" link, for the admin)
  pool API:     $url/services/gpupool/api/  (OpenAPI: .../api/openapi.json)
  admin token:  $GPUPOOL_API_TOKEN
    curl -H "Authorization: token \$GPUPOOL_API_TOKEN" $url/services/gpupool/api/specs
  logins are kept in $creds
  ------------------------------------------------------------------
  Ctrl-C stops the hub.

MSG
wait $hub
