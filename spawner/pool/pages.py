"""The pool's pages, logged in through the hub (HubOAuth): "My usage" for every user.

Pages are server-rendered HTML from the same functions the API answers with, so a
number on a page and in the API never disagree. Every value written into the page is
escaped.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from ..catalog.units import format_mib
from .access import Caller
from .base import ApiError, PoolContext
from .usage_api import user_usage

STYLE = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--accent:#0969da;--warn:#bf8700;--bad:#cf222e;--soft:#f6f8fa}
@media (prefers-color-scheme: dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117;--accent:#4493f8;--soft:#151b23}}
body{font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:0}
header{display:flex;gap:1.5rem;align-items:center;padding:.7rem 1.5rem;border-bottom:1px solid var(--line)}
header a{color:var(--fg);text-decoration:none}header a.on{font-weight:600;border-bottom:2px solid var(--accent)}
header .me{margin-left:auto;color:var(--muted)}
main{max-width:62rem;margin:1.5rem auto;padding:0 1.5rem}
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.8rem 0 .6rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:500;font-size:.85rem}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.8rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem;background:var(--soft)}
.card .k{color:var(--muted);font-size:.85rem}.card .v{font-size:1.3rem;font-weight:600}
.bar{height:.5rem;border-radius:4px;background:var(--line);margin-top:.4rem;overflow:hidden}
.bar i{display:block;height:100%;background:var(--accent)}.bar i.full{background:var(--bad)}
.muted{color:var(--muted)}form.month{display:inline}
.notice{border:1px solid var(--warn);border-left-width:4px;border-radius:6px;padding:.6rem 1rem;margin:.8rem 0}
"""


def page(
    title: str, me: str, body: str, *, base: str, active: str, admin: bool, observe: bool = False
) -> str:
    links = [("usage", "My usage")]
    if observe or admin:
        links.append(("admin", "Pool"))
    nav = "".join(
        f'<a href="{base}{href}" class="{"on" if href == active else ""}">{escape(text)}</a>'
        for href, text in links
    )
    role = " · pool admin" if admin else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · gpupool</title><style>{STYLE}</style></head><body>"
        f'<header><a href="/hub/home"><b>gpupool</b></a>{nav}'
        f'<span class="me">{escape(me)}{role}</span></header><main>{body}</main></body></html>'
    )


def _quota_card(title: str, limit: float | None, used: float, unit: str, fmt: Any = None) -> str:
    fmt = fmt or (lambda v: f"{v:g}")
    if limit is None:
        return (
            f'<div class="card"><div class="k">{escape(title)}</div>'
            f'<div class="v">{escape(fmt(used))}{unit}</div><div class="muted">no limit</div></div>'
        )
    share = 0.0 if not limit else min(1.0, used / limit)
    full = " full" if limit is not None and used >= limit else ""
    left = max(0.0, limit - used)
    return (
        f'<div class="card"><div class="k">{escape(title)}</div>'
        f'<div class="v">{escape(fmt(used))} / {escape(fmt(limit))}{unit}</div>'
        f'<div class="bar"><i class="{full.strip()}" style="width:{100 * share:.0f}%"></i></div>'
        f'<div class="muted">{escape(fmt(left))}{unit} left</div></div>'
    )


class _SameHubAuth:
    """Pages and the OAuth callback must share the service's one HubOAuth: it keeps the
    PKCE state of each login between the redirect and the callback."""

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]  # type: ignore[attr-defined]


class OAuthCallback(_SameHubAuth, HubOAuthCallbackHandler):  # type: ignore[misc]
    pass


class PageHandler(_SameHubAuth, HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    @property
    def ctx(self) -> PoolContext:
        return self.settings["pool"]

    def caller(self) -> Caller:
        return Caller.from_hub_model(self.current_user)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title><style>{STYLE}</style><main>"
            f"<h1>{status_code}</h1><p>{escape(message)}</p></main>"
        )


