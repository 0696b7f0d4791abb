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

import os
import socket
import subprocess
import sys
import tempfile
import time
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
    # an open session's token is rechecked every 2 s here (60 s by default)
    recheck = "c.Spawner.args = ['--GpuPoolLab.ssh_recheck=2']\n"
    with hub_on(engines, tmp_path_factory.mktemp("catalog"), extra_config=recheck) as h:
        yield h


@pytest.fixture(scope="module")
def server(hub: Hub) -> dict:
    token = hub.user_token("sasha")
    got = start(hub, "sasha", token, {"spec": "a100-40g", "image": "lab"})
    assert got.status_code in (201, 202), got.text
    wait_ready(hub, "sasha", token)
    client = Path(tempfile.mkdtemp(prefix="gpupool-ssh-"))
    os.chmod(client, 0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client / "id")], check=True
    )
    return {"token": token, "client": client}


def ssh_options(hub: Hub, server: dict, token: str, proxy_cmd: list[str] = PROXY) -> list[str]:
    c = server["client"]
    name = f"token-{abs(hash(token))}"  # one file per token: sessions may run side by side
    (c / name).write_text(token)
    (c / name).chmod(0o600)
    url = f"{hub.url.replace('http://', 'ws://')}/user/sasha/gpupool/ssh"
    proxy = " ".join([*proxy_cmd, url, "--token-file", str(c / name), "--key", str(c / "id.pub")])
    return [
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


def ssh(
    hub: Hub, server: dict, token: str, *args: str, program: str = "ssh"
) -> subprocess.CompletedProcess:
    opts = ssh_options(hub, server, token)
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
    # no token at all: the hub's proxy and the server answer with a login, not a session
    bare = requests.get(
        f"{hub.url}/user/sasha/gpupool/ssh",
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                 "X-GpuPool-SSH-Key": (server["client"] / "id.pub").read_text().strip()},
        allow_redirects=False, timeout=30,
    )  # fmt: skip
    assert bare.status_code in (302, 403), bare.status_code
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


