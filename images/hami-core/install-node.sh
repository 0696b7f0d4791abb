#!/bin/sh
# Install HAMi-core on a GPU node: what the hami-core image runs, with the node's folders
# mounted (docs/install.md, step 2). Everything a sliced container mounts must exist as a
# regular file or a folder its user can use, since Docker makes a missing bind source an
# empty root-owned folder, and then the limits silently do not apply:
#
#   $HOST/libvgpu.so      the library (mounted read-only at /usr/local/vgpu/libvgpu.so)
#   $HOST/ld.so.preload   naming it (mounted at /etc/ld.so.preload: processes started with
#                         a stripped environment are limited too)
#   $HOST_TMP/vgpulock    HAMi-core's lock folder, writable by every container user (1777)
#   $HOST_TMPFILES/gpupool-vgpulock.conf   remakes that folder after a reboot clears /tmp
#
# Files are replaced atomically: running containers keep the old ones open.
set -eu
LIB="${LIB:-/usr/local/vgpu/libvgpu.so}"   # the library in this image
HOST="${HOST:-/host}"                      # the node's /usr/local/vgpu
HOST_TMP="${HOST_TMP:-/host-tmp}"          # the node's /tmp (optional mount)
HOST_TMPFILES="${HOST_TMPFILES:-/host-tmpfiles}"  # the node's /etc/tmpfiles.d (optional)
IN_CONTAINER=/usr/local/vgpu/libvgpu.so    # where containers see the library

[ -f "$LIB" ] || { echo "install-node: no library at $LIB" >&2; exit 1; }
[ -d "$HOST" ] || { echo "install-node: mount the node's /usr/local/vgpu at $HOST" >&2; exit 1; }
for f in libvgpu.so ld.so.preload; do
    if [ -e "$HOST/$f" ] && [ ! -f "$HOST/$f" ]; then
        # a folder Docker made for a missing bind source: replace it (it is empty)
        rmdir "$HOST/$f" 2>/dev/null || { echo "install-node: $HOST/$f is not a file; remove it" >&2; exit 1; }
    fi
done
cp "$LIB" "$HOST/.libvgpu.so.new"
chmod 0644 "$HOST/.libvgpu.so.new"
mv -f "$HOST/.libvgpu.so.new" "$HOST/libvgpu.so"
printf '%s\n' "$IN_CONTAINER" >"$HOST/.ld.so.preload.new"
chmod 0644 "$HOST/.ld.so.preload.new"
mv -f "$HOST/.ld.so.preload.new" "$HOST/ld.so.preload"
echo "installed $HOST/libvgpu.so and $HOST/ld.so.preload"
if [ -d "$HOST_TMP" ]; then
    mkdir -p "$HOST_TMP/vgpulock"
    chmod 1777 "$HOST_TMP/vgpulock"
    echo "made $HOST_TMP/vgpulock (1777)"
else
    echo "install-node: $HOST_TMP not mounted: make /tmp/vgpulock with mode 1777 on the node" >&2
fi
if [ -d "$HOST_TMPFILES" ]; then
    printf 'd /tmp/vgpulock 1777 root root -\n' >"$HOST_TMPFILES/gpupool-vgpulock.conf"
    echo "wrote $HOST_TMPFILES/gpupool-vgpulock.conf (remade at boot)"
fi
