"""The test suite's own port picker (tests/support/ports.py): a hub's ports are outside the
kernel's ephemeral range, where a test run's outgoing connections cannot take them between
the pick and the bind (a CI run failed with "Address already in use" for the pool
service), and no port is handed out twice in one run."""

from __future__ import annotations

import socket

import pytest

from tests.support import ports


def test_base_ports_avoid_the_ephemeral_range_and_are_never_repeated() -> None:
    lo, hi = ports.ephemeral_range()
    offsets = (0, 1, 2, 81)
    picked = [ports.free_base_port(offsets) for _ in range(50)]
    every = [p + o for p in picked for o in offsets]
    assert len(set(every)) == len(every)
    assert all(not (lo <= p <= hi) and 1024 < p <= 65535 for p in every)


def test_a_port_in_use_is_not_picked(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        busy = s.getsockname()[1]
        s.listen()
        # the only candidate base is the busy port (randrange always answers it)
        monkeypatch.setattr(ports.random.Random, "randrange", lambda self, a, b: busy)
        with pytest.raises(RuntimeError, match="no free loopback ports"):
            ports.free_base_port((0,))
