"""The catalog's nodes and specs, built from their YAML entries with the checks of meaning
that a schema cannot make: sizes, GPU UUIDs, TLS files, ports, images named, what fits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .models import Agent, Gpu, Image, Node, Spec, Tls
from .units import parse_size_mib

#: Linux's default net.ipv4.ip_local_port_range: a node's server ports should stay out of it
LINUX_EPHEMERAL_PORTS = (32768, 60999)


class Checker:
    """The problems and warnings found so far, and helpers that add to them."""

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


def build_nodes(doc: dict[str, Any], ck: Checker, directory: Path) -> list[Node]:
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


def build_specs(
    doc: dict[str, Any],
    ck: Checker,
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
