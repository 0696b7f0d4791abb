"""SSH into one's server through the hub (issue 23): a real JupyterHub and its proxy, the
single-user image (with OpenSSH's server) spawned on a Docker engine the test starts, and
the real ssh and scp clients with gpupool-ssh-proxy as ProxyCommand, to the hub's URL only.

- the session runs as the server's user, in its container, under the same limits as the
  lab: the preload that names HAMi-core, the slice's variables in a non-interactive
  ``ssh host cmd``, the container's memory limit, no privileges; the same home (a file
  copied with scp is in the lab's contents);
- another user's token, a revoked token and no token get no session, and the server and
  its owner's sessions go on.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.docker import Engine
from tests.support.hub import Hub
from tests.support.pool import engines_with_images, hub_on
from tests.support.servers import api, start, wait_ready

pytestmark = [pytest.mark.docker, pytest.mark.hub]
PROXY = [sys.executable, "-m", "gpupool.sshproxy"]


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    with engines_with_images(["node-a"]) as engs:
        yield engs


@pytest.fixture(scope="module")
def hub(engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with hub_on(engines, tmp_path_factory.mktemp("catalog")) as h:
        yield h


@pytest.fixture(scope="module")
def server(hub: Hub) -> dict:
    token = hub.user_token("sasha")
    got = start(hub, "sasha", token, {"spec": "a100-40g", "image": "lab"})
    assert got.status_code in (201, 202), got.text
    wait_ready(hub, "sasha", token)
    client = Path(tempfile.mkdtemp(prefix="gpupool-ssh-"))
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client / "id")], check=True
    )
    return {"token": token, "client": client}


def ssh(
    hub: Hub, server: dict, token: str, *args: str, program: str = "ssh"
) -> subprocess.CompletedProcess:
    c = server["client"]
    (c / "token").write_text(token)
    (c / "token").chmod(0o600)
    url = f"{hub.url.replace('http://', 'ws://')}/user/sasha/gpupool/ssh"
    proxy = " ".join([*PROXY, url, "--token-file", str(c / "token"), "--key", str(c / "id.pub")])
    opts = [
        "-F", "/dev/null",
        "-o", f"ProxyCommand={proxy}",
        "-o", f"IdentityFile={c / 'id'}",
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", f"UserKnownHostsFile={c / 'known_hosts'}",
        "-o", "ConnectTimeout=30",
        "-o", "User=jovyan",
    ]  # fmt: skip
    return subprocess.run([program, *opts, *args], capture_output=True, text=True, timeout=120)


def test_a_session_is_the_servers_user_under_the_labs_limits(
    hub: Hub, server: dict, engines
) -> None:
    got = ssh(
        hub,
        server,
        server["token"],
        "server",
        "id -u; cat /etc/ld.so.preload; echo limit=$CUDA_DEVICE_MEMORY_LIMIT_0;"
        " grep ^NoNewPrivs /proc/self/status; command -v gpupool; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
        " 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    assert got.returncode == 0, got.stderr
    lines = got.stdout.split()
    assert lines[0] == "1000"  # jovyan, not root
    assert "/usr/local/vgpu/libvgpu.so" in got.stdout  # HAMi-core for every process
    assert "/opt/gpupool/bin/gpupool" in got.stdout  # the image's tools, as in the lab
    assert "limit=40960m" in got.stdout or "limit=40960" in got.stdout, got.stdout
    # the container's own memory limit, as the engine set it
    (container,) = (
        engines["node-a"].client().containers.list(filters={"label": "io.gpupool.owner=sasha"})
    )
    limit = container.attrs["HostConfig"]["Memory"]
    assert limit > 0 and lines[-1] == str(limit)
    assert "NoNewPrivs:\t1" in got.stdout or "NoNewPrivs: 1" in " ".join(lines)


def test_scp_puts_a_file_into_the_labs_home(hub: Hub, server: dict, tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_text("x,y\n1,2\n")
    got = ssh(hub, server, server["token"], str(src), "server:data.csv", program="scp")
    assert got.returncode == 0, got.stderr
    r = api(hub, "GET", "/users/sasha", server["token"])  # the hub still sees it running
    assert r.json()["servers"][""]["ready"]
    seen = requests.get(
        f"{hub.url}/user/sasha/api/contents/data.csv",
        headers={"Authorization": f"token {server['token']}"},
        timeout=30,
    )
    assert seen.ok and seen.json()["content"] == "x,y\n1,2\n"


def test_only_the_owner_with_a_live_token_gets_in(hub: Hub, server: dict) -> None:
    other = hub.user_token("mallory")
    got = ssh(hub, server, other, "server", "true")
    assert got.returncode != 0 and "403" in got.stderr, got.stderr
    revoked = hub.user_token("sasha")
    tokens = hub.hub_api("GET", "/users/sasha/tokens").json()["api_tokens"]
    newest = max(tokens, key=lambda t: t["created"])
    hub.hub_api("DELETE", f"/users/sasha/tokens/{newest['id']}")
    got = ssh(hub, server, revoked, "server", "true")
    assert got.returncode != 0 and ("403" in got.stderr or "302" in got.stderr), got.stderr
    # the owner's own token still works after all that
    got = ssh(hub, server, server["token"], "server", "echo still")
    assert got.returncode == 0 and "still" in got.stdout, got.stderr
