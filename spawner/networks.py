"""The network user containers join on a ``network: bridge`` node: gpupool's own.

Docker's default ``bridge`` network lets its containers reach each other on every port
(inter-container communication, ICC, is on). gpupool puts servers and trainings on its own
bridge network instead, ``gpupool-users``, made with ICC off: a container there reaches
the outside through the node (the hub API, the proxy, package indexes), its own published
port is reached at the node's address, and no other container answers it on the network.
(A port published on a routable node address is reached there like any published port,
from a container too: guarded by the server's own login; docs/security.md says how to close it.) The node's loopback (its engine's TCP socket, the hub host's proxy API, pool service
and PostgreSQL when they run there) is outside the container's network namespace.

The network is made on first use. One of that name made by hand is used only if it is a
bridge with ICC off; else every start on that node is refused with what to fix. ICC off is
enforced by the engine's iptables rules: an engine started with ``--iptables=false``
cannot isolate its containers from each other (see docs/security.md, Networking).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from docker.errors import APIError, NotFound

from .catalog.models import Node
from .container import LABEL, USER_NETWORK
from .engines import Engines

ICC = "com.docker.network.bridge.enable_icc"
log = logging.getLogger("gpupool.networks")
_locks: dict[str, asyncio.Lock] = {}  # per node: starts in one process take turns


class UnsafeNetwork(RuntimeError):
    """A network named USER_NETWORK exists on the node but does not isolate containers."""


def check_user_network(info: dict[str, Any], node: str) -> None:
    """UnsafeNetwork unless ``info`` (docker's network inspect) is a bridge with ICC off."""
    driver = info.get("Driver")
    icc = (info.get("Options") or {}).get(ICC)
    if driver == "bridge" and icc == "false":
        return
    what = f"driver {driver}" if driver != "bridge" else f"{ICC}={icc or 'true (the default)'}"
    raise UnsafeNetwork(
        f"the network {USER_NETWORK} on node {node} has {what}: its containers could reach "
        f"each other, so gpupool will not start user containers on it. An admin can remove "
        f"it (docker network rm {USER_NETWORK}; gpupool makes its own) or remake it with "
        f"--driver bridge --opt {ICC}=false"
    )


async def _ours(engines: Engines, node: Node) -> list[dict[str, Any]]:
    """Networks named exactly USER_NETWORK, oldest first (a name filter also matches
    longer names)."""
    found = await engines.call(node, "networks", names=[USER_NETWORK])
    same = [n for n in found or () if n.get("Name") == USER_NETWORK]
    return sorted(same, key=lambda n: (str(n.get("Created", "")), str(n.get("Id", ""))))


async def ensure_user_network(engines: Engines, node: Node) -> str:
    """The name of gpupool's user network on ``node``, made when there is none.

    Starts in this process take turns per node; the hub's spawner and the pool's
    dispatcher are two processes, and engines before Docker 25 let two creates of one name
    both succeed: then the oldest is kept and the others removed, since a name that
    means two networks fails every start on the node."""
    lock = _locks.setdefault(node.name, asyncio.Lock())
    async with lock:
        same = await _ours(engines, node)
        if not same:
            try:
                await engines.call(
                    node,
                    "create_network",
                    USER_NETWORK,
                    driver="bridge",
                    options={ICC: "false"},
                    labels={f"{LABEL}.network": "users"},
                    check_duplicate=True,
                )
                log.info("made the network %s on %s (containers isolated from each other)",
                         USER_NETWORK, node.name)  # fmt: skip
            except APIError as e:
                if e.status_code != 409:  # made by a concurrent start: checked below
                    raise
            same = await _ours(engines, node)
        for extra in same[1:]:
            try:
                await engines.call(node, "remove_network", extra["Id"])
                log.warning("removed a second network %s (%s) on %s", USER_NETWORK,
                            extra["Id"][:12], node.name)  # fmt: skip
            except (APIError, NotFound) as e:
                log.warning("a second network %s on %s: %s", USER_NETWORK, node.name, e)
        if not same:
            raise UnsafeNetwork(f"the network {USER_NETWORK} on node {node.name} was not made")
        info = await engines.call(node, "inspect_network", same[0]["Id"])
    check_user_network(info, node.name)
    return USER_NETWORK


def gateway_of(info: dict[str, Any]) -> str:
    """The host's address on a network (docker's network inspect), "" when it has none."""
    for conf in (info.get("IPAM") or {}).get("Config") or ():
        if conf.get("Gateway"):
            return str(conf["Gateway"])
    return ""


# A listener on the probe port, then (in the second container) a connect to the first.
_LISTEN = (
    "import socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7777)); s.listen(8); time.sleep(120)\n"
)
_CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(3)\n"
    "try:\n    s.connect((sys.argv[1], 7777)); print('open')\n"
    "except OSError as e:\n    print(type(e).__name__)\n"
)


async def probe_isolation(engines: Engines, node: Node, image: str) -> str:
    """Prove on ``node`` that two containers on the user network cannot reach each other;
    returns the network's gateway (the host's address on it).

    The network's ICC option is only a request: an engine started with
    ``--iptables=false`` keeps it and isolates nothing. So one container listens, the
    same container reaches its own listener at its network address (it is up), and a
    second one must not reach it. UnsafeNetwork says which part failed."""
    await ensure_user_network(engines, node)
    info = await engines.call(node, "inspect_network", USER_NETWORK)
    labels = {f"{LABEL}.probe": "isolation"}
    made: list[str] = []

    async def run(cmd: list[str]) -> str:
        host = await engines.call(node, "create_host_config", network_mode=USER_NETWORK)
        c = await engines.call(
            node, "create_container", image, command=cmd, labels=labels, host_config=host
        )
        made.append(c["Id"])
        await engines.call(node, "start", c["Id"])
        return str(c["Id"])

    async def connect(cid: str, ip: str) -> str:
        ex = await engines.call(node, "exec_create", cid, ["python3", "-c", _CONNECT, ip])
        out = await engines.call(node, "exec_start", ex["Id"])
        return out.decode(errors="replace").strip()

    try:
        listener = await run(["python3", "-c", _LISTEN])
        ip = ""
        for _ in range(50):
            state = await engines.call(node, "inspect_container", listener)
            ip = state["NetworkSettings"]["Networks"].get(USER_NETWORK, {}).get("IPAddress", "")
            if ip and (await connect(listener, ip)) == "open":
                break
            await asyncio.sleep(0.2)
        else:
            raise UnsafeNetwork(
                f"the isolation probe on node {node.name} could not reach its own listener "
                f"on {USER_NETWORK} ({ip or 'no address'}); is {image} a gpupool image?"
            )
        other = await run(["python3", "-c", _LISTEN])
        got = await connect(other, ip)
        if got == "open":
            raise UnsafeNetwork(
                f"on node {node.name} one container on {USER_NETWORK} reached another although "
                f"the network has {ICC}=false: the engine does not enforce it (dockerd started "
                "with --iptables=false?). Start dockerd with its default iptables management, "
                "or use network: host for trusted users only"
            )
    finally:
        for cid in made:
            try:
                await engines.call(node, "remove_container", cid, force=True)
            except (APIError, NotFound) as e:
                log.warning("isolation probe: could not remove %s: %s", cid[:12], e)
    return gateway_of(info)
