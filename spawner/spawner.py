"""Spawners. The GPU spawner (GpuPoolSpawner) arrives with the spawner issue; until then
the hub runs with a placeholder that says so instead of starting an unsliced server."""

from __future__ import annotations

from jupyterhub.spawner import Spawner


class PlaceholderSpawner(Spawner):
    """Refuses to start servers, with a message pointing at the pool API.

    The hub, the pool service and its API work; GPU servers need GpuPoolSpawner.
    """

    async def start(self) -> tuple[str, int]:  # type: ignore[override]
        raise RuntimeError(
            "gpupool: starting servers needs GpuPoolSpawner, which this version does not ship yet. "
            "The pool API works: /services/gpupool/api/specs"
        )

    async def poll(self) -> int | None:
        return 0

    async def stop(self, now: bool = False) -> None:
        return None
