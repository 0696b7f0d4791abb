"""The pool API's web base: the error every handler raises, what handlers share, the
base handler (token, scopes, rate limit, body size, JSON errors, pages of lists) and the
answer to a path under ``api/`` that names no operation. Handler modules import this,
never each other.

The REST API lives under ``<service prefix>/api/``: one handler class per resource, one
scope check per verb. Each API module ends with its route table, ``default_handlers``
(paths below the service prefix), which the service collects (``service.api_routes``),
and with ``OPENAPI_PATHS``, its operations as the OpenAPI document (openapi.py) lists them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tornado import web
from tornado.escape import url_escape
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from gpupool.catalog.models import Catalog, Spec

from .access import ADMIN, OBSERVE, Caller
from .contract import allows
from .ledger import Ledger, Reservation
from .limits import DEFAULT_MAX_BODY, WRITES, RateLimiter
from .paging import BadPage, page_of, time_page
from .ssh_sessions import REPORT_GAP, SshSessions

T = TypeVar("T")


class ApiError(web.HTTPError):
    """An HTTP error with a JSON body; ``extra`` is merged into it."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(status, log_message=message)
        self.message = message
        self.extra = extra
        self.headers = headers or {}


def released(found: Reservation) -> ApiError:
    """A released reservation asked for by id: gone (404, as after any DELETE), with when
    and why in the answer; lists with ``state=all`` keep it as history."""
    j = found.to_json()
    return ApiError(
        404,
        f"reservation {found.id} was released: {found.release_reason or 'no reason kept'}",
        id=found.id,
        state=found.state,
        released_at=j.get("released_at"),
        release_reason=found.release_reason,
    )


def _not_a_number(name: str) -> Any:
    """JSON has no NaN or Infinity (Python's reader takes them): refused, as any bad body,
    before a number that compares false with everything reaches a check."""
    raise ValueError(f"{name} is not a JSON number; send a finite number")


class PoolContext:
    """What handlers share: the catalog, the ledger, and one thread for ledger calls
    (blocking SQL stays off the event loop; one thread keeps writes in order)."""

    def __init__(self, catalog: Catalog, ledger: Ledger, hub_auth: Any):
        self.catalog = catalog
        self.ledger = ledger
        self.hub_auth = hub_auth
        self.monitor: Any = None  # the health monitor (health.Monitor), set by the service
        self.trainings: Any = None  # the trainings dispatcher (trainings.dispatch), likewise
        self.ssh = SshSessions()  # what each server last reported of its SSH sessions
        # servers' reports of their SSH sessions: bounded apart from the user's own writes,
        # which they would otherwise spend (one every 5 s on average, 20 at once)
        self.ssh_limiter = RateLimiter(1 / REPORT_GAP, 20)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpupool-ledger")
        limits = catalog.pool.limits
        self.write_limiter = RateLimiter(limits.writes_per_minute / 60, limits.write_burst)

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def owner(self, name: str) -> Caller:
        """The hub's user ``name`` (its groups decide the specs it may use), looked up
        with the service's own token; an unknown user answers 404."""
        url = f"{self.hub_auth.api_url}/users/{url_escape(name, plus=False)}"
        req = HTTPRequest(url, headers={"Authorization": f"token {self.hub_auth.api_token}"})
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 404:
                raise ApiError(404, f"no hub user {name!r}") from None
            raise ApiError(502, f"the hub did not answer for user {name!r}: {e}") from None
        except OSError as e:
            raise ApiError(502, f"the hub did not answer: {e}") from None
        model = json.loads(resp.body)
        roles = set(model.get("roles") or ())
        groups = frozenset(model.get("groups") or ())
        scopes = {OBSERVE} if roles & {"gpupool-admin", "gpupool-observer"} else set()
        if model.get("admin") or self.catalog.is_pool_admin(name, groups):
            scopes.add(ADMIN)
        return Caller(name=name, kind="user", scopes=frozenset(scopes), groups=groups)

    async def stop_server(self, user: str, server_name: str = "") -> bool:
        """Ask the hub to stop a user's server (its spawner then frees the reservation),
        with the service's token (hub scope ``servers``). False if the hub has no such
        server; a refusal or a hub that does not answer is a 502 that says so."""
        # the hub answers a stop of a server that is not running with success as well:
        # ask first, so that 'stopped' means a spawner will free the reservation
        auth = {"Authorization": f"token {self.hub_auth.api_token}"}
        user_url = f"{self.hub_auth.api_url}/users/{url_escape(user, plus=False)}"
        try:
            resp = await AsyncHTTPClient().fetch(HTTPRequest(user_url, headers=auth))
            if server_name not in (json.loads(resp.body).get("servers") or {}):
                return False
        except HTTPClientError as e:
            if e.code == 404:
                return False
            raise ApiError(502, f"the hub did not answer for user {user!r}: {e}") from None
        except OSError as e:
            raise ApiError(502, f"the hub did not answer: {e}") from None
        path = f"users/{url_escape(user, plus=False)}/server"
        if server_name:
            path += f"s/{url_escape(server_name, plus=False)}"
        req = HTTPRequest(
            f"{self.hub_auth.api_url}/{path}",
            method="DELETE",
            headers={"Authorization": f"token {self.hub_auth.api_token}"},
            request_timeout=60,
        )
        try:
            await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 404:
                return False
            detail = ""
            if e.response is not None and e.response.body:
                try:
                    detail = json.loads(e.response.body).get("message", "")
                except ValueError:
                    pass
            raise ApiError(
                502, f"the hub did not stop {user}'s server: {e.code} {detail}".strip()
            ) from None
        except OSError as e:
            raise ApiError(502, f"the hub did not answer: {e}") from None
        return True


