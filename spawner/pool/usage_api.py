"""API of accounting: GPU-hours and cost per user and spec for a month, quota left, CSV.

Every user reads their own usage; observers and admins read anyone's and the whole
pool's, and export it as CSV. Asking for another user's usage without that right
answers 404, as for a user that does not exist.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from . import accounting
from .api import ApiError, BaseHandler


class _UsageHandler(BaseHandler):
    def window(self) -> tuple[str, dt.datetime, dt.datetime]:
        month = self.get_argument("month", None)
        if month is None:
            start, end = accounting.month_window(self.ctx.ledger.clock())
        else:
            try:
                start, end = accounting.parse_month(month)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        return f"{start:%Y-%m}", start, end

    async def rows(
        self, start: dt.datetime, end: dt.datetime, owner: str | None
    ) -> dict[tuple[str, str], accounting.Usage]:
        ledger = self.ctx.ledger

        def compute() -> dict[tuple[str, str], accounting.Usage]:
            return accounting.per_owner_and_spec(
                ledger.between(start, end, owner), start, end, ledger.clock(), ledger.card_memory()
            )

        return await self.ctx.run(compute)


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
        if user is None and self.caller.can_observe and self.get_argument("all", "") == "1":
            rows = await self.rows(start, end, None)
            users: dict[str, accounting.Usage] = {}
            for (owner, _spec), u in rows.items():
                users[owner] = users.get(owner, accounting.ZERO) + u
            self.send(
                {
                    "month": month,
                    "users": [
                        {"user": name, **accounting.rounded(u), "by_spec": _by_spec(rows, name)}
                        for name, u in sorted(users.items())
                    ],
                    "total": accounting.rounded(sum(users.values(), accounting.ZERO)),
                }
            )
            return
        user = user or self.caller.name
        if user != self.caller.name and not (self.caller.can_observe or self.caller.is_admin):
            raise ApiError(404, f"no user {user!r}")
        rows = await self.rows(start, end, user)
        total = sum((u for (o, _), u in rows.items() if o == user), accounting.ZERO)
        body: dict[str, Any] = {
            "month": month,
            "user": user,
            "by_spec": _by_spec(rows, user),
            "total": accounting.rounded(total),
        }
        body["quota"] = await self._quota(user, start, end)
        self.send(body)

    async def _quota(self, user: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        who = self.caller if user == self.caller.name else await self.ctx.owner(user)
        quota, source = self.ctx.catalog.pool.quotas.for_user(user, who.groups)
        ledger = self.ctx.ledger
        active = await self.ctx.run(ledger.list, user)
        now_rows = await self.rows(*accounting.month_window(ledger.clock()), user)
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


class UsageCsvHandler(_UsageHandler):
    """``GET usage.csv[?month=YYYY-MM]``: every user's month by spec (observers)."""

    async def get(self) -> None:
        if not self.caller.can_observe:
            raise ApiError(403, "the usage export needs custom:gpupool:observe")
        month, start, end = self.window()
        rows = await self.rows(start, end, None)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["month", "user", "spec", "hours", "gpu_hours", "cost"])
        for (owner, spec), u in sorted(rows.items()):
            r = accounting.rounded(u)
            w.writerow([month, owner, spec, r["hours"], r["gpu_hours"], r["cost"]])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="gpupool-usage-{month}.csv"')
        self.finish(out.getvalue())


def usage_routes(api: str) -> list[tuple[str, type[BaseHandler]]]:
    return [(rf"{api}/usage\.csv", UsageCsvHandler), (rf"{api}/usage", UsageHandler)]
