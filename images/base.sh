#!/usr/bin/env bash
# images/base.sh [--host DOCKER_HOST] [--tag IMAGE] [--force]
#
# Makes the base image gpupool builds its images on, with no image registry: a Debian
# bookworm root file system made by debootstrap from this machine's Debian mirror, imported
# with `docker import`. Real deployments use a registry image (a CUDA base) instead and pass
# it to images/build.sh with --base; this script is for machines that cannot pull one.
#
#   --host URL   the Docker engine (DOCKER_HOST style; default $DOCKER_HOST or
#                unix:///var/run/docker.sock). For a TLS engine also set DOCKER_TLS_VERIFY=1
#                and DOCKER_CERT_PATH, as for the docker CLI.
#   --tag NAME   the image name (default $GPUPOOL_BASE_IMAGE or gpupool/base:bookworm)
#   --force      import again even if the engine already has the image
#
# Environment: GPUPOOL_CACHE_DIR (default /var/cache/gpupool) keeps the root file system as
# a tarball, so a second engine or a second run does not debootstrap again;
# GPUPOOL_DEBIAN_MIRROR overrides the mirror found in /etc/apt/sources.list{,.d/*};
# GPUPOOL_DOCKER is the docker CLI to use (default: docker on PATH).
# Needs root the first time (debootstrap, and apt-get to install debootstrap if missing).
set -euo pipefail

SUITE=bookworm
PACKAGES=(python3 python3-venv python3-pip ca-certificates curl tini)
HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
TAG="${GPUPOOL_BASE_IMAGE:-gpupool/base:bookworm}"
FORCE=""
CACHE="${GPUPOOL_CACHE_DIR:-/var/cache/gpupool}"
DOCKER="${GPUPOOL_DOCKER:-docker}"

say() { printf '\033[1m[gpupool base]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[gpupool base] error:\033[0m %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --host) HOST="$2"; shift 2 ;;
        --host=*) HOST="${1#*=}"; shift ;;
        --tag) TAG="$2"; shift 2 ;;
        --tag=*) TAG="${1#*=}"; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

dk() { "$DOCKER" -H "$HOST" "$@"; }

command -v "$DOCKER" >/dev/null || die "no docker CLI ($DOCKER); install Debian's docker.io"
dk version >/dev/null 2>&1 || die "the Docker engine at $HOST does not answer"

if [ -z "$FORCE" ] && dk image inspect "$TAG" >/dev/null 2>&1; then
    say "$TAG already exists on $HOST"
    exit 0
fi

_apt_updated=""
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing: $*. As root: apt-get install -y $*"
    if [ -z "$_apt_updated" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    say "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

debian_mirror() {
    # The first source of this machine's apt configuration that serves the suite itself
    # (not -updates/-security, not a third-party suite such as cloud-sdk-bookworm).
    if [ -n "${GPUPOOL_DEBIAN_MIRROR:-}" ]; then echo "$GPUPOOL_DEBIAN_MIRROR"; return; fi
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # one-line format: deb [options] URI SUITE COMPONENT...
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 format: stanzas separated by blank lines
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && enabled != "no") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0; sub(/^ +/, "", types) }
            tolower($1) == "uris:" { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            tolower($1) == "suites:" { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { if (!found) flush() }' "$f"
    done
}

# Everything about the root file system that changes its content names the cached tarball.
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
if [ -z "$(apt-cache policy tini 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; then
    say "tini is not in this machine's $SUITE sources; building the base without it"
    PACKAGES=("${PACKAGES[@]/tini}")
fi
INCLUDE="$(printf '%s\n' "${PACKAGES[@]}" | grep -v '^$' | paste -sd, -)"
KEY="$(printf '%s|%s|minbase|%s|v1' "$SUITE" "$ARCH" "$INCLUDE" | sha256sum | cut -c1-12)"
TARBALL="$CACHE/rootfs-$SUITE-$ARCH-$KEY.tar"

mkdir -p "$CACHE"
exec 9>"$CACHE/.rootfs.lock"
flock 9  # one debootstrap at a time, even across parallel test sessions

if [ ! -s "$TARBALL" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root (or put a rootfs tarball at $TARBALL)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    MIRROR="$(debian_mirror | head -1)"
    [ -n "$MIRROR" ] || die "no Debian $SUITE mirror found in /etc/apt/sources.list{,.d/*}; set GPUPOOL_DEBIAN_MIRROR"
    WORK="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    cleanup() {
        # debootstrap mounts /proc and /sys inside the target; never rm -rf through a mount
        local m
        awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$WORK"
    }
    trap cleanup EXIT
    say "debootstrap $SUITE ($INCLUDE) from $MIRROR (about a minute)"
    if ! debootstrap --variant=minbase --arch="$ARCH" --include="$INCLUDE" \
            "$SUITE" "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -30 "$WORK/debootstrap.log" >&2
        [ -f "$WORK/root/debootstrap/debootstrap.log" ] && tail -30 "$WORK/root/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    # Keep the image small: no package lists, caches or docs the image does not need.
    rm -rf "$WORK/root/var/lib/apt/lists/"* "$WORK/root/var/cache/apt/"*.bin \
        "$WORK/root/var/cache/apt/archives/"*.deb "$WORK/root/var/log/"*.log \
        "$WORK/root/usr/share/man/"* "$WORK/root/usr/share/info/"*
    tar --numeric-owner --xattrs -C "$WORK/root" -cf "$TARBALL.tmp" .
    sha256sum "$TARBALL.tmp" | cut -d' ' -f1 >"$TARBALL.sha256"
    mv "$TARBALL.tmp" "$TARBALL"
    cleanup
    trap - EXIT
    say "cached the root file system: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
else
    say "using the cached root file system $TARBALL"
fi
[ -s "$TARBALL.sha256" ] || sha256sum "$TARBALL" | cut -d' ' -f1 >"$TARBALL.sha256"

say "importing $TAG into $HOST"
dk import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.gpupool.rootfs=$(cat "$TARBALL.sha256") org.gpupool.rootfs-packages=$INCLUDE" \
    --message "debootstrap --variant=minbase $SUITE" \
    "$TARBALL" "$TAG" >/dev/null
say "done: $TAG on $HOST"
