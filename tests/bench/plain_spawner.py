"""The benchmark's baseline: dockerspawner's DockerSpawner with host networking, as its
documentation says to run it there (a port per server, get_ip_and_port overridden)."""

from __future__ import annotations

from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port


class HostNetworkDockerSpawner(DockerSpawner):
    async def start(self):  # type: ignore[no-untyped-def]
        self.port = random_port()
        return await super().start()

    async def get_ip_and_port(self):  # type: ignore[no-untyped-def]
        return "127.0.0.1", self.port
