"""The hub side's client of the pool API (the spawner reserves and releases through it)."""

from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class SpawnerPoolError(RuntimeError):
    """The pool answered the spawner with an error: its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        super().__init__(f"pool API answered {status}: {body.get('message', body)}")


class SpawnerPoolClient:
    """The spawner's calls to the pool API with the hub's service token (async, Tornado).

    The user side's client (``gpupool.lab.client.PoolApi``) is another one: synchronous,
    with the user's own token, for notebooks, widgets and the CLI."""

    def __init__(self, api_url: str, token: str, timeout: float = 30):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = HTTPRequest(
            f"{self.api_url}/{path.lstrip('/')}",
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=self.timeout,
            allow_nonstandard_methods=True,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            payload: dict[str, Any] = {}
            if e.response is not None and e.response.body:
                try:
                    payload = json.loads(e.response.body)
                except ValueError:
                    payload = {"message": e.response.body.decode(errors="replace")[:500]}
            raise SpawnerPoolError(e.code, payload) from None
        return json.loads(resp.body) if resp.body else None

    async def specs(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "specs"))["specs"]

    async def reserve(
        self, *, owner: str, spec: str, server_name: str, container: str, rid: str = ""
    ) -> dict[str, Any]:
        body = {
            "spec": spec,
            "owner": owner,
            "server_name": server_name,
            "kind": "notebook",
            "container": container,
        }
        if rid:
            body["id"] = rid
        return await self.request("POST", "reservations", body)

    async def started(self, rid: str, container_id: str) -> None:
        """Tell the pool the reservation's container runs (the reconciler watches it)."""
        await self.request("POST", f"reservations/{rid}/started", {"container_id": container_id})

    async def stop_pending(self, rid: str, reason: str) -> None:
        """Keep ``rid`` until its node answers; the pool then removes its container and
        frees it. Already gone is success."""
        try:
            await self.request("POST", f"reservations/{rid}/stop", {"reason": reason[:255]})
        except SpawnerPoolError as e:
            if e.status not in (404, 409):
                raise

    async def release(self, rid: str) -> None:
        try:
            await self.request("DELETE", f"reservations/{rid}")
        except SpawnerPoolError as e:
            if e.status != 404:  # already gone is success
                raise
