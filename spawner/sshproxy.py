#!/usr/bin/env python3
"""``gpupool-ssh-proxy``: ssh's ProxyCommand to a gpupool server, over the hub's URL.

It opens the WebSocket ``…/user/<name>/[<server>/]gpupool/ssh`` through the hub's proxy
with the user's hub token, names the public key ssh will offer, and then carries ssh's
bytes both ways (standard input and output), as ``websocat --binary`` would. Python's
standard library only: it runs on the user's own machine, where nothing of gpupool but
this file may be installed (``python3 sshproxy.py …`` works as well). POSIX only (Linux,
macOS, WSL): it waits on standard input with ``select``, which Windows does not offer.

One thread does all the carrying: over ``wss://`` the connection is one OpenSSL object,
which must not be read and written from two threads at once.

The token is read from a file (``--token-file``, mode 0600) or ``GPUPOOL_TOKEN``, never
from the command line, where other users of the machine could read it. A hub whose
certificate a site's own CA signed is trusted with ``--cacert`` (or ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import select
import socket
import ssl
import struct
import sys
import time
from collections import deque
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
KEY_HEADER = "X-GpuPool-SSH-Key"
MAX_FRAME = 16 * 1024 * 1024  # bytes of one message from the server
MAX_HEAD = 64 * 1024  # bytes of the server's answer to the upgrade, headers or body
CHUNK = 256 * 1024  # bytes read at once from standard input or the socket
BACKLOG = 4 * 1024 * 1024  # bytes waiting for one side before the other is read no more
SMALL = 4096  # bytes under which a message joins the last one waiting for standard output
LINGER = 10.0  # seconds the end waits at most for the server's close, however busy it is
CLOSE_NORMAL = struct.pack("!H", 1000)
# what a non-blocking read or write says when it has to wait (TLS may need either way)
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class ProxyError(Exception):
    """The connection could not be made; the message says why."""


class ProtocolError(ProxyError):
    """The server broke RFC 6455: the connection ends with a close frame of ``code``."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class HasFileno(Protocol):
    def fileno(self) -> int: ...


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


def frame_length(buf: bytes | bytearray) -> int:
    """Bytes that the frame at the start of ``buf`` takes, as far as ``buf`` tells: the
    header's length while the header is incomplete, then the whole frame's. The frame is
    complete when ``len(buf)`` reaches it; ProtocolError when it would pass MAX_FRAME, or
    for a control frame (ping, pong, close) over 125 bytes or in pieces (RFC 6455 §5.5)."""
    if len(buf) < 2:
        return 2
    n, head = buf[1] & 0x7F, 2 + (4 if buf[1] & 0x80 else 0)
    if buf[0] & 0x08 and (n > 125 or not buf[0] & 0x80):
        raise ProtocolError("the server sent a control frame over 125 bytes or in pieces")
    if n >= 126:
        size = 2 if n == 126 else 8
        head += size
        if len(buf) < 2 + size:
            return head
        n = int.from_bytes(buf[2 : 2 + size], "big")
    if n > MAX_FRAME:
        raise ProtocolError(f"the server sent a message of {n} bytes (at most {MAX_FRAME})", 1009)
    return head + n


def next_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """(opcode, payload) of the first frame in ``buf``, taken out of it; None while that
    frame has not arrived whole (the rest comes in later reads)."""
    total = frame_length(buf)
    if len(buf) < total:
        return None
    opcode, masked, n = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
    start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    if masked:  # a server must not mask, but reading it costs nothing
        mask = bytes(buf[start : start + 4])
        payload = _xor(bytes(buf[start + 4 : total]), mask)
    else:
        payload = bytes(buf[start:total])
    del buf[:total]
    return opcode, payload


