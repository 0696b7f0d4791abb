"""The pool dashboard for admins and observers: nodes with their health and labels,
each GPU's memory split by reservation (who holds what) with its live utilization and a
short history, the reservations with their cost so far and any idle notice, per-user
totals, the alerts. Admins drain and undrain nodes, stop a user's server and cancel a
reservation, each after a confirmation (and a form token against cross-site posts).

Built for 100 nodes: one line per node (opened for its GPUs), a filter over nodes,
users, specs and alerts, sortable tables, and a switch between grouping by node and by
user. Observers see the same page without the buttons; everyone else gets 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup
from tornado import web

from gpupool.catalog.units import format_mib

from . import accounting
from .nodes_api import node_json
from .pages import PageHandler, _age, _gpus
from .patterns import ID_RE
from .release import Refused, stop_and_release
from .ssh_sessions import SshReport
from .web import ApiError

COLORS = ("#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#0550ae", "#6639ba")
OPEN_UP_TO = 12  # nodes shown opened; above that only those with alerts or down


def _color(owner: str) -> str:
    return COLORS[sum(owner.encode()) % len(COLORS)]


def sparkline(points: list[float | None], top: float = 100.0) -> dict[str, Any]:
    """A small line of the last readings (utilization, 0..100): SVG points and their
    count; no points below two readings."""
    ys = [p for p in points if p is not None][-60:]
    if len(ys) < 2:
        return {"points": "", "n": len(ys)}
    step = 100 / (len(ys) - 1)
    pts = " ".join(f"{i * step:.1f},{20 - 19 * min(y, top) / top:.1f}" for i, y in enumerate(ys))
    return {"points": pts, "n": len(ys)}


def _health(n: dict[str, Any]) -> str:
    h = n.get("health") or {}
    engine, agent = h.get("engine") or {}, h.get("agent")
    text = "engine " + (
        "ok" if engine.get("ok") else f"silent ({engine.get('error') or 'not probed yet'})"
    )
    if agent is not None:
        text += " · agent " + (
            "ok" if agent.get("ok") else f"silent ({agent.get('error') or 'not probed yet'})"
        )
    return text


def _gpu_view(g: dict[str, Any], held: list[tuple[Any, Any]], hist: list[Any]) -> dict[str, Any]:
    segments = []
    for r, share in held:
        sm = f" · {share.sm_percent} % SM" if share.sm_percent else ""
        segments.append(
            {
                "owner": r.owner,
                "tip": f"{r.owner} · {r.spec} · {format_mib(share.memory_mib)}{sm}",
                "width": f"{100 * share.memory_mib / max(g['memory_mib'], 1):.1f}",
                "color": _color(r.owner),
            }
        )
    last = hist[-1] if hist else {}
    live = "no live data"
    if last.get("util") is not None:
        live = f"{last['util']} % busy"
        if last.get("mem_used_mib") is not None:
            live += f" · {format_mib(int(last['mem_used_mib']))} used"
    return {
        "index": g["index"],
        "title": f"{g['model']}: {format_mib(g['reserved_memory_mib'])} of "
        f"{format_mib(g['memory_mib'])} reserved, {g['reserved_sm_percent']} % SM",
        "segments": segments,
        "spark": sparkline([p.get("util") for p in hist]),
        "live": live,
    }


def _ssh_view(report: SshReport | None, now: dt.datetime) -> dict[str, Any] | None:
    """The SSH sessions of one server as the dashboard lists them; None when none."""
    if report is None:
        return None
    when = report.last_activity
    at = dt.datetime.fromtimestamp(when, dt.timezone.utc) if when is not None else None
    n = len(report.sessions)
    return {
        "n": n,
        "text": f"{n} SSH session{'s' if n != 1 else ''}",
        "active": f"active {_age(now, at)} ago" if at is not None else "no work yet",
        "tip": "; ".join(
            f"from {s.source or 'unknown'}, opened {_age(now, s.to_dt())} ago"
            for s in report.sessions
        ),
    }


class AdminPage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        me = self.caller()
        if not me.can_observe:
            raise ApiError(
                403, "the pool dashboard is for pool admins and observers (custom:gpupool:observe)"
            )
        ctx, ledger, mon = self.ctx, self.ctx.ledger, self.ctx.monitor
        active = await ctx.run(ledger.list)
        notices = {n["reservation"]: n for n in await ctx.run(ledger.notices)}
        nodes = await ctx.run(lambda: [node_json(ledger, n.name, mon) for n in ledger.state.nodes])
        now = ledger.clock()
        cards_mib = ledger.card_memory()
        holders: dict[str, list[tuple[Any, Any]]] = {}
        for r in active:
            for g in r.gpus:
                holders.setdefault(g.uuid, []).append((r, g))
        alerts = mon.alerts.list() if mon is not None else []
        alert_nodes = {a.node for a in alerts}
        costs = {
            r.id: accounting.usage(r, accounting.aware(r.created_at), now, now, cards_mib).cost
            for r in active
        }
        states = [n["state"] for n in nodes]
        mem_total = sum(g["memory_mib"] for n in nodes for g in n["gpus"]) or 1
        mem_res = sum(g["reserved_memory_mib"] for n in nodes for g in n["gpus"])
        summary = [
            (
                "Nodes up · draining · down",
                f"{states.count('up')} · {states.count('draining')} · {states.count('down')}",
            ),
            ("GPUs", str(sum(len(n["gpus"]) for n in nodes))),
            ("GPU memory reserved", f"{100 * mem_res / mem_total:.0f} %"),
            ("Reservations", str(len(active))),
            ("SSH sessions", str(sum(len(r.sessions) for r in map(ctx.ssh.get, costs) if r))),
            ("Cost so far (active)", f"{sum(costs.values()):.2f}"),
            ("Alerts", str(len(alerts))),
        ]
        node_views = []
        for n in nodes:
            who = sorted({r.owner for g in n["gpus"] for r, _ in holders.get(g["uuid"], [])})
            node_mem = sum(g["memory_mib"] for g in n["gpus"]) or 1
            node_res = sum(g["reserved_memory_mib"] for g in n["gpus"])
            labels = list(n["labels"].items())
            node_views.append(
                {
                    "name": n["name"],
                    "state": n["state"],
                    "drained": n["drained"],
                    "health": _health(n),
                    "labels": labels,
                    "gpu_source": n.get("gpu_source", "catalog"),
                    # gpupool.nvml.simulated names each GPU so (a demo node)
                    "simulated": any(
                        str(g.get("model", "")).endswith("(simulated)") for g in n["gpus"]
                    ),
                    "slice_problem": n.get("slice_problem"),
                    "reserved_pct": f"{100 * node_res / node_mem:.0f}",
                    "opened": len(nodes) <= OPEN_UP_TO
                    or n["state"] != "up"
                    or n["name"] in alert_nodes,
                    "filter": " ".join(
                        [n["name"], n["state"], *(f"{k}={v}" for k, v in labels), *who]
                    ),
                    "gpus": [
                        _gpu_view(
                            g,
                            holders.get(g["uuid"], []),
                            list(mon.history.gpus.get(g["uuid"], ())) if mon is not None else [],
                        )
                        for g in n["gpus"]
                    ],
                }
            )
        rows = []
        users: dict[str, dict[str, Any]] = {}
        for r in sorted(active, key=lambda r: (r.owner, r.created_at)):
            u = users.setdefault(
                r.owner, {"name": r.owner, "n": 0, "gpus": 0, "mib": 0, "cost": 0.0}
            )
            u["n"] += 1
            u["gpus"] += len(r.gpus)
            u["mib"] += sum(g.memory_mib for g in r.gpus)
            u["cost"] += costs[r.id]
            rows.append(
                {
                    "id": r.id,
                    "owner": r.owner,
                    "spec": r.spec,
                    "kind": r.kind,
                    "server_name": r.server_name,
                    "node": r.node,
                    "gpus": _gpus(r.gpus),
                    "notice": notices.get(r.id),
                    "age": _age(now, r.created_at),
                    "age_s": f"{(now - accounting.aware(r.created_at)).total_seconds():.0f}",
                    "cost": costs[r.id],
                    "ssh": _ssh_view(ctx.ssh.get(r.id), now),
                }
            )
        for u in users.values():
            u["memory"] = format_mib(int(u["mib"])) if u["mib"] else "-"
        self.render_page(
            "gpupool/dashboard.html",
            "Pool",
            "admin",
            admin=me.is_admin,
            xsrf=Markup(self.xsrf_form_html()),
            group="user" if self.get_argument("group", "node") == "user" else "node",
            summary=summary,
            alerts=alerts,
            nodes=node_views,
            reservations=rows,
            users=[users[k] for k in sorted(users)],
        )


class _AdminAction(PageHandler):
    """A POST from the dashboard's forms: pool admins only. HubOAuth takes the login
    cookie on a POST only with the page's form token (``_xsrf``, JupyterHub's xsrf), so a
    cross-site form gets 403; a token in the Authorization header needs none."""

    def need_admin(self) -> Any:
        me = self.caller()
        if not me.is_admin:
            raise ApiError(403, "this action needs custom:gpupool:admin")
        return me

    def back(self, anchor: str = "") -> None:
        self.redirect(f"{self.settings['prefix']}admin{anchor}")


class DrainAction(_AdminAction):
    @web.authenticated
    async def post(self, name: str, action: str) -> None:
        me = self.need_admin()
        if name not in self.ctx.ledger.state.index:
            raise ApiError(404, f"no node {name!r}")
        await self.ctx.run(self.ctx.ledger.set_drained, name, action == "drain", me.name)
        self.back(f"#node-{name}")


class ReleaseAction(_AdminAction):
    @web.authenticated
    async def post(self, rid: str) -> None:
        me = self.need_admin()
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None:
            raise ApiError(404, f"no reservation {rid!r}")
        # Cancel stops the workload; its reservation is freed when it has stopped
        try:
            await stop_and_release(self.ctx, found, me.name, f"cancelled by {me.name} (pool page)")
        except Refused as e:
            raise ApiError(e.status, e.message) from None
        self.back()


class StopServerAction(_AdminAction):
    """Asks the hub to stop a user's server; the spawner then frees its reservation."""

    @web.authenticated
    async def post(self, user: str) -> None:
        self.need_admin()
        await self.ctx.stop_server(user, self.get_argument("server", ""))
        self.back()


def admin_routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = prefix.rstrip("/")
    return [
        (rf"{base}/admin", AdminPage),
        (rf"{base}/admin/nodes/({ID_RE})/(drain|undrain)", DrainAction),
        (rf"{base}/admin/reservations/({ID_RE})/release", ReleaseAction),
        (rf"{base}/admin/servers/([^/]+)", StopServerAction),
    ]
