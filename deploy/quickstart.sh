#!/usr/bin/env bash
# gpupool on this machine, in one command: installs what is missing, makes the logins,
# and runs the hub in the foreground at http://127.0.0.1:8000 (Ctrl-C stops it).
#
#   GPUPOOL_PORT=8000          public port (the proxy API uses PORT+1, the pool service PORT+2,
#                              the hub API PORT+81)
#   GPUPOOL_CONFIG_DIR=...     catalog folder (default: hub_config/)
#   GPUPOOL_STATE_DIR=...      databases, secrets, logins (default: .state/)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GPUPOOL_ROOT"

ensure_venv hub
ensure_proxy

export GPUPOOL_STATE_DIR="${GPUPOOL_STATE_DIR:-$GPUPOOL_ROOT/.state}"
export GPUPOOL_CONFIG_DIR="${GPUPOOL_CONFIG_DIR:-$GPUPOOL_ROOT/hub_config}"
export GPUPOOL_PORT="${GPUPOOL_PORT:-8000}"
mkdir -p "$GPUPOOL_STATE_DIR"; chmod 700 "$GPUPOOL_STATE_DIR"

"$VENV/bin/gpupool" check-config --config "$GPUPOOL_CONFIG_DIR"

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
"$VENV/bin/jupyterhub" -f "$GPUPOOL_ROOT/jupyterhub_config.py" &
hub=$!
trap 'kill -TERM $hub 2>/dev/null; wait $hub 2>/dev/null' INT TERM
for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$url/services/gpupool/api/openapi.json" 2>/dev/null; then break; fi
    kill -0 $hub 2>/dev/null || die "the hub exited; see the messages above"
    sleep 0.5
done

cat >&2 <<MSG

  gpupool is running at $url
  ------------------------------------------------------------------
  user login:   any user name, password  $GPUPOOL_USER_PASSWORD
MSG
[ -n "$admin_user" ] && echo "  admin login:  $admin_user, password  $GPUPOOL_ADMIN_PASSWORD" >&2
cat >&2 <<MSG
  pool API:     $url/services/gpupool/api/  (OpenAPI: .../api/openapi.json)
  admin token:  $GPUPOOL_API_TOKEN
    curl -H "Authorization: token \$GPUPOOL_API_TOKEN" $url/services/gpupool/api/specs
  logins are kept in $creds
  ------------------------------------------------------------------
  Ctrl-C stops the hub.

MSG
wait $hub
