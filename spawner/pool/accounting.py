"""Accounting: GPU-hours and cost of reservations, per user, group, spec and month.

Pure code over reservations and a clock. Definitions (docs/admin-guide.md says the same):

- hours: the part of a reservation's life (created to released, or to now) inside the
  window asked for;
- GPU-hours: hours x the GPUs it holds, each weighted by its share of the card: 1 for a
  whole card, the reserved memory over the card's memory for a slice (a 20 GiB slice of an
  80 GiB card for two hours is 0.5 GPU-hours);
- cost: hours x the spec's price per hour as it was when reserved.

Quotas use the same GPU-hours, so what a user is told and what they are held to agree.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .state import GpuShare
from .tables import Reservation

UTC = dt.timezone.utc


def aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def alive_in(r: Reservation, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether ``r`` was alive at some time in [start, end)."""
    return aware(r.created_at) < end and (r.released_at is None or aware(r.released_at) >= start)


def month_window(when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[first instant of when's month, first instant of the next) in UTC."""
    when = aware(when).astimezone(UTC)
    start = dt.datetime(when.year, when.month, 1, tzinfo=UTC)
    end = dt.datetime(when.year + (when.month == 12), when.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


MONTH_RE = r"(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])"  # what the API documents


def parse_month(text: str) -> tuple[dt.datetime, dt.datetime]:
    """'2026-11' -> its window; ValueError says what is allowed."""
    if not re.fullmatch(MONTH_RE, text):
        raise ValueError(f"month {text!r} is not YYYY-MM from 1970-01 to 2999-12 (e.g. 2026-11)")
    year, month = (int(x) for x in text.split("-"))
    return month_window(dt.datetime(year, month, 1, tzinfo=UTC))


def gpu_weight(share: GpuShare, card_mib: Mapping[str, int]) -> float:
    if share.whole:
        return 1.0
    card = card_mib.get(share.uuid)
    if not card:
        return 1.0  # a card no longer known: count it whole rather than not at all
    return min(1.0, share.memory_mib / card)


@dataclass(frozen=True)
class Usage:
    hours: float
    gpu_hours: float
    cost: float

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.hours + other.hours, self.gpu_hours + other.gpu_hours, self.cost + other.cost
        )


ZERO = Usage(0.0, 0.0, 0.0)


def usage(
    r: Reservation,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    card_mib: Mapping[str, int],
) -> Usage:
    """What ``r`` used inside [start, end), counting a running one up to ``now``."""
    a = max(aware(r.created_at), start)
    stop = aware(r.released_at) if r.released_at is not None else aware(now)
    b = min(stop, end, aware(now))
    if b <= a:
        return ZERO
    hours = (b - a).total_seconds() / 3600.0
    weight = sum(gpu_weight(g, card_mib) for g in r.gpus)
    return Usage(hours, hours * weight, hours * r.price_per_hour)


def per_owner_and_spec(
    reservations: Iterable[Reservation],
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    card_mib: Mapping[str, int],
) -> dict[tuple[str, str], Usage]:
    out: dict[tuple[str, str], Usage] = {}
    for r in reservations:
        u = usage(r, start, end, now, card_mib)
        if u is not ZERO:
            out[(r.owner, r.spec)] = out.get((r.owner, r.spec), ZERO) + u
    return out


def rounded(u: Usage) -> dict[str, float]:
    return {
        "hours": round(u.hours, 4),
        "gpu_hours": round(u.gpu_hours, 4),
        "cost": round(u.cost, 2),
    }
