"""Load and check the catalog folder (``GPUPOOL_CONFIG_DIR``, default ``hub_config/``).

Every problem becomes one line: ``<file>: <entry>: <key>: what is wrong; what is allowed``.
All problems of a folder are reported together, so a fix-and-retry loop is short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .entries import Checker, build_nodes, build_specs
from .folder import CatalogError, config_dir, read_folder
from .models import (
    Access,
    AlertSettings,
    Catalog,
    CullingSettings,
    Dataset,
    HealthSettings,
    Image,
    LimitSettings,
    PoolSettings,
    Quota,
    Quotas,
    SliceSettings,
    TrainingSettings,
)


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Read and check a catalog folder; raise CatalogError listing every problem."""
    directory = Path(directory) if directory is not None else config_dir()
    docs, problems = read_folder(directory)
    ck = Checker()
    ck.problems.extend(problems)
    images = [
        Image(
            name=im["name"],
            reference=im["reference"],
            description=im.get("description", ""),
            gpu=im.get("gpu", True),
            slicing=im.get("slicing", True),
            training=im.get("training", False),
        )
        for im in docs.get("images.yaml", {}).get("images", [])
    ]
    ck.unique("images.yaml", "image", (i.name for i in images))
    nodes = build_nodes(docs.get("nodes.yaml", {}), ck, directory)
    # a broken images.yaml is reported once, not again for every spec that names an image
    images_ok = "images.yaml" in docs or not (directory / "images.yaml").exists()
    specs = build_specs(docs.get("specs.yaml", {}), ck, images, nodes, images_ok)
    datasets = [
        Dataset(
            name=d["name"],
            path=d["path"],
            format=d["format"],
            description=d.get("description", ""),
            read_only=d.get("read_only", True),
        )
        for d in docs.get("datasets.yaml", {}).get("datasets", [])
    ]
    for i, d in enumerate(datasets):
        if ".." in Path(d.path).parts:
            ck.problems.append(
                f"datasets.yaml: datasets[{i}] (name '{d.name}'): path: must not contain '..'"
            )
    ck.unique("datasets.yaml", "dataset", (d.name for d in datasets))
    pool_doc = docs.get("pool.yaml", {})
    sched = pool_doc.get("scheduler", {})
    admins, observers = pool_doc.get("admins", {}), pool_doc.get("observers", {})
    health = HealthSettings(**pool_doc.get("health", {}))
    if health.probe_timeout > health.probe_interval * 5:
        ck.problems.append(
            f"pool.yaml: health.probe_timeout: {health.probe_timeout} s is more than five "
            f"probe intervals ({health.probe_interval} s); a slow engine would hold the probes up"
        )
    culling = CullingSettings(**pool_doc.get("culling", {}))
    if culling.enabled and culling.warn_before >= culling.gpu_idle_timeout:
        ck.problems.append(
            f"pool.yaml: culling.warn_before: {culling.warn_before:g} s must be less than "
            f"culling.gpu_idle_timeout ({culling.gpu_idle_timeout:g} s): the notice comes "
            "before the stop"
        )
    trainings = TrainingSettings(**pool_doc.get("trainings", {}))
    if trainings.default_run_time > trainings.max_run_time:
        ck.problems.append(
            f"pool.yaml: trainings.default_run_time: {trainings.default_run_time:g} s is more "
            f"than trainings.max_run_time ({trainings.max_run_time:g} s)"
        )
    qdoc = pool_doc.get("quotas", {})

    def quota(where: str, q: dict[str, Any]) -> Quota:
        return Quota(
            gpus=q.get("gpus"),
            gpu_memory_mib=ck.size(f"pool.yaml: {where}.gpu_memory", q["gpu_memory"])
            if "gpu_memory" in q
            else None,
            gpu_hours_per_month=q.get("gpu_hours_per_month"),
            cpu_millicores=round(q["cpu"] * 1000) if "cpu" in q else None,
            memory_mib=ck.size(f"pool.yaml: {where}.memory", q["memory"])
            if "memory" in q
            else None,
            reservations=q.get("reservations"),
        )

    quotas = Quotas(
        default=quota("quotas.default", qdoc["default"]) if "default" in qdoc else None,
        groups={g: quota(f"quotas.groups.{g}", q) for g, q in qdoc.get("groups", {}).items()},
        users={u: quota(f"quotas.users.{u}", q) for u, q in qdoc.get("users", {}).items()},
    )
    pool = PoolSettings(
        quotas=quotas,
        health=health,
        alerts=AlertSettings(**pool_doc.get("alerts", {})),
        culling=culling,
        slices=SliceSettings(**pool_doc.get("slices", {})),
        trainings=trainings,
        limits=LimitSettings(**pool_doc.get("limits", {})),
        node_policy=sched.get("node_policy", "binpack"),
        gpu_policy=sched.get("gpu_policy", "binpack"),
        database_url=pool_doc.get("database_url"),
        access=Access(
            admin_users=tuple(admins.get("users", ())),
            admin_groups=tuple(admins.get("groups", ())),
            observer_users=tuple(observers.get("users", ())),
            observer_groups=tuple(observers.get("groups", ())),
        ),
    )
    if ck.problems:
        raise CatalogError(ck.problems)
    return Catalog(
        directory=str(directory),
        specs=tuple(specs),
        images=tuple(images),
        nodes=tuple(nodes),
        datasets=tuple(datasets),
        pool=pool,
        warnings=tuple(ck.warnings),
    )
