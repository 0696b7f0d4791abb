"""A training request, checked against the catalog and the caller: pure code.

Default-deny, as for spawns: the spec must be one the user may use, the image one of the
catalog's training images for that spec, the dataset one of the catalog's; nothing in a
request can choose a mount, an environment variable, a device or a privilege. Every
refusal names the field and what is allowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpupool.catalog.models import Catalog, Spec
from gpupool.job import TrainingError, check_command, check_graph, check_name, hyperparameters

FIELDS = {
    "name",
    "graph",
    "command",
    "dataset",
    "spec",
    "image",
    "hyperparameters",
    "priority",
    "max_run_time",
}
TRAINABLE = ("numpy", "csv", "image-folder")
MAX_PRIORITY = 10
MAX_META_BYTES = 64 * 1024  # of a graph's free-form meta, stored with the training


class QuotaRefusal(TrainingError):
    """The spec can never fit the user's quota (403, reason quota)."""


@dataclass(frozen=True)
class Submission:
    name: str
    kind: str
    spec: Spec
    image: str
    dataset: str | None
    priority: int
    max_run_seconds: int
    processes: int
    body: dict[str, Any]  # stored as the training's request

    def request_json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def check_request(
    data: dict[str, Any],
    catalog: Catalog,
    *,
    groups: frozenset[str],
    is_admin: bool,
    user: str = "",
) -> Submission:
    settings = catalog.pool.trainings
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise TrainingError(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}"
        )
    nulls = sorted(k for k, v in data.items() if v is None)
    if nulls:
        raise TrainingError(
            f"{', '.join(nulls)}: null is not allowed; leave a field out for its default"
        )
    has_graph, has_cmd = data.get("graph") is not None, data.get("command") is not None
    if has_graph == has_cmd:
        raise TrainingError("send either graph (a network to train) or command (a program to run)")
    allowed = catalog.usable_specs(user, groups, hub_admin=is_admin)  # the form's rule too
    slug = data.get("spec")
    spec = next((s for s in allowed if s.slug == slug), None)
    if spec is None:
        what = "is required" if slug is None else f"{slug!r} is not a spec you may use"
        raise TrainingError(f"spec {what}; allowed: {', '.join(s.slug for s in allowed) or 'none'}")
    images = catalog.training_images(spec)
    image_name = data.get("image")
    if image_name is None:
        if not images:
            raise TrainingError(
                f"spec {spec.slug} has no training image: the catalog needs an image with "
                "training: true that suits it"
            )
        image_name = images[0].name
    elif image_name not in {i.name for i in images}:
        raise TrainingError(
            f"image {image_name!r} cannot run trainings on {spec.slug}; allowed: "
            f"{', '.join(i.name for i in images) or 'none'}"
        )
    ds_name = data.get("dataset")
    dataset = None
    if ds_name is not None:
        dataset = next((d for d in catalog.datasets if d.name == ds_name), None)
        if dataset is None:
            names = ", ".join(d.name for d in catalog.datasets) or "none"
            raise TrainingError(f"dataset {ds_name!r} is not in the catalog; allowed: {names}")
    body: dict[str, Any] = {"hyperparameters": hyperparameters(data.get("hyperparameters"))}
    if has_graph:
        graph = check_graph(data["graph"])
        if dataset is None:
            raise TrainingError("dataset is required to train a graph")
        if dataset.format not in TRAINABLE:
            raise TrainingError(
                f"dataset {dataset.name} is {dataset.format}; a graph trains on "
                f"{', '.join(TRAINABLE)} datasets"
            )
        meta = len(json.dumps(data["graph"].get("meta") or {}, separators=(",", ":")))
        if meta > MAX_META_BYTES:
            raise TrainingError(
                f"graph.meta: the editor's view and notes take at most {MAX_META_BYTES} "
                f"bytes as JSON, got {meta}"
            )
        body["graph"] = data["graph"]
        default_name = graph.name or "network"
    else:
        body["command"] = check_command(data["command"])
        default_name = body["command"][0].rsplit("/", 1)[-1]
    name = check_name(data.get("name"), default_name[:100] or "training")
    top = MAX_PRIORITY if is_admin else settings.max_priority_user
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not -10 <= priority <= top:
        raise TrainingError(f"priority: an integer from -10 to {top}, got {priority!r}")
    run = data.get("max_run_time", settings.default_run_time)
    if (
        not isinstance(run, int | float)
        or isinstance(run, bool)
        or not 60 <= run <= settings.max_run_time
    ):
        raise TrainingError(
            f"max_run_time: seconds from 60 to {settings.max_run_time:g}, got {run!r}"
        )
    body["groups"] = sorted(groups)  # the quotas of the owner's groups apply at dispatch
    return Submission(
        name=name,
        kind="graph" if has_graph else "command",
        spec=spec,
        image=image_name,
        dataset=dataset.name if dataset else None,
        priority=priority,
        max_run_seconds=int(run),
        processes=max(1, spec.gpus),
        body=body,
    )


def check_quota(catalog: Catalog, owner: str, groups: frozenset[str], spec: Spec) -> None:
    """Refuse at once what the owner's quota can never allow (more GPUs at a time than it
    grants); what only the current use blocks waits in the queue instead."""
    quota, source = catalog.pool.quotas.for_user(owner, groups)
    who = f"quota of {source}" if source else "quota"
    if quota.gpus is not None and spec.gpus > quota.gpus:
        raise QuotaRefusal(
            f"over the {who}: at most {quota.gpus} GPU(s) at a time; {spec.display_name} "
            f"needs {spec.gpus}"
        )
