"""API of accounting: GPU-hours and cost per user and spec for a month, quota left, CSV.

Every user reads their own usage; observers and admins read anyone's and the whole
pool's, and export it as CSV. Asking for another user's usage without that right
answers 404, as for a user that does not exist.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Any

from . import accounting
from .access import Caller
from .openapi_parts import AUTH_ERRORS, ERR, FLAG, json_answer, query
from .web import ApiError, BaseHandler, PoolContext


def window(ctx: PoolContext, month: str | None) -> tuple[str, dt.datetime, dt.datetime]:
    """The month asked for (default: this one); 400 names the form allowed."""
    if month is None:
        start, end = accounting.month_window(ctx.ledger.clock())
    else:
        try:
            start, end = accounting.parse_month(month)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
    return f"{start:%Y-%m}", start, end


async def usage_rows(
    ctx: PoolContext, start: dt.datetime, end: dt.datetime, owner: str | None
) -> dict[tuple[str, str], accounting.Usage]:
    ledger = ctx.ledger

    def compute() -> dict[tuple[str, str], accounting.Usage]:
        return accounting.per_owner_and_spec(
            ledger.between(start, end, owner), start, end, ledger.clock(), ledger.card_memory()
        )

    return await ctx.run(compute)


async def user_usage(ctx: PoolContext, who: Caller, month: str | None) -> dict[str, Any]:
    """One user's month: by spec, total, quota (limit, held or used, left)."""
    month, start, end = window(ctx, month)
    rows = await usage_rows(ctx, start, end, who.name)
    total = sum((u for (o, _), u in rows.items() if o == who.name), accounting.ZERO)
    return {
        "month": month,
        "user": who.name,
        "by_spec": _by_spec(rows, who.name),
        "total": accounting.rounded(total),
        "quota": await quota_state(ctx, who),
    }


async def quota_state(ctx: PoolContext, who: Caller) -> dict[str, Any]:
    quota, source = ctx.catalog.pool.quotas.for_user(who.name, who.groups)
    ledger = ctx.ledger
    active = await ctx.run(ledger.list, who.name)
    now_rows = await usage_rows(ctx, *accounting.month_window(ledger.clock()), who.name)
    used_hours = sum((u.gpu_hours for u in now_rows.values()), 0.0)
    held = sum(len(r.gpus) for r in active)
    held_mib = sum(g.memory_mib for r in active for g in r.gpus)

    def left(limit: float | None, used: float) -> float | None:
        return None if limit is None else max(0.0, limit - used)

    return {
        "source": source,
        "gpus": {"limit": quota.gpus, "held": held, "left": left(quota.gpus, held)},
        "gpu_memory_mib": {
            "limit": quota.gpu_memory_mib,
            "held": held_mib,
            "left": left(quota.gpu_memory_mib, held_mib),
        },
        "gpu_hours_this_month": {
            "limit": quota.gpu_hours_per_month,
            "used": round(used_hours, 4),
            "left": None
            if quota.gpu_hours_per_month is None
            else round(max(0.0, quota.gpu_hours_per_month - used_hours), 4),
        },
    }


async def groups_of(ctx: PoolContext, names: list[str]) -> dict[str, frozenset[str]]:
    """Each user's hub groups now (a user the hub no longer has: none)."""
    sem = asyncio.Semaphore(8)

    async def one(name: str) -> tuple[str, frozenset[str]]:
        async with sem:
            try:
                return name, (await ctx.owner(name)).groups
            except ApiError:
                return name, frozenset()

    return dict(await asyncio.gather(*(one(n) for n in names)))


def by_group(
    users: dict[str, accounting.Usage], groups: dict[str, frozenset[str]]
) -> list[dict[str, Any]]:
    """Totals per hub group: a user in two groups counts in both, one in none in no row."""
    out: dict[str, tuple[list[str], accounting.Usage]] = {}
    for name, u in sorted(users.items()):
        for g in sorted(groups.get(name, ())):
            members, total = out.get(g, ([], accounting.ZERO))
            out[g] = ([*members, name], total + u)
    return [
        {"group": g, "users": members, **accounting.rounded(total)}
        for g, (members, total) in sorted(out.items())
    ]


class _UsageHandler(BaseHandler):
    def window(self) -> tuple[str, dt.datetime, dt.datetime]:
        return window(self.ctx, self.get_argument("month", None))

    async def rows(
        self, start: dt.datetime, end: dt.datetime, owner: str | None
    ) -> dict[tuple[str, str], accounting.Usage]:
        return await usage_rows(self.ctx, start, end, owner)


def _by_spec(rows: dict[tuple[str, str], accounting.Usage], user: str) -> list[dict[str, Any]]:
    return [
        {"spec": spec, **accounting.rounded(u)}
        for (owner, spec), u in sorted(rows.items())
        if owner == user
    ]


