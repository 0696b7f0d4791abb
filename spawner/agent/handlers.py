"""The node agent's HTTP side: token checks, the read-only endpoints and their JSON errors.

``routes()`` lists the endpoints that ``AgentApp`` serves (see ``app``'s docstring); each
handler reads the latest sample of the agent's ``NodeSampler`` and changes nothing.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from tornado import web

from gpupool import __version__
from gpupool.nvml.readings import Sample
from gpupool.nvml.sampler import NodeSampler

from .hamicheck import check
from .prometheus import CONTENT_TYPE, render_metrics


def _token_from_header(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and token.strip():
        return token.strip()
    return None


class ApiError(web.HTTPError):
    """An HTTP error with a message for the JSON body (a reason phrase may not hold one)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code)
        self.message = message


class BaseHandler(web.RequestHandler):
    requires_token = True

    @property
    def agent(self) -> NodeSampler:
        return self.settings["agent"]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        if not self.requires_token:
            return
        sent = _token_from_header(self.request.headers.get("Authorization", ""))
        expected: bytes = self.settings["agent_token"]
        if sent is None or not hmac.compare_digest(sent.encode(), expected):
            why = "a wrong token" if sent else "no token (Authorization: token <t>)"
            raise ApiError(401, f"Unauthorized: {why}")

    def write_json(self, doc: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'token realm="gpupool-agent"')
        self.set_header("Content-Type", "application/json; charset=utf-8")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self.finish(json.dumps({"status": status_code, "message": message}))

    def latest(self) -> Sample:
        sample = self.agent.latest
        if sample is None:
            raise ApiError(503, "no sample yet: the first one is being taken")
        return sample


def _hami_core(handler: web.RequestHandler) -> dict[str, Any]:
    """The node's HAMi-core check, when the agent is told where the library is."""
    app = handler.settings["agent_app"]
    if not app.hami_core:
        return {}
    return {"hami_core": check(app.hami_core, app.vgpulock or None).to_json()}


class HealthHandler(BaseHandler):
    requires_token = False

    def get(self) -> None:
        self.write_json({"status": "ok"})


class InventoryHandler(BaseHandler):
    def get(self) -> None:
        s = self.latest()
        self.write_json(
            {
                "hostname": s.hostname,
                "node": s.node,
                "agent_version": __version__,
                "nvml": s.nvml.to_json(),
                "gpus": [g.to_json() for g in s.inventory],
                **_hami_core(self),
            }
        )


class SampleHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({**self.latest().to_json(), **_hami_core(self)})


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        s = self.latest()
        cached = self.settings["metrics_cache"]  # rendered once per sample
        if cached.get("seq") != s.seq:
            cached.update(seq=s.seq, text=render_metrics(s, self.agent.xids.last_by_uuid()))
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(cached["text"])


class NotFoundHandler(BaseHandler):
    requires_token = False

    def prepare(self) -> None:
        raise ApiError(404, f"no such endpoint: {self.request.path}")


def routes() -> list[tuple[str, type[BaseHandler]]]:
    return [
        (r"/health", HealthHandler),
        (r"/api/inventory", InventoryHandler),
        (r"/api/sample", SampleHandler),
        (r"/metrics", MetricsHandler),
    ]
