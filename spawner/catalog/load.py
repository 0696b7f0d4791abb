"""Load and check the catalog folder (``GPUPOOL_CONFIG_DIR``, default ``hub_config/``).

Every problem becomes one line: ``<file>: <entry>: <key>: what is wrong; what is allowed``.
All problems of a folder are reported together, so a fix-and-retry loop is short.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import yaml

from .models import (
    Access,
    Agent,
    AlertSettings,
    Catalog,
    CullingSettings,
    Dataset,
    Gpu,
    HealthSettings,
    Image,
    LimitSettings,
    Node,
    PoolSettings,
    Quota,
    Quotas,
    SliceSettings,
    Spec,
    Tls,
    TrainingSettings,
)
from .schema import FILES, REQUIRED_FILES, SLUG_HELP
from .units import parse_size_mib

#: Where the catalog is when GPUPOOL_CONFIG_DIR is not set: ``hub_config/`` in the working
#: directory, as JupyterHub looks for ``jupyterhub_config.py`` there (in a checkout, its own).
DEFAULT_DIR = Path("hub_config")
#: What ``gpupool init DIR`` writes: ``hub_config/`` packaged as ``gpupool/catalog/starter``
#: by the wheel's build (setup.py); an editable install reads the checkout's folder itself.
_STARTER_DIRS = (
    Path(__file__).resolve().parent / "starter",
    Path(__file__).resolve().parents[2] / "hub_config",
)
#: Linux's default net.ipv4.ip_local_port_range: a node's server ports should stay out of it
LINUX_EPHEMERAL_PORTS = (32768, 60999)


class CatalogError(ValueError):
    """The catalog folder has problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid gpupool catalog:\n  " + "\n  ".join(problems))


def config_dir() -> Path:
    return Path(os.environ.get("GPUPOOL_CONFIG_DIR") or DEFAULT_DIR)


def starter_dir() -> Path:
    """The starter catalog this installation ships (the demo node and specs of hub_config/)."""
    for d in _STARTER_DIRS:
        if (d / "specs.yaml").is_file() and (d / "nodes.yaml").is_file():
            return d
    raise CatalogError([f"no starter catalog in this installation (looked in {_STARTER_DIRS[0]})"])


def _entry_name(top: str | None, path: list[Any], doc: Any) -> str:
    """'specs[2] (slug a100-20g)' for a path into a list of entries."""
    if top is None or len(path) < 2 or path[0] != top or not isinstance(path[1], int):
        return ""
    i = path[1]
    label = ""
    try:
        item = doc[top][i]
        key = "slug" if top == "specs" else "name"
        if isinstance(item, dict) and isinstance(item.get(key), str):
            label = f" ({key} '{item[key]}')"
    except (IndexError, KeyError, TypeError):
        pass
    return f"{top}[{i}]{label}"


def _key_path(top: str | None, path: list[Any]) -> str:
    rest = path[2:] if top is not None and len(path) >= 2 and path[0] == top else path
    out = ""
    for p in rest:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err: jsonschema.ValidationError) -> str:
    v, schema, inst = err.validator, err.schema, err.instance
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, dict) else []
        keys = ", ".join(repr(k) for k in extra)
        return f"unknown key {keys}; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"{err.message.split(' is a required')[0]} is required"
    if v == "enum":
        return f"{inst!r} is not allowed; allowed: {', '.join(map(str, schema['enum']))}"
    if v == "pattern":
        if schema["pattern"].startswith("^[a-z0-9]("):
            return f"{inst!r} is not a valid name; use {SLUG_HELP}"
        if schema["pattern"] == "^/":
            return f"{inst!r} must be an absolute path"
        return f"{inst!r} does not have the expected form ({schema.get('description') or schema['pattern']})"
    if v == "type":
        return f"must be {schema['type']}, got {inst!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[v]
        return f"{inst!r} is out of range; must be {word} {schema[v]}"
    if v == "minLength":
        return "must not be empty"
    if v == "anyOf":
        return f"{inst!r} is not allowed; {schema.get('description', 'see the schema')}"
    return err.message


