"""A hung node's engine holds only its own node's threads (engines.py; issue 18).

Two engines on loopback sockets, both fault doubles of a real Docker engine: one that
accepts connections and never answers (as a node whose dockerd hangs, or a dropped
network path with a live listener), and one that answers Docker's ``/version`` at once.
The real Docker client (docker-py's APIClient) talks to both.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpupool.catalog.models import Node
from gpupool.engines import Engines, EngineUnreachable


class _Version(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"Version": "26.1.5", "ApiVersion": "1.45"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@pytest.fixture
def hung() -> Iterator[int]:
    """Accepts every connection, reads nothing, answers nothing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        sock.close()
        for c in held:
            c.close()


def node(name: str, port: int) -> Node:
    return Node(name=name, engine=f"tcp://127.0.0.1:{port}", cpu_millicores=1000, memory_mib=1024)


async def test_a_hung_node_takes_no_thread_another_node_needs(answering: int, hung: int) -> None:
    engines = Engines(max_workers=2, timeout=2)
    bad, good = node("hung", hung), node("fine", answering)
    # more calls to the hung node than there are threads per node
    stuck = [asyncio.ensure_future(engines.call(bad, "version")) for _ in range(6)]
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    assert (await engines.call(good, "version"))["Version"] == "26.1.5"
    took = time.monotonic() - t0
    assert took < 1.0, f"a call to a healthy node waited {took:.1f} s behind a hung one"
    assert engines.answering(bad, within=60)  # nothing timed out yet
    results = await asyncio.gather(*stuck, return_exceptions=True)
    assert all(isinstance(r, EngineUnreachable) for r in results), results
    assert not engines.answering(bad, within=60)
    assert engines.answering(bad, within=0)  # the window is the caller's; once it is past,
    assert not engines.answering(bad, within=60)  # one caller asks again, the others wait
    assert engines.answering(good, within=60)
