"""The pool service: a hub-managed JupyterHub service, the single writer of cluster state.

Started by the hub (see ``gpupool.hub.configure``) with the usual service environment
(``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_SERVICE_PREFIX``); every setting below can also be given as
``--PoolService.<name>=<value>``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Integer, Unicode, default, validate
from traitlets.config import Application

from gpupool import __version__
from gpupool.catalog import CatalogError, config_dir, load_catalog

from . import (
    datasets_api,
    health_api,
    nodes_api,
    reservations_api,
    root_api,
    specs_api,
    ssh_api,
    usage_api,
)
from .admin_pages import admin_routes
from .alerts import Alerts
from .health import Monitor
from .idle import IdleCuller
from .ledger import Ledger
from .limits import SERVER_MAX_BODY
from .pages import page_routes
from .release import stop_and_release
from .scheduler import POLICIES
from .trainings import api as trainings_api
from .trainings.dispatch import Dispatcher
from .trainings.store import TrainingStore
from .watchdog import SliceWatchdog
from .web import NotFoundHandler, PoolContext

# The modules whose default_handlers make the API, in the route table's order (Tornado
# takes the first route that matches; each module's paths are its own, so the order
# matters only for the catch-all 404 that comes after them all).
API_MODULES = (
    health_api,
    usage_api,
    datasets_api,
    trainings_api,
    root_api,
    specs_api,
    reservations_api,
    ssh_api,
    nodes_api,
)


def api_routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The pool API's route table: every API module's ``default_handlers`` (paths below
    the service prefix), then the API's JSON 404 for any path under ``api/`` that names
    no operation."""
    base = prefix.rstrip("/")
    return [
        *((base + path, handler) for m in API_MODULES for path, handler in m.default_handlers),
        (rf"{base}/api/.*", NotFoundHandler),  # last: JSON 404 for paths no operation names
    ]


def default_state_dir() -> Path:
    return Path(os.environ.get("GPUPOOL_STATE_DIR") or Path.cwd() / ".state")


def default_database_url(catalog_url: str | None = None) -> str:
    """``GPUPOOL_DB_URL``, else the catalog's ``database_url``, else SQLite in the state folder."""
    return (
        os.environ.get("GPUPOOL_DB_URL")
        or catalog_url
        or f"sqlite:///{default_state_dir() / 'gpupool.sqlite'}"
    )


