"""``gpupool-ssh-proxy``: ssh's ProxyCommand to a gpupool server, over the hub's URL.

It opens the WebSocket ``…/user/<name>/[<server>/]gpupool/ssh`` through the hub's proxy
with the user's hub token, names the public key ssh will offer, and then carries ssh's
bytes both ways (standard input and output), as ``websocat --binary`` would. Python's
standard library only: it runs on the user's own machine, where nothing of gpupool but
this file may be installed (``python3 sshproxy.py …`` works as well).

The token is read from a file (``--token-file``, mode 0600) or ``GPUPOOL_TOKEN``, never
from the command line, where other users of the machine could read it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import struct
import sys
import threading
from typing import BinaryIO
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
KEY_HEADER = "X-GpuPool-SSH-Key"
MAX_FRAME = 16 * 1024 * 1024  # bytes of one message from the server
CHUNK = 64 * 1024


class ProxyError(Exception):
    """The connection could not be made; the message says why."""


def frame(payload: bytes, opcode: int = 2, mask: bytes | None = None) -> bytes:
    """One final client frame (masked, as RFC 6455 requires of a client)."""
    mask = mask if mask is not None else secrets.token_bytes(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + _xor(payload, mask)


def _xor(data: bytes, mask: bytes) -> bytes:
    """RFC 6455's masking, as one big-integer XOR (a byte loop carries ~15 MiB/s)."""
    if not data:
        return b""
    key = (mask * (len(data) // 4 + 1))[: len(data)]
    n = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return n.to_bytes(len(data), "big")


def read_exact(sock: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.read(n - len(data))
        if not more:
            raise EOFError("the server closed the connection")
        data += more
    return data


def read_frame(sock: BinaryIO) -> tuple[int, bytes]:
    """(opcode, payload) of the server's next frame; ProxyError on one that breaks the
    protocol or passes MAX_FRAME."""
    b0, b1 = read_exact(sock, 2)
    opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(sock, 8))
    if n > MAX_FRAME:
        raise ProxyError(f"the server sent a message of {n} bytes (at most {MAX_FRAME})")
    mask = read_exact(sock, 4) if masked else None
    payload = read_exact(sock, n)
    if mask:
        payload = _xor(payload, mask)
    return opcode, payload


def handshake(
    url: str, token: str, key: str, *, timeout: float = 30
) -> tuple[socket.socket, BinaryIO]:
    """The open WebSocket (its socket and a buffered reader); ProxyError with the hub's or
    the server's answer when it is refused."""
    u = urlsplit(url)
    if u.scheme not in ("ws", "wss", "http", "https") or not u.hostname:
        raise ProxyError(f"{url}: not a ws://, wss://, http:// or https:// URL")
    secure = u.scheme in ("wss", "https")
    port = u.port or (443 if secure else 80)
    try:
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
    except OSError as e:
        raise ProxyError(f"cannot reach {u.hostname}:{port}: {e}") from None
    nonce = base64.b64encode(secrets.token_bytes(16)).decode()
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: token {token}\r\n{KEY_HEADER}: {key}\r\n\r\n"
    )
    sock.sendall(request.encode())
    reader = sock.makefile("rb")
    status = reader.readline(8192).decode("latin-1").strip()
    headers: dict[str, str] = {}
    for _ in range(100):  # header lines, at most
        line = reader.readline(8192).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        length = headers.get("content-length", "")
        body = (
            reader.read(min(int(length), 64 * 1024)) if re.fullmatch(r"[0-9]{1,9}", length) else b""
        )
        raise ProxyError(f"{url} answered {_printable(status) or 'nothing'}: {_reason(body)}")
    want = base64.b64encode(hashlib.sha1((nonce + GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != want:
        raise ProxyError(f"{url}: not a WebSocket answer")
    sock.settimeout(None)
    return sock, reader


def _printable(text: str) -> str:
    """Without control characters: what a server sends must not drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else "?" for c in text)


def _reason(body: bytes) -> str:
    text = body[:2000].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        text = str(doc.get("message") or doc.get("reason") or text)
    except (ValueError, AttributeError):
        pass
    return _printable(text.strip())[:500] or "(no message)"


def carry(sock: socket.socket, reader: BinaryIO, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """ssh's bytes both ways until either side ends; the exit status."""
    lock = threading.Lock()

    def send(data: bytes, opcode: int = 2) -> None:
        with lock:
            sock.sendall(frame(data, opcode))

    def upstream() -> None:
        try:
            while chunk := stdin.read1(CHUNK) if hasattr(stdin, "read1") else stdin.read(CHUNK):
                send(chunk)
            send(struct.pack("!H", 1000), opcode=8)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while True:
            opcode, payload = read_frame(reader)
            if opcode in (0, 1, 2):
                stdout.write(payload)
                stdout.flush()
            elif opcode == 8:
                return 0
            elif opcode == 9:
                send(payload, opcode=10)
    except EOFError:
        return 0
    except (OSError, ProxyError) as e:
        print(f"gpupool-ssh-proxy: {e}", file=sys.stderr)
        return 1


def read_token(path: str | None) -> str:
    if path:
        with open(os.path.expanduser(path)) as f:
            token = f.read().strip()
    else:
        token = os.environ.get("GPUPOOL_TOKEN", "").strip()
    if not token or any(c.isspace() for c in token):
        raise ProxyError(
            "no hub token: put one in the file --token-file names (mode 0600) or in GPUPOOL_TOKEN "
            "(make one on the hub's Token page)"
        )
    return token


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpupool-ssh-proxy", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "url", help="the server's SSH URL, e.g. wss://hub.example.org/user/alice/gpupool/ssh"
    )
    p.add_argument("--token-file", help="a file holding the hub token (else GPUPOOL_TOKEN)")
    p.add_argument("--key", required=True, help="the public key ssh offers (IdentityFile + .pub)")
    a = p.parse_args(argv)
    try:
        token = read_token(a.token_file)
        with open(os.path.expanduser(a.key)) as f:
            key = f.readline().strip()
        sock, reader = handshake(a.url, token, key)
    except (ProxyError, OSError) as e:
        print(f"gpupool-ssh-proxy: {e}", file=sys.stderr)
        return 1
    return carry(sock, reader, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
