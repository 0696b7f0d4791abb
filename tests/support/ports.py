"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import random
import socket


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(offsets: tuple[int, ...] = (0, 1, 2, 81)) -> int:
    """A port P such that P + each offset is free (the hub uses P, P+1, P+2, P+81)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        if all(port_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free loopback ports found")
