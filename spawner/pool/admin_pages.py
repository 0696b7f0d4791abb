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

from html import escape
from typing import Any
from urllib.parse import quote

from tornado import web

from ..catalog.units import format_mib
from . import accounting
from .api import node_json
from .base import ID_RE, ApiError
from .pages import PageHandler, _age, _gpus, page
from .release import Refused, stop_and_release

SCRIPT = """
const f=document.getElementById('filter');
function apply(){const q=f.value.trim().toLowerCase();
 document.querySelectorAll('[data-filter]').forEach(e=>{
  e.hidden=!!q&&!e.dataset.filter.toLowerCase().includes(q);});}
f.addEventListener('input',apply);
document.querySelectorAll('input[name=group]').forEach(r=>r.addEventListener('change',()=>{
 document.getElementById('by-node').hidden=r.value!=='node'||!r.checked;
 document.getElementById('by-user').hidden=r.value!=='user'||!r.checked;
 if(r.checked)history.replaceState(null,'','?group='+r.value);}));
document.querySelectorAll('th[data-sort]').forEach(th=>th.addEventListener('click',()=>{
 const tb=th.closest('table').tBodies[0];const col=[...th.parentNode.children].indexOf(th);
 const asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
 const key=r=>{const c=r.children[col];return c.dataset.v!==undefined?parseFloat(c.dataset.v):c.textContent.toLowerCase()};
 [...tb.rows].sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)}).forEach(r=>tb.appendChild(r));}));
document.querySelectorAll('form[data-confirm]').forEach(fm=>fm.addEventListener('submit',e=>{
 if(!confirm(fm.dataset.confirm))e.preventDefault();}));
"""

EXTRA_STYLE = """
main{max-width:76rem}.cards{grid-template-columns:repeat(auto-fit,minmax(10.5rem,1fr))}
.state{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;border:1px solid var(--line)}
.state.up{color:#1a7f37}.state.down{color:var(--bad);border-color:var(--bad)}.state.draining{color:var(--warn);border-color:var(--warn)}
details.node{border:1px solid var(--line);border-radius:8px;margin:.5rem 0;padding:.3rem .8rem}
details.node summary{cursor:pointer;display:grid;grid-template-columns:11rem 6rem 1fr 14rem 6rem;gap:.8rem;align-items:center}
details.node summary form{justify-self:end}details.node summary .state{justify-self:start}
.gpu{display:grid;grid-template-columns:4.5rem 1fr 7rem 13rem;gap:.8rem;align-items:center;margin:.35rem 0}
.mem{display:flex;height:1.2rem;border-radius:4px;background:var(--line);overflow:hidden}
.mem span{display:block;height:100%;border-right:1px solid var(--bg);color:#fff;font-size:.72rem;
 overflow:hidden;white-space:nowrap;padding-left:.25rem;line-height:1.2rem}
.mini{height:.45rem;border-radius:3px;background:var(--line);overflow:hidden}.mini i{display:block;height:100%;background:var(--accent)}
svg.spark{width:7rem;height:1.4rem;display:block}svg.spark polyline{fill:none;stroke:var(--accent);stroke-width:1.5}
.sev-critical{color:var(--bad);font-weight:600}.sev-warning{color:var(--warn)}
.toolbar{display:flex;gap:1.2rem;align-items:center;margin:1rem 0}
input#filter{padding:.35rem .6rem;width:22rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
button{cursor:pointer;border:1px solid var(--line);background:var(--soft);color:var(--fg);border-radius:6px;padding:.15rem .6rem}
button.danger{color:var(--bad);border-color:var(--bad)}
th[data-sort]{cursor:pointer}th[data-sort]:after{content:" ↕";color:var(--line)}td form{display:inline}
.labels code{font-size:.78rem;background:var(--soft);border:1px solid var(--line);border-radius:4px;padding:0 .3rem;margin-right:.2rem}
.idle{color:var(--warn);font-size:.85rem}
"""

COLORS = ("#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#0550ae", "#6639ba")
OPEN_UP_TO = 12  # nodes shown opened; above that only those with alerts or down


def _color(owner: str) -> str:
    return COLORS[sum(owner.encode()) % len(COLORS)]


