"""SSH into this server over its own URL: ``WS {base_url}gpupool/ssh`` runs OpenSSH's
``sshd`` in inetd mode (``-i``) for each connection and joins its standard input and
output to the WebSocket, so no port opens anywhere (issue 23).

Who gets in: the WebSocket is authenticated as every other request to this server (the
hub's token or the lab's login, checked by jupyter-server and the hub before it gets
here), and only the server's owner is let through, not an admin who may reach the server.
sshd then asks for the key the client named in the ``X-GpuPool-SSH-Key`` header of the
same request: the token is the credential, the key only binds the SSH session to this
request (``gpupool ssh-config`` makes it on the user's machine), so there is no password
and no authorized_keys file to keep.

What a session gets is what the lab's terminal gets: sshd runs as the server's user in
the server's container (its CPU, memory and pids limits, its home and datasets, no
privileges, ``/etc/ld.so.preload`` naming HAMi-core for every process), and the slice's
variables (``CUDA_DEVICE_*``, ``GPUPOOL_*``, the hub's ``JUPYTERHUB_*``) are set in every
session with sshd's ``SetEnv``, so ``ssh host cmd`` is limited too.

A session whose client sends work (ssh_activity.py: more than keepalives) counts as activity
of the server, for the hub's idle culling and, reported to the pool with the server's
token, for its GPU-idle culling and its dashboard. Every ``recheck_every`` seconds the
hub is asked again whether the connection's token is still valid (not the cached answer):
a token revoked or expired while the session runs ends it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket

from .ssh_activity import REPORT_GAP, ActivityMeter, SessionReporter

KEY_HEADER = "X-GpuPool-SSH-Key"
# an OpenSSH public key line: type, base64 blob, optional comment (dropped)
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
KEY_RE = re.compile(rf"({'|'.join(map(re.escape, KEY_TYPES))}) ([A-Za-z0-9+/]{{40,2048}}={{0,3}})")
# the environment a session gets from the server's (sshd starts sessions with a clean one)
PASSED_PREFIXES = ("CUDA_DEVICE_", "GPUPOOL_", "JUPYTERHUB_", "NVIDIA_", "LC_")
# PATH and VIRTUAL_ENV: the image's tools (gpupool, python, pip) in `ssh host cmd` too
PASSED_NAMES = (
    "LD_PRELOAD",
    "MEM_LIMIT",
    "CPU_LIMIT",
    "MEM_GUARANTEE",
    "CPU_GUARANTEE",
    "PATH",
    "VIRTUAL_ENV",
    "LANG",
    "LD_LIBRARY_PATH",
)
KEY_FILE_LIFETIME = 300.0  # seconds; a key file older than sshd's LoginGraceTime is debris
CHUNK = 64 * 1024  # bytes of sshd's output per WebSocket message
MAX_MESSAGE = 1024 * 1024  # bytes of one message from the client
ACTIVITY_EVERY = 10.0  # seconds between activity marks of one session
RECHECK_EVERY = 60.0  # seconds between checks that an open session's token is still valid


class SshUnavailable(Exception):
    """This server cannot run sshd; the message says what is missing."""


def parse_key(line: str) -> str:
    """The key as ``TYPE BASE64`` (its comment dropped); ValueError naming what is allowed."""
    parts = line.strip().split()
    if (
        len(line) > 4096
        or any(c in line for c in "\r\n\0")
        or len(parts) < 2
        or not KEY_RE.fullmatch(f"{parts[0]} {parts[1]}")
    ):
        raise ValueError(
            f"{KEY_HEADER}: not an OpenSSH public key; send one line 'TYPE BASE64 [comment]' "
            f"with TYPE one of {', '.join(KEY_TYPES)}"
        )
    return f"{parts[0]} {parts[1]}"


def _quoted(value: str) -> str:
    """A value as sshd's configuration parser reads it back: in double quotes, with
    backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def session_environment(environ: dict[str, str]) -> dict[str, str]:
    """What of the server's environment every session gets: the slice, the pool's and the
    hub's variables. Values with a newline or NUL are left out (sshd cannot pass them)."""
    return {
        k: v
        for k, v in sorted(environ.items())
        if (k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
        and "\n" not in v
        and "\0" not in v
    }


class SshServer:
    """This server's sshd settings: its folder (a host key that lasts with the home, so a
    client's known_hosts stays valid), its configuration file and the sessions open now."""

    def __init__(
        self,
        home: Path | None = None,
        sshd: str | None = None,
        *,
        recheck_every: float = RECHECK_EVERY,
        report: Any = "pool",
        report_gap: float = REPORT_GAP,
    ) -> None:
        self._home = home
        self.recheck_every = recheck_every
        self.sshd = sshd or shutil.which("sshd") or "/usr/sbin/sshd"
        self.lock = threading.Lock()  # one prepare at a time (the host key is made once)
        # the configuration holds the server's token: in a folder of this container's own,
        # not in the home volume that outlives it
        self.runtime = Path(tempfile.mkdtemp(prefix="gpupool-sshd-"))
        weakref.finalize(self, shutil.rmtree, self.runtime, True)  # gone with the server
        self.sessions: dict[str, dict[str, Any]] = {}
        self.ending: set[asyncio.Task[Any]] = set()  # sshd processes being waited for
        # "pool": this server's reservation with the server's token; None: nobody
        self.reporter = SessionReporter(
            self.sessions, gap=report_gap, **({} if report == "pool" else {"send": report})
        )

    def end(self, proc: asyncio.subprocess.Process) -> None:
        """Stop a session's sshd and wait for it (no zombie left)."""

        async def reap() -> None:
            if proc.returncode is None:
                try:
                    proc.terminate()
                except ProcessLookupError:
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()

        task = asyncio.ensure_future(reap())
        self.ending.add(task)
        task.add_done_callback(self.ending.discard)

    def _account(self) -> tuple[str, Path]:
        """The server's user as sshd knows it (passwd) and its home, where StrictModes
        stops checking folders upwards."""
        try:
            entry = pwd.getpwuid(os.getuid())
        except KeyError:
            raise SshUnavailable(
                f"uid {os.getuid()} has no account in /etc/passwd: sshd cannot log it in"
            ) from None
        if not re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}", entry.pw_name):
            raise SshUnavailable(f"the account name {entry.pw_name[:40]!r} is not one sshd takes")
        return entry.pw_name, Path(self._home or entry.pw_dir)

    @property
    def folder(self) -> Path:
        return self._account()[1] / ".gpupool" / "ssh"

    def prepare(self, environ: dict[str, str]) -> Path:
        """Make the folder, the host key and the configuration; the configuration's path."""
        with self.lock:
            try:
                return self._prepare(environ)
            except (OSError, subprocess.SubprocessError) as e:
                raise SshUnavailable(f"cannot prepare sshd in {self.folder}: {e}") from None

    def _prepare(self, environ: dict[str, str]) -> Path:
        if not os.access(self.sshd, os.X_OK):
            raise SshUnavailable(
                "this server's image has no OpenSSH server (sshd): use an image with "
                "openssh-server installed (gpupool's single-user image has it)"
            )
        user, _ = self._account()
        folder = self.folder
        # sshd's StrictModes: the folders above its files are the user's and not writable by others
        for d in (folder.parent, folder):
            d.mkdir(mode=0o700, exist_ok=True)
            d.chmod(0o700)
        now = time.time()
        for old in folder.glob("key-*"):  # left by a crash or an abandoned connection
            if now - old.stat().st_mtime > KEY_FILE_LIFETIME:
                old.unlink(missing_ok=True)
        host_key = folder / "host_ed25519"
        if not host_key.exists():
            made = folder / f"new-host-{secrets.token_hex(4)}"
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "gpupool",
                    "-f",
                    str(made),
                ],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
            )
            os.replace(f"{made}.pub", f"{host_key}.pub")
            os.replace(made, host_key)
        lines = [
            f"HostKey {host_key}",
            f"AllowUsers {user}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitUserEnvironment no",
            "PrintLastLog no",
            "PrintMotd no",
            "PidFile none",
            "UsePAM no",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
            # the user's own processes only: forwarding to the server's ports, not a relay
            # for the node's network
            "AllowTcpForwarding local",
            "PermitOpen localhost:* 127.0.0.1:* [::1]:*",
            "AllowStreamLocalForwarding no",
            "AllowAgentForwarding no",
            "GatewayPorts no",
            "PermitTunnel no",
            "X11Forwarding no",
            "ClientAliveInterval 30",
        ]
        env = session_environment(environ)
        if env:
            lines.append("SetEnv " + " ".join(f"{k}={_quoted(v)}" for k, v in env.items()))
        config = self.runtime / "sshd_config"
        fd, tmp = tempfile.mkstemp(dir=self.runtime)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, config)
        return config

    def key_file(self, key: str) -> Path:
        """A file that authorizes ``key`` for one connection (removed when it ends)."""
        path = self.folder / f"key-{secrets.token_hex(8)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return path


