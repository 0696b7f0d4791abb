"""SSH into a server through its own URL (issue 23, first part): a real jupyter-server with
gpupool.lab, OpenSSH's real sshd (inetd mode, started by the extension per connection) and
the real ssh, scp and sftp clients, whose ProxyCommand is gpupool-ssh-proxy. No hub here:
the server's own token stands for the hub's (tests/integration covers the hub's proxy).

- a command runs, its exit status comes back, and the session has the slice's variables
  (sshd's SetEnv: ``ssh host cmd`` gets them as the lab's terminal does);
- scp and sftp carry a file both ways;
- no token, a wrong token, a key that is not one: refused with a message that says why;
- a token of the server's owner with the key of another request gets no session;
- a hostile client (a text message, a flood of garbage) ends only its own connection.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gpupool.lab.ssh import SshServer

pytestmark = pytest.mark.skipif(
    not (os.access("/usr/sbin/sshd", os.X_OK) and shutil.which("ssh")),
    reason="OpenSSH server and client are needed (tests/run.sh installs them)",
)
PROXY = [sys.executable, "-m", "gpupool.sshproxy"]


@pytest.fixture
def jp_server_config(monkeypatch: pytest.MonkeyPatch) -> dict:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CUDA_DEVICE_MEMORY_LIMIT_0", "20480m")
    monkeypatch.setenv("GPUPOOL_GPUS", '[{"uuid": "GPU-1", "memory_mib": 20480}]')
    monkeypatch.setenv("SECRET_OF_THE_SERVER", "not for sessions")
    return {"ServerApp": {"jpserver_extensions": {"gpupool.lab": True}}}


@pytest.fixture
def ssh_env(jp_serverapp: Any, jp_fetch: Any, jp_http_port: int, jp_base_url: str) -> Any:
    # jp_fetch: pytest-jupyter listens on jp_http_port only for a test that may fetch
    # sshd's StrictModes: the key files lie under the user's home, in folders only it writes
    home = Path(tempfile.mkdtemp(prefix="gpupool-ssh-test-", dir=pwd.getpwuid(os.getuid()).pw_dir))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd run as root wants its privsep folder
    jp_serverapp.web_app.settings["gpupool"]["ssh"] = SshServer(home=home)
    client = Path(tempfile.mkdtemp(prefix="gpupool-ssh-client-"))
    (client / "token").write_text(jp_serverapp.identity_provider.token)
    (client / "token").chmod(0o600)
    for name in ("id", "other"):
        os.system(f"ssh-keygen -q -t ed25519 -N '' -f {client / name}")
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}gpupool/ssh"
    yield {"url": url, "client": client, "home": home}
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(client, ignore_errors=True)


def ssh_options(
    env: dict[str, Any], *, key: str = "id", offered: str = "id", token: str = "token"
) -> list[str]:
    c = env["client"]
    proxy = " ".join(
        [*PROXY, env["url"], "--token-file", str(c / token), "--key", str(c / f"{key}.pub")]
    )
    return [
        "-F", "/dev/null",
        "-o", f"ProxyCommand={proxy.replace('%', '%%')}",  # ssh expands %-tokens
        "-o", f"IdentityFile={c / offered}",
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", f"UserKnownHostsFile={c / 'known_hosts'}",
        "-o", "ConnectTimeout=20",
        "-o", f"User={os.environ.get('USER') or 'root'}",
    ]  # fmt: skip


async def run(*cmd: str, stdin: bytes = b"", timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_command_runs_with_the_slice_variables_and_its_exit_status(ssh_env, jp_serverapp):
    settings = jp_serverapp.web_app.settings
    assert "gpupool_ssh_last_activity" not in settings
    rc, out, err = await run(
        "ssh",
        *ssh_options(ssh_env),
        "server",
        "echo limit=$CUDA_DEVICE_MEMORY_LIMIT_0; echo gpus=$GPUPOOL_GPUS; echo secret=$SECRET_OF_THE_SERVER; echo path=$PATH; exit 7",
    )
    assert rc == 7, err
    assert "limit=20480m" in out
    assert 'gpus=[{"uuid": "GPU-1", "memory_mib": 20480}]' in out
    assert "secret=\n" in out  # only the slice's, the pool's and the hub's variables pass
    session_path = out.split("path=", 1)[1].splitlines()[0].split(":")
    # the image's tools in `ssh host cmd` (a shell's rc file may add to it)
    assert set(os.environ["PATH"].split(":")) <= set(session_path)
    assert not list(ssh_env["home"].glob(".gpupool/ssh/key-*"))  # the one-time key is gone
    # the session counted as the server's activity (the hub's idle culling reads it)
    assert jp_serverapp.web_app.last_activity() == settings["gpupool_ssh_last_activity"]


async def test_only_the_servers_owner_gets_in(ssh_env, monkeypatch):
    """Behind the hub, a user who may reach the server (an admin with access:servers) but
    is not its owner gets no SSH session."""
    monkeypatch.setenv("JUPYTERHUB_USER", "lara")
    rc, _, err = await run("ssh", *ssh_options(ssh_env), "server", "true")
    assert rc != 0
    assert "403" in err and "for its owner only" in err


async def test_scp_and_sftp_carry_files_both_ways(ssh_env, tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(300_000))
    opts = ssh_options(ssh_env)
    target = ssh_env["home"] / "copied.bin"
    rc, _, err = await run("scp", "-q", *opts, str(src), f"server:{target}")
    assert rc == 0, err
    assert target.read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    rc, _, err = await run(
        "sftp", "-q", *opts, "-b", "-", "server", stdin=f"get {target} {back}\n".encode()
    )
    assert rc == 0, err
    assert back.read_bytes() == src.read_bytes()


@pytest.mark.parametrize(
    ("token_text", "want"),
    [("", "no hub token"), ("not-the-token", "403")],
)
async def test_no_token_or_a_wrong_one_is_refused(ssh_env, token_text, want):
    (ssh_env["client"] / "bad").write_text(token_text)
    (ssh_env["client"] / "bad").chmod(0o600)
    rc, _, err = await run("ssh", *ssh_options(ssh_env, token="bad"), "server", "true")
    assert rc != 0
    assert want in err


async def test_a_key_that_is_not_one_is_refused_with_what_is_allowed(ssh_env):
    (ssh_env["client"] / "junk.pub").write_text("ssh-ed25519 not*base64 me@laptop\n")
    rc, _, err = await run("ssh", *ssh_options(ssh_env, key="junk"), "server", "true")
    assert rc != 0
    assert "400" in err and "not an OpenSSH public key" in err and "ssh-ed25519" in err


async def test_a_key_other_than_the_one_named_gets_no_session(ssh_env):
    rc, out, err = await run(
        "ssh", *ssh_options(ssh_env, key="other", offered="id"), "server", "echo in"
    )
    assert rc == 255 and "in" not in out
    assert "Permission denied" in err


async def test_a_hostile_client_ends_only_its_own_connection(ssh_env, jp_fetch):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import WebSocketClosedError, websocket_connect

    c = ssh_env["client"]
    headers = {
        "Authorization": f"token {(c / 'token').read_text()}",
        "X-GpuPool-SSH-Key": (c / "id.pub").read_text().strip(),
    }
    ws = await websocket_connect(HTTPRequest(ssh_env["url"], headers=headers))
    banner = await ws.read_message()
    assert isinstance(banner, bytes) and banner.startswith(b"SSH-2.0-")
    try:
        ws.write_message("a text message")
        for _ in range(50):
            ws.write_message(os.urandom(32_000), binary=True)
    except WebSocketClosedError:
        pass  # the server closed it first
    while await ws.read_message() is not None:
        pass  # closed by the server
    # the server and a well-behaved session go on
    assert (await jp_fetch("api", "status")).code == 200
    rc, out, err = await run("ssh", *ssh_options(ssh_env), "server", "echo still")
    assert rc == 0 and "still" in out, err


async def test_the_printed_config_block_connects(ssh_env):
    """What `gpupool ssh-config` prints, with this test's key, token and proxy paths."""
    from gpupool.lab.sshconfig import KEY, TOKEN, alias, block

    c = ssh_env["client"]
    text = block(user="a@b", server="", url=ssh_env["url"], login=os.environ.get("USER") or "root")
    text = text.replace(f"{KEY}.pub", str(c / "id.pub")).replace(KEY, str(c / "id"))
    text = text.replace(TOKEN, str(c / "token"))
    text = text.replace("gpupool-ssh-proxy ", " ".join(PROXY) + " ")
    text += f"    UserKnownHostsFile {c / 'known_hosts'}\n    StrictHostKeyChecking no\n    BatchMode yes\n"
    (c / "config").write_text(text)
    rc, out, err = await run("ssh", "-F", str(c / "config"), alias("a@b"), "echo via-config")
    assert rc == 0 and "via-config" in out, err