class PoolService(Application):
    name = "gpupool-pool"
    description = "The gpupool pool service: specs, reservations, nodes."
    version = __version__

    config_dir = Unicode(
        help="""Folder with the catalogs (specs.yaml, nodes.yaml, images.yaml, datasets.yaml, pool.yaml).

        Defaults to $GPUPOOL_CONFIG_DIR, else the hub_config/ folder beside jupyterhub_config.py.
        """,
    ).tag(config=True)

    @default("config_dir")
    def _config_dir_default(self) -> str:
        return str(config_dir())

    database_url = Unicode(
        help="""SQLAlchemy URL of the ledger.

        Defaults to $GPUPOOL_DB_URL, else ``database_url`` in pool.yaml, else
        ``sqlite:///$GPUPOOL_STATE_DIR/gpupool.sqlite``. PostgreSQL:
        ``postgresql+psycopg://user:password@host/db``. Reservations live here and
        survive restarts of the service and of the hub.
        """,
    ).tag(config=True)

    node_policy = Unicode(
        "",
        help="""Override pool.yaml's scheduler.node_policy: 'binpack' (busiest node that fits)
        or 'spread' (emptiest node). Empty: use pool.yaml.""",
    ).tag(config=True)

    gpu_policy = Unicode(
        "",
        help="""Override pool.yaml's scheduler.gpu_policy: 'binpack' (busiest card that fits)
        or 'spread' (emptiest card). Empty: use pool.yaml.""",
    ).tag(config=True)

    @validate("node_policy", "gpu_policy")
    def _check_policy(self, proposal: Any) -> str:
        if proposal.value and proposal.value not in POLICIES:
            raise ValueError(
                f"PoolService.{proposal.trait.name} = {proposal.value!r}; allowed: {', '.join(POLICIES)}"
            )
        return proposal.value

    bind_url = Unicode(
        help="URL to listen on. Defaults to $JUPYTERHUB_SERVICE_URL, else http://127.0.0.1:10102.",
    ).tag(config=True)

    @default("bind_url")
    def _bind_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102")

    prefix = Unicode(
        help="URL prefix the proxy forwards. Defaults to $JUPYTERHUB_SERVICE_PREFIX, else /services/gpupool/.",
    ).tag(config=True)

    @default("prefix")
    def _prefix_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/gpupool/")

    auth_cache_seconds = Integer(
        60,
        help="How long a token the hub identified is trusted before asking the hub again.",
    ).tag(config=True)

    watch_nodes = Bool(
        True,
        help="""Probe every node's engine and agent, keep the metrics history, reconcile
        containers against reservations and raise alerts (pool.yaml's ``health`` and
        ``alerts`` say how often and where to). Off only for tests and tools that must
        not touch any engine. Default: $GPUPOOL_WATCH_NODES (0 = off), else on.""",
    ).tag(config=True)

    @default("watch_nodes")
    def _watch_nodes_default(self) -> bool:
        return os.environ.get("GPUPOOL_WATCH_NODES", "1").strip().lower() not in (
            "0",
            "false",
            "no",
        )

    trainings_dir = Unicode(
        help="""Folder where the pool keeps what trainings must not lose with a node: each
        training's last checkpoint (copied out of its container after every epoch, put back
        into the next container when it resumes elsewhere) and its log. Defaults to
        $GPUPOOL_STATE_DIR/trainings.""",
    ).tag(config=True)

    @default("trainings_dir")
    def _trainings_dir_default(self) -> str:
        return str(default_state_dir() / "trainings")

    hami_cache_root = Unicode(
        "",
        help="""Host folder (on every node) under which each sliced training gets its own
        HAMi-core shared-cache folder; the same as GpuPoolSpawner.hami_cache_root. Empty:
        'containers/' beside the node's libvgpu.so.""",
    ).tag(config=True)

    aliases = {
        "config-dir": "PoolService.config_dir",
        "db": "PoolService.database_url",
        "bind-url": "PoolService.bind_url",
        "log-level": "Application.log_level",
    }

    def make_app(self, hub_auth: Any | None = None) -> web.Application:
        try:
            catalog = load_catalog(self.config_dir)
        except CatalogError as e:
            self.log.critical("%s", e)
            raise SystemExit(2) from None
        for w in catalog.warnings:
            self.log.warning("catalog: %s", w)
        url = self.database_url or default_database_url(catalog.pool.database_url)
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(
            url, catalog, node_policy=self.node_policy or None, gpu_policy=self.gpu_policy or None
        )
        self.log.info("%s", self.ledger.schema.describe())
        for rid, why in self.ledger.orphans.items():
            self.log.warning("reservation %s kept but not placed: %s", rid, why)
        if hub_auth is None:
            from jupyterhub.services.auth import HubOAuth

            # tokens in API calls, and the hub's OAuth login for the pages
            hub_auth = HubOAuth(cache_max_age=self.auth_cache_seconds)
        ctx = PoolContext(catalog, self.ledger, hub_auth)
        self.alerts = Alerts(webhook=catalog.pool.alerts.webhook, log=self.log)
        hs = catalog.pool.health
        culler = IdleCuller(
            catalog.pool.culling,
            self.ledger,
            ctx.run,
            ctx.stop_server,
            stale_after=max(30.0, 5 * hs.probe_interval + hs.probe_timeout),
            log=self.log,
            ssh_activity=ctx.ssh.last_activity,
        )
        watchdog = SliceWatchdog(
            catalog.pool.slices,
            self.ledger,
            ctx.run,
            self.alerts,
            lambda r, by, reason: stop_and_release(ctx, r, by, reason),
        )
        self.monitor = Monitor(
            catalog,
            self.ledger,
            ctx.run,
            self.alerts,
            log=self.log,
            culler=culler,
            watchdog=watchdog,
        )
        ctx.monitor = self.monitor
        monitor = self.monitor

        def node_health(name: str) -> tuple[str, float | None]:
            h = monitor.nodes.get(name)
            return (h.state, h.down_since) if h is not None else ("unknown", None)

        self.dispatcher = Dispatcher(
            catalog,
            self.ledger,
            TrainingStore(self.ledger.engine),
            ctx.run,
            artifacts=Path(self.trainings_dir),
            node_health=node_health,
            hami_cache_root=self.hami_cache_root or None,
            log=self.log,
        )
        ctx.trainings = self.dispatcher
        self.log.info(
            "pool: %d nodes, %d GPUs, %d specs, %d active reservations, ledger %s, policies node=%s gpu=%s",
            len(catalog.nodes),
            sum(len(n.gpus) for n in catalog.nodes),
            len(catalog.specs),
            len(self.ledger.state.placements),
            self.ledger.engine.url.render_as_string(hide_password=True),
            self.ledger.node_policy,
            self.ledger.gpu_policy,
        )
        return web.Application(
            api_routes(self.prefix) + page_routes(self.prefix) + admin_routes(self.prefix),
            pool=ctx,
            prefix=self.prefix,
            # the hub's own pages and static files, for the pages' frame (gpupool/page.html)
            hub_prefix=os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/",
            hub_auth=hub_auth,
            cookie_secret=self._cookie_secret(),
            log_function=self._log_request,
        )

    def _cookie_secret(self) -> bytes:
        """Signs the pages' login cookie; kept in the state folder so a restart of the
        service does not log everyone out."""
        path = default_state_dir() / "pool_cookie_secret"
        try:
            return path.read_bytes()
        except OSError:
            path.parent.mkdir(parents=True, exist_ok=True)
            secret = os.urandom(32).hex().encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
            return secret

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = self.log.info if status < 400 else self.log.warning
        if status >= 500 and status != 503:
            level = self.log.error
        level(
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )

    async def serve(self) -> None:
        app = self.make_app()
        url = urlparse(self.bind_url)
        server = HTTPServer(app, xheaders=True, max_body_size=SERVER_MAX_BODY)
        server.listen(url.port or 80, url.hostname or "127.0.0.1")
        self.log.info(
            "gpupool pool service listening on %s%s", self.bind_url.rstrip("/"), self.prefix
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.watch_nodes:
            self.monitor.start()
            self.dispatcher.start()
        await stop.wait()
        server.stop()
        await self.dispatcher.stop()
        await self.monitor.stop()
        self.ledger.close()

    def start(self) -> None:
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    PoolService.launch_instance(argv)


if __name__ == "__main__":
    main()