def read_frame(stream: BinaryIO) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame of a blocking stream; EOFError at its end,
    ProxyError on a frame that passes MAX_FRAME."""
    buf = bytearray()
    while len(buf) < (need := frame_length(buf)):
        more = stream.read(need - len(buf))
        if not more:
            raise EOFError("the server closed the connection")
        buf += more
    got = next_frame(buf)
    assert got is not None  # the loop above read the whole frame
    return got


def handshake(
    url: str,
    token: str,
    key: str,
    *,
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
) -> tuple[socket.socket, bytes]:
    """The open WebSocket and the bytes of it that came with the server's answer (frames
    may follow the 101 in the same read); ProxyError with the hub's or the server's answer
    when it is refused. ``context`` verifies a wss:// server (default: the system's CAs)."""
    u = urlsplit(url)
    if u.scheme not in ("ws", "wss", "http", "https") or not u.hostname:
        raise ProxyError(f"{url}: not a ws://, wss://, http:// or https:// URL")
    secure = u.scheme in ("wss", "https")
    port = u.port or (443 if secure else 80)
    deadline = time.monotonic() + timeout  # for all of it: a server may trickle its answer
    try:
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
        if secure:
            context = context or ssl.create_default_context()
            sock = context.wrap_socket(_until(sock, deadline), server_hostname=u.hostname)
    except OSError as e:
        raise ProxyError(f"cannot reach {u.hostname}:{port}: {e}") from None
    nonce = base64.b64encode(secrets.token_bytes(16)).decode()
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: token {token}\r\n{KEY_HEADER}: {key}\r\n\r\n"
    )
    try:
        _until(sock, deadline).sendall(request.encode())
        head, rest, whole = _read_head(sock, deadline)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].strip()
        headers: dict[str, str] = {}
        for line in lines[1:101]:  # header lines, at most
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            body = _read_body(sock, rest, headers.get("content-length", ""), deadline)
            raise ProxyError(f"{url} answered {_printable(status) or 'nothing'}: {_reason(body)}")
    except TimeoutError:
        sock.close()
        raise ProxyError(f"{url}: the server did not answer within {timeout:g} s") from None
    except OSError as e:
        sock.close()
        raise ProxyError(f"{url}: no answer ({e})") from None
    except ProxyError:
        sock.close()
        raise
    want = base64.b64encode(hashlib.sha1((nonce + GUID).encode()).digest()).decode()
    if not whole or headers.get("sec-websocket-accept") != want:
        sock.close()
        raise ProxyError(f"{url}: not a WebSocket answer")
    sock.settimeout(None)
    return sock, rest


def _until(sock: socket.socket, deadline: float) -> socket.socket:
    """``sock``, its timeout what is left of the time until ``deadline``."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)
    return sock


def _read_head(sock: socket.socket, deadline: float) -> tuple[bytes, bytes, bool]:
    """The answer's status line and headers, the bytes read past them, and whether the
    blank line that ends the headers came (within MAX_HEAD). Read from the socket itself,
    not a buffered file, so that nothing after the headers stays behind in a buffer."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0 and len(buf) < MAX_HEAD:
        more = _until(sock, deadline).recv(4096)
        if not more:
            break
        buf += more
    if end < 0:
        return bytes(buf[:MAX_HEAD]), b"", False
    return bytes(buf[:end]), bytes(buf[end + 4 :]), True


def _read_body(sock: socket.socket, body: bytes, length: str, deadline: float) -> bytes:
    """A refusal's body, as far as Content-Length says and MAX_HEAD allows."""
    want = min(int(length), MAX_HEAD) if re.fullmatch(r"[0-9]{1,9}", length) else 0
    data = bytearray(body[:want])
    try:
        while len(data) < want and (more := _until(sock, deadline).recv(want - len(data))):
            data += more
    except OSError:
        pass  # what came is enough to say why
    return bytes(data)


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