async def test_the_panel_gets_the_config_block_for_its_hub(jp_fetch, monkeypatch):
    """GET gpupool/ssh-config?hub=<the browser's origin>: the panel's "Connect with SSH"."""
    import json

    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:  # not behind a hub: says so
        await jp_fetch("gpupool", "ssh-config", params={"hub": "https://hub.example.org"})
    assert e.value.code == 400
    monkeypatch.setenv("JUPYTERHUB_USER", "lara")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/lara/")
    got = json.loads(
        (await jp_fetch("gpupool", "ssh-config", params={"hub": "https://hub.example.org"})).body
    )
    assert "Host gpupool-lara\n" in got["config"]
    assert "wss://hub.example.org/user/lara/gpupool/ssh" in got["config"]
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("gpupool", "ssh-config", params={"hub": "javascript:alert(1)"})
    assert e.value.code == 400


async def test_abandoned_handshakes_leave_nothing_behind(ssh_env, jp_serverapp):
    """Clients that leave during the upgrade (a flaky network, or a flood): no session
    entry, no key file and no sshd stays."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(ssh_env["url"])
    c = ssh_env["client"]
    request = (
        f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: token {(c / 'token').read_text()}\r\n"
        f"X-GpuPool-SSH-Key: {(c / 'id.pub').read_text().strip()}\r\n\r\n"
    ).encode()
    for _ in range(20):
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(request)
        s.close()
    server = jp_serverapp.web_app.settings["gpupool"]["ssh"]
    for _ in range(100):
        await asyncio.sleep(0.1)
        if not server.sessions and not server.ending and not list(server.folder.glob("key-*")):
            break
    assert server.sessions == {}
    assert not list(server.folder.glob("key-*"))
    assert not server.ending  # every sshd was waited for


def test_first_connections_at_once_make_one_host_key(tmp_path):
    """Concurrent first connections: one host key, made once, none fails."""
    from concurrent.futures import ThreadPoolExecutor

    home = Path(tempfile.mkdtemp(prefix="gpupool-ssh-test-", dir=pwd.getpwuid(os.getuid()).pw_dir))
    try:
        server = SshServer(home=home)
        with ThreadPoolExecutor(8) as pool:
            configs = list(pool.map(lambda _: server.prepare({}), range(16)))
        assert len(set(configs)) == 1
        keys = list((home / ".gpupool" / "ssh").glob("*host*"))
        assert sorted(k.name for k in keys) == ["host_ed25519", "host_ed25519.pub"]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fetch_through(port: int, timeout: float = 20) -> bytes:
    """GET / on 127.0.0.1:port (the local end of a forward), retried until it answers."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if data:
                return data
        except OSError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing answered on 127.0.0.1:{port}")
        await asyncio.sleep(0.3)


