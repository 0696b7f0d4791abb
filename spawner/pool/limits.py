"""Per-user bounds on the pool API: a token bucket of writes per user, and request bodies
no larger than each endpoint needs. One user's flood is answered 429 (with Retry-After)
for that user only; the hub's own services (the spawner, the culler, automation) and pool
admins are not limited."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import time
from collections.abc import Callable
from typing import Any

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_DEFAULT = 200  # items per page of a list when the caller does not say
PAGE_MAX = 1000
DEFAULT_MAX_BODY = 64 * 1024  # bytes; endpoints that take more say so (max_body)
SERVER_MAX_BODY = 8 * 1024 * 1024  # the service's HTTP server reads no more than this


class RateLimiter:
    """``rate`` requests per second on average per key, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 when ``key`` may go ahead (one token spent); else the seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > 100_000:  # a bound on memory: full buckets carry no state
            self._buckets = {
                k: v
                for k, v in self._buckets.items()
                if v[0] + (now - v[1]) * self.rate < self.burst
            }
        return (1 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


class BadPage(ValueError):
    """A ``limit`` or ``cursor`` this API does not take; the message says what it takes."""


def page_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return PAGE_DEFAULT
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= PAGE_MAX:
        raise BadPage(f"limit must be a whole number from 1 to {PAGE_MAX} (default {PAGE_DEFAULT})")
    return n


def encode_cursor(key: list[Any]) -> str:
    """An opaque cursor for the item after ``key`` (the list's sort key of the last item)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(raw: str, size: int) -> list[Any]:
    """The sort key a cursor of :func:`encode_cursor` carries (``size`` parts)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise BadPage("cursor is not one this API gave: pass the 'next' of the previous page")
    return key


def time_page(limit: str | None, cursor: str | None) -> tuple[int, tuple[dt.datetime, str] | None]:
    """A list's page arguments, for a list sorted by (time, id): the page size and the
    (time, id) of the last item seen (None: from the start). BadPage says what is wrong."""
    n = page_limit(limit)
    if not cursor:
        return n, None
    at, last = decode_cursor(cursor, 2)
    try:
        return n, (dt.datetime.fromisoformat(at), last)
    except ValueError:
        raise BadPage(
            "cursor is not one this API gave: pass the 'next' of the previous page"
        ) from None


def time_cursor(at: dt.datetime, last: str) -> str:
    """The ``next`` of a page sorted by (time, id) whose last item is (at, last)."""
    return encode_cursor([at.isoformat(), last])
