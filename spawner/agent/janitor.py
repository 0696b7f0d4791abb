"""Node-side clean-up the pool cannot do through the Docker API.

HAMi-core's shared cache of each sliced container lives in a host folder
``<hami dir>/containers/<reservation id>`` (bind-mounted by the spawner). Removing the
container leaves the folder; over months they pile up. The agent removes the folders of
reservations that no container on this node carries any more, once they have been
left alone for ``min_age`` seconds (a container being created right now has a folder
and no container yet).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

RESERVATION_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
log = logging.getLogger("gpupool.agent.janitor")


def stale_cache_dirs(root: Path, live: Iterable[str], now: float, min_age: float) -> list[Path]:
    """Folders under ``root`` named like a reservation id that no live container holds
    and that nothing touched for ``min_age`` seconds. Symlinks are never followed."""
    keep = set(live)
    out = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for e in entries:
        if not RESERVATION_DIR.match(e.name) or e.name in keep:
            continue
        try:
            if not e.is_dir(follow_symlinks=False):
                continue
            newest = e.stat(follow_symlinks=False).st_mtime
            for inner in os.scandir(e.path):
                newest = max(newest, inner.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
        if now - newest >= min_age:
            out.append(Path(e.path))
    return sorted(out)


def sweep(
    root: Path,
    live_reservations: Callable[[], Iterable[str] | None],
    *,
    min_age: float = 3600.0,
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Remove stale cache folders; returns what was removed. ``live_reservations``
    returns the reservation ids of every container on the node (running or not), or
    None when the engine cannot be asked, in which case nothing is removed."""
    live = live_reservations()
    if live is None:
        return []
    removed = []
    for d in stale_cache_dirs(root, live, clock(), min_age):
        try:
            shutil.rmtree(d)
            removed.append(d)
        except OSError as e:
            log.warning("could not remove HAMi cache folder %s: %s", d, e)
    if removed:
        log.info("removed %d HAMi cache folder(s) of gone containers", len(removed))
    return removed
