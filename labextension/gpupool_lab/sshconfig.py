"""``gpupool ssh-config``: the ``~/.ssh/config`` block that reaches this server with ssh,
scp, sftp, rsync and VS Code's or PyCharm's remote development, through the hub's URL.

Run in the server's terminal, it knows the user, the server's name and its path on the
hub; the hub's public address comes from ``--hub`` or, when the hub has a ``public_url``,
from ``JUPYTERHUB_PUBLIC_URL``. Each server gets its own host alias
(``gpupool-<user>`` or ``gpupool-<user>-<server>``). The block names a key and a token
file on the user's own machine and says how to make them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from typing import TextIO
from urllib.parse import urlsplit

KEY = "~/.ssh/gpupool_ed25519"
TOKEN = "~/.config/gpupool/token"


class SshConfigError(ValueError):
    """What is missing to write the block, and how to give it."""


def alias(user: str, server: str = "") -> str:
    """A host alias for (user, server): letters, digits, '-', '_' and '.' only."""
    name = f"gpupool-{user}" + (f"-{server}" if server else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def ssh_url(hub: str, service_prefix: str) -> str:
    """The WebSocket URL of the server's SSH endpoint, from the hub's public URL and the
    server's prefix (``/user/<name>/[<server>/]``, URL-quoted as the hub made it, with the
    hub's own base URL in front). Only the hub's origin is taken from ``hub``."""
    u = urlsplit(hub if "://" in hub else f"https://{hub}")
    if u.scheme not in ("http", "https") or not re.fullmatch(
        r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", u.netloc
    ):
        raise SshConfigError(
            f"--hub {hub[:100]!r}: give the hub's address, e.g. https://hub.example.org"
        )
    scheme = "wss" if u.scheme == "https" else "ws"
    prefix = "/" + service_prefix.strip("/") + "/"
    return f"{scheme}://{u.netloc}{prefix}gpupool/ssh"


def block(*, user: str, server: str, url: str, login: str) -> str:
    """The config block (ssh expands %-tokens in ProxyCommand: a % of the URL is doubled)."""
    host = urlsplit(url).hostname or "hub"
    what = f"{user}'s server" + (f" {server!r}" if server else "")
    proxy = f"gpupool-ssh-proxy {url.replace('%', '%%')} --token-file {TOKEN} --key {KEY}.pub"
    u = urlsplit(url)
    # the hub serves the proxy (gpupool.pool.pages), below its own base URL
    download = (
        f"{'https' if u.scheme == 'wss' else 'http'}://{u.netloc}"
        f"{u.path.split('/user/', 1)[0]}/services/gpupool/gpupool-ssh-proxy"
    )
    return "\n".join(
        [
            f"# gpupool: {what} (gpupool ssh-config). On this machine, once:",
            f"#   ssh-keygen -t ed25519 -N '' -f {KEY}",
            f"#   mkdir -p ~/.config/gpupool && (umask 077 && cat > {TOKEN})  # paste a hub token (the hub's Token page)",
            f"#   curl -fsS --create-dirs -o ~/.local/bin/gpupool-ssh-proxy {download}",
            "#   chmod +x ~/.local/bin/gpupool-ssh-proxy  # on your PATH; needs python3 only",
            f"Host {alias(user, server)}",
            f"    HostName {host}",
            # each server has its own host key: known_hosts keeps it under the alias
            f"    HostKeyAlias {alias(user, server)}",
            f"    User {login}",
            f"    ProxyCommand {proxy}",
            f"    IdentityFile {KEY}",
            "    IdentitiesOnly yes",
            "    ServerAliveInterval 30",
            "",
        ]
    )


def from_environment(environ: dict[str, str], hub: str | None, login: str) -> str:
    user = environ.get("JUPYTERHUB_USER")
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not user or not prefix:
        raise SshConfigError(
            "not inside a server started by the hub (JUPYTERHUB_USER and "
            "JUPYTERHUB_SERVICE_PREFIX are not set): run it in your server's terminal"
        )
    hub = hub or environ.get("JUPYTERHUB_PUBLIC_URL") or ""
    if not hub:
        raise SshConfigError(
            "the hub's public address is not known here: pass it, e.g. "
            "gpupool ssh-config --hub https://hub.example.org"
        )
    server = environ.get("JUPYTERHUB_SERVER_NAME", "")
    return block(user=user, server=server, url=ssh_url(hub, prefix), login=login)


def command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        text = from_environment(dict(os.environ), args.hub, getpass.getuser())
    except SshConfigError as e:
        print(f"gpupool ssh-config: {e}", file=sys.stderr)
        return 1
    print(text, file=out, end="")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    text = "print the ~/.ssh/config block that reaches this server with ssh"
    p = sub.add_parser("ssh-config", help=text, description=f"{text} (lab side: inside a server).")
    p.add_argument("--hub", help="the hub's public address (default: JUPYTERHUB_PUBLIC_URL)")
    p.set_defaults(func=command)
