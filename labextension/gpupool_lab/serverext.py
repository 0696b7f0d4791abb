"""The jupyter-server extension ``gpupool.lab``: what the JupyterLab extension shows.

Under ``{base_url}gpupool/``, every handler authenticated and authorized as the server's
own user (resource ``gpupool``):

- ``GET status``: the slice this server holds, its reservation as the pool sees it, the
  pool's notices for it (GPU idle: when it is stopped);
- ``GET metrics``: the last samples of this server's GPUs, CPU and memory;
- ``WS metrics/ws``: one sample per ``interval`` as it is taken;
- ``GET pool/specs``, ``pool/usage``, ``pool/notices``, ``pool/reservations``, ``pool/datasets``: the pool
  API, called with the server's own hub token, so the browser never holds one;
- ``WS ssh``: an SSH session for the server's owner (ssh.py); ``GET ssh-config?hub=``:
  the ``~/.ssh/config`` block that reaches it (sshconfig.py);
- ``GET graph/templates``: the network-graph editor's templates; ``GET graph/schema``:
  the graph document's JSON Schema.

Samples are taken only while someone watches (a socket open, or a REST read in the last
minute), in a worker thread (NVML blocks).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web, websocket

from .client import PoolApi, PoolApiError
from .metrics import LocalMetrics
from .ssh import RECHECK_EVERY, SshServer, SshSocket
from .sshconfig import SshConfigError, from_environment

RESOURCE = "gpupool"
WATCH_AFTER_READ = 60.0  # seconds of sampling after a REST read


class Sampler:
    def __init__(self, metrics: LocalMetrics, interval: float = 1.0, log: Any = None):
        self.metrics = metrics
        self.interval = interval
        self.log = log
        self.sockets: set[MetricsSocket] = set()
        self.read_at = 0.0
        self.cpu_seconds = 0.0  # the sampler's own CPU time, for the benchmark
        self.samples = 0
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpupool-metrics")

    def wanted(self) -> bool:
        return bool(self.sockets) or time.monotonic() - self.read_at < WATCH_AFTER_READ

    def touch(self) -> None:
        self.read_at = time.monotonic()
        self.start()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def take(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def timed() -> dict[str, Any]:
            t0 = time.thread_time()
            s = self.metrics.sample()
            self.cpu_seconds += time.thread_time() - t0
            self.samples += 1
            return s

        return await loop.run_in_executor(self._pool, timed)

    async def _run(self) -> None:
        while self.wanted():
            t0 = time.monotonic()
            try:
                sample = await self.take()
            except Exception:  # one bad sample must not end the stream
                if self.log:
                    self.log.exception("gpupool: taking a metrics sample failed")
                sample = None
            if sample is not None:
                text = json.dumps({"type": "sample", "sample": sample})
                for s in list(self.sockets):
                    try:
                        s.write_message(text)
                    except websocket.WebSocketClosedError:
                        self.sockets.discard(s)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - t0)))


class _Base(APIHandler):
    auth_resource = RESOURCE

    @property
    def gp(self) -> dict[str, Any]:
        return self.settings["gpupool"]

    def pool(self) -> PoolApi:
        return self.gp["pool"]()

    async def call_pool(self, fn: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            api = self.pool()
            return await loop.run_in_executor(None, lambda: getattr(api, fn)(*args))
        except PoolApiError as e:
            status = e.status if 400 <= e.status < 600 else 502
            raise web.HTTPError(status, reason=e.message[:200], log_message=e.message) from None

    def send(self, obj: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))


class StatusHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        sl = self.gp["metrics"].slice
        out: dict[str, Any] = {
            "slice": sl.to_json(),
            "reservation": None,
            "notices": [],
            "error": None,
        }
        try:
            if sl.reservation:
                out["reservation"] = await self.call_pool("reservation", sl.reservation)
            out["notices"] = [
                n
                for n in await self.call_pool("notices")
                if not sl.reservation or n["reservation"] == sl.reservation
            ]
        except web.HTTPError as e:
            out["error"] = e.log_message or e.reason  # the slice is still worth showing
        self.send(out)


class MetricsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        sampler: Sampler = self.gp["sampler"]
        if not sampler.metrics.history:
            await sampler.take()
        sampler.touch()
        m = sampler.metrics
        self.send(
            {
                "slice": m.slice.to_json(),
                "interval": sampler.interval,
                "history": list(m.history),
            }
        )


class PoolHandler(_Base):
    ROUTES = {
        "specs": "specs",
        "usage": "usage",
        "notices": "notices",
        "reservations": "reservations",
        "datasets": "datasets",
        "trainings": "trainings",
    }

    @web.authenticated
    @authorized
    async def get(self, what: str) -> None:
        if what == "usage":
            self.send(await self.call_pool("usage", self.get_argument("month", None)))
            return
        self.send({what: await self.call_pool(self.ROUTES[what])})


class TrainingCancelHandler(_Base):
    """Cancel one of this user's trainings (the panel's Cancel), with the server's token."""

    @web.authenticated
    @authorized
    async def post(self, tid: str) -> None:
        self.send(await self.call_pool("cancel_training", tid))


