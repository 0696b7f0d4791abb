"""GpuPoolSpawner: JupyterLab in a HAMi-sliced container on a node that fits.

Start: validate the user's choice (spec, image) -> reserve through the pool service ->
pull the image on that node's engine per ``pull_policy`` (pull.py) -> create and start
the container there (container.py decides exactly what it gets, launcher.py makes it) ->
wait for JupyterLab. A failed start removes what it created and releases the
reservation. Stop removes the container and releases the reservation; the home volume
stays. The state (node, reservation, port, container) lets a restarted hub find its
servers again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Unicode, default

from .catalog import Catalog, Node, load_catalog
from .container import BRIDGE_PORT, ContainerPlan, build_container, server_container_name
from .engines import EngineUnreachable, shared_engines
from .form import OptionsError, allowed_specs, from_form, render_form, validate_options
from .launcher import create_and_start, prepare_node
from .networks import UnsafeNetwork
from .owners import OWNER, NotYours, remove_own_container
from .pool.state import GpuShare, describe_shares
from .poolclient import SpawnerPoolClient, SpawnerPoolError
from .pull import ImageUnavailable, ensure_image
from .refusals import CapacityError, ImageError, NameTaken, QuotaError, SettingRefused
from .settings_check import refused_settings

# After a call to a node's engine went unanswered, the hub's polls of servers there are
# answered "still running" without asking it for this long (then one asks again): with an
# engine that accepts connections and never replies, every poll would hold a thread for
# the client's whole timeout.
QUIET_NODE = 60.0


_catalogs: dict[str, tuple[float, Catalog]] = {}


def _catalog(directory: str) -> Catalog:
    """The catalog, re-read when a file in its folder changes."""
    mtime = max((p.stat().st_mtime for p in Path(directory).glob("*.yaml")), default=0.0)
    cached = _catalogs.get(directory)
    if cached is None or cached[0] != mtime:
        cached = (mtime, load_catalog(directory))
        _catalogs[directory] = cached
    return cached[1]


class GpuPoolSpawner(DockerSpawner):
    """Spawns each server on a pool node chosen by the pool service's scheduler."""

    catalog_dir = Unicode(
        help="""Folder with the gpupool catalogs (specs, images, nodes). Set by gpupool.hub.configure.""",
    ).tag(config=True)

    pool_api_url = Unicode(
        help="""URL of the pool service's API as the hub reaches it, e.g.
        http://127.0.0.1:8002/services/gpupool/api. Set by gpupool.hub.configure.""",
    ).tag(config=True)

    server_pool_api_url = Unicode(
        "",
        help="""URL of the pool service's API as users' servers reach it (through the
        proxy), given to each server as GPUPOOL_API_URL for its lab extension, CLI and
        widgets. Set by gpupool.hub.configure from GPUPOOL_PUBLIC_URL.""",
    ).tag(config=True)

    pool_api_token = Unicode(
        help="""Hub token of the service gpupool-spawner, which reserves on behalf of users.
        Set by gpupool.hub.configure; never shown to users.""",
    ).tag(config=True)

    hami_cache_root = Unicode(
        "",
        help="""Host folder (on every node) under which each sliced server gets its own
        HAMi-core shared-cache folder. Empty: 'containers/' beside the node's libvgpu.so,
        as HAMi's device plugin does.""",
    ).tag(config=True)

    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return 120

    @default("http_timeout")
    def _http_timeout_default(self) -> int:
        return 90

    @default("poll_interval")
    def _poll_interval_default(self) -> int:
        # the hub learns of a dead or removed container by polling; one inspect per server
        # every 15 s keeps a freed GPU and a stopped server in step within seconds
        return 15

    @default("remove")
    def _remove_default(self) -> bool:
        return True  # GPUs are placed anew at each start

    # -- state ---------------------------------------------------------------------
    node_name = Unicode("")
    reservation_id = Unicode("")
    reserved_port = 0

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.node_name = state.get("node", "")
        self.reservation_id = state.get("reservation", "")
        self.reserved_port = int(state.get("port") or 0)
        if state.get("container_name"):
            self.object_name = state["container_name"]

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.reservation_id:
            state.update(
                node=self.node_name,
                reservation=self.reservation_id,
                port=self.reserved_port,
                container_name=self.object_name,
            )
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.node_name = ""
        self.reservation_id = ""
        self.reserved_port = 0

    # -- plumbing ------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return _catalog(self.catalog_dir)

    @property
    def pool(self) -> SpawnerPoolClient:
        return SpawnerPoolClient(self.pool_api_url, self.pool_api_token)

    @property
    def node(self) -> Node:
        node = self.catalog.node(self.node_name)
        if node is None:
            raise RuntimeError(f"node {self.node_name!r} is no longer in the catalog")
        return node

    @property
    def client(self) -> Any:  # one client per node, never DockerSpawner's class-wide one
        return shared_engines().client(self.node)

    def docker(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return asyncio.ensure_future(shared_engines().call(self.node, method, *args, **kwargs))

    def _groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", [])]

    def _admin(self) -> bool:
        """Hub admin or pool admin: who may use every spec (Catalog.usable_specs)."""
        return bool(self.user.admin) or self.catalog.is_pool_admin(self.user.name, self._groups())

    # -- the form ------------------------------------------------------------------
    @default("options_form")
    def _options_form_default(self) -> Any:
        async def form(spawner: GpuPoolSpawner) -> str:
            catalog = spawner.catalog
            specs = allowed_specs(catalog, spawner._groups(), spawner._admin())
            try:
                fits = {s["slug"]: s["fits_now"] for s in await spawner.pool.specs()}
            except Exception as e:  # the form still renders; starting will explain
                spawner.log.warning("pool service unavailable for the form: %s", e)
                fits = {}
            simulated = {
                s.slug
                for s in specs
                if s.gpus
                and all(
                    n.gpu_runtime == "none"
                    for n in catalog.nodes
                    if any(s.matches_model(g.model) for g in n.gpus)
                )
            }
            return render_form(catalog, specs, fits, simulated)

        return form

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        """Checks the options before anything is reserved; a wrong or disallowed value
        answers 400 with what is allowed (the hub passes our HTTPError through)."""

        def apply(spawner: GpuPoolSpawner, options: dict[str, Any]) -> None:
            spawner._validated(options)

        return apply

    def _validated(self, options: dict[str, Any]) -> tuple[Any, Any]:
        try:
            return validate_options(options, self.catalog, self._groups(), self._admin())
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None

    @default("options_from_form")
    def _options_from_form_default(self) -> Any:
        return lambda formdata: from_form(formdata)

    # -- progress --------------------------------------------------------------------
    def _event(self, progress: int, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})

    async def progress(self) -> Any:
        sent = 0
        while True:
            events = getattr(self, "_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            if not self._spawn_pending and sent >= len(events):
                return
            await asyncio.sleep(0.25)

    # -- lifecycle -----------------------------------------------------------------
    _in_start = False
    _no_container_yet = False  # a start that has not asked the engine for its container

    async def start(self) -> tuple[str, int]:  # type: ignore[override]
        self._in_start = True
        try:
            return await self._start()
        finally:
            self._in_start = False

    async def _start(self) -> tuple[str, int]:
        self._events: list[dict[str, Any]] = []
        refused = refused_settings(self.config)
        if refused:
            message = "the hub's configuration needs a change: " + "; ".join(refused)
            self.log.error("%s: %s", self._log_name, message)
            self._event(100, message)
            raise SettingRefused(message)
        t0 = time.monotonic()
        spec, image = self._validated(self.user_options or {})
        name = server_container_name(self.user.name, self.name)
        # DockerSpawner re-renders object_name whenever image changes: image first
        self.image = image.reference
        self.object_name = name
        self._event(10, f"reserving {spec.display_name}")
        # named before asking: a start cancelled (or timed out) while the pool's answer is
        # under way still frees what the pool may have reserved
        self.reservation_id = "r-" + secrets.token_hex(8)
        self._no_container_yet = True
        try:
            res = await self._reserve(spec, name)
            node = await self._place(res, spec, image)
        except BaseException:
            await self._undo_start()
            raise
        self.log.info("%s placed in %.2fs", self._log_name, time.monotonic() - t0)
        return (node.address, self.reserved_port)

    async def _reserve(self, spec: Any, name: str) -> dict[str, Any]:
        try:
            return await self.pool.reserve(
                owner=self.user.name,
                spec=spec.slug,
                server_name=self.name,
                container=name,
                rid=self.reservation_id,
            )
        except SpawnerPoolError as e:
            if e.status == 403 and e.body.get("reason") == "quota":
                self._event(100, e.body.get("message", "over quota"))
                raise QuotaError(e.body.get("message", "over quota")) from None
            if e.status == 503:
                self._event(100, e.body.get("message", "no capacity"))
                raise CapacityError(
                    e.body.get("message", "no capacity"), e.body.get("nodes")
                ) from None
            raise

    async def _place(self, res: dict[str, Any], spec: Any, image: Any) -> Node:
        """Create and start the container for the reservation ``res``."""
        self.node_name, self.reservation_id, self.reserved_port = (
            res["node"],
            res["id"],
            int(res["port"]),
        )
        gpus = tuple(
            GpuShare(g["uuid"], g["index"], g["memory_mib"], g["sm"], g["whole"])
            for g in res["gpus"]
        )
        self._event(
            30, f"reserved {describe_shares(gpus, spec.gpu_sm_percent)} on {self.node_name}"
        )
        node = self.node
        # the spec's limits are the server's (Spawner.get_env passes them on as MEM_LIMIT
        # and CPU_LIMIT, which jupyter-resource-usage shows); the container enforces them
        self.mem_limit = spec.memory_mib * 1024 * 1024
        self.cpu_limit = spec.cpu_millicores / 1000
        self.mem_guarantee = spec.memory_reserved * 1024 * 1024  # MEM_GUARANTEE
        self.cpu_guarantee = spec.cpu_reserved / 1000  # CPU_GUARANTEE
        host_network = node.network == "host"
        self.ip = node.address if host_network else "0.0.0.0"
        self.port = self.reserved_port if host_network else BRIDGE_PORT
        try:  # the home volume, and the user network on a bridge-networked node
            home = await prepare_node(shared_engines(), node, self.user.name)
        except NotYours as e:
            self._event(100, str(e))
            raise NameTaken(str(e)) from None
        except UnsafeNetwork as e:
            self._event(100, str(e))
            raise web.HTTPError(503, str(e)) from None
        await self.pull_image(image.reference)  # first: get_command reads the image
        plan = build_container(
            user=self.user.name,
            home=home,
            server=self.name,
            spec=spec,
            image=image,
            node=node,
            reservation_id=self.reservation_id,
            gpus=gpus,
            hub_env=self.get_env(),
            port=self.reserved_port,
            command=await self.get_command(),
            cache_root=self.hami_cache_root or None,
            pool_url=self.server_pool_api_url,
            datasets=self.catalog.datasets,
        )
        self._event(50, f"creating the container on {node.name} from {image.name}")
        await self._create(node, plan)
        self._event(70, "waiting for JupyterLab")
        try:
            await self.pool.started(self.reservation_id, self.object_id)
        except SpawnerPoolError as e:  # the reconciler still finds it; only slower to notice loss
            self.log.warning("%s: could not report the container: %s", self._log_name, e)
        return node

    async def pull_image(self, image: str) -> None:
        """DockerSpawner's pull, per its ``pull_policy``, on the reserved node's engine;
        its progress (31 % to 48 %) is the spawn page's, once a second at most."""

        def report(message: str, fraction: float) -> None:
            self._event(31 + int(17 * min(max(fraction, 0.0), 1.0)), message)

        try:
            await ensure_image(shared_engines(), self.node, image, self.pull_policy, report)
        except ImageUnavailable as e:
            self._event(100, str(e))
            raise ImageError(str(e)) from None

    async def _create(self, node: Node, plan: ContainerPlan) -> None:
        def creating() -> None:
            self._no_container_yet = False  # from here on a container may exist

        def created(cid: str) -> None:
            self.object_id = cid

        try:  # a container left by a crashed start is replaced only when it is ours
            await create_and_start(
                shared_engines(), node, plan, self.user.name, creating=creating, created=created
            )
        except NotYours as e:
            self._event(100, str(e))
            raise NameTaken(str(e)) from None

    async def _undo_start(self) -> None:
        """Remove what a failed start created and give the GPUs back; where the container
        may still run (its engine did not answer), the pool finishes that later."""
        if await self._remove_container("a failed start"):
            if self.reservation_id:
                try:
                    await self.pool.release(self.reservation_id)
                except Exception:
                    self.log.exception(
                        "could not release %s after a failed start", self.reservation_id
                    )
        self.clear_state()

    async def _remove_container(self, why: str) -> bool:
        """Remove this server's container. False when it may still run: the engine did not
        answer or refused; the reservation is then left to the pool with a pending stop
        (its reconciler removes the container and frees the GPUs when the node answers)."""
        if not (self.node_name and self.object_name):
            return True  # nothing was placed
        try:
            await remove_own_container(
                shared_engines(), self.node, self.object_name, self.user.name
            )
            return True
        except NotYours as e:  # ours is gone; never remove another's
            self.log.error("%s: %s", self._log_name, e)
            return True
        except Exception as e:  # EngineUnreachable, an engine error: it may still run
            if self._no_container_yet:
                return True  # never asked for: nothing carries this reservation's label
            self.log.warning(
                "%s: could not remove %s on %s (%s); the pool stops it when the node answers",
                self._log_name, self.object_name, self.node_name, e,
            )  # fmt: skip
        if self.reservation_id:
            reason = f"{why}: removed when node {self.node_name} answered again"
            for wait in (1, 2, 4, 0):  # the pool restarting: tried for a few seconds
                try:
                    await self.pool.stop_pending(self.reservation_id, reason)
                    break
                except Exception:
                    if not wait:
                        # the hub forgets the server; its reservation stays active and
                        # the container (if any) runs on: an admin must look
                        self.log.exception(
                            "%s: could not leave the stop of %s to the pool; it stays held",
                            self._log_name, self.reservation_id,
                        )  # fmt: skip
                    await asyncio.sleep(wait)
        return False

    async def poll(self) -> int | str | None:  # type: ignore[override]
        if self._in_start:
            # start() still under way (the hub polls a spawn slower than slow_spawn_timeout):
            # its container may not exist yet, which is not the server dying
            return None
        if not self.node_name or not self.object_name:
            return 0
        if not shared_engines().answering(self.node, within=QUIET_NODE):
            # the node's engine did not answer lately: assume the server runs (as on any
            # unanswered call) without a call that would hold a thread for the timeout
            return None
        try:
            info = await self.docker("inspect_container", self.object_name)
        except NotFound:
            return 0
        except EngineUnreachable as e:
            # an engine that does not answer is not proof that the container is gone
            self.log.warning("%s: %s; assuming the server still runs", self._log_name, e)
            return None
        except APIError as e:
            self.log.warning(
                "%s: engine error %s; assuming the server still runs", self._log_name, e
            )
            return None
        if (info.get("Config") or {}).get("Labels", {}).get(OWNER) != self.user.name:
            return 0  # another's container at this name: ours is gone
        state = info["State"]
        if state.get("Running"):
            return None
        return f"ExitCode={state.get('ExitCode')}, Error={state.get('Error')!r}"

    async def stop(self, now: bool = False) -> None:  # type: ignore[override]
        if await self._remove_container("stopped by the hub") and self.reservation_id:
            await self.pool.release(self.reservation_id)
        self.clear_state()
