"""The pool API from the user's side: the server extension, the ``gpupool`` commands in
the lab terminal and the notebook widgets all call it through :class:`PoolApi`.

It authenticates with the server's own hub token (``JUPYTERHUB_API_TOKEN``, whose scopes
the hub limits with ``server_token_scopes``) at ``GPUPOOL_API_URL``; the spawner sets
both. Errors carry the pool's own message, which says what was wrong and what is allowed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class PoolApiError(RuntimeError):
    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        self.status = status
        self.message = message
        self.body = body or {}
        super().__init__(f"pool API: {status} {message}" if status else f"pool API: {message}")


class PoolApi:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0):
        if not url:
            raise PoolApiError(
                0,
                "no pool API URL: GPUPOOL_API_URL is not set (the hub's spawner sets it in "
                "every server it starts)",
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **kw: Any) -> PoolApi:
        env = os.environ if environ is None else environ
        token = env.get("GPUPOOL_API_TOKEN") or env.get("JUPYTERHUB_API_TOKEN", "")
        if not token:
            raise PoolApiError(
                0, "no token: JUPYTERHUB_API_TOKEN is not set (run inside a hub server)"
            )
        return cls(env.get("GPUPOOL_API_URL", ""), token, **kw)

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = f"{self.url}/{path.lstrip('/')}"
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                kind = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
                message = payload.get("message") or e.reason
            except ValueError:
                payload, message = {}, raw.decode(errors="replace")[:300] or str(e.reason)
            raise PoolApiError(e.code, message, payload) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PoolApiError(0, f"cannot reach the pool at {self.url}: {reason}") from None
        if not raw:
            return None
        if kind.startswith("application/json"):
            return json.loads(raw)
        return raw.decode()

    # -- what the lab side uses ------------------------------------------------------
    def specs(self) -> list[dict[str, Any]]:
        return self.request("GET", "specs")["specs"]

    def _all(self, path: str, key: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paginated list, page after page (its ``next`` cursor)."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.request("GET", path, query={**query, "cursor": cursor})
            items += page[key]
            cursor = page.get("next")
            if not cursor:
                return items

    def reservations(self) -> list[dict[str, Any]]:
        return self._all("reservations", "reservations", {})

    def reservation(self, rid: str) -> dict[str, Any]:
        """The reservation; a released one is gone from the API (404) with its state, when
        and why in the answer, which is what this returns for it."""
        try:
            return self.request("GET", f"reservations/{urllib.parse.quote(rid, safe='')}")
        except PoolApiError as e:
            if e.status == 404 and e.body.get("state") == "released":
                return e.body
            raise

    def report_ssh_sessions(self, rid: str, sessions: list[dict[str, Any]]) -> dict[str, Any]:
        """The SSH sessions open on this server now (the server extension sends them)."""
        path = f"reservations/{urllib.parse.quote(rid, safe='')}/ssh"
        return self.request("PUT", path, {"sessions": sessions})

    def usage(self, month: str | None = None) -> dict[str, Any]:
        return self.request("GET", "usage", query={"month": month})

    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "datasets")["datasets"]

    def notices(self) -> list[dict[str, Any]]:
        return self.request("GET", "notices")["notices"]

    # -- trainings ---------------------------------------------------------------------
    def submit_training(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST a training request (see gpupool.job); the queued training."""
        return self.request("POST", "trainings", request)

    def trainings(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._all("trainings", "trainings", {"state": state})

    def training(self, tid: str) -> dict[str, Any]:
        return self.request("GET", f"trainings/{urllib.parse.quote(tid, safe='')}")

    def training_metrics(
        self, tid: str, since: int = 0, kinds: str | None = None
    ) -> dict[str, Any]:
        return self.request(
            "GET",
            f"trainings/{urllib.parse.quote(tid, safe='')}/metrics",
            query={"since": since, "kinds": kinds},
        )

    def training_logs(self, tid: str, tail: int | str = 200) -> str:
        text = self.request(
            "GET", f"trainings/{urllib.parse.quote(tid, safe='')}/logs", query={"tail": tail}
        )
        return text or ""  # an empty log is an empty body

    def cancel_training(self, tid: str) -> dict[str, Any]:
        return self.request("POST", f"trainings/{urllib.parse.quote(tid, safe='')}/cancel", {})
