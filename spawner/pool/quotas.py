"""Quotas: why a new reservation would take its owner over their quota, in words.

Pure code over what the owner holds. The ledger calls it inside the transaction that
records the reservation, so concurrent requests of one user cannot pass a quota together:
first before placing (what every spec holds, GPUs at a time, GPU-hours this month), then,
for GPU memory, once the placement says how much it takes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from gpupool.catalog.models import Quota, Spec
from gpupool.catalog.units import format_mib

from .scheduler import Rejection
from .state import Placement
from .tables import Reservation

# GPU-hours the owner used this month, and the month's window; asked only when a quota
# limits GPU-hours (it reads the owner's reservations of the month)
MonthUse = Callable[[], tuple[float, dt.datetime, dt.datetime]]


def _who(source: str) -> str:
    return f"quota of {source}" if source else "quota"


def before_placement(
    spec: Spec, quota: Quota, source: str, mine: list[Reservation], month_use: MonthUse
) -> Rejection | None:
    """Why this reservation would break the owner's quota, decided before placing it
    (``mine``: the owner's active reservations), or None."""
    who = _who(source)
    held_of = _held_over(spec, quota, who, mine)
    if held_of is not None:
        return held_of
    if not spec.gpus:
        return None
    held = sum(len(r.gpus) for r in mine)
    if quota.gpus is not None and held + spec.gpus > quota.gpus:
        left = max(0, quota.gpus - held)
        return Rejection(
            f"over the {who}: at most {quota.gpus} GPU(s) at a time; you hold {held}, "
            f"{spec.display_name} needs {spec.gpus}; {left} left",
            reason="quota",
        )
    if quota.gpu_hours_per_month is not None:
        used, start, end = month_use()
        if used >= quota.gpu_hours_per_month:
            return Rejection(
                f"over the {who}: {quota.gpu_hours_per_month:g} GPU-hours per month; "
                f"you used {used:.2f} in {start:%Y-%m}; 0 left until "
                f"{end:%Y-%m-%d}",
                reason="quota",
            )
    return None


def after_placement(
    spec: Spec, quota: Quota, source: str, mine: list[Reservation], decision: Placement
) -> Rejection | None:
    """Why the placement found would break the owner's quota on GPU memory, or None."""
    if quota.gpu_memory_mib is None:
        return None
    who = _who(source)
    held_mib = sum(g.memory_mib for r in mine for g in r.gpus)
    need = sum(g.memory_mib for g in decision.gpus)
    if held_mib + need > quota.gpu_memory_mib:
        left = max(0, quota.gpu_memory_mib - held_mib)
        return Rejection(
            f"over the {who}: at most {format_mib(quota.gpu_memory_mib)} of GPU memory at "
            f"a time; you hold {format_mib(held_mib) if held_mib else 'none'}, "
            f"{spec.display_name} needs {format_mib(need)}; "
            f"{format_mib(left) if left else 'none'} left",
            reason="quota",
        )
    return None


def _held_over(spec: Spec, quota: Quota, who: str, mine: list[Reservation]) -> Rejection | None:
    """The quotas on what every spec holds (CPU-only ones too): servers and trainings
    at once, CPU, RAM."""
    if quota.reservations is not None and len(mine) + 1 > quota.reservations:
        return Rejection(
            f"over the {who}: at most {quota.reservations} servers and trainings at a "
            f"time; you run {len(mine)}; stop one first",
            reason="quota",
        )
    if quota.cpu_millicores is not None:
        # what a reservation books (the guarantee), as Kubernetes counts requests.cpu
        held = sum(r.cpu_millicores for r in mine)
        if held + spec.cpu_reserved > quota.cpu_millicores:
            left = max(0, quota.cpu_millicores - held)
            return Rejection(
                f"over the {who}: at most {quota.cpu_millicores / 1000:g} CPU at a time; "
                f"you hold {held / 1000:g}, {spec.display_name} needs "
                f"{spec.cpu_reserved / 1000:g}; {left / 1000:g} left",
                reason="quota",
            )
    if quota.memory_mib is not None:
        held = sum(r.memory_mib for r in mine)
        if held + spec.memory_reserved > quota.memory_mib:
            left = max(0, quota.memory_mib - held)
            return Rejection(
                f"over the {who}: at most {format_mib(quota.memory_mib)} of RAM at a time; "
                f"you hold {format_mib(held) if held else 'none'}, {spec.display_name} "
                f"needs {format_mib(spec.memory_reserved)}; "
                f"{format_mib(left) if left else 'none'} left",
                reason="quota",
            )
    return None
