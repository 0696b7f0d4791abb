"""What a user's server can reach on a ``network: bridge`` node (issue 17, item 5), through
the real hub, proxy, pool service and a Docker engine that manages iptables (its own
dockerd, still without a default bridge; the test node's engine also listens on TCP+TLS
on 127.0.0.1, as a remote node's would).

The hub is set up as the quickstart sets it up: the hub API and the pool service listen
on the host's address on gpupool-users, the proxy on loopback. From inside alice's server,
probed with plain TCP connects: bob's server (its address on the network, and its port
published on the node), the node's engine, the proxy's API (on loopback and on the host's
address on the network) and anything on the host's loopback do not answer; the hub API
does, the pool API answers her token at the URL the spawner gave her (and refuses no
token), and her own server answers. The same ports answer from the host, so a
closed door is the network's doing, not a service that was down. (The test node's address
is 127.0.0.1, where the engine publishes servers' ports: a node whose address is routable
publishes them there, reachable from containers too, as docs/security.md's Networking says.) (Before: a bridge node's
containers joined Docker's default bridge, where containers reach each other; on an
engine without one, nothing started at all.)

A network of gpupool's name made by hand with inter-container communication on is refused,
and the user is told why.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests
import yaml

from gpupool.catalog import load_catalog
from gpupool.container import BRIDGE_PORT, USER_NETWORK
from gpupool.engines import Engines
from gpupool.networks import ICC, ensure_user_network
from tests.support.catalogs import write_engine_catalog
from tests.support.docker import SINGLEUSER_TAG, Engine, ensure_docker_installed, stop_engines
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.servers import api, reservation_of, spawn, start, wait_ready, wait_stopped

pytestmark = [pytest.mark.docker, pytest.mark.hub]
NODE = "node-net"
LAB = {"spec": "a100-40g", "image": "lab"}
PROBE = """
import json, socket, sys, urllib.request
out = {}
for name, host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        out[name] = "open"
    except OSError as e:
        out[name] = type(e).__name__
    finally:
        s.close()
try:
    with urllib.request.urlopen(sys.argv[2], timeout=5) as r:
        out["hub API answers"] = json.load(r).get("version", "no version")
except Exception as e:
    out["hub API answers"] = repr(e)
