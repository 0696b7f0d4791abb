"""Containers and volumes are touched only when their owner label says they are ours.

Names are one-to-one with (user, server) or the training (container.py), but a name
alone is not proof: a container or volume may have been made by an older rule, by an
admin, or by hand. So before gpupool removes, reuses or mounts one, it reads its
``io.gpupool.owner`` label, and refuses, with an error that names both owners, when the
label is someone else's (or missing).

Home volumes made by the naming rule before 2026-12 are adopted: when a user has no volume
of the current name and one of the old name carries their own label, that one is mounted
(files kept); one of the old name labelled for somebody else is never mounted.
"""

from __future__ import annotations

import logging
from typing import Any

from docker.errors import APIError, NotFound

from .catalog.models import Node
from .container import LABEL, home_volume, legacy_home_volume
from .engines import Engines

OWNER = f"{LABEL}.owner"
log = logging.getLogger("gpupool.owners")


class NotYours(RuntimeError):
    """A container or volume at the name gpupool gives an object of ``owner`` is labelled
    for someone else (or not labelled at all)."""

    def __init__(self, what: str, name: str, owner: str, found: str | None):
        self.name = name
        label = f"labelled for {found!r}" if found else "without a gpupool owner label"
        super().__init__(
            f"the {what} {name} on this node is {label}, not {owner!r}; gpupool will not "
            f"remove, reuse or mount it. An admin can remove or rename it (docker {what} "
            f"inspect {name})"
        )


def _labels(info: dict[str, Any], kind: str) -> dict[str, str]:
    if kind == "volume":
        return info.get("Labels") or {}
    return (info.get("Config") or {}).get("Labels") or {}


async def _inspect(engines: Engines, node: Node, kind: str, name: str) -> dict[str, Any] | None:
    try:
        return await engines.call(node, f"inspect_{kind}", name)
    except NotFound:
        return None


async def remove_own_container(
    engines: Engines, node: Node, name: str, owner: str, **labels: str
) -> bool:
    """Remove the container ``name`` if it is ``owner``'s (and carries ``labels``, e.g.
    kind='training'). False when there was none; NotYours when it is someone else's.
    Removed by id, so a container made under the same name meanwhile is never hit."""
    info = await _inspect(engines, node, "container", name)
    if info is None:
        return False
    found = _labels(info, "container")
    if found.get(OWNER) != owner or any(found.get(f"{LABEL}.{k}") != v for k, v in labels.items()):
        raise NotYours("container", name, owner, found.get(OWNER))
    try:
        await engines.call(node, "remove_container", info["Id"], force=True)
    except NotFound:
        pass  # already gone is success
    return True


async def home_for(engines: Engines, node: Node, owner: str) -> str:
    """The name of ``owner``'s home volume on ``node``, made when there is none."""
    name = home_volume(owner)
    info = await _inspect(engines, node, "volume", name)
    if info is None:
        legacy = legacy_home_volume(owner)
        if legacy != name:
            old = await _inspect(engines, node, "volume", legacy)
            if old is not None and _labels(old, "volume").get(OWNER) == owner:
                log.info("%s: adopting the home volume %s of the old naming rule", owner, legacy)
                return legacy
        # creating a volume that exists returns it unchanged (whoever made it): check again
        try:
            info = await engines.call(node, "create_volume", name=name, labels={OWNER: owner})
        except APIError as e:
            if e.status_code != 409:
                raise
            info = await _inspect(engines, node, "volume", name) or {}
    found = _labels(info, "volume").get(OWNER)
    if found != owner:
        raise NotYours("volume", name, owner, found)
    return name
