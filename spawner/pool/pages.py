"""The pool's pages, logged in through the hub (HubOAuth): "My usage" for every user.

Pages are Jinja2 templates (gpupool/templating.py: autoescaped, overridable from the
catalog folder's templates/) filled from the same functions the API answers with, so a
number on a page and in the API never disagree.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from gpupool import sshproxy
from gpupool.catalog.units import format_mib
from gpupool.templating import render

from .access import Caller
from .usage_api import user_usage
from .web import ApiError, PoolContext


def _quota_card(title: str, limit: float | None, used: float, fmt: Any = None) -> dict[str, Any]:
    fmt = fmt or (lambda v: f"{v:g}")
    card: dict[str, Any] = {"title": title, "value": fmt(used), "limit": None}
    if limit is not None:
        card.update(
            limit=fmt(limit),
            left=fmt(max(0.0, limit - used)),
            share=f"{100 * (0.0 if not limit else min(1.0, used / limit)):.0f}",
            full=used >= limit,
        )
    return card


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

    def render_page(self, name: str, title: str, active: str, **values: Any) -> None:
        """Template ``name`` in the hub's frame (gpupool/page.html)."""
        try:
            user = self.current_user
        except Exception:  # an error page while the hub does not answer: no bar name
            user = None
        me = Caller.from_hub_model(user) if user else None
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            render(
                self.ctx.catalog.directory,
                name,
                title=title,
                me=me.name if me else "",
                hub=self.settings.get("hub_prefix", "/hub/"),
                base=self.settings["prefix"],
                active=active,
                hub_admin=bool(user and user.get("admin")),
                observe=bool(me and (me.can_observe or me.is_admin)),
                **values,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self.render_page(
            "gpupool/error.html", str(status_code), "", status=status_code, message=message
        )


class MyUsagePage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        me = self.caller()
        report = await user_usage(self.ctx, me, self.get_argument("month", None))
        active = await self.ctx.run(self.ctx.ledger.list, me.name)
        notices = await self.ctx.run(self.ctx.ledger.notices, me.name)
        q = report["quota"]
        now = self.ctx.ledger.clock()
        self.render_page(
            "gpupool/usage.html",
            "My usage",
            "usage",
            month=report["month"],
            notices=notices,
            quota_source=q["source"],
            cards=[
                _quota_card("GPUs held now", q["gpus"]["limit"], q["gpus"]["held"]),
                _quota_card(
                    "GPU memory held now",
                    q["gpu_memory_mib"]["limit"],
                    q["gpu_memory_mib"]["held"],
                    lambda v: format_mib(int(v)) if v else "0",
                ),
                _quota_card(
                    "GPU-hours this month",
                    q["gpu_hours_this_month"]["limit"],
                    q["gpu_hours_this_month"]["used"],
                    lambda v: f"{v:.2f}",
                ),
            ],
            by_spec=report["by_spec"],
            total=report["total"],
            held=[
                {
                    "spec": r.spec,
                    "kind": r.kind,
                    "node": r.node,
                    "gpus": _gpus(r.gpus),
                    "age": _age(now, r.created_at),
                }
                for r in active
            ],
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


class SshProxyDownload(web.RequestHandler):
    """``gpupool-ssh-proxy`` for a user's laptop, from the hub itself (one file, Python's
    standard library only), so connecting over SSH needs no wheel. Public: it is the
    same code as in the package, and holds nothing of this site."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/x-python; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="gpupool-ssh-proxy"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(Path(sshproxy.__file__).read_bytes())


def page_routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = prefix.rstrip("/")
    return [
        (rf"{base}/oauth_callback", OAuthCallback),
        (rf"{base}/usage", MyUsagePage),
        (rf"{base}/gpupool-ssh-proxy", SshProxyDownload),
    ]