class _Carrier:
    """The state of one carrying: what each side has sent that the other has not taken
    yet, and how far the closing handshake has come."""

    def __init__(self, sock: socket.socket, fd_in: int, fd_out: int, buffered: bytes) -> None:
        self.sock, self.fd_in, self.fd_out = sock, fd_in, fd_out
        self.inbuf = bytearray(buffered)  # from the server, not yet a whole frame
        self.up = bytearray()  # frames for the server
        self.down: deque[memoryview | bytearray] = deque()  # for standard output: queue_output
        self.down_size = 0
        self.pong: bytes | None = None  # the latest ping's payload, not yet answered
        self.error: ProtocolError | None = None
        self.reading_input = True
        self.output_gone = False
        self.close_sent = False
        self.server_done = False  # its close frame came, or its end of the connection
        self.read_wants_write = False  # TLS: a read must first send something
        self.deadline: float | None = None
        self.chunk = memoryview(bytearray(CHUNK))  # one buffer for every read

    def run(self, linger: float) -> None:
        sock, tls = self.sock, isinstance(self.sock, ssl.SSLSocket)
        sock.setblocking(False)
        self.parse(linger)
        while True:
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                break
            if self.server_done and not self.down and not self.up:
                break
            if not self.up:  # a ping's answer goes once everything before it has gone
                self.up += self.pong_frame()
            read_sock = not self.server_done and self.down_size < BACKLOG
            rl: list[HasFileno | int] = [sock] if read_sock else []
            wl: list[HasFileno | int] = [sock] if self.up or self.read_wants_write else []
            if self.reading_input and len(self.up) < BACKLOG:
                rl.append(self.fd_in)
            if self.down:
                wl.append(self.fd_out)
            # TLS may hold decrypted bytes that select cannot see: the rest of a record that
            # an earlier read (the handshake's, 4 KiB at a time) took only in part
            pending = read_sock and tls and sock.pending() > 0  # type: ignore[attr-defined]
            wait = None if self.deadline is None else self.deadline - now
            r, w, _ = select.select(rl, wl, [], 0 if pending else wait)
            if pending or sock in r or (self.read_wants_write and sock in w):
                self.recv(linger)
            if self.fd_in in r:
                self.read_input(linger)
            if self.up and (sock in w or sock in r):  # TLS: a write may wait for a read
                self.send()
            if self.fd_out in w:
                self.write_output(linger)
        if self.error is not None:
            raise self.error

    def recv(self, linger: float) -> None:
        """Everything the socket has now (TLS included), while standard output keeps up."""
        self.read_wants_write = False
        while not self.server_done and self.down_size < BACKLOG:
            try:
                n = self.sock.recv_into(self.chunk)
            except ssl.SSLWantWriteError:
                self.read_wants_write = True
                return
            except WOULD_BLOCK:
                return
            if not n:
                self.finish(linger, server=True)
                self.up.clear()  # nobody is left to read it
                return
            self.inbuf += self.chunk[:n]
            self.parse(linger)

    def parse(self, linger: float) -> None:
        try:
            while not self.server_done and (got := next_frame(self.inbuf)) is not None:
                opcode, payload = got
                if opcode in (0, 1, 2):
                    if payload and not self.output_gone:
                        self.queue_output(payload)
                elif opcode == 8:  # close: answer with its status code, then end
                    self.finish(linger, server=True, code=payload[:2])
                elif opcode == 9 and not self.close_sent:
                    self.pong = payload  # RFC 6455 §5.5.3: answering the latest will do
        except ProtocolError as e:  # tell the server why, and take nothing more from it
            self.error, self.reading_input, self.down_size = e, False, 0
            self.down.clear()
            self.finish(linger, server=True, code=struct.pack("!H", e.code))

    def queue_output(self, payload: bytes) -> None:
        # one entry per message costs ~200 bytes: small ones share one bytearray instead
        last = self.down[-1] if self.down else None
        if len(payload) >= SMALL:
            self.down.append(memoryview(payload))
        elif isinstance(last, bytearray) and len(last) < CHUNK:
            last += payload
        else:
            self.down.append(bytearray(payload))
        self.down_size += len(payload)

    def pong_frame(self) -> bytes:
        """The answer to the latest ping, once; b"" when none waits."""
        pong, self.pong = self.pong, None
        return b"" if pong is None else frame(pong, opcode=10)

    def read_input(self, linger: float) -> None:
        try:
            n = os.readv(self.fd_in, [self.chunk])
        except BlockingIOError:
            return
        if n:
            self.up += self.pong_frame()  # so that a steady upload cannot hold it back
            self.up += frame(bytes(self.chunk[:n]))
        else:
            self.reading_input = False
            self.finish(linger)

    def send(self) -> None:
        # from the start of `up` and never shorter than the last try: OpenSSL wants a
        # write that had to wait repeated with the same bytes
        try:
            sent = self.sock.send(self.up[:CHUNK])
        except WOULD_BLOCK:
            return
        del self.up[:sent]

    def write_output(self, linger: float) -> None:
        try:
            written = os.write(self.fd_out, self.down[0])
        except BlockingIOError:
            return
        except BrokenPipeError:  # ssh has gone: say goodbye to the server
            self.down.clear()
            self.down_size = 0
            self.output_gone, self.reading_input = True, False
            self.finish(linger)
            return
        self.down_size -= written
        head = self.down[0]
        if written == len(head):
            self.down.popleft()
        elif isinstance(head, bytearray):  # may be growing still: no view of it may stay
            del head[:written]
        else:
            self.down[0] = head[written:]

    def finish(self, linger: float, *, server: bool = False, code: bytes = CLOSE_NORMAL) -> None:
        """Start the end: send our close frame once, and stop ``linger`` seconds later at
        the latest, however busy the server keeps the connection."""
        self.server_done = self.server_done or server
        if not self.close_sent:
            self.up += self.pong_frame()
            self.up += frame(code or CLOSE_NORMAL, opcode=8)
            self.close_sent = True
        if self.deadline is None:
            self.deadline = time.monotonic() + linger


