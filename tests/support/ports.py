"""Free loopback ports for servers the tests start.

Ports are drawn below the kernel's ephemeral range (``ip_local_port_range``, 32768-60999 by
default): the outgoing connections of a test run (HTTP clients, Docker API calls) take
ports from that range, and one could take a hub's port between the check here and the
hub's bind ("Address already in use" in CI). A port handed out once is not handed out
again in the same process."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: set[int] = set()
LOWEST = 10000


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def port_window(span: int = 0) -> tuple[int, int]:
    """Where base ports are drawn from: outside the ephemeral range with room for ``span``
    (the largest offset)."""
    lo, hi = ephemeral_range()
    if lo - LOWEST > 2000 + span:
        return LOWEST, lo - 1 - span
    return hi + 1, 65535 - span  # an ephemeral range low down: above it


def free_base_port(offsets: tuple[int, ...] = (0, 1, 2, 81)) -> int:
    """A port P such that P + each offset is free (the hub uses P, P+1, P+2, P+81)."""
    rng = random.Random()
    start, end = port_window(max(offsets))
    for _ in range(200):
        base = rng.randrange(start, end)
        ports = [base + o for o in offsets]
        if any(p in _given for p in ports):
            continue
        if all(port_free(p) for p in ports):
            _given.update(ports)
            return base
    raise RuntimeError(f"no free loopback ports found in {start}-{end}")
