"""The catalog as typed, immutable objects. Sizes are MiB, CPU is millicores."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Literal

GpuRuntime = Literal["nvidia", "cdi", "none"]
Policy = Literal["binpack", "spread"]
POLICIES: tuple[str, ...] = ("binpack", "spread")


@dataclass(frozen=True)
class Spec:
    """What a user asks for: "1 x A100, 20 GiB slice, 30 % of the SMs, 8 CPU, 32 GiB RAM".

    In HAMi's Kubernetes terms: ``gpus`` is nvidia.com/gpu, ``gpu_memory_mib`` is
    nvidia.com/gpumem (per GPU), ``gpu_sm_percent`` is nvidia.com/gpucores.
    """

    slug: str
    display_name: str
    description: str = ""
    gpus: int = 0
    gpu_models: tuple[str, ...] = ()  # case-insensitive substrings; empty = any model
    gpu_memory_mib: int | None = None  # None = whole cards
    gpu_sm_percent: int | None = None  # None = no compute limit
    cpu_millicores: int = 1000  # the limit
    memory_mib: int = 1024  # the limit
    disk_mib: int | None = None
    price_per_hour: float = 0.0
    groups: tuple[str, ...] = ()  # empty = everyone
    images: tuple[str, ...] = ()  # empty = every image that suits the spec
    cpu_guarantee_millicores: int | None = None  # reserved on the node; None = the limit
    memory_guarantee_mib: int | None = None  # reserved on the node; None = the limit

    @property
    def cpu_reserved(self) -> int:
        """CPU the scheduler books on a node: the guarantee (KubeSpawner's cpu_guarantee)."""
        return self.cpu_guarantee_millicores or self.cpu_millicores

    @property
    def memory_reserved(self) -> int:
        return self.memory_guarantee_mib or self.memory_mib

    @property
    def slice(self) -> bool:
        return self.gpus > 0 and self.gpu_memory_mib is not None

    @property
    def whole_cards(self) -> bool:
        return self.gpus > 0 and self.gpu_memory_mib is None

    def matches_model(self, model: str) -> bool:
        if not self.gpu_models:
            return True
        low = model.lower()
        return any(f.lower() in low for f in self.gpu_models)

    def allowed_for(self, groups: frozenset[str] | set[str], is_admin: bool = False) -> bool:
        return is_admin or not self.groups or bool(set(self.groups) & set(groups))

    def kubernetes_resources(self) -> dict[str, int]:
        """The same request in HAMi's Kubernetes resource names (per container)."""
        res: dict[str, int] = {
            "cpu_millicores": self.cpu_millicores,
            "memory_mib": self.memory_mib,
        }
        if self.gpus:
            res["nvidia.com/gpu"] = self.gpus
            if self.gpu_memory_mib is not None:
                res["nvidia.com/gpumem"] = self.gpu_memory_mib
            if self.gpu_sm_percent is not None:
                res["nvidia.com/gpucores"] = self.gpu_sm_percent
        return res


@dataclass(frozen=True)
class Image:
    name: str
    reference: str
    description: str = ""
    gpu: bool = True
    slicing: bool = True
    training: bool = False  # has gpupool-train and PyTorch: may run trainings


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    model: str
    memory_mib: int


@dataclass(frozen=True)
class Tls:
    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Agent:
    """Where the node's gpupool-agent answers, and the token it wants."""

    url: str
    token_file: str
    ca: str | None = None

    def token(self) -> str:
        with open(self.token_file) as f:
            return f.read().strip()


@dataclass(frozen=True)
class Node:
    name: str
    engine: str
    cpu_millicores: int
    memory_mib: int
    address: str = "127.0.0.1"
    tls: Tls | None = None
    network: Literal["host", "bridge"] = "bridge"
    gpu_runtime: GpuRuntime = "nvidia"
    hami_core: str = "/usr/local/vgpu/libvgpu.so"
    disk_mib: int | None = None
    #: the engine's storage driver limits a container's writable layer (storage-opt size):
    #: overlay2 on xfs mounted with pquota, btrfs, zfs. Off: a spec's disk is booked only.
    disk_quota: bool = False
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    gpus: tuple[Gpu, ...] = ()
    ports: tuple[int, int] = (
        20000,
        29999,
    )  # servers' ports on this node (host) or published (bridge)
    agent: Agent | None = None
    cpu_overcommit: float = 1.0  # guarantees may add up to cpu x this
    memory_overcommit: float = 1.0

    @property
    def cpu_schedulable(self) -> int:
        """Millicores of guarantees the node takes: its CPU times its overcommit."""
        return int(self.cpu_millicores * self.cpu_overcommit)

    @property
    def memory_schedulable(self) -> int:
        return int(self.memory_mib * self.memory_overcommit)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    format: str
    description: str = ""
    read_only: bool = True


@dataclass(frozen=True)
class Access:
    admin_users: tuple[str, ...] = ()
    admin_groups: tuple[str, ...] = ()
    observer_users: tuple[str, ...] = ()
    observer_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quota:
    """Limits for one user or group; None = no limit."""

    gpus: int | None = None
    gpu_memory_mib: int | None = None
    gpu_hours_per_month: float | None = None
    cpu_millicores: int | None = None  # CPU held at once, CPU-only specs included
    memory_mib: int | None = None  # RAM held at once
    reservations: int | None = None  # servers and trainings running at once

    @staticmethod
    def _max(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else max(a, b)

    def most_generous(self, other: Quota) -> Quota:
        return Quota(
            **{
                f.name: self._max(getattr(self, f.name), getattr(other, f.name))
                for f in fields(Quota)
            }
        )

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(Quota))

    @property
    def holds(self) -> bool:
        """Limits what is held at once (beyond GPUs): checked for every spec."""
        return any(v is not None for v in (self.cpu_millicores, self.memory_mib, self.reservations))


@dataclass(frozen=True)
class Quotas:
    default: Quota | None = None
    groups: dict[str, Quota] = field(default_factory=dict, hash=False, compare=False)
    users: dict[str, Quota] = field(default_factory=dict, hash=False, compare=False)

    def for_user(self, name: str, groups: frozenset[str] | set[str]) -> tuple[Quota, str]:
        """The quota that applies to a user and where it comes from ('user alice',
        'group students', 'default', 'none')."""
        if name in self.users:
            return self.users[name], f"user {name}"
        mine = sorted(g for g in groups if g in self.groups)
        if mine:
            q = self.groups[mine[0]]
            for g in mine[1:]:
                q = q.most_generous(self.groups[g])
            return q, "group " + ", ".join(mine)
        if self.default is not None:
            return self.default, "default"
        return Quota(), "none"


@dataclass(frozen=True)
class HealthSettings:
    """How the pool watches its nodes (seconds). A node is down after ``down_after``
    probes in a row that its engine or agent did not answer; probes of a down node back
    off up to ``max_backoff``."""

    probe_interval: float = 2.0
    probe_timeout: float = 2.0
    down_after: int = 2
    max_backoff: float = 15.0
    fan_out: int = 16
    reconcile_interval: float = 30.0
    orphan_grace: float = 300.0
    start_grace: float = 900.0
    history: int = 300


@dataclass(frozen=True)
class CullingSettings:
    """The expensive kind of idle: a server whose GPUs showed no utilization (at most
    ``busy_percent``) for ``gpu_idle_timeout`` seconds is stopped by the pool, after a
    notice ``warn_before`` seconds ahead. 0 turns it off. ``server_idle_timeout`` runs
    jupyterhub-idle-culler for the cheap kind: no activity in the lab. With
    ``count_ssh`` an SSH session that carries work counts as use of the server's GPUs:
    someone is at it (gpupool.pool.ssh_sessions)."""

    gpu_idle_timeout: float = 0.0
    server_idle_timeout: float = 0.0
    warn_before: float = 900.0
    busy_percent: int = 1
    count_ssh: bool = True

    @property
    def enabled(self) -> bool:
        return self.gpu_idle_timeout > 0


@dataclass(frozen=True)
class SliceSettings:
    """The slice watchdog (gpupool.pool.watchdog): a reservation's processes over their
    share of a GPU by more than ``tolerance_mib`` are stopped after ``grace`` seconds."""

    enforce: bool = True
    grace: float = 60.0
    tolerance_mib: int = 256


@dataclass(frozen=True)
class TrainingSettings:
    """The trainings queue (see gpupool.pool.trainings.queue) and dispatcher."""

    per_user_running: int = 2  # trainings of one user running at once
    aging_seconds: float = 1800.0  # waiting this long raises the priority by one
    hold_after: float = 900.0  # a training waiting this long for capacity holds those behind
    max_attempts: int = 3  # starts of one training (the first and the retries)
    default_run_time: float = 86400.0
    max_run_time: float = 7 * 86400.0
    requeue_after: float = 60.0  # a training on a node down this long is resumed elsewhere
    poll_interval: float = 2.0
    fair_share_days: float = 7.0
    max_checkpoint_mib: int = 4096  # larger checkpoints stay in the home folder only
    max_log_mib: int = 16
    max_priority_user: int = 0  # users may ask for at most this priority; admins up to 10
    per_user_queued: int = 100  # trainings of one user waiting at once; more are refused (429)


@dataclass(frozen=True)
class LimitSettings:
    """Per-user bounds on the pool API: writes (POST, DELETE) per minute with a burst; over
    them a user gets 429 with Retry-After. The hub's own services and pool admins are not limited."""

    writes_per_minute: float = 60.0
    write_burst: int = 20


@dataclass(frozen=True)
class AlertSettings:
    webhook: str | None = None
    gpu_temperature: int = 85


@dataclass(frozen=True)
class PoolSettings:
    node_policy: Policy = "binpack"
    gpu_policy: Policy = "binpack"
    database_url: str | None = None
    access: Access = field(default_factory=Access)
    health: HealthSettings = field(default_factory=HealthSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    culling: CullingSettings = field(default_factory=CullingSettings)
    slices: SliceSettings = field(default_factory=SliceSettings)
    quotas: Quotas = field(default_factory=Quotas)
    trainings: TrainingSettings = field(default_factory=TrainingSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


@dataclass(frozen=True)
class Catalog:
    directory: str
    specs: tuple[Spec, ...]
    images: tuple[Image, ...]
    nodes: tuple[Node, ...]
    datasets: tuple[Dataset, ...]
    pool: PoolSettings
    warnings: tuple[str, ...] = ()

    def spec(self, slug: str) -> Spec | None:
        return next((s for s in self.specs if s.slug == slug), None)

    def disk_enforced(self, spec: Spec) -> bool:
        """Every node the spec can land on limits its disk (Node.disk_quota)."""
        hosts = [
            n
            for n in self.nodes
            if not spec.gpus or any(spec.matches_model(g.model) for g in n.gpus)
        ]
        return bool(hosts) and all(n.disk_quota for n in hosts)

    def is_pool_admin(self, user: str, groups: Iterable[str]) -> bool:
        a = self.pool.access
        return user in a.admin_users or bool(set(groups) & set(a.admin_groups))

    def usable_specs(
        self, user: str, groups: Iterable[str], *, hub_admin: bool = False
    ) -> tuple[Spec, ...]:
        """The one rule for who may use a spec, for the form, the API and trainings: a
        spec with ``groups`` is open to their members and to admins (hub admins, and the
        pool admins pool.yaml names). Observers see every spec; they use only their own."""
        g = set(groups)
        admin = hub_admin or self.is_pool_admin(user, g)
        return tuple(s for s in self.specs if s.allowed_for(g, admin))

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def training_images(self, spec: Spec) -> tuple[Image, ...]:
        """Images that may run a training on this spec (``training: true`` ones)."""
        return tuple(i for i in self.images_for(spec) if i.training)

    def images_for(self, spec: Spec) -> tuple[Image, ...]:
        """Images a spec may run: those it names, else those whose kind suits it."""
        if spec.images:
            return tuple(i for i in self.images if i.name in spec.images)
        return tuple(
            i for i in self.images if (i.gpu or spec.gpus == 0) and (i.slicing or not spec.slice)
        )