class MyUsagePage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        me = self.caller()
        report = await user_usage(self.ctx, me, self.get_argument("month", None))
        active = await self.ctx.run(self.ctx.ledger.list, me.name)
        notices = await self.ctx.run(self.ctx.ledger.notices, me.name)
        q = report["quota"]
        cards = "".join(
            [
                _quota_card("GPUs held now", q["gpus"]["limit"], q["gpus"]["held"], ""),
                _quota_card(
                    "GPU memory held now",
                    q["gpu_memory_mib"]["limit"],
                    q["gpu_memory_mib"]["held"],
                    "",
                    lambda v: format_mib(int(v)) if v else "0",
                ),
                _quota_card(
                    "GPU-hours this month",
                    q["gpu_hours_this_month"]["limit"],
                    q["gpu_hours_this_month"]["used"],
                    "",
                    lambda v: f"{v:.2f}",
                ),
            ]
        )
        rows = (
            "".join(
                f"<tr><td>{escape(r['spec'])}</td><td class=n>{r['hours']:.2f}</td>"
                f"<td class=n>{r['gpu_hours']:.2f}</td><td class=n>{r['cost']:.2f}</td></tr>"
                for r in report["by_spec"]
            )
            or '<tr><td colspan=4 class="muted">nothing used this month</td></tr>'
        )
        t = report["total"]
        now = self.ctx.ledger.clock()
        running = (
            "".join(
                f"<tr><td>{escape(r.spec)}</td><td>{escape(r.kind)}</td><td>{escape(r.node)}</td>"
                f"<td>{escape(_gpus(r.gpus))}</td>"
                f"<td class=n>{_age(now, r.created_at)}</td></tr>"
                for r in active
            )
            or '<tr><td colspan=5 class="muted">no server or training holds resources now</td></tr>'
        )
        body = f"""
<h1>My usage <span class="muted">· {escape(report["month"])}</span></h1>
{"".join(f'<div class="notice" role="alert">{escape(n["message"])}</div>' for n in notices)}
<form class="month" method="get"><label>Month <input type="month" name="month"
 value="{escape(report["month"])}"></label> <button>Show</button></form>
<h2>Quota <span class="muted">({escape(q["source"])})</span></h2>
<div class="cards">{cards}</div>
<h2>By spec</h2>
<table id="by-spec"><thead><tr><th>Spec</th><th class=n>Hours</th><th class=n>GPU-hours</th>
<th class=n>Cost</th></tr></thead><tbody>{rows}</tbody>
<tfoot><tr><td>Total</td><td class=n>{t["hours"]:.2f}</td><td class=n>{t["gpu_hours"]:.2f}</td>
<td class=n>{t["cost"]:.2f}</td></tr></tfoot></table>
<h2>Held now</h2>
<table id="active"><thead><tr><th>Spec</th><th>Kind</th><th>Node</th><th>GPUs</th>
<th class=n>For</th></tr></thead><tbody>{running}</tbody></table>
<p class="muted">GPU-hours weigh each GPU by its share of the card (a 20 GiB slice of an
80 GiB card counts 0.25); cost is hours × the spec's price per hour.</p>"""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            page(
                "My usage",
                me.name,
                body,
                base=self.settings["prefix"],
                active="usage",
                admin=me.is_admin,
                observe=me.can_observe,
            )
        )


def _gpus(gpus: Any) -> str:
    """'GPU 1 (40 GiB)', 'GPUs 0, 1 (whole)', '-'."""
    if not gpus:
        return "-"
    word = "GPU" if len(gpus) == 1 else "GPUs"
    idx = ", ".join(str(g.index) for g in gpus)
    return f"{word} {idx} ({'whole' if gpus[0].whole else format_mib(gpus[0].memory_mib)})"


def _age(now: dt.datetime, then: dt.datetime) -> str:
    then = then if then.tzinfo else then.replace(tzinfo=dt.timezone.utc)
    s = max(0, int((now - then).total_seconds()))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min"


def page_routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = prefix.rstrip("/")
    return [
        (rf"{base}/oauth_callback", OAuthCallback),
        (rf"{base}/usage", MyUsagePage),
    ]
