"""gpupool-agent: one per GPU node; NVML inventory and metrics over HTTP, read-only.

Serves, on ``--ip``/``--port`` (127.0.0.1:9445 by default):

- ``GET /health`` (no token): ``{"status": "ok"}``;
- ``GET /api/inventory``: the node's GPUs, driver and CUDA versions, NVML's state;
- ``GET /api/sample``: the latest sample (taken every ``interval`` seconds in a thread):
  utilization, memory, temperature, power, energy, the processes on each GPU with the
  gpupool container (owner, reservation, server, kind) they run in, and recent Xid errors;
- ``GET /metrics``: the same sample as Prometheus text, with DCGM exporter names.

Every endpoint but ``/health`` wants ``Authorization: token <t>`` (or ``Bearer <t>``).
Nothing can be changed over HTTP. Settings are ``--AgentApp.<name>=<value>``, or a Python
config file (``--config``) with ``c.AgentApp.<name> = ...``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import Application

from gpupool import __version__
from gpupool.nvml.binding import load_nvml
from gpupool.nvml.cgroups import LabelCache, docker_label_lookup
from gpupool.nvml.sampler import NodeSampler

from .handlers import NotFoundHandler, routes
from .janitor import sweep

TOKEN_ENV = "GPUPOOL_AGENT_TOKEN"


class AgentConfigError(Exception):
    """A setting that keeps the agent from starting; the message says what would be right."""


def _systemd_credential(path: Path) -> bool:
    """A file in the service's systemd credentials directory (``LoadCredential=``): systemd
    lets only the service's user read it, by ownership or an ACL whose mask shows in the
    group bits, so its mode bits are not the whole story."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds:
        return False
    try:
        return path.resolve().parent == Path(creds).resolve()
    except OSError:
        return False


