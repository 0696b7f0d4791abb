"""Per-user bounds on the pool API: a token bucket of writes per user, and request bodies
no larger than each endpoint needs. One user's flood is answered 429 (with Retry-After)
for that user only; the hub's own services (the spawner, the culler, automation) and pool
admins are not limited."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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