class GraphTemplatesHandler(_Base):
    """The graph editor's starting points (gpupool.graph.templates), as documents."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from gpupool.graph import TEMPLATES, template

        self.send({name: template(name).to_json() for name in TEMPLATES})


class GraphSchemaHandler(_Base):
    """The graph document's JSON Schema (gpupool.graph.schema)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from gpupool.graph.schema import json_schema

        self.send(json_schema())


class SshConfigHandler(_Base):
    """The ``~/.ssh/config`` block for this server (the panel's "Connect with SSH"); the
    browser says the hub's public address (``hub``: its own origin)."""

    @authorized
    def get(self) -> None:
        try:
            text = from_environment(
                dict(os.environ), self.get_argument("hub", None), getpass.getuser()
            )
        except SshConfigError as e:
            raise web.HTTPError(400, reason=str(e)[:200], log_message=str(e)) from None
        self.send({"config": text})


class MetricsSocket(websocket.WebSocketHandler, JupyterHandler):
    """One sample per interval. The browser's login (cookie or token) is checked as for
    every other handler, before the upgrade."""

    auth_resource = RESOURCE

    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in first")
        if not self.authorizer.is_authorized(self, user, "read", RESOURCE):
            raise web.HTTPError(403, "not allowed to read gpupool metrics")
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        sampler: Sampler = self.settings["gpupool"]["sampler"]
        sampler.sockets.add(self)
        sampler.start()

    def on_message(self, message: str | bytes) -> None:
        pass  # nothing is taken from the browser

    def on_close(self) -> None:
        self.settings["gpupool"]["sampler"].sockets.discard(self)


def load(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], "gpupool")
    metrics = LocalMetrics()
    settings = serverapp.config.get("GpuPoolLab", {})
    interval = float(settings.get("interval", 1.0))
    sampler = Sampler(metrics, interval=interval, log=serverapp.log)
    web_app.settings["gpupool"] = {
        "metrics": metrics,
        "sampler": sampler,
        "pool": PoolApi.from_env,
        # ssh_recheck: seconds between checks of an open SSH session's token with the hub
        "ssh": SshServer(recheck_every=float(settings.get("ssh_recheck", RECHECK_EVERY))),
    }
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "status"), StatusHandler),
            (url_path_join(base, "metrics"), MetricsHandler),
            (url_path_join(base, "metrics/ws"), MetricsSocket),
            (url_path_join(base, "ssh"), SshSocket),
            (url_path_join(base, "ssh-config"), SshConfigHandler),
            (
                url_path_join(base, r"pool/(specs|usage|notices|reservations|datasets|trainings)"),
                PoolHandler,
            ),
            (
                url_path_join(base, r"pool/trainings/([A-Za-z0-9._-]{1,64})/cancel"),
                TrainingCancelHandler,
            ),
            (url_path_join(base, "graph/templates"), GraphTemplatesHandler),
            (url_path_join(base, "graph/schema"), GraphSchemaHandler),
        ],
    )
    serverapp.log.info(
        "gpupool: lab extension at %s (slice %s, %d GPU(s))",
        base,
        metrics.slice.spec or "none",
        len(metrics.slice.gpus),
    )
