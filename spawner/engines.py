"""One Docker API client per node, never one class-wide client.

A node's engine is a unix socket or TCP (with TLS for anything beyond loopback, the
catalog enforces that). Clients are made lazily, cached per (node, engine, TLS files),
and their calls run off the event loop in a bounded thread pool of that node's own: an
engine that accepts connections and never answers holds its node's threads (each call
for up to ``timeout`` seconds), never the ones other nodes' calls need. The last call a
node's engine did not answer is remembered (:meth:`Engines.answering`), so that routine
checks (the hub's polls of servers) can skip a node that is not answering for a while.
Image pulls, which last minutes, run in a small pool of their own per node, so that they
never hold the threads the node's other calls need.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.errors import APIError, NotFound
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from .catalog.models import Node

T = TypeVar("T")
API_VERSION = "1.41"  # Docker 20.10 and later; device requests need 1.40
UNREACHABLE = (RequestsConnectionError, ReadTimeout, ConnectionError, TimeoutError, OSError)
PULLS_PER_NODE = 3  # concurrent pulls of distinct images on one node (each holds a thread)


class EngineUnreachable(RuntimeError):
    """The node's engine did not answer. Not proof that its containers are gone."""


class Engines:
    """Docker clients for the pool's nodes, shared by every spawner of the hub."""

    def __init__(self, max_workers: int = 8, timeout: int = 30):
        """``max_workers``: concurrent calls per node (and for work of no node)."""
        self.timeout = timeout
        self.max_workers = max_workers
        self.executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="gpupool-docker"
        )
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._clients: dict[tuple[str, str, Any], docker.APIClient] = {}
        self._lock = threading.Lock()
        self._unanswered: dict[str, float] = {}  # node -> when a call last went unanswered

    def _executor(self, node: Node | None, *, pulls: bool = False) -> ThreadPoolExecutor:
        if node is None:
            return self.executor
        key = f"{node.name}/pull" if pulls else node.name
        with self._lock:
            ex = self._executors.get(key)
            if ex is None:
                ex = self._executors[key] = ThreadPoolExecutor(
                    max_workers=PULLS_PER_NODE if pulls else self.max_workers,
                    thread_name_prefix=f"gpupool-docker-{key}",
                )
            return ex

    def answering(self, node: Node, within: float) -> bool:
        """False when a call to ``node``'s engine went unanswered in the last ``within``
        seconds (and none has been answered since). Once that long has passed, one caller
        gets True and the window starts again: the others wait for its answer."""
        with self._lock:
            at = self._unanswered.get(node.name)
            if at is None:
                return True
            now = time.monotonic()
            if now - at > within:
                self._unanswered[node.name] = now
                return True
            return False

    def client(self, node: Node) -> docker.APIClient:
        """``node``'s Docker client, made on first use and kept. For work that needs the
        client itself in a worker thread (a host config built, an archive streamed to or
        from a container): hand that work to :meth:`run` with the node, whose errors pass
        through as they are; single calls go through :meth:`call`."""
        key = (node.name, node.engine, node.tls)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                tls = None
                if node.tls is not None:
                    tls = docker.tls.TLSConfig(
                        client_cert=(node.tls.cert, node.tls.key), ca_cert=node.tls.ca, verify=True
                    )
                url = node.engine.replace("tcp://", "https://") if tls else node.engine
                # An explicit API version: "auto" would contact the engine here, inside
                # the lock. trust_env=False: REQUESTS_CA_BUNDLE and proxy variables of
                # the hub's environment must not replace the node's own TLS files.
                client = docker.APIClient(
                    base_url=url, tls=tls, version=API_VERSION, timeout=self.timeout
                )
                client.trust_env = False
                self._clients[key] = client
            return client

    async def call(self, node: Node, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``APIClient.<method>`` for ``node`` in the pool; unreachable engines raise
        EngineUnreachable, Docker's own errors (404 and the rest) pass through."""
        return await self.using(node, lambda client: getattr(client, method)(*args, **kwargs))

    async def using(
        self, node: Node, fn: Callable[[docker.APIClient], T], *, pulls: bool = False
    ) -> T:
        """``fn(client)`` with ``node``'s client, in its pool (``pulls``: its pool for
        image pulls), errors as :meth:`call` raises them; for work of several calls, such
        as reading a streamed answer to its end."""

        def run() -> T:
            try:
                out = fn(self.client(node))
            except (APIError, NotFound):
                self._unanswered.pop(node.name, None)  # it answered, with an error
                raise
            except (docker.errors.DockerException, *UNREACHABLE) as e:
                self._unanswered[node.name] = time.monotonic()
                raise EngineUnreachable(f"engine of node {node.name} ({node.engine}): {e}") from e
            self._unanswered.pop(node.name, None)
            return out

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(node, pulls=pulls), run)

    async def run(self, fn: Callable[[], T], node: Node | None = None) -> T:
        """``fn`` in ``node``'s thread pool (work on its engine), else in the general one."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(node), fn)


_shared: Engines | None = None


def shared_engines() -> Engines:
    global _shared
    if _shared is None:
        _shared = Engines()
    return _shared