# the pool API where the spawner told this server to find it, with and without its token
import os
api = os.environ.get("GPUPOOL_API_URL", "")
out["pool API URL"] = api
for name, headers in (
    ("pool API with her token", {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}),
    ("pool API without a token", {}),
):
    try:
        req = urllib.request.Request(api + "/specs", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            out[name] = r.status
    except urllib.error.HTTPError as e:
        out[name] = e.code
    except Exception as e:
        out[name] = repr(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    eng = Engine(NODE, tls=True, iptables=True).start()
    try:
        ensure_image([eng])
        yield eng
    finally:
        stop_engines([eng])


@pytest.fixture(scope="module")
def hub(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    folder = write_engine_catalog(tmp_path_factory.mktemp("catalog"), {NODE: engine})
    nodes = yaml.safe_load((folder / "nodes.yaml").read_text())
    nodes["nodes"][0]["network"] = "bridge"
    (folder / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    # as the quickstart does it: the network exists before the hub starts, and the hub API
    # and the pool service listen on the host's address on it (the proxy on loopback)
    node = load_catalog(folder).nodes[0]
    asyncio.run(ensure_user_network(Engines(), node))
    gateway = gateway_of(engine)
    h = Hub(folder)
    h.extra_env = {
        "GPUPOOL_HUB_IP": gateway,
        "GPUPOOL_POOL_IP": gateway,
        "GPUPOOL_HUB_CONNECT_URL": f"http://{gateway}:{h.port + 81}",
    }
    h.start()
    try:
        yield h
    finally:
        h.cleanup()


def gateway_of(engine: Engine) -> str:
    net = engine.client().networks.get(USER_NETWORK)
    return net.attrs["IPAM"]["Config"][0]["Gateway"]


def address_on_network(engine: Engine, container: str) -> str:
    c = engine.client().containers.get(container)
    return c.attrs["NetworkSettings"]["Networks"][USER_NETWORK]["IPAddress"]


def probe(engine: Engine, container: str, targets: list[tuple[str, str, int]], hub_api: str) -> Any:
    c = engine.client().containers.get(container)
    out = c.exec_run(["python3", "-c", PROBE, json.dumps(targets), hub_api])
    assert out.exit_code == 0, out.output.decode(errors="replace")
    return json.loads(out.output.decode().strip().splitlines()[-1])


def from_host(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_a_server_reaches_the_hub_and_itself_and_nothing_else(hub: Hub, engine: Engine) -> None:
    ta, tb = hub.user_token("alice"), hub.user_token("bob")
    try:
        spawn(hub, "alice", ta, LAB)
        spawn(hub, "bob", tb, LAB)
        wait_ready(hub, "alice", ta)
        wait_ready(hub, "bob", tb)
        alice, bob = reservation_of(hub, "alice"), reservation_of(hub, "bob")
        bob_ip = address_on_network(engine, bob["container"])
        gateway = gateway_of(engine)
        engine_port = engine.tcp_port
        assert engine_port
        closed = [
            ("bob's server on the network", bob_ip, BRIDGE_PORT),
            ("bob's port published on the node", "127.0.0.1", bob["port"]),
            ("bob's port at the host's address on the network", gateway, bob["port"]),
            ("the node's engine (TCP+TLS)", "127.0.0.1", engine_port),
            ("the node's engine at the host's address", gateway, engine_port),
            ("the proxy's API", "127.0.0.1", hub.port + 1),
            ("the proxy's API via the host", gateway, hub.port + 1),
            ("the pool service on loopback", "127.0.0.1", hub.port + 2),
            ("the hub API on loopback", "127.0.0.1", hub.port + 81),
        ]
        opened = [
            ("her own server", "127.0.0.1", BRIDGE_PORT),
            ("the hub API", gateway, hub.port + 81),
            # as public as through the proxy: every call needs a hub token
            ("the pool service", gateway, hub.port + 2),
        ]
        got = probe(
            engine,
            alice["container"],
            closed + opened,
            f"http://{gateway}:{hub.port + 81}/hub/api/",
        )
        assert {name: got[name] for name, _, _ in opened} == {
            name: "open" for name, _, _ in opened
        }, got
        assert not [name for name, _, _ in closed if got[name] == "open"], got
        assert got["hub API answers"][0].isdigit(), got  # a version: the hub answered her
        # her lab's pool panels work: the spawner gave her the pool service's own URL
        assert got["pool API URL"] == f"http://{gateway}:{hub.port + 2}/services/gpupool/api"
        assert got["pool API with her token"] == 200, got
        assert got["pool API without a token"] in (401, 403), got

        # from the host every one of those doors is open: it is the network that shuts them
        for name, host, port in [
            ("bob's server on the network", bob_ip, BRIDGE_PORT),
            ("bob's port published on the node", "127.0.0.1", bob["port"]),
            ("the node's engine (TCP+TLS)", "127.0.0.1", engine_port),
            ("the proxy's API", "127.0.0.1", hub.port + 1),
        ]:
            assert from_host(host, port), f"{name} ({host}:{port}) does not answer the host either"

        # her lab works through the proxy, which reaches it on the node's published port
        r = requests.get(
            f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {ta}"}, timeout=30
        )
        assert r.status_code == 200, r.text
    finally:  # the next test removes the network: no server may be left on it
        for user, token in (("alice", ta), ("bob", tb)):
            api(hub, "DELETE", f"/users/{user}/server", token)
            wait_stopped(hub, user)


def test_a_network_of_our_name_that_does_not_isolate_is_refused(hub: Hub, engine: Engine) -> None:
    client = engine.client()
    net = client.networks.get(USER_NETWORK)
    # the same addresses again: the hub API listens on the network's gateway
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(**{
        k.lower(): v for k, v in net.attrs["IPAM"]["Config"][0].items() if k in ("Subnet", "Gateway")
    })])  # fmt: skip
    net.remove()
    client.networks.create(USER_NETWORK, driver="bridge", options={ICC: "true"}, ipam=ipam)
    try:
        token = hub.user_token("carol")
        r = start(hub, "carol", token, LAB)
        # the user is told at once, by the hub's answer to the spawn
        assert r.status_code == 503, r.text
        said = r.json()["message"]
        assert f"the network {USER_NETWORK} on node {NODE} has {ICC}=true" in said
        assert "gpupool will not start user containers on it" in said
        assert not api(hub, "GET", "/users/carol", hub.admin_token).json().get("servers")
        active = requests.get(
            f"{hub.pool}/reservations?owner=carol",
            headers={"Authorization": f"token {hub.automation_token}"},
            timeout=30,
        ).json()["reservations"]
        assert active == []  # its reservation was given back
    finally:
        client.networks.get(USER_NETWORK).remove()
        client.networks.create(USER_NETWORK, driver="bridge", options={ICC: "false"}, ipam=ipam)


def run_user_network(catalog: Any, *args: str) -> Any:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gpupool.cli", "user-network", "--config", str(catalog), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def probes_left(engine: Engine) -> list[str]:
    found = engine.client().containers.list(all=True, filters={"label": "io.gpupool.probe"})
    return [c.name for c in found]


def test_the_quickstarts_probe_tells_an_engine_that_isolates_from_one_that_does_not(
    hub: Hub, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`gpupool user-network --probe-image`, which the quickstart runs before the hub
    starts: on this engine two containers on gpupool-users do not reach each other, and it
    prints the gateway the hub API then listens on. On an engine started with
    --iptables=false the network's ICC option is accepted and does nothing: the probe
    sees one container reach the other and says so (exit 1), where checking the option
    alone would have passed it."""
    folder = hub.catalog_dir
    ok = run_user_network(folder, "--probe-image", SINGLEUSER_TAG)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == [NODE, gateway_of(engine)], ok.stdout
    assert "containers on it do not reach each other" in ok.stderr
    assert probes_left(engine) == []

    loose = Engine("node-noipt")  # --bridge none --iptables=false, as MACHINE.md's second engine
    loose.start()
    try:
        ensure_image([loose])
        other = write_engine_catalog(tmp_path_factory.mktemp("loose"), {"node-noipt": loose})
        nodes = yaml.safe_load((other / "nodes.yaml").read_text())
        nodes["nodes"][0]["network"] = "bridge"
        (other / "nodes.yaml").write_text(yaml.safe_dump(nodes))
        made = run_user_network(other)  # the network alone, not probed: exit 0
        assert made.returncode == 0 and "not probed" in made.stderr, made.stderr
        # Whether this engine's containers reach each other depends on the host besides:
        # with br_netfilter on and another engine having set FORWARD's policy to DROP,
        # the bridge is shut by accident (and so is its way out). As on a host with no
        # other engine, the FORWARD chain lets this bridge's traffic through.
        net = loose.client().networks.get(USER_NETWORK)
        bridge = f"br-{net.id[:12]}"
        rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
        subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
        try:
            bad = run_user_network(other, "--probe-image", SINGLEUSER_TAG)
        finally:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)
        assert bad.returncode == 1, (bad.stdout, bad.stderr)
        assert "reached another although the network has" in bad.stderr, bad.stderr
        assert "--iptables=false" in bad.stderr
        assert bad.stdout == ""  # no gateway for the quickstart to use
        assert probes_left(loose) == []
        # an unknown node is named with the ones there are
        wrong = run_user_network(other, "--node", "nope")
        assert wrong.returncode == 2 and "no node nope (nodes: node-noipt)" in wrong.stderr
    finally:
        stop_engines([loose])
