"""gpupool's user network on bridge nodes (networks.py), against a stand-in for the engine's
network calls (the real engine: tests/integration/test_network_isolation.py), and the hub's
check that servers on bridge nodes can reach the hub API (hub.bridge_reach)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from docker.errors import APIError, NotFound

from gpupool.catalog.models import Node
from gpupool.hub import bridge_reach
from gpupool.networks import ICC, USER_NETWORK, UnsafeNetwork, ensure_user_network

NODE = Node(name="n1", engine="unix:///x.sock", cpu_millicores=1000, memory_mib=1024)


class Networks:
    """inspect_network / create_network as Docker answers them; ``race`` makes the first
    create find the network made by someone else meanwhile (409)."""

    def __init__(self, existing: dict[str, Any] | None = None, race: bool = False):
        self.existing = existing
        self.race = race
        self.created: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []  # the same name, made by a concurrent create
        self.removed: list[str] = []

    async def call(self, node: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "networks":  # a name filter matches longer names too
            mine = [self.existing] if self.existing is not None else []
            return [*mine, *self.duplicates, {"Name": f"{USER_NETWORK}-old", "Id": "zz"}]
        if method == "inspect_network":
            if self.existing is None or args[0] != self.existing["Id"]:
                raise NotFound("no such network")
            return self.existing
        if method == "remove_network":
            self.removed.append(args[0])
            return None
        if method == "create_network":
            self.created.append({"name": args[0], **kwargs})
            self.existing = {
                "Name": args[0],
                "Id": "n1",
                "Created": "2026-12-02T10:00:00Z",
                "Driver": kwargs["driver"],
                "Options": kwargs["options"],
            }
            if self.race:
                resp = SimpleNamespace(status_code=409, reason="Conflict")
                raise APIError("network with name gpupool-users already exists", resp)  # type: ignore[arg-type]
            return {"Id": "n1"}
        raise AssertionError(method)


async def test_made_when_missing_with_containers_isolated() -> None:
    nets = Networks()
    assert await ensure_user_network(nets, NODE) == USER_NETWORK  # type: ignore[arg-type]
    [made] = nets.created
    assert made["name"] == USER_NETWORK and made["driver"] == "bridge"
    assert made["options"] == {ICC: "false"}
    assert made["labels"] == {"io.gpupool.network": "users"}
    assert await ensure_user_network(nets, NODE) == USER_NETWORK  # type: ignore[arg-type]
    assert len(nets.created) == 1  # used as found the second time


async def test_made_by_a_concurrent_start_is_checked_and_used() -> None:
    nets = Networks(race=True)
    assert await ensure_user_network(nets, NODE) == USER_NETWORK  # type: ignore[arg-type]


async def test_two_of_one_name_the_oldest_is_kept_the_others_removed() -> None:
    """Engines before Docker 25 let two concurrent creates of one name both succeed."""
    nets = Networks()
    await ensure_user_network(nets, NODE)  # type: ignore[arg-type]
    nets.duplicates = [{**nets.existing, "Id": "n2", "Created": "2026-12-02T10:00:01Z"}]  # type: ignore[dict-item]
    assert await ensure_user_network(nets, NODE) == USER_NETWORK  # type: ignore[arg-type]
    assert nets.removed == ["n2"]  # the newer one; a longer name is not touched


@pytest.mark.parametrize(
    ("found", "words"),
    [
        ({"Driver": "bridge", "Options": {}}, f"{ICC}=true (the default)"),
        ({"Driver": "bridge", "Options": {ICC: "true"}}, f"{ICC}=true"),
        ({"Driver": "macvlan", "Options": {ICC: "false"}}, "driver macvlan"),
    ],
)
async def test_one_that_does_not_isolate_is_refused(found: dict[str, Any], words: str) -> None:
    nets = Networks({"Name": USER_NETWORK, "Id": "x1", **found})
    with pytest.raises(UnsafeNetwork) as e:
        await ensure_user_network(nets, NODE)  # type: ignore[arg-type]
    said = str(e.value)
    assert f"the network {USER_NETWORK} on node n1 has {words}" in said
    assert f"docker network rm {USER_NETWORK}" in said and nets.created == []


def catalog(*networks: str) -> Any:
    nodes = [dataclasses.replace(NODE, name=f"n{i}", network=n) for i, n in enumerate(networks)]
    return SimpleNamespace(nodes=nodes)


@pytest.mark.parametrize(
    ("networks", "hub_ip", "connect", "refused"),
    [
        (("host",), "127.0.0.1", None, False),  # host networking shares the hub's loopback
        (("host", "bridge"), "127.0.0.1", None, True),
        (("bridge",), "::1", None, True),
        (("bridge",), "localhost", None, True),
        (("bridge",), "127.0.0.1", "http://127.0.0.1:8081", True),
        (("bridge",), "172.31.0.1", None, False),
        (("bridge",), "0.0.0.0", "http://10.0.0.5:8081", False),
        (("bridge",), "0.0.0.0", None, True),  # servers would get the host's name
        (("bridge",), "::", None, True),
        (("bridge",), "127.0.0.1", "http://hub.example:8081", False),
    ],
)
def test_the_hub_refuses_to_start_where_bridge_servers_could_not_reach_it(
    networks: tuple[str, ...], hub_ip: str, connect: str | None, refused: bool
) -> None:
    problems = bridge_reach(catalog(*networks), hub_ip, connect)
    assert bool(problems) == refused, problems
    if refused:
        assert "use network: bridge" in problems[0]
        assert "GPUPOOL_HUB_IP" in problems[0] or "GPUPOOL_HUB_CONNECT_URL" in problems[0]


def test_the_hub_config_exits_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through hub.configure, as jupyterhub_config.py calls it."""
    import shutil

    import yaml

    from gpupool.hub import configure

    src = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
    shutil.copytree(src, tmp_path / "catalog")
    nodes = yaml.safe_load((tmp_path / "catalog" / "nodes.yaml").read_text())
    nodes["nodes"][0]["network"] = "bridge"
    (tmp_path / "catalog" / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    monkeypatch.setenv("GPUPOOL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUPOOL_HUB_IP", raising=False)
    monkeypatch.delenv("GPUPOOL_HUB_CONNECT_URL", raising=False)
    from traitlets.config import Config

    with pytest.raises(SystemExit) as e:
        configure(Config(), tmp_path / "catalog")
    assert "use network: bridge" in str(e.value)
    monkeypatch.setenv("GPUPOOL_HUB_IP", "0.0.0.0")
    monkeypatch.setenv("GPUPOOL_HUB_CONNECT_URL", "http://10.0.0.5:8081")
    c = Config()
    configure(c, tmp_path / "catalog")
    assert c.JupyterHub.hub_connect_url == "http://10.0.0.5:8081"


def test_the_pool_service_listens_where_bridge_servers_reach_it_on_one_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart's setting: GPUPOOL_POOL_IP on the host's address on gpupool-users.
    The proxy, the spawner and the servers all find the pool service there; a public URL
    set by the admin still wins for servers; a value that is not an address is refused."""
    import shutil

    from traitlets.config import Config

    from gpupool.hub import configure

    src = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"
    shutil.copytree(src, tmp_path / "catalog")
    monkeypatch.setenv("GPUPOOL_STATE_DIR", str(tmp_path / "state"))
    for k in ("GPUPOOL_PUBLIC_URL", "GPUPOOL_PORT", "GPUPOOL_IP"):
        monkeypatch.delenv(k, raising=False)

    monkeypatch.delenv("GPUPOOL_POOL_IP", raising=False)
    c = Config()
    configure(c, tmp_path / "catalog")
    pool = next(s for s in c.JupyterHub.services if s["name"] == "gpupool")
    assert pool["url"] == "http://127.0.0.1:8002"
    assert c.GpuPoolSpawner.server_pool_api_url == "http://127.0.0.1:8000/services/gpupool/api"

    monkeypatch.setenv("GPUPOOL_POOL_IP", "172.30.0.1")
    c = Config()
    configure(c, tmp_path / "catalog")
    pool = next(s for s in c.JupyterHub.services if s["name"] == "gpupool")
    assert pool["url"] == "http://172.30.0.1:8002"
    assert c.GpuPoolSpawner.pool_api_url == "http://172.30.0.1:8002/services/gpupool/api"
    assert c.GpuPoolSpawner.server_pool_api_url == "http://172.30.0.1:8002/services/gpupool/api"

    monkeypatch.setenv("GPUPOOL_PUBLIC_URL", "https://gpu.example.org")
    c = Config()
    configure(c, tmp_path / "catalog")
    assert c.GpuPoolSpawner.server_pool_api_url == "https://gpu.example.org/services/gpupool/api"

    monkeypatch.setenv("GPUPOOL_POOL_IP", "fd00::1")
    c = Config()
    configure(c, tmp_path / "catalog")
    pool = next(s for s in c.JupyterHub.services if s["name"] == "gpupool")
    assert pool["url"] == "http://[fd00::1]:8002"

    monkeypatch.setenv("GPUPOOL_POOL_IP", "hub.example.org")
    with pytest.raises(
        SystemExit, match=r"GPUPOOL_POOL_IP=.hub\.example\.org. is not an IP address"
    ):
        configure(Config(), tmp_path / "catalog")
