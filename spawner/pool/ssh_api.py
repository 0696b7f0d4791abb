"""API of a server's SSH sessions: ``PUT api/reservations/{id}/ssh`` is how the server's
lab extension tells the pool which SSH sessions are open and when each last carried work;
``GET`` shows them to the owner and to observers (the dashboard reads them too). Another
user's reservation answers 404, as one that does not exist; only the owner reports."""

from __future__ import annotations

from typing import Any

from .contract import first_problem
from .limits import RateLimiter
from .openapi_parts import ERR, json_answer, path_param, ref
from .patterns import ID_RE
from .ssh_sessions import REPORT_EVERY, SshReport, duplicate_id
from .web import ApiError, BaseHandler


def _answer(rid: str, report: SshReport | None) -> dict[str, Any]:
    if report is None:
        return {"reservation": rid, "reported_at": None, "last_activity": None, "sessions": []}
    return report.to_json()


class SshSessionsHandler(BaseHandler):
    max_body = 16 * 1024  # 32 sessions of a few fields each

    def write_limiter(self) -> RateLimiter:
        return self.ctx.ssh_limiter  # not the user's own writes

    async def get(self, rid: str) -> None:
        await self.visible_reservation(rid)
        self.send(_answer(rid, self.ctx.ssh.get(rid)))

    async def put(self, rid: str) -> None:
        found = await self.visible_reservation(rid)
        if found.owner != self.caller.name:
            raise ApiError(
                403, "only the server's owner (its lab extension) reports its SSH sessions"
            )
        if found.kind != "notebook":
            raise ApiError(
                409,
                f"reservation {rid} holds a {found.kind}, not a notebook server: SSH "
                "sessions are reported for servers",
            )
        data = self.json_object()
        problem = first_problem("SshReport", data)
        if problem is not None:
            raise ApiError(400, problem)
        twice = duplicate_id(data["sessions"])
        if twice is not None:
            raise ApiError(400, f"sessions: id {twice!r} appears twice; ids are one per session")
        self.send(self.ctx.ssh.report(rid, found.owner, data["sessions"]).to_json())


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (rf"/api/reservations/({ID_RE})/ssh", SshSessionsHandler),
]

_ID = path_param("id")

OPENAPI_PATHS: dict[str, Any] = {
    "/reservations/{id}/ssh": {
        "get": {
            "summary": "The SSH sessions open on this reservation's server (as it last "
            "reported them; none when it has not reported lately)",
            "parameters": [_ID],
            "responses": {
                "200": json_answer(ref("SshSessions"), "the sessions; an empty list when none"),
                "404": json_answer(ref("Gone"), "not found, not yours, or released"),
            },
        },
        "put": {
            "summary": "Report the SSH sessions open on your server now (its lab extension "
            f"does, when one opens or closes and every {REPORT_EVERY:g} s while any is open); "
            "the list replaces the last one",
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("SshReport")}},
            },
            "responses": {
                "200": json_answer(ref("SshSessions"), "kept"),
                "400": json_answer(ERR, "the body is not a report; the message names the field"),
                "403": json_answer(ERR, "not the reservation's owner"),
                "404": json_answer(ref("Gone"), "not found, not yours, or released"),
                "409": json_answer(ERR, "the reservation holds a training, not a server"),
            },
        },
    },
}
