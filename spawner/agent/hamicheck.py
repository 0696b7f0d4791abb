"""Is HAMi-core installed on this node the way sliced containers need it?

A sliced container mounts the node's ``libvgpu.so``, an ``ld.so.preload`` beside it that
names the library (as the container's ``/etc/ld.so.preload``), and ``/tmp/vgpulock``.
Docker makes a missing bind source an empty root-owned folder, and then nothing is
limited and nothing says so. The agent reports what it finds here with its inventory;
the pool does not offer sliced specs on a node that fails it (issue 18).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IN_CONTAINER = "/usr/local/vgpu/libvgpu.so"  # where containers see the library


@dataclass(frozen=True)
class HamiCheck:
    library: str
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"library": self.library, "ok": self.ok, "problems": list(self.problems)}


def _regular(path: Path) -> str | None:
    """Why ``path`` is not a regular file (following links), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder (Docker makes one where a bind source is missing)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def check(library: str | os.PathLike[str], lock: str | os.PathLike[str] | None) -> HamiCheck:
    """The problems of the library at ``library``, of ``ld.so.preload`` beside it, and of
    the lock folder ``lock`` (None: not checked, e.g. an agent that cannot see /tmp)."""
    lib = Path(library)
    problems = []
    why = _regular(lib)
    if why:
        problems.append(f"{lib} is {why}")
    preload = lib.parent / "ld.so.preload"
    why = _regular(preload)
    if why:
        problems.append(f"{preload} is {why}")
    else:
        try:
            names = preload.read_text(errors="replace").split()
        except OSError as e:
            names = []
            problems.append(f"{preload} is unreadable ({e.strerror})")
        if names and IN_CONTAINER not in names:
            problems.append(f"{preload} does not name {IN_CONTAINER}")
        elif not names and not problems:
            problems.append(f"{preload} is empty: it must name {IN_CONTAINER}")
    if lock is not None:
        lk = Path(lock)
        try:
            st = lk.stat()
            if not stat.S_ISDIR(st.st_mode):
                problems.append(f"{lk} is not a folder")
            elif stat.S_IMODE(st.st_mode) & 0o1777 != 0o1777:
                problems.append(
                    f"{lk} has mode {stat.S_IMODE(st.st_mode):o}: the containers' user "
                    "cannot lock in it (1777 needed)"
                )
        except FileNotFoundError:
            problems.append(
                f"{lk} is missing: Docker would make it root-owned, mode 755, where the "
                "containers' user cannot lock (mkdir -m 1777; the installer keeps it at boot)"
            )
        except OSError as e:
            problems.append(f"{lk} is unreadable ({e.strerror})")
    return HamiCheck(str(lib), tuple(problems))