def test_a_stripped_environment_still_gets_the_preload_and_files_come_back(
    hub: Hub, server: dict, tmp_path: Path
) -> None:
    """``env -i`` drops LD_PRELOAD, not /etc/ld.so.preload: the library (CI's stand-in,
    which marks each process it loads into) is still in every process of a session."""
    got = ssh(
        hub, server, server["token"], "server",
        "env -i /bin/sh -c 'echo stand_in=$GPUPOOL_HAMI_STAND_IN ld=$LD_PRELOAD'"
        " && echo checkpoint-7 > ckpt.txt",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "stand_in=loaded ld=\n" in got.stdout
    back = tmp_path / "ckpt.txt"
    got = ssh(hub, server, server["token"], "server:ckpt.txt", str(back), program="scp")
    assert got.returncode == 0, got.stderr
    assert back.read_text() == "checkpoint-7\n"
    # rsync both ways, with the server's own rsync at the other end (`rsync -e ssh`)
    opts = ssh_options(hub, server, server["token"])
    config = tmp_path / "ssh_config"
    pairs = [o.split("=", 1) for o in opts[3::2]]  # after -F /dev/null: -o K=V pairs
    config.write_text("Host server\n" + "".join(f"    {k} {v}\n" for k, v in pairs))
    (tmp_path / "ckpt").mkdir()
    for i in range(3):
        (tmp_path / "ckpt" / f"step-{i}.bin").write_bytes(os.urandom(50_000))
    rsh = f"ssh -F {config}"
    sync = subprocess.run(
        ["rsync", "-a", "-e", rsh, f"{tmp_path / 'ckpt'}/", "server:ckpt/"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    sync = subprocess.run(
        ["rsync", "-a", "-e", rsh, "server:ckpt/", f"{tmp_path / 'again'}/"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    for i in range(3):
        name = f"step-{i}.bin"
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "ckpt" / name).read_bytes()


def test_a_forward_reaches_a_process_started_over_ssh(hub: Hub, server: dict) -> None:
    """VS Code's Remote-SSH, as it goes: a remote command starts a server on the
    container's loopback and prints its port, then a local forward carries requests to it,
    through the hub's proxy."""
    remote = 8765  # in the container's own network namespace
    got = ssh(
        hub, server, server["token"], "server",
        # (an `a && b &` would put the whole list in the background, holding the session)
        "mkdir -p served; echo hello-from-sasha > served/index.html; "
        f"setsid nohup python3 -m http.server --directory served --bind 127.0.0.1 {remote} "
        f"> /dev/null 2>&1 < /dev/null & echo listeningOn={remote}",
    )  # fmt: skip
    assert got.returncode == 0 and f"listeningOn={remote}" in got.stdout, got.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    forward = subprocess.Popen(
        ["ssh", *ssh_options(hub, server, server["token"]), "-N",
         "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:127.0.0.1:{remote}", "server"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = requests.get(f"http://127.0.0.1:{local}/", timeout=10)
                break
            except requests.ConnectionError:
                assert forward.poll() is None, forward.communicate()[1]
                assert time.monotonic() < deadline, "the forward never answered"
                time.sleep(0.5)
        assert page.ok and page.text == "hello-from-sasha\n"
    finally:
        forward.terminate()
        forward.wait(30)
        ssh(hub, server, server["token"], "server", f"pkill -f 'http.server.*{remote}' || true")


def test_open_sessions_are_on_the_pool_and_a_revoked_token_ends_its_own(
    hub: Hub, server: dict
) -> None:
    """The server reports its open session to the pool (the dashboard and GPU-idle culling
    read it); revoking the token a session came in with ends that session within the
    recheck (2 s here), and the server's report then says none are open."""
    pool = f"{hub.url}/services/gpupool/api"
    owner = {"Authorization": f"token {server['token']}"}
    (mine,) = requests.get(f"{pool}/reservations", headers=owner, timeout=30).json()["reservations"]
    ssh_path = f"{pool}/reservations/{mine['id']}/ssh"

    def sessions() -> list[dict]:
        return requests.get(ssh_path, headers=owner, timeout=30).json()["sessions"]

    second = hub.user_token("sasha")  # as made on the hub's Token page for a laptop
    session = subprocess.Popen(
        ["ssh", *ssh_options(hub, server, second), "server", "sleep 300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sessions():
            assert session.poll() is None, session.communicate()
            assert time.monotonic() < deadline, "the pool never heard of the session"
            time.sleep(0.5)
        (s,) = sessions()
        assert s["last_activity"] is not None  # the login itself was work
        tokens = hub.hub_api("GET", "/users/sasha/tokens").json()["api_tokens"]
        newest = max(tokens, key=lambda t: t["created"])
        hub.hub_api("DELETE", f"/users/sasha/tokens/{newest['id']}")
        revoked = time.monotonic()
        rc = session.wait(60)
        took = time.monotonic() - revoked
    finally:
        if session.poll() is None:
            session.kill()
    assert rc != 0 and took < 20, (rc, took)
    deadline = time.monotonic() + 30
    while sessions():
        assert time.monotonic() < deadline, "the closed session stayed on the pool"
        time.sleep(0.5)


def test_a_token_limited_to_this_server_is_enough(hub: Hub, server: dict) -> None:
    """What the user guide advises for a laptop: a token whose only scope is access to
    this one server (it can do nothing else on the hub)."""
    narrow = hub.user_token("sasha", scopes=["access:servers!server=sasha/"])
    got = ssh(hub, server, narrow, "server", "echo narrow-ok")
    assert got.returncode == 0 and "narrow-ok" in got.stdout, got.stderr
    # it cannot make tokens, nor stop or start the server
    assert api(hub, "POST", "/users/sasha/tokens", narrow, json={}).status_code == 403
    assert api(hub, "GET", "/users/sasha/tokens", narrow).status_code == 403


def test_the_proxy_comes_from_the_hub_the_printed_block_names(
    hub: Hub, server: dict, tmp_path: Path
) -> None:
    """A laptop without gpupool: the config block's curl line fetches gpupool-ssh-proxy
    from the hub (no login needed, nothing of the site in it), and that one file is the
    ProxyCommand."""
    from gpupool.lab.sshconfig import block

    text = block(
        user="sasha", server="", url=f"{hub.url.replace('http://', 'ws://')}/user/sasha/gpupool/ssh",
        login="jovyan",
    )  # fmt: skip
    (curl,) = [line for line in text.splitlines() if "curl " in line]
    url = curl.split()[-1]
    got = requests.get(url, timeout=30)
    assert got.ok and got.text.startswith("#!/usr/bin/env python3"), (url, got.status_code)
    assert "attachment" in got.headers["Content-Disposition"]
    proxy = tmp_path / "gpupool-ssh-proxy"
    proxy.write_bytes(got.content)
    proxy.chmod(0o755)
    opts = ssh_options(hub, server, server["token"], proxy_cmd=[str(proxy)])
    done = subprocess.run(
        ["ssh", *opts, "server", "echo via-downloaded-proxy"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and "via-downloaded-proxy" in done.stdout, done.stderr
