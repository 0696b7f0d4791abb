"""Why GpuPoolSpawner refused a start, as the hub's REST API and spawn page report it.

Each refusal is an HTTP error with a status and a short reason (``settings``,
``capacity``, ``quota``, ``image``, ``name-taken``) that JupyterHub's REST API keeps, and
a message that says what to do.
"""

from __future__ import annotations

from tornado import web


class PoolRefusal(web.HTTPError):
    """A start the pool refused, with a reason the REST API keeps (JupyterHub resets
    ``reason`` on errors raised from start(); this keeps it)."""

    status = 500
    why = ""

    def __init__(self, message: str):
        super().__init__(self.status, log_message=message)
        self.jupyterhub_message = message

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self.why

    @reason.setter
    def reason(self, value: str) -> None:
        pass


class SettingRefused(PoolRefusal):
    """500 'settings': the hub's config sets DockerSpawner settings that gpupool does not
    apply (settings_check.py); the message names each and what decides instead."""

    status, why = 500, "settings"


class CapacityError(PoolRefusal):
    """503 'capacity': nothing fits now; the message says why, node by node."""

    status, why = 503, "capacity"

    def __init__(self, message: str, nodes: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.nodes = nodes or []


class QuotaError(PoolRefusal):
    """403 'quota': the user's quota would be exceeded; the message says which quota and
    how much is left."""

    status, why = 403, "quota"


class ImageError(PoolRefusal):
    """500 'image': the image is not on the node and pull_policy forbids pulling it, or
    the pull failed; the message names the image, the node and why."""

    status, why = 500, "image"


class NameTaken(PoolRefusal):
    """409 'name-taken': the container or home volume of this server carries another
    owner's label; nothing was removed or mounted."""

    status, why = 409, "name-taken"