class BaseHandler(web.RequestHandler):
    caller: Caller
    auth_required = True

    @property
    def ctx(self) -> PoolContext:
        return self.settings["pool"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    max_body = DEFAULT_MAX_BODY  # bytes this endpoint reads; more answers 413

    async def prepare(self) -> None:
        size = len(self.request.body or b"")
        if size > self.max_body:
            raise ApiError(
                413,
                f"the request body is {size} bytes; this endpoint takes at most "
                f"{self.max_body} bytes",
            )
        if not self.auth_required:
            return
        header = self.request.headers.get("Authorization", "")
        m = re.match(r"(?:token|bearer)\s+(\S+)$", header, re.IGNORECASE)
        if not m:
            raise ApiError(401, "a hub token is required: send 'Authorization: token <token>'")
        model = await self.ctx.hub_auth.user_for_token(m.group(1), sync=False)
        if not model:
            raise ApiError(403, "the hub does not accept this token")
        self.caller = Caller.from_hub_model(model)
        if not (self.caller.can_use or self.caller.can_observe or self.caller.acts_for_others):
            raise ApiError(
                403, "this token has no gpupool scope (custom:gpupool:use, :observe or :admin)"
            )
        if (
            self.request.method in WRITES
            and self.caller.kind == "user"
            and not self.caller.acts_for_others
        ):
            limiter = self.write_limiter()
            wait = limiter.take(self.caller.name)
            if wait:
                after = RateLimiter.retry_after(wait)
                raise ApiError(
                    429,
                    f"too many changes: at most {limiter.rate * 60:g} per minute "
                    f"({limiter.burst} at once) per user; retry in {after} s",
                    headers={"Retry-After": after},
                    reason="rate-limit",
                )

    async def visible_reservation(self, rid: str, *, even_released: bool = False) -> Reservation:
        """Reservation ``rid`` if the caller may see it: another user's answers 404 exactly
        as a missing one; a released one answers the Gone 404 unless ``even_released``."""
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None or not self.caller.may_see(found.owner):
            raise ApiError(404, f"no reservation {rid!r}")
        if found.state != "active" and not even_released:
            raise released(found)
        return found

    def write_limiter(self) -> RateLimiter:
        """The bucket this endpoint's writes come out of (the user's, for most)."""
        return self.ctx.write_limiter

    def allowed_methods(self) -> list[str]:
        """The methods this handler answers (its class defines them), for ``Allow``."""
        return [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower())
        ]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"status": status_code}
        if status_code == 405:
            allowed = self.allowed_methods()
            self.set_header("Allow", ", ".join(allowed))
            body["message"] = (
                f"{self.request.method} is not an operation here; allowed: {', '.join(allowed)}"
            )
            body["allowed"] = allowed
            self.finish(json.dumps(body))
            return
        if isinstance(exc, ApiError):
            body["message"] = exc.message
            body.update(exc.extra)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            body["message"] = self._reason
        self.finish(json.dumps(body))

    def send(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj))

    def choice(self, name: str, allowed: Sequence[str], default: str | None = None) -> str | None:
        """Query argument ``name``, one of ``allowed`` (absent: ``default``); else 400."""
        value = self.get_argument(name, None)
        if value is None:
            return default
        if value not in allowed:
            raise ApiError(
                400, f"{name} {value!r}; allowed: {', '.join(allowed)}", allowed=list(allowed)
            )
        return value

    def refused(self, message: str, body: Any, schema: str, **extra: Any) -> ApiError:
        """A refusal of ``body``: 400 when the OpenAPI document's ``schema`` does not allow
        it, else 422 (well-formed, refused on its content)."""
        return ApiError(400 if not allows(schema, body) else 422, message, **extra)

    async def time_paged(
        self,
        fetch: Callable[[tuple[dt.datetime, str] | None, int], list[T]],
        position: Callable[[T], tuple[dt.datetime, str]],
    ) -> tuple[list[T], str | None]:
        """A page of a list sorted by (time, id), after this request's ``cursor`` and at most
        its ``limit`` long (a 400 says what is wrong with them), and the page's ``next``.
        ``fetch(after, n)`` reads up to ``n`` items after ``after``, in the ledger's thread;
        ``position`` is an item's (time, id)."""
        try:
            limit, after = time_page(
                self.get_argument("limit", None), self.get_argument("cursor", None)
            )
        except BadPage as e:
            raise ApiError(400, str(e)) from None
        found = await self.ctx.run(fetch, after, limit + 1)
        return page_of(found, limit, position)

    def json_object(self) -> dict[str, Any]:
        """The request body, a JSON object; else 400 saying what it is not."""
        try:
            data = json.loads(self.request.body or b"{}", parse_constant=_not_a_number)
        except RecursionError:
            raise ApiError(400, "request body is not JSON: nested too deeply") from None
        except ValueError as e:  # not JSON, or not UTF-8
            raise ApiError(400, f"request body is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data

    def body(self, allowed: set[str]) -> dict[str, Any]:
        data = self.json_object()
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ApiError(
                400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return data

    def specs_for(self, caller: Caller) -> list[Spec]:
        """The specs ``caller`` sees: those they may use, and every one for observers."""
        if caller.can_observe:
            return list(self.ctx.catalog.specs)
        return self.usable_by(caller)

    def usable_by(self, caller: Caller) -> list[Spec]:
        """The specs ``caller`` may use (Catalog.usable_specs: the form's rule too)."""
        return list(
            self.ctx.catalog.usable_specs(caller.name, caller.groups, hub_admin=caller.is_admin)
        )


class _EveryMethod(tuple):  # type: ignore[type-arg]
    def __contains__(self, method: object) -> bool:
        return True


class NotFoundHandler(BaseHandler):
    """Any path under ``api/`` that names no operation: the API's JSON 404 (not Tornado's
    page), for every method (TRACE, PROPFIND, ...), before any token is asked for."""

    auth_required = False
    SUPPORTED_METHODS = _EveryMethod()  # type: ignore[assignment]

    async def prepare(self) -> None:
        raise ApiError(
            404, "no such path in the pool API: its operations are listed in api/openapi.json"
        )