class UsageHandler(_UsageHandler):
    """``GET usage[?month=YYYY-MM][&user=NAME]``: one user's month (default: the caller);
    observers without ``user`` get every user's totals."""

    async def get(self) -> None:
        month, start, end = self.window()
        user = self.get_argument("user", None)
        every = self.choice("all", ("1", "0"), "0") == "1"
        if user is None and self.caller.can_observe and every:
            rows = await self.rows(start, end, None)
            users = _per_user(rows)
            groups = await groups_of(self.ctx, sorted(users))
            self.send(
                {
                    "month": month,
                    "users": [
                        {"user": name, **accounting.rounded(u), "by_spec": _by_spec(rows, name)}
                        for name, u in sorted(users.items())
                    ],
                    "groups": by_group(users, groups),
                    "total": accounting.rounded(sum(users.values(), accounting.ZERO)),
                }
            )
            return
        user = user or self.caller.name
        if user != self.caller.name and not (self.caller.can_observe or self.caller.is_admin):
            raise ApiError(404, f"no user {user!r}")
        who = self.caller if user == self.caller.name else await self.ctx.owner(user)
        self.send(await user_usage(self.ctx, who, month))


def _per_user(rows: dict[tuple[str, str], accounting.Usage]) -> dict[str, accounting.Usage]:
    users: dict[str, accounting.Usage] = {}
    for (owner, _spec), u in rows.items():
        users[owner] = users.get(owner, accounting.ZERO) + u
    return users


class UsageCsvHandler(_UsageHandler):
    """``GET usage.csv[?month=YYYY-MM][&by=group]``: every user's month by spec, or every
    group's month (observers)."""

    async def get(self) -> None:
        if not self.caller.can_observe:
            raise ApiError(403, "the usage export needs custom:gpupool:observe")
        month, start, end = self.window()
        rows = await self.rows(start, end, None)
        by = self.get_argument("by", "user")
        if by not in ("user", "group"):
            raise ApiError(400, f"by: {by!r} is not allowed; use user or group")
        out = io.StringIO()
        w = csv.writer(out)
        if by == "group":
            users = _per_user(rows)
            w.writerow(["month", "group", "users", "hours", "gpu_hours", "cost"])
            for g in by_group(users, await groups_of(self.ctx, sorted(users))):
                w.writerow(
                    [month, g["group"], " ".join(g["users"]), g["hours"], g["gpu_hours"], g["cost"]]
                )
        else:
            w.writerow(["month", "user", "spec", "hours", "gpu_hours", "cost"])
            for (owner, spec), u in sorted(rows.items()):
                r = accounting.rounded(u)
                w.writerow([month, owner, spec, r["hours"], r["gpu_hours"], r["cost"]])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header(
            "Content-Disposition",
            f'attachment; filename="gpupool-usage-{month}{"-groups" if by == "group" else ""}.csv"',
        )
        self.finish(out.getvalue())


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/usage\.csv", UsageCsvHandler),
    (r"/api/usage", UsageHandler),
]

MONTH = query(
    "month",
    {"type": "string", "pattern": f"^{accounting.MONTH_RE}$"},
    "YYYY-MM, 1970-01 to 2999-12 (default: this month, UTC)",
)

OPENAPI_PATHS: dict[str, Any] = {
    "/usage": {
        "get": {
            "summary": "GPU-hours and cost of a month by spec, with the quota left "
            "(own; observers: ?user= anyone, ?all=1 everyone)",
            "parameters": [
                MONTH,
                query("user", {"type": "string"}, "whose (observers; others: own)"),
                query("all", FLAG, "1: every user's totals (observers)"),
            ],
            "responses": {
                "200": json_answer({"type": "object"}, "usage"),
                "400": json_answer(ERR, "month is not YYYY-MM"),
                "404": json_answer(ERR, "no such user for you"),
                "502": json_answer(ERR, "the hub did not answer for a user's groups"),
                **AUTH_ERRORS,
            },
        }
    },
    "/usage.csv": {
        "get": {
            "summary": "Every user's month by spec, or every group's, as CSV (observers)",
            "parameters": [
                MONTH,
                query("by", {"type": "string", "enum": ["user", "group"]}, "rows per"),
            ],
            "responses": {
                "200": {
                    "description": "month,user,spec,hours,gpu_hours,cost or "
                    "month,group,users,hours,gpu_hours,cost",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                "400": json_answer(ERR, "month or by is not what this document allows"),
                "502": json_answer(ERR, "the hub did not answer for the users' groups"),
                **AUTH_ERRORS,
            },
        }
    },
}
