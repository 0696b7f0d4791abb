#!/usr/bin/env bash
# deploy/engine-tls.sh OUTDIR [HOSTNAME_OR_IP...]
#
# Certificates for a Docker engine that gpupool's hub reaches over TCP with mutual TLS:
#   OUTDIR/ca.pem, ca-key.pem          the CA (kept and reused if OUTDIR already has one)
#   OUTDIR/server-cert.pem, server-key.pem   for dockerd (SAN: 127.0.0.1, localhost and
#                                       every HOSTNAME_OR_IP given)
#   OUTDIR/cert.pem, key.pem           the client certificate the hub presents
# EC P-256 keys (mode 600), valid 825 days. Then prints the dockerd flags and the snippet
# for the node's entry in hub_config/nodes.yaml.
#
# Copy ca.pem, server-cert.pem and server-key.pem to the node; keep ca-key.pem offline.
set -euo pipefail

die() { printf '[gpupool tls] error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 OUTDIR [HOSTNAME_OR_IP...]"
case "$1" in -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
OUT="$1"; shift
command -v openssl >/dev/null || die "openssl is missing (apt-get install -y openssl)"
DAYS=825

mkdir -p "$OUT"
chmod 700 "$OUT"
OUT="$(cd "$OUT" && pwd)"
umask 077
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# subjectAltName: 127.0.0.1 and localhost always, then the given names (IP or DNS).
san="IP:127.0.0.1,DNS:localhost"
for n in "$@"; do
    [ -n "$n" ] || continue
    case "$n" in 127.0.0.1|localhost) continue ;; esac
    if [[ "$n" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$n" == *:* ]]; then
        san="$san,IP:$n"
    else
        san="$san,DNS:$n"
    fi
done
cn="${1:-localhost}"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

if [ ! -s "$OUT/ca.pem" ] || [ ! -s "$OUT/ca-key.pem" ]; then
    newkey "$OUT/ca-key.pem"
    openssl req -new -x509 -sha256 -days "$DAYS" -key "$OUT/ca-key.pem" -out "$OUT/ca.pem" \
        -subj "/O=gpupool/CN=gpupool engine CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

sign() {  # sign NAME SUBJECT EXTFILE
    openssl req -new -sha256 -key "$OUT/$1-key.tmp" -subj "$2" -out "$TMP/$1.csr" 2>/dev/null
    openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/$1.csr" -CA "$OUT/ca.pem" \
        -CAkey "$OUT/ca-key.pem" -CAcreateserial -CAserial "$TMP/ca.srl" \
        -extfile "$3" -out "$TMP/$1-cert.pem" 2>/dev/null
}

cat >"$TMP/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
cat >"$TMP/client.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EOF

newkey "$OUT/server-key.tmp"
sign server "/O=gpupool/CN=$cn" "$TMP/server.ext"
newkey "$OUT/client-key.tmp"
sign client "/O=gpupool/CN=gpupool hub" "$TMP/client.ext"

mv "$OUT/server-key.tmp" "$OUT/server-key.pem"
mv "$TMP/server-cert.pem" "$OUT/server-cert.pem"
mv "$OUT/client-key.tmp" "$OUT/key.pem"
mv "$TMP/client-cert.pem" "$OUT/cert.pem"
chmod 644 "$OUT/ca.pem" "$OUT/server-cert.pem" "$OUT/cert.pem"
chmod 600 "$OUT/ca-key.pem" "$OUT/server-key.pem" "$OUT/key.pem"

openssl verify -CAfile "$OUT/ca.pem" "$OUT/server-cert.pem" "$OUT/cert.pem" >/dev/null \
    || die "the new certificates do not verify against $OUT/ca.pem"

cat <<EOF
# Certificates in $OUT (SAN: ${san//,/, })
#
# dockerd flags on the node (copy ca.pem, server-cert.pem, server-key.pem there):
--tlsverify --tlscacert=$OUT/ca.pem --tlscert=$OUT/server-cert.pem --tlskey=$OUT/server-key.pem -H tcp://0.0.0.0:2376
#
# the node's entry in hub_config/nodes.yaml (client side, on the hub):
tls: {ca: $OUT/ca.pem, cert: $OUT/cert.pem, key: $OUT/key.pem}
#
# docker CLI: DOCKER_HOST=tcp://${cn}:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$OUT docker info
EOF
