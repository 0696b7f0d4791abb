"""A fault double: an HTTP relay in front of the pool service, for the hub's spawner.

Every request is passed through unchanged. While :attr:`SlowRelay.hold` is set, the
pool's answer to a new reservation (``POST .../reservations``) is held that many seconds
after the pool gave it: the pool has reserved, the spawner does not know yet. A start
cancelled in that window is the case a spawner must not leak (issue 18).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SlowRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.hold = 0.0
        self.held = threading.Event()  # set when an answer is being held
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = _read_request(conn)
                if request is None:
                    return
                head = request.split(b"\r\n", 1)[0].decode("latin-1")
                with socket.create_connection(self.target, timeout=60) as up:
                    up.sendall(request)
                    answer = b""
                    while chunk := up.recv(65536):
                        answer += chunk
                method, path = [*head.split(" "), "", ""][:2]
                if self.hold and method == "POST" and path.split("?")[0].endswith("/reservations"):
                    self.held.set()
                    time.sleep(self.hold)
                conn.sendall(answer)
            except OSError:
                pass  # the client went away (a cancelled start): nothing to answer


def _read_request(conn: socket.socket) -> bytes | None:
    """One request, with ``Connection: close`` so that the pool ends its answer by closing."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"content-length":
            length = int(line.split(b":", 1)[1])
        if name != b"connection":
            kept.append(line)
    kept.append(b"Connection: close")
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return b"\r\n".join(kept) + b"\r\n\r\n" + body