async def socks5_get(proxy_port: int, host: str, port: int) -> tuple[int, bytes]:
    """GET / to host:port through a SOCKS5 proxy (ssh -D): (SOCKS reply code, answer)."""
    for _ in range(60):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            break
        except OSError:
            await asyncio.sleep(0.3)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return -1, b""  # ssh closes the connection when its server refuses the channel
    if head[1] != 0:
        writer.close()
        return head[1], b""
    await reader.readexactly(
        {1: 4 + 2, 4: 16 + 2}.get(head[3], 0) or (await reader.readexactly(1))[0] + 2
    )
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return 0, data


async def test_a_vs_code_like_client_starts_a_server_and_forwards_to_it(ssh_env):
    """What VS Code's Remote-SSH does: a remote command starts a listener on the server's
    loopback (in the background, so it outlives the command) and prints its port; then a
    forward to it, local (-L) and dynamic (-D, SOCKS, its 'local server' mode), carries
    requests to that process. A forward anywhere but the server's own loopback is refused."""
    remote_port, local_port, socks_port = free_port(), free_port(), free_port()
    (ssh_env["home"] / "served").mkdir()
    (ssh_env["home"] / "served" / "index.html").write_text("hello from the server\n")
    start = (
        f"setsid nohup {sys.executable} -m http.server --directory {ssh_env['home'] / 'served'} "
        f"--bind 127.0.0.1 {remote_port} >/dev/null 2>&1 < /dev/null & echo listeningOn={remote_port}"
    )
    rc, out, err = await run("ssh", *ssh_options(ssh_env), "server", start)
    assert rc == 0 and f"listeningOn={remote_port}" in out, err
    forward = await asyncio.create_subprocess_exec(
        "ssh", *ssh_options(ssh_env), "-N", "-o", "ExitOnForwardFailure=yes",
        "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
        "-D", f"127.0.0.1:{socks_port}",
        "server",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert forward.stderr is not None
    try:
        assert b"hello from the server" in await fetch_through(local_port)
        code, data = await socks5_get(socks_port, "localhost", remote_port)
        assert code == 0 and b"hello from the server" in data
        # not a relay: another address, even one on this machine's loopback, is refused
        # by sshd's PermitOpen before any connection is made
        code, _ = await socks5_get(socks_port, "127.0.0.2", remote_port)
        assert code != 0
    finally:
        forward.terminate()
        await forward.wait()
        await run("pkill", "-f", f"http.server --directory .* {remote_port}")
    said = (await forward.stderr.read()).decode()
    assert "administratively prohibited" in said, said


async def test_open_sessions_are_reported_and_closing_the_last_says_so(ssh_env, jp_serverapp):
    """What the pool is told (PUT api/reservations/{id}/ssh, here a recorder): the session
    with where it came from and its work (the login itself is work), then none."""
    reports: list[list[dict[str, Any]]] = []
    server = SshServer(home=ssh_env["home"], report=reports.append, report_gap=0.3)
    jp_serverapp.web_app.settings["gpupool"]["ssh"] = server
    session = await asyncio.create_subprocess_exec(
        "ssh", *ssh_options(ssh_env), "server", "sleep 3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(100):
        if reports and reports[-1]:
            break
        await asyncio.sleep(0.1)
    (s,) = reports[-1]
    assert set(s) == {"id", "from", "open_s", "idle_s"} and s["from"] == "127.0.0.1"
    assert s["idle_s"] is not None and s["idle_s"] < 5  # the key exchange was work
    assert await session.wait() == 0
    for _ in range(100):
        if reports[-1] == []:
            break
        await asyncio.sleep(0.1)
    assert reports[-1] == [] and server.sessions == {}
