"""What the hami-core image runs on a node (images/hami-core/install-node.sh), against
folders standing in for the node's /usr/local/vgpu, /tmp and /etc/tmpfiles.d: the library
and an ld.so.preload naming it as regular files, a lock folder every container user can
use (issue 18: before, only the library was installed, and Docker made the missing
preload an empty root-owned folder, so processes with a stripped environment ran
unlimited and nothing noticed)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "images" / "hami-core" / "install-node.sh"


def install(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_library_preload_and_lock_folder(tmp_path: Path) -> None:
    lib = tmp_path / "image" / "libvgpu.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF stand-in")
    host, htmp, tmpfiles = (tmp_path / d for d in ("vgpu", "tmp", "tmpfiles.d"))
    for d in (host, htmp, tmpfiles):
        d.mkdir()
    # what Docker left where a sliced container started before the install: an empty folder
    (host / "ld.so.preload").mkdir()
    env = dict(LIB=str(lib), HOST=str(host), HOST_TMP=str(htmp), HOST_TMPFILES=str(tmpfiles))
    for _ in range(2):  # and once more: the same result
        r = install(tmp_path, **env)
        assert r.returncode == 0, r.stderr
        assert (host / "libvgpu.so").is_file()
        assert (host / "libvgpu.so").read_bytes() == lib.read_bytes()
        preload = host / "ld.so.preload"
        assert preload.is_file() and preload.read_text() == "/usr/local/vgpu/libvgpu.so\n"
        for f in (host / "libvgpu.so", preload):
            assert stat.S_IMODE(f.stat().st_mode) == 0o644
        lock = htmp / "vgpulock"
        assert lock.is_dir() and stat.S_IMODE(lock.stat().st_mode) == 0o1777
        conf = (tmpfiles / "gpupool-vgpulock.conf").read_text()
        assert conf == "d /tmp/vgpulock 1777 root root -\n"
        assert not [p.name for p in host.iterdir() if p.name.startswith(".")]  # no leftovers


def test_refusals_say_what_is_wrong(tmp_path: Path) -> None:
    r = install(tmp_path, LIB=str(tmp_path / "none.so"), HOST=str(tmp_path))
    assert r.returncode == 1 and f"no library at {tmp_path / 'none.so'}" in r.stderr
    lib = tmp_path / "libvgpu.so.src"
    lib.write_bytes(b"x")
    r = install(tmp_path, LIB=str(lib), HOST=str(tmp_path / "missing"))
    assert r.returncode == 1 and "mount the node's /usr/local/vgpu" in r.stderr
    host = tmp_path / "vgpu"
    (host / "ld.so.preload").mkdir(parents=True)
    (host / "ld.so.preload" / "something").write_text("x")  # not Docker's empty folder
    r = install(tmp_path, LIB=str(lib), HOST=str(host), HOST_TMP=str(tmp_path / "no-tmp"))
    assert r.returncode == 1 and "is not a file; remove it" in r.stderr