def _fd(stream: HasFileno | int) -> int:
    return stream if isinstance(stream, int) else stream.fileno()


def carry(
    sock: socket.socket,
    stdin: HasFileno | int,
    stdout: HasFileno | int,
    buffered: bytes = b"",
    *,
    linger: float = LINGER,
) -> int:
    """ssh's bytes both ways until either side ends; the exit status. ``buffered``: bytes
    of the WebSocket that came with the handshake's answer. On the end of standard input
    it sends a close frame and waits for the server's, ``linger`` seconds at most. A server
    that breaks RFC 6455 gets a close frame with code 1002 (1009: a message too big)."""
    fd_in, fd_out = _fd(stdin), _fd(stdout)
    # a pipe's write end that does not block, so that a slow reader of our output never
    # stops the other direction; never a terminal's, whose setting the shell shares
    was_blocking = os.get_blocking(fd_out)
    if not os.isatty(fd_out):
        os.set_blocking(fd_out, False)
    try:
        _Carrier(sock, fd_in, fd_out, buffered).run(linger)
        status, error = 0, None
    except (OSError, ProxyError) as e:
        status, error = 1, e
    finally:
        os.set_blocking(fd_out, was_blocking)
        sock.close()
    if error is not None:  # once standard output blocks again, when it shares stderr's pipe
        print(f"gpupool-ssh-proxy: {error}", file=sys.stderr)
    return status


def read_token(path: str | None) -> str:
    """The hub token from the file ``path`` (mode 0600: its owner's alone), or else from
    GPUPOOL_TOKEN."""
    if path:
        path = os.path.expanduser(path)
        with open(path) as f:
            mode = os.fstat(f.fileno()).st_mode & 0o777
            if mode & 0o077:  # as ssh refuses a key that others may read
                raise ProxyError(f"{path} is open to others (mode {mode:04o}): chmod 600 {path}")
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
    p.add_argument(
        "--cacert",
        help="a PEM file of CA certificates to trust besides the system's, for a hub whose "
        "certificate a site's own CA signed (SSL_CERT_FILE replaces the system's instead)",
    )
    a = p.parse_args(argv)
    try:
        token = read_token(a.token_file)
        with open(os.path.expanduser(a.key)) as f:
            key = f.readline().strip()
        context = None
        if a.cacert:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=os.path.expanduser(a.cacert))
        sock, buffered = handshake(a.url, token, key, context=context)
    except (ProxyError, OSError) as e:
        print(f"gpupool-ssh-proxy: {e}", file=sys.stderr)
        return 1
    return carry(sock, sys.stdin.buffer, sys.stdout.buffer, buffered)


if __name__ == "__main__":
    sys.exit(main())
