"""The agent's clean-up of HAMi-core cache folders left by removed containers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gpupool.agent.janitor import stale_cache_dirs, sweep


def make(root: Path, name: str, age: float) -> Path:
    d = root / name
    d.mkdir()
    (d / "vgpu.cache").write_bytes(b"x")
    t = time.time() - age
    os.utime(d / "vgpu.cache", (t, t))
    os.utime(d, (t, t))
    return d


def test_only_old_folders_of_gone_reservations_go(tmp_path: Path) -> None:
    make(tmp_path, "r-live", 10_000)
    make(tmp_path, "r-gone-old", 10_000)
    make(tmp_path, "r-gone-new", 60)
    (tmp_path / "not a reservation!").mkdir()
    (tmp_path / "r-file").write_text("x")
    outside = tmp_path.parent / "outside"
    outside.mkdir(exist_ok=True)
    (tmp_path / "r-link").symlink_to(outside)
    got = stale_cache_dirs(tmp_path, {"r-live"}, time.time(), 3600)
    assert got == [tmp_path / "r-gone-old"]


def test_a_recent_write_inside_keeps_a_folder(tmp_path: Path) -> None:
    d = make(tmp_path, "r-busy", 10_000)
    (d / "vgpu.cache").write_bytes(b"y")  # touched now
    assert stale_cache_dirs(tmp_path, set(), time.time(), 3600) == []


def test_sweep_removes_and_an_unreachable_engine_removes_nothing(tmp_path: Path) -> None:
    make(tmp_path, "r-gone", 10_000)
    assert sweep(tmp_path, lambda: None) == []
    assert (tmp_path / "r-gone").exists()
    assert sweep(tmp_path, lambda: ["r-other"]) == [tmp_path / "r-gone"]
    assert not (tmp_path / "r-gone").exists()
    assert sweep(tmp_path / "missing", lambda: []) == []