def _schema_problems(fname: str, top: str | None, doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        where = [fname]
        entry = _entry_name(top, path, doc)
        if entry:
            where.append(entry)
        key = _key_path(top, path)
        if key:
            where.append(key)
        out.append(": ".join([*where, _describe(err)]))
    return out


def _read(directory: Path) -> tuple[dict[str, Any], list[str]]:
    docs: dict[str, Any] = {}
    problems: list[str] = []
    if not directory.is_dir():
        return {}, [
            f"{directory}: catalog folder not found (set GPUPOOL_CONFIG_DIR to a folder with "
            f"specs.yaml and nodes.yaml; `gpupool init {directory}` writes a starter one)"
        ]
    for path in sorted(directory.glob("*.y*ml")):
        if path.name not in FILES:
            problems.append(f"{path.name}: unknown catalog file; allowed files: {', '.join(FILES)}")
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            problems.append(f"{path.name}:{line}: not valid YAML: {getattr(e, 'problem', e)}")
            continue
        top, schema = FILES[path.name]
        if not isinstance(doc, dict):
            want = f"a mapping with the key '{top}'" if top else "a mapping"
            problems.append(f"{path.name}: must be {want}, got {type(doc).__name__}")
            continue
        found = _schema_problems(path.name, top, doc, schema)
        problems.extend(found)
        if not found:
            docs[path.name] = doc
    for name in REQUIRED_FILES:
        if not (directory / name).exists():
            problems.append(
                f"{name}: missing from {directory}; a catalog needs {' and '.join(REQUIRED_FILES)}"
            )
    return docs, problems


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def size(self, where: str, value: Any) -> int:
        try:
            return parse_size_mib(value)
        except ValueError as e:
            self.problems.append(f"{where}: {e}")
            return 0

    def unique(self, fname: str, kind: str, names: Iterable[str]) -> None:
        seen: set[str] = set()
        for n in names:
            if n in seen:
                self.problems.append(
                    f"{fname}: {kind} '{n}' is defined twice; names must be unique"
                )
            seen.add(n)


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _nodes(doc: dict[str, Any], ck: _Checker, directory: Path) -> list[Node]:
    nodes = []
    uuids: dict[str, str] = {}
    for i, n in enumerate(doc.get("nodes", [])):
        where = f"nodes.yaml: nodes[{i}] (name '{n['name']}')"
        gpus = []
        for j, g in enumerate(n.get("gpus", [])):
            gw = f"{where}: gpus[{j}]"
            if g["uuid"] in uuids:
                ck.problems.append(
                    f"{gw}: uuid {g['uuid']} is also on node '{uuids[g['uuid']]}'; GPU UUIDs are unique"
                )
            uuids[g["uuid"]] = n["name"]
            gpus.append(
                Gpu(g["index"], g["uuid"], g["model"], ck.size(f"{gw}: memory", g["memory"]))
            )
        indexes = [g.index for g in gpus]
        if len(set(indexes)) != len(indexes):
            ck.problems.append(
                f"{where}: gpus: index values repeat ({indexes}); each GPU has its own index"
            )
        url = urlparse(n["engine"])
        tls = None
        if "tls" in n:
            files = {}
            for k in ("ca", "cert", "key"):
                p = Path(n["tls"][k])
                p = p if p.is_absolute() else directory / p
                if not p.is_file():
                    ck.problems.append(f"{where}: tls.{k}: file {p} not found")
                files[k] = str(p)
            tls = Tls(**files)
        elif url.scheme == "tcp":
            # loopback too: every process of the host, a host-network container among them,
            # reaches it, and an engine is root on its node
            where_to = "on this host" if _loopback(url.hostname) else "to another host"
            ck.problems.append(
                f"{where}: engine {n['engine']} is TCP {where_to} without tls; add tls: "
                "{ca, cert, key} (deploy/engine-tls.sh makes them), or use its unix socket: "
                "an engine without TLS is root on the node for anything that can connect"
            )
        ports = (20000, 29999)
        if "ports" in n:
            lo, hi = (int(x) for x in n["ports"].split("-"))
            if not 1024 <= lo <= hi <= 65535:
                ck.problems.append(
                    f"{where}: ports: '{n['ports']}' must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535"
                )
            ports = (lo, hi)
            e_lo, e_hi = LINUX_EPHEMERAL_PORTS
            if lo <= e_hi and hi >= e_lo:
                ck.warnings.append(
                    f"{where}: ports: '{n['ports']}' overlaps {e_lo}-{e_hi}, where Linux picks "
                    "the local ports of outgoing connections (net.ipv4.ip_local_port_range): a "
                    "server can find its port taken and fail to start; use ports below "
                    f"{e_lo} (the default is 20000-29999) or move the node's range"
                )
        runtime = n.get("gpu_runtime", "nvidia")
        agent = None
        if "agent" in n:
            a = n["agent"]
            files = {}
            for k in ("token_file", "ca"):
                if k not in a:
                    continue
                p = Path(a[k])
                p = p if p.is_absolute() else directory / p
                if not p.is_file():
                    ck.problems.append(f"{where}: agent.{k}: file {p} not found")
                files[k] = str(p)
            agent_url = urlparse(a["url"])
            if agent_url.scheme == "http" and not _loopback(agent_url.hostname):
                ck.warnings.append(
                    f"{where}: agent {a['url']} is plain http to another host; its token "
                    "crosses the network in clear (use https with agent.ca, or a private network)"
                )
            agent = Agent(url=a["url"].rstrip("/"), **files)
        nodes.append(
            Node(
                name=n["name"],
                engine=n["engine"],
                cpu_millicores=round(n["cpu"] * 1000),
                memory_mib=ck.size(f"{where}: memory", n["memory"]),
                cpu_overcommit=float(n.get("overcommit", {}).get("cpu", 1.0)),
                memory_overcommit=float(n.get("overcommit", {}).get("memory", 1.0)),
                address=n.get(
                    "address", url.hostname if url.scheme == "tcp" and url.hostname else "127.0.0.1"
                ),
                tls=tls,
                network=n.get("network", "bridge"),
                gpu_runtime=runtime,
                hami_core=n.get("hami_core", "/usr/local/vgpu/libvgpu.so"),
                disk_mib=ck.size(f"{where}: disk", n["disk"]) if "disk" in n else None,
                disk_quota=n.get("disk_quota", False),
                labels=dict(n.get("labels", {})),
                gpus=tuple(sorted(gpus, key=lambda g: g.index)),
                ports=ports,
                agent=agent,
            )
        )
    ck.unique("nodes.yaml", "node", (n.name for n in nodes))
    return nodes


def _specs(
    doc: dict[str, Any],
    ck: _Checker,
    images: list[Image],
    nodes: list[Node],
    images_ok: bool = True,
) -> list[Spec]:
    specs = []
    image_names = {i.name for i in images}
    for i, s in enumerate(doc.get("specs", [])):
        where = f"specs.yaml: specs[{i}] (slug '{s['slug']}')"
        gpus = s.get("gpus", 0)
        models = s.get("gpu_model", ())
        models = (models,) if isinstance(models, str) else tuple(models)
        mem = ck.size(f"{where}: gpu_memory", s["gpu_memory"]) if "gpu_memory" in s else None
        if gpus == 0:
            for k in ("gpu_model", "gpu_memory", "gpu_sm_percent"):
                if k in s:
                    ck.problems.append(
                        f"{where}: {k}: a CPU-only spec (gpus: 0) takes no {k}; remove it or set gpus"
                    )
        if "gpu_sm_percent" in s and "gpu_memory" not in s:
            ck.problems.append(
                f"{where}: gpu_sm_percent: needs gpu_memory too; a spec without gpu_memory takes whole cards"
            )
        is_slice = gpus > 0 and "gpu_memory" in s
        if "slice" in s and s["slice"] != is_slice:
            if gpus == 0:
                want = "false: a CPU-only spec (gpus: 0) is not a slice"
            elif is_slice:
                want = "true: it sets gpu_memory"
            else:
                want = "false: without gpu_memory it takes whole cards"
            ck.problems.append(f"{where}: slice: is {str(s['slice']).lower()}, must be {want}")
        for name in s.get("images", []) if images_ok else []:
            if name not in image_names:
                ck.problems.append(
                    f"{where}: images: '{name}' is not in images.yaml; known images: {', '.join(sorted(image_names)) or 'none'}"
                )
        spec = Spec(
            slug=s["slug"],
            display_name=s["display_name"],
            description=s.get("description", ""),
            gpus=gpus,
            gpu_models=models,
            gpu_memory_mib=mem,
            gpu_sm_percent=s.get("gpu_sm_percent"),
            cpu_millicores=round(s["cpu"] * 1000),
            memory_mib=ck.size(f"{where}: memory", s["memory"]),
            disk_mib=ck.size(f"{where}: disk", s["disk"]) if "disk" in s else None,
            price_per_hour=float(s.get("price_per_hour", 0.0)),
            groups=tuple(s.get("groups", ())),
            images=tuple(s.get("images", ())),
            cpu_guarantee_millicores=round(s["cpu_guarantee"] * 1000)
            if "cpu_guarantee" in s
            else None,
            memory_guarantee_mib=ck.size(f"{where}: memory_guarantee", s["memory_guarantee"])
            if "memory_guarantee" in s
            else None,
        )
        if (spec.cpu_guarantee_millicores or 0) > spec.cpu_millicores:
            ck.problems.append(
                f"{where}: cpu_guarantee: {s['cpu_guarantee']} is more than cpu "
                f"({s['cpu']}); a guarantee is at most the limit"
            )
        if spec.memory_mib and (spec.memory_guarantee_mib or 0) > spec.memory_mib:
            ck.problems.append(
                f"{where}: memory_guarantee: {s['memory_guarantee']} is more than memory "
                f"({s['memory']}); a guarantee is at most the limit"
            )
        if nodes and all(n.cpu_millicores < spec.cpu_millicores for n in nodes):
            ck.warnings.append(
                f"{where}: cpu: {s['cpu']} is more than any node's CPUs; a container's CPU "
                "limit cannot pass its node's, so no node takes it"
            )
        if gpus and nodes:
            fitting = [
                n.name
                for n in nodes
                if sum(
                    1 for g in n.gpus if spec.matches_model(g.model) and (mem or 0) <= g.memory_mib
                )
                >= gpus
            ]
            if not fitting:
                models_seen = sorted({g.model for n in nodes for g in n.gpus}) or ["none declared"]
                ck.warnings.append(
                    f"{where}: no declared node has {gpus} GPU(s) matching it; models in the pool: {', '.join(models_seen)}"
                )
        specs.append(spec)
    ck.unique("specs.yaml", "spec", (s.slug for s in specs))
    return specs


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Read and check a catalog folder; raise CatalogError listing every problem."""
    directory = Path(directory) if directory is not None else config_dir()
    docs, problems = _read(directory)
    ck = _Checker()
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
    nodes = _nodes(docs.get("nodes.yaml", {}), ck, directory)
    # a broken images.yaml is reported once, not again for every spec that names an image
    images_ok = "images.yaml" in docs or not (directory / "images.yaml").exists()
    specs = _specs(docs.get("specs.yaml", {}), ck, images, nodes, images_ok)
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
