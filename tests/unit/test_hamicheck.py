"""The agent's check of HAMi-core on its node (agent/hamicheck.py; issue 18), on folders
standing in for the node's /usr/local/vgpu and /tmp/vgpulock."""

from __future__ import annotations

from pathlib import Path

from gpupool.agent.hamicheck import IN_CONTAINER, check


def installed(tmp: Path) -> tuple[Path, Path]:
    vgpu, lock = tmp / "vgpu", tmp / "vgpulock"
    vgpu.mkdir()
    (vgpu / "libvgpu.so").write_bytes(b"\x7fELF")
    (vgpu / "ld.so.preload").write_text(IN_CONTAINER + "\n")
    lock.mkdir()
    lock.chmod(0o1777)
    return vgpu / "libvgpu.so", lock


def test_installed_as_the_installer_does_it(tmp_path: Path) -> None:
    lib, lock = installed(tmp_path)
    c = check(lib, lock)
    assert c.ok and c.to_json() == {"library": str(lib), "ok": True, "problems": []}


def test_each_way_it_can_be_wrong_is_named(tmp_path: Path) -> None:
    lib, lock = installed(tmp_path)
    preload = lib.parent / "ld.so.preload"
    preload.unlink()
    preload.mkdir()  # what Docker leaves where the bind source was missing
    lock.chmod(0o755)  # what Docker makes of a missing /tmp/vgpulock
    c = check(lib, lock)
    assert not c.ok
    assert c.problems == (
        f"{preload} is a folder (Docker makes one where a bind source is missing)",
        f"{lock} has mode 755: the containers' user cannot lock in it (1777 needed)",
    )
    preload.rmdir()
    preload.write_text("/usr/lib/something-else.so\n")
    assert check(lib, None).problems == (f"{preload} does not name {IN_CONTAINER}",)
    preload.write_text("")
    assert check(lib, None).problems == (f"{preload} is empty: it must name {IN_CONTAINER}",)
    lib.unlink()
    preload.unlink()
    lock.rmdir()
    c = check(lib, lock)
    assert c.problems[0] == f"{lib} is missing"
    assert c.problems[1] == f"{preload} is missing"
    assert c.problems[2].startswith(f"{lock} is missing: Docker would make it root-owned")
