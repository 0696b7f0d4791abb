"""A frozen clock for pool parts that take one: ``clock()`` seconds, ``clock.dt()`` the
same instant as an aware datetime (the ledger's); tests move it with ``clock.t += s``."""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.t = start.timestamp()

    def __call__(self) -> float:
        return self.t

    def dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.t, dt.timezone.utc)