def sparkline(points: list[float | None], top: float = 100.0) -> str:
    """A small SVG line of the last readings (utilization, 0..100)."""
    ys = [p for p in points if p is not None][-60:]
    if len(ys) < 2:
        return '<svg class="spark" role="img" aria-label="no history"></svg>'
    step = 100 / (len(ys) - 1)
    pts = " ".join(f"{i * step:.1f},{20 - 19 * min(y, top) / top:.1f}" for i, y in enumerate(ys))
    return (
        f'<svg class="spark" viewBox="0 0 100 21" preserveAspectRatio="none" role="img" '
        f'aria-label="utilization, last {len(ys)} readings"><polyline points="{pts}"/></svg>'
    )


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
        admin = me.is_admin
        xsrf = self.xsrf_form_html()
        base = self.settings["prefix"]
        group = "user" if self.get_argument("group", "node") == "user" else "node"

        def action(path: str, label: str, confirm: str, danger: bool = False) -> str:
            if not admin:
                return ""
            cls = ' class="danger"' if danger else ""
            return (
                f'<form method="post" action="{base}admin/{path}" data-confirm="{escape(confirm)}">'
                f"{xsrf}<button{cls}>{escape(label)}</button></form>"
            )

        # -- summary -------------------------------------------------------------------
        states = [n["state"] for n in nodes]
        mem_total = sum(g["memory_mib"] for n in nodes for g in n["gpus"]) or 1
        mem_res = sum(g["reserved_memory_mib"] for n in nodes for g in n["gpus"])
        costs = {
            r.id: accounting.usage(r, accounting.aware(r.created_at), now, now, cards_mib).cost
            for r in active
        }
        summary = "".join(
            f'<div class="card"><div class="k">{k}</div><div class="v">{escape(v)}</div></div>'
            for k, v in (
                (
                    "Nodes up · draining · down",
                    f"{states.count('up')} · {states.count('draining')} · {states.count('down')}",
                ),
                ("GPUs", str(sum(len(n["gpus"]) for n in nodes))),
                ("GPU memory reserved", f"{100 * mem_res / mem_total:.0f} %"),
                ("Reservations", str(len(active))),
                ("Cost so far (active)", f"{sum(costs.values()):.2f}"),
                ("Alerts", str(len(alerts))),
            )
        )
        alert_rows = "".join(
            f'<tr data-filter="{escape(f"{a.node} {a.kind} {a.message}")}">'
            f'<td class="sev-{escape(a.severity)}">{escape(a.severity)}</td><td>{escape(a.kind)}</td>'
            f"<td>{escape(a.node or '-')}</td><td>{escape(a.message)}</td></tr>"
            for a in alerts
        )
        alert_nodes = {a.node for a in alerts}

        # -- by node -------------------------------------------------------------------
        sections = []
        for n in nodes:
            h = n.get("health") or {}
            engine, agent = h.get("engine") or {}, h.get("agent")
            health = "engine " + (
                "ok" if engine.get("ok") else f"silent ({engine.get('error') or 'not probed yet'})"
            )
            if agent is not None:
                health += " · agent " + (
                    "ok"
                    if agent.get("ok")
                    else f"silent ({agent.get('error') or 'not probed yet'})"
                )
            labels = "".join(
                f"<code>{escape(k)}={escape(str(v))}</code>" for k, v in n["labels"].items()
            )
            gpu_rows, who_here = [], set()
            node_mem = sum(g["memory_mib"] for g in n["gpus"]) or 1
            node_res = sum(g["reserved_memory_mib"] for g in n["gpus"])
            for g in n["gpus"]:
                segs = []
                for r, share in holders.get(g["uuid"], []):
                    who_here.add(r.owner)
                    width = 100 * share.memory_mib / max(g["memory_mib"], 1)
                    sm = f" · {share.sm_percent} % SM" if share.sm_percent else ""
                    tip = f"{r.owner} · {r.spec} · {format_mib(share.memory_mib)}{sm}"
                    segs.append(
                        f'<span title="{escape(tip)}" style="width:{width:.1f}%;'
                        f'background:{_color(r.owner)}">{escape(r.owner)}</span>'
                    )
                hist = list(mon.history.gpus.get(g["uuid"], ())) if mon is not None else []
                last = hist[-1] if hist else {}
                util = last.get("util")
                live = "no live data"
                if util is not None:
                    live = f"{util} % busy"
                    if last.get("mem_used_mib") is not None:
                        live += f" · {format_mib(int(last['mem_used_mib']))} used"
                gpu_rows.append(
                    f'<div class="gpu"><div>GPU {g["index"]}</div>'
                    f'<div class="mem" title="{escape(g["model"])}: '
                    f"{format_mib(g['reserved_memory_mib'])} of {format_mib(g['memory_mib'])} "
                    f'reserved, {g["reserved_sm_percent"]} % SM">{"".join(segs)}</div>'
                    f"{sparkline([p.get('util') for p in hist])}"
                    f'<div class="muted">{escape(live)}</div></div>'
                )
            if n["drained"]:
                drain = action(
                    f"nodes/{quote(n['name'])}/undrain",
                    "Undrain",
                    f"Place work on {n['name']} again?",
                )
            else:
                drain = action(
                    f"nodes/{quote(n['name'])}/drain",
                    "Drain",
                    f"Drain {n['name']}? No new work goes there; running work stays.",
                )
            opened = len(nodes) <= OPEN_UP_TO or n["state"] != "up" or n["name"] in alert_nodes
            text = f"{n['name']} {n['state']} {' '.join(f'{k}={v}' for k, v in n['labels'].items())} {' '.join(sorted(who_here))}"
            sections.append(
                f'<details class="node" id="node-{escape(n["name"])}" data-filter="{escape(text)}"'
                f"{' open' if opened else ''}><summary><b>{escape(n['name'])}</b>"
                f'<span class="state {escape(n["state"])}">{escape(n["state"])}</span>'
                f'<span class="muted">{escape(health)}</span>'
                f'<span title="GPU memory reserved"><span class="muted">{len(n["gpus"])} GPUs · '
                f"{100 * node_res / node_mem:.0f} % reserved</span>"
                f'<span class="mini"><i style="width:{100 * node_res / node_mem:.0f}%"></i></span></span>'
                f"{drain}</summary>"
                f'<div class="labels muted">{labels or "no labels"} · GPUs from '
                f"{escape(n.get('gpu_source', 'catalog'))}</div>"
                f"{''.join(gpu_rows) or '<div class=muted>no GPU</div>'}</details>"
            )

        # -- reservations and users ------------------------------------------------------
        res_rows = []
        users: dict[str, dict[str, float]] = {}
        for r in sorted(active, key=lambda r: (r.owner, r.created_at)):
            u = users.setdefault(r.owner, {"n": 0, "gpus": 0, "mib": 0, "cost": 0.0})
            u["n"] += 1
            u["gpus"] += len(r.gpus)
            u["mib"] += sum(g.memory_mib for g in r.gpus)
            u["cost"] += costs[r.id]
            age_s = (now - accounting.aware(r.created_at)).total_seconds()
            if r.kind == "notebook":
                act = action(
                    f"servers/{quote(r.owner, safe='')}?server={quote(r.server_name, safe='')}",
                    "Stop server",
                    f"Stop {r.owner}'s server{' ' + r.server_name if r.server_name else ''} and free its GPUs?",
                    danger=True,
                )
            else:
                act = ""
            act += action(
                f"reservations/{r.id}/release",
                "Cancel",
                f"Cancel reservation {r.id} of {r.owner}? Its GPUs are freed now.",
                danger=True,
            )
            notice = notices.get(r.id)
            idle = f'<div class="idle">{escape(notice["message"])}</div>' if notice else ""
            res_rows.append(
                f'<tr data-filter="{escape(f"{r.owner} {r.spec} {r.node} {r.kind}")}" '
                f'data-owner="{escape(r.owner)}"><td>{escape(r.owner)}</td><td>{escape(r.spec)}</td>'
                f"<td>{escape(r.kind)}{(' · ' + escape(r.server_name)) if r.server_name else ''}</td>"
                f"<td>{escape(r.node)}</td><td>{escape(_gpus(r.gpus))}{idle}</td>"
                f'<td class=n data-v="{age_s:.0f}">{_age(now, r.created_at)}</td>'
                f'<td class=n data-v="{costs[r.id]:.4f}">{costs[r.id]:.2f}</td><td>{act}</td></tr>'
            )
        user_rows = "".join(
            f'<tr data-filter="{escape(name)}"><td>{escape(name)}</td><td class=n data-v="{u["n"]:g}">{u["n"]:g}</td>'
            f'<td class=n data-v="{u["gpus"]:g}">{u["gpus"]:g}</td>'
            f'<td class=n data-v="{u["mib"]:g}">{format_mib(int(u["mib"])) if u["mib"] else "-"}</td>'
            f'<td class=n data-v="{u["cost"]:.4f}">{u["cost"]:.2f}</td></tr>'
            for name, u in sorted(users.items())
        )
        none = '<tr><td colspan={} class="muted">{}</td></tr>'
        body = f"""
<h1>GPU pool</h1>
<div class="cards">{summary}</div>
<div class="toolbar"><input id="filter" type="search" placeholder="Filter: node, user, spec, label, alert"
 aria-label="Filter"><span>Group by <label><input type="radio" name="group" value="node"
 {"checked" if group == "node" else ""}> node</label> <label><input type="radio" name="group" value="user"
 {"checked" if group == "user" else ""}> user</label></span>
 <a href="{base}api/usage.csv">Usage CSV</a></div>
<h2>Alerts</h2>
<table id="alerts"><thead><tr><th data-sort>Severity</th><th data-sort>Kind</th><th data-sort>Node</th>
<th>Message</th></tr></thead><tbody>{alert_rows or none.format(4, "no alerts")}</tbody></table>
<div id="by-node"{" hidden" if group != "node" else ""}><h2>Nodes</h2>{"".join(sections)}</div>
<div id="by-user"{" hidden" if group != "user" else ""}><h2>Users</h2>
<table id="users"><thead><tr><th data-sort>User</th><th class=n data-sort>Reservations</th>
<th class=n data-sort>GPUs</th><th class=n data-sort>GPU memory</th><th class=n data-sort>Cost so far</th>
</tr></thead><tbody>{user_rows or none.format(5, "nobody holds anything")}</tbody></table></div>
<h2>Reservations and trainings</h2>
<table id="reservations"><thead><tr><th data-sort>User</th><th data-sort>Spec</th><th data-sort>Kind</th>
<th data-sort>Node</th><th>GPUs</th><th class=n data-sort>Age</th><th class=n data-sort>Cost so far</th>
<th></th></tr></thead><tbody>{"".join(res_rows) or none.format(8, "nothing reserved")}</tbody></table>
<style>{EXTRA_STYLE}</style><script>{SCRIPT}</script>"""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            page("Pool", me.name, body, base=base, active="admin", admin=admin, observe=True)
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