class AgentApp(Application):
    name = "gpupool-agent"
    description = "gpupool's node agent: NVML inventory and metrics of this node, read-only."
    version = __version__

    config_file = Unicode(
        "",
        help="""A Python config file to load (``c.AgentApp.port = 9445`` ...).

        Empty: none. Settings given on the command line win over the file.
        """,
    ).tag(config=True)

    ip = Unicode(
        "127.0.0.1",
        help="""The address to listen on.

        The default, loopback, suits a pool service on the same machine. For a pool on
        another host, listen on the node's private address and keep the port closed to
        everything but the pool service: the token travels in clear over plain HTTP
        (terminate TLS in front of the agent where the network is not private).
        """,
    ).tag(config=True)

    port = Integer(
        9445,
        help="""The TCP port to listen on (nodes.yaml's ``agent.url`` names it).""",
    ).tag(config=True)

    @validate("port")
    def _check_port(self, proposal: Any) -> int:
        if not 1 <= proposal.value <= 65535:
            raise TraitError(f"AgentApp.port = {proposal.value}; it must be 1 to 65535")
        return proposal.value

    token_file = Unicode(
        "",
        help="""A file holding the token that every request but ``/health`` must send.

        The pool service sends it as ``Authorization: token <t>`` (nodes.yaml:
        ``agent.token_file`` names the same token on the pool's side). The file must be
        readable by its owner only (``chmod 600``): the agent refuses to start otherwise.
        Surrounding whitespace is ignored. Empty: the token comes from the environment
        variable ``GPUPOOL_AGENT_TOKEN``; with neither, the agent refuses to start.

        Make one with ``python3 -c 'import secrets; print(secrets.token_hex(32))'``.
        """,
    ).tag(config=True)

    node_name = Unicode(
        help="""This node's name in the pool (nodes.yaml's ``name``), reported as ``node``.

        Defaults to the hostname.
        """,
    ).tag(config=True)

    @default("node_name")
    def _node_name_default(self) -> str:
        return socket.gethostname()

    nvml_module = Unicode(
        "pynvml",
        help="""The Python module that provides NVML, with pynvml's API.

        ``pynvml`` comes with nvidia-ml-py (``pip install 'gpupool[agent]'``). The tests
        name ``tests.support.fake_nvml``, a fake for machines with no GPU.
        """,
    ).tag(config=True)

    interval = Float(
        1.0,
        help="""Seconds between two samples.

        Each sample reads every GPU and its processes in a thread, off the event loop, and
        costs a few milliseconds of CPU (see tests/bench/bench_agent.py). The pool polls
        the latest sample; sampling faster than it polls only costs CPU.
        """,
    ).tag(config=True)

    @validate("interval")
    def _check_interval(self, proposal: Any) -> float:
        if not 0.05 <= proposal.value <= 3600:
            raise TraitError(
                f"AgentApp.interval = {proposal.value}; it must be 0.05 to 3600 seconds"
            )
        return proposal.value

    nvml_retry_interval = Float(
        30.0,
        help="""Seconds between two tries to start NVML when it failed.

        Until NVML starts (driver not loaded, library missing, no permission), the agent
        still answers: an empty inventory with ``nvml.ok`` false and ``nvml.error`` saying
        why and what to check.
        """,
    ).tag(config=True)

    proc_root = Unicode(
        "/proc",
        help="""Where the host's /proc is, to map a GPU process to its container.

        NVML names processes by their PID on the host, and ``<proc_root>/<pid>/cgroup``
        names the container. An agent in a container runs with ``--pid=host`` (then the
        default is right) or gets the host's /proc mounted, e.g. at /host/proc.
        """,
    ).tag(config=True)

    docker_url = Unicode(
        "unix:///var/run/docker.sock",
        help="""The node's Docker engine, asked for the labels of the containers that use GPUs.

        gpupool's containers carry ``io.gpupool.owner``, ``io.gpupool.reservation``,
        ``io.gpupool.server`` and ``io.gpupool.kind``; the sample reports them with each
        process. Only container inspection is used; labels are cached per container and a
        container the engine does not know is asked again at most every 10 s. When the
        engine does not answer, the labels are null and the sample goes on. Empty: do not
        ask (processes get their container id only).
        """,
    ).tag(config=True)

    hami_core = Unicode(
        "",
        help="""The node's HAMi-core library (the node's ``hami_core`` in nodes.yaml, e.g.
        /usr/local/vgpu/libvgpu.so; deploy/systemd/gpupool-agent.service sets it).

        The inventory then says whether it, and an ``ld.so.preload`` beside it naming
        /usr/local/vgpu/libvgpu.so, are regular files (Docker makes a missing bind source
        an empty folder, and a sliced container then runs unlimited), and whether
        ``vgpulock`` is a folder of mode 1777. The pool offers no sliced spec on a node
        that fails this, and raises an alert saying what to install. Empty: not checked.
        An agent in a container needs both mounted at these paths.
        """,
    ).tag(config=True)

    vgpulock = Unicode(
        "/tmp/vgpulock",
        help="""HAMi-core's lock folder on the node, checked with ``hami_core`` to be a
        folder of mode 1777 (the containers' user locks in it). Empty: not checked.""",
    ).tag(config=True)

    hami_cache_dir = Unicode(
        "/usr/local/vgpu/containers",
        help="""Where the spawner puts each sliced container's HAMi-core shared cache
        (``containers/`` beside the node's libvgpu.so, or the spawner's
        ``GpuPoolSpawner.hami_cache_root`` + ``/containers``).

        Every ``janitor_interval`` seconds the agent removes the folders of reservations
        that no container on this node carries any more and that nobody touched for an
        hour. Needs ``docker_url``; when the engine does not answer nothing is removed.
        Empty: never clean up.
        """,
    ).tag(config=True)

    janitor_interval = Float(
        600.0, help="Seconds between clean-ups of HAMi-core cache folders (0: never)."
    ).tag(config=True)

    # How long one nvmlEventSetWait blocks, which bounds how long stopping takes (not a
    # setting; the tests shorten it).
    xid_wait_ms = 1000

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    log_format = Unicode("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s").tag(config=True)

    aliases = {
        "config": "AgentApp.config_file",
        "ip": "AgentApp.ip",
        "port": "AgentApp.port",
        "token-file": "AgentApp.token_file",
        "node-name": "AgentApp.node_name",
        "nvml-module": "AgentApp.nvml_module",
        "interval": "AgentApp.interval",
        "proc-root": "AgentApp.proc_root",
        "docker-url": "AgentApp.docker_url",
        "hami-core": "AgentApp.hami_core",
        "vgpulock": "AgentApp.vgpulock",
        "log-level": "Application.log_level",
    }

    def get_default_logging_config(self) -> dict[str, Any]:
        config = super().get_default_logging_config()
        for name in ("gpupool.agent", "tornado"):  # the modules' own loggers, same handler
            config.setdefault("loggers", {})[name] = {"level": "DEBUG", "handlers": ["console"]}
        return config

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            path = Path(self.config_file)
            if not path.is_file():
                raise AgentConfigError(f"AgentApp.config_file = {path}: no such file")
            self.load_config_file(path.name, path=str(path.parent))
            self.update_config(self.cli_config)
        self.token = self.read_token()
        self.nvml = self.load_nvml()

    def read_token(self) -> str:
        if self.token_file:
            path = Path(self.token_file)
            try:
                mode = path.stat().st_mode
                token = path.read_text().strip()
            except OSError as e:
                raise AgentConfigError(
                    f"AgentApp.token_file = {path}: cannot read it ({e.strerror or e})"
                ) from None
            if mode & 0o077 and not _systemd_credential(path):
                raise AgentConfigError(
                    f"AgentApp.token_file = {path}: group or others may read or write it "
                    f"(mode {mode & 0o777:o}); it guards every reading of this node, so it "
                    f"must be its owner's alone: chmod 600 {path}"
                )
            if not token:
                raise AgentConfigError(f"AgentApp.token_file = {path}: the file is empty")
            return token
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            return token
        raise AgentConfigError(
            "no token configured: set AgentApp.token_file (--token-file, a file only its owner "
            f"can read) or the environment variable {TOKEN_ENV}. The pool service sends the "
            "same token (nodes.yaml: agent.token_file). Make one with: "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )

    def load_nvml(self) -> ModuleType:
        try:
            return load_nvml(self.nvml_module)
        except ImportError as e:
            hint = (
                "install nvidia-ml-py (pip install 'gpupool[agent]')"
                if self.nvml_module == "pynvml"
                else "is the module on the Python path?"
            )
            raise AgentConfigError(
                f"AgentApp.nvml_module = {self.nvml_module!r}: cannot import it ({e}); {hint}"
            ) from None

    def make_agent(self) -> NodeSampler:
        labels = None
        if self.docker_url:
            try:
                labels = LabelCache(docker_label_lookup(self.docker_url))
            except ImportError:
                self.log.warning(
                    "the docker SDK is not installed: processes get no gpupool labels "
                    "(pip install 'gpupool[agent]', or set AgentApp.docker_url = '')"
                )
        return NodeSampler(
            self.nvml,
            node=self.node_name,
            interval=self.interval,
            proc_root=self.proc_root,
            labels=labels,
            retry_interval=self.nvml_retry_interval,
            xid_wait_ms=self.xid_wait_ms,
        )

    def make_app(self, agent: NodeSampler) -> web.Application:
        return web.Application(
            routes(),  # type: ignore[arg-type]
            agent=agent,
            agent_token=self.token.encode(),
            agent_app=self,
            metrics_cache={},
            default_handler_class=NotFoundHandler,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        self.log.debug(
            "%d %s %s %.1fms",
            handler.get_status(),
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )

    async def start_serving(self) -> None:
        """Start sampling and listening (for ``serve`` and for in-process tests)."""
        self.agent = self.make_agent()
        self.agent.start()
        self.server = HTTPServer(self.make_app(self.agent))
        self.server.listen(self.port, self.ip)
        self.log.info(
            "gpupool-agent %s for node %s listening on http://%s:%d (NVML from %s, sample every %g s)",
            __version__,
            self.node_name,
            self.ip,
            self.port,
            self.nvml_module,
            self.interval,
        )

        if self.hami_cache_dir and self.docker_url and self.janitor_interval > 0:
            self._janitor = asyncio.ensure_future(self._janitor_loop())

    def _live_reservations(self) -> list[str] | None:
        """Reservation ids of every container on the node, or None if the engine is silent."""
        try:
            import docker

            client = docker.DockerClient(base_url=self.docker_url, version="1.41", timeout=10)
            try:
                listed = client.api.containers(
                    all=True, filters={"label": "io.gpupool.reservation"}
                )
            finally:
                client.close()
        except Exception as e:
            self.log.warning("janitor: the engine did not answer (%s); nothing removed", e)
            return None
        return [(c.get("Labels") or {}).get("io.gpupool.reservation", "") for c in listed]

    async def _janitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.janitor_interval)
            try:
                await loop.run_in_executor(
                    None, lambda: sweep(Path(self.hami_cache_dir), self._live_reservations)
                )
            except Exception:
                self.log.exception("janitor")

    async def stop_serving(self) -> None:
        if getattr(self, "_janitor", None) is not None:
            self._janitor.cancel()
        self.server.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.agent.stop)

    async def serve(self) -> None:
        await self.start_serving()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("stopping")
        await self.stop_serving()

    def start(self) -> None:
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    app = AgentApp.instance()
    try:
        app.initialize(argv)
    except AgentConfigError as e:
        print(f"gpupool-agent: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    app.start()


if __name__ == "__main__":
    main()