def _owner_of_server() -> str | None:
    return os.environ.get("JUPYTERHUB_USER")


class SshSocket(websocket.WebSocketHandler, JupyterHandler):
    """One SSH connection: sshd -i for this socket, bytes both ways, nothing else."""

    auth_resource = "gpupool"

    def initialize(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.key_path: Path | None = None
        self.pump: asyncio.Task[None] | None = None
        self.stderr_reader: asyncio.Task[None] | None = None
        self.rechecker: asyncio.Task[None] | None = None
        self.meter = ActivityMeter()
        self.sid = secrets.token_hex(6)
        self.last_mark = 0.0
        self.closed = False  # on_close may come before open, while get() still awaits

    @property
    def server(self) -> SshServer:
        return self.settings["gpupool"]["ssh"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A refusal as JSON ``{"message": ...}``: read by gpupool-ssh-proxy, not a browser."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def get_compression_options(self) -> None:
        return None  # SSH's bytes are encrypted: compression gains nothing

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return MAX_MESSAGE

    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in first: send the hub token as 'Authorization: token …'")
        owner = _owner_of_server()
        if owner is not None and user.username != owner:
            raise web.HTTPError(403, "SSH into a server is for its owner only")
        if not self.authorizer.is_authorized(self, user, "write", "terminals"):
            raise web.HTTPError(403, "not allowed to run commands on this server")
        try:
            self.key = parse_key(self.request.headers.get(KEY_HEADER, ""))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            self.sshd_config = await asyncio.get_running_loop().run_in_executor(
                None, self.server.prepare, dict(os.environ)
            )
        except SshUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.closed:
            return
        self.key_path = self.server.key_file(self.key)
        self.proc = await asyncio.create_subprocess_exec(
            self.server.sshd,
            "-i",
            "-e",
            "-f",
            str(self.sshd_config),
            "-o",
            f"AuthorizedKeysFile {_quoted(str(self.key_path))}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        if self.closed:  # the client left while sshd started: nothing of it stays
            self.on_close()
            return
        # the hub's proxy appends the address it saw: the last one (those before it are
        # what the client claimed)
        forwarded = self.request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        remote = forwarded or self.request.remote_ip
        self.server.sessions[self.sid] = {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(),
            "opened": time.monotonic(),
            "from": "".join(c for c in (remote or "") if " " <= c <= "~")[:64],
            "meter": self.meter,
        }
        self.server.reporter.poke()
        self.log.info("gpupool: SSH session %s opened from %s", self.sid, remote)
        self.pump = asyncio.ensure_future(self._pump())
        self.stderr_reader = asyncio.ensure_future(self._log_errors())
        self.rechecker = asyncio.ensure_future(self._recheck())

    async def _pump(self) -> None:
        """sshd's output to the client, one awaited message at a time (a slow client slows
        only its own session)."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while True:
                chunk = await self.proc.stdout.read(CHUNK)
                if not chunk:
                    break
                await self.write_message(chunk, binary=True)
        except websocket.WebSocketClosedError:
            pass
        finally:
            self.close()

    async def _log_errors(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        said = 0
        while line := await self.proc.stderr.readline():
            if said < 20:  # what sshd says is bounded in the server's log
                self.log.warning(
                    "gpupool: sshd (%s): %s", self.sid, line.decode(errors="replace")[:300].rstrip()
                )
                said += 1

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) or self.proc is None or self.proc.stdin is None:
            self.close(1003, "binary messages only")
            return
        self._mark_activity(len(message))
        try:
            self.proc.stdin.write(message)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.close()

    async def _recheck(self) -> None:
        """Close the session when the hub no longer accepts its token (revoked, expired,
        or no longer allowed on this server). A hub that does not answer ends nothing."""
        hub_auth = getattr(self.identity_provider, "hub_auth", None)
        token = hub_auth.get_token(self) if hub_auth is not None else None
        if not token:
            return  # not behind a hub: jupyter-server's own token does not change
        while True:
            await asyncio.sleep(max(1.0, self.server.recheck_every))
            try:
                who = await hub_auth.user_for_token(token, use_cache=False, sync=False)
                owner = _owner_of_server()
                refused = (
                    not who
                    or (owner is not None and who.get("name") != owner)
                    or not hub_auth.check_scopes(hub_auth.access_scopes, who)
                )
            except Exception as e:  # the hub is away or odd: the session goes on
                self.log.warning(
                    "gpupool: SSH session %s: cannot recheck its token: %s", self.sid, e
                )
                continue
            if refused:
                self.log.warning(
                    "gpupool: SSH session %s closed: the hub no longer accepts its token", self.sid
                )
                self.close(1008, "the hub no longer accepts this token")
                return

    def _mark_activity(self, size: int) -> None:
        if not self.meter.record(size):
            return  # keepalives and the like: not work
        now = asyncio.get_running_loop().time()
        if now - self.last_mark >= ACTIVITY_EVERY:
            self.last_mark = now
            # a *_last_activity setting counts in jupyter-server's last_activity (its hook for
            # extensions), which the hub's idle culling reads
            self.settings["gpupool_ssh_last_activity"] = dt.datetime.now(dt.timezone.utc)

    def on_close(self) -> None:
        self.closed = True
        was_open = self.server.sessions.pop(self.sid, None) is not None
        for task in (self.pump, self.stderr_reader, self.rechecker):
            if task is not None and not task.done():
                task.cancel()
        if self.key_path is not None:
            self.key_path.unlink(missing_ok=True)
            self.key_path = None
        proc, self.proc = self.proc, None
        if proc is not None:
            self.server.end(proc)
        if was_open:  # last: nothing above waits on the pool
            self.server.reporter.poke()
        self.log.info("gpupool: SSH session %s closed", self.sid)
