"""API of reservations: a user's share of the pool's GPUs, CPU and memory, made for a
server or a training (by the hub's spawner, the trainings dispatcher or an admin), listed,
shown and released. Asking for another user's reservation answers 404, exactly as for one
that does not exist; releasing means stopping (release.py)."""

from __future__ import annotations

import re
from typing import Any

from .access import SPAWN
from .ledger import LedgerError
from .openapi_parts import AUTH_ERRORS, ERR, json_answer, path_param, query, ref
from .paging import openapi_parameters
from .patterns import CONTAINER_NAME_RE, ID_RE
from .release import Refused, how_to_stop, stop_and_release, user_may_release
from .scheduler import Rejection
from .web import ApiError, BaseHandler

KINDS = ("notebook", "training", "manual")
RESERVE_FIELDS = {"spec", "server_name", "kind", "owner", "id", "container"}


class ReservationsHandler(BaseHandler):
    async def get(self) -> None:
        owner = self.get_argument("owner", None)
        include_released = self.choice("state", ("active", "all"), "active") == "all"
        if not (self.caller.can_observe or self.caller.acts_for_others):
            if owner not in (None, self.caller.name):
                raise ApiError(404, f"no user {owner!r}")  # other users are not visible
            owner = self.caller.name
        found, nxt = await self.time_paged(
            lambda after, n: self.ctx.ledger.list(
                owner, not include_released, after=after, limit=n
            ),
            lambda r: (r.created_at, r.id),
        )
        self.send({"reservations": [r.to_json() for r in found], "next": nxt})

    async def post(self) -> None:
        if not self.caller.acts_for_others:
            # a reservation nothing uses would hold capacity from everyone for start_grace
            raise ApiError(
                403,
                "reservations are made for a server or a training: start a server from the "
                "hub, or submit a training (POST api/trainings); reserving directly needs "
                "custom:gpupool:spawn (the hub's spawner) or custom:gpupool:admin",
            )
        data = self.body(RESERVE_FIELDS)
        nulls = sorted(k for k, v in data.items() if v is None)
        if nulls:
            raise ApiError(
                400, f"{', '.join(nulls)}: null is not allowed; leave a field out for its default"
            )
        owner = data.get("owner", self.caller.name)
        if not isinstance(owner, str) or not owner:
            raise ApiError(400, "owner must be a user name")
        if owner != self.caller.name and not self.caller.acts_for_others:
            raise ApiError(
                403, "only pool admins (custom:gpupool:admin) may reserve for another user"
            )
        rid = data.get("id")
        if rid is not None:
            # the spawner names its reservation before asking, so that a start cancelled
            # while the answer is under way can still free it
            if not self.caller.acts_for_others:
                raise ApiError(403, "only the hub's spawner and pool admins choose an id")
            if not isinstance(rid, str) or not re.fullmatch(ID_RE, rid):
                raise ApiError(400, f"id must match {ID_RE}")
        container = data.get("container")
        if container is not None:
            if not self.caller.acts_for_others:
                raise ApiError(403, "only pool admins may name the container")
            if not isinstance(container, str) or not re.fullmatch(CONTAINER_NAME_RE, container):
                raise ApiError(400, "container must be a Docker container name")
        kind = data.get("kind", "notebook")
        if kind not in KINDS:
            raise ApiError(400, f"kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
        server_name = data.get("server_name", "")
        if not isinstance(server_name, str) or len(server_name) > 255:
            raise ApiError(400, "server_name must be a string of at most 255 characters")
        slug = data.get("spec")
        # specs the owner may use: for another user, that user's groups as the hub has them
        who = self.caller if owner == self.caller.name else await self.ctx.owner(owner)
        allowed = self.usable_by(who)
        spec = next((s for s in allowed if s.slug == slug), None)
        if spec is None:
            names = ", ".join(s.slug for s in allowed) or "none"
            what = "is required" if slug is None else f"{slug!r} is not a spec you may use"
            raise self.refused(
                f"spec {what}; allowed: {names}",
                data,
                "ReservationRequest",
                allowed=[s.slug for s in allowed],
            )
        quota, source = self.ctx.catalog.pool.quotas.for_user(owner, who.groups)
        try:
            result = await self.ctx.run(
                self.ctx.ledger.reserve,
                spec,
                owner,
                kind=kind,
                server_name=server_name,
                reservation_id=rid,
                container=container,
                quota=quota,
                quota_source=source,
            )
        except LedgerError as e:
            raise ApiError(409, str(e)) from None
        if isinstance(result, Rejection) and result.reason == "quota":
            raise ApiError(403, result.message, reason="quota")
        if isinstance(result, Rejection):
            raise ApiError(
                503, result.message, reason=result.reason, nodes=result.to_json()["nodes"]
            )
        self.set_header("Location", f"reservations/{result.id}")
        self.send(result.to_json(), status=201)


class ReservationHandler(BaseHandler):
    async def get(self, rid: str) -> None:
        self.send((await self.visible_reservation(rid)).to_json())

    async def delete(self, rid: str) -> None:
        try:
            found = await self.visible_reservation(rid, even_released=True)
        except ApiError:
            if self.caller.acts_for_others and re.fullmatch(ID_RE, rid):
                # the spawner frees what a cancelled start may still be reserving: a
                # reserve of this id that arrives later is refused
                await self.ctx.run(self.ctx.ledger.forget, rid)
            raise
        if not self.caller.may_change(found.owner):
            raise ApiError(403, "observers may read reservations, not release them")
        reason = f"released by {self.caller.name}"
        if SPAWN in self.caller.scopes and not self.caller.is_admin:
            # the spawner releases after it removed the container itself
            await self.ctx.run(self.ctx.ledger.release, rid, reason)
        elif not self.caller.acts_for_others:
            if found.state == "active" and not user_may_release(found):
                raise ApiError(409, how_to_stop(found), reason="workload-running")
            await self.ctx.run(self.ctx.ledger.release, rid, reason)
        else:
            try:
                outcome = await stop_and_release(self.ctx, found, self.caller.name, reason)
            except Refused as e:
                raise ApiError(e.status, e.message, reason="node-down") from None
            if outcome == "stopping":
                self.send(
                    {
                        "status": 202,
                        "message": f"stopping the workload of {rid}; the reservation is "
                        "freed when it has stopped",
                    },
                    status=202,
                )
                return
        self.set_status(204)
        self.finish()


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/reservations", ReservationsHandler),
    (rf"/api/reservations/({ID_RE})", ReservationHandler),
]

_ID = path_param("id")
_NEXT = {"type": ["string", "null"], "description": "cursor of the next page; null on the last"}

OPENAPI_PATHS: dict[str, Any] = {
    "/reservations": {
        "get": {
            "summary": "Your reservations (all users' with custom:gpupool:observe)",
            "parameters": [
                query(
                    "owner",
                    {"type": "string"},
                    "whose (observers and admins; others: their own, else 404)",
                ),
                query(
                    "state",
                    {"type": "string", "enum": ["active", "all"]},
                    "active (default) or all, released ones included",
                ),
                *openapi_parameters(),
            ],
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "properties": {
                            "reservations": {"type": "array", "items": ref("Reservation")},
                            "next": _NEXT,
                        },
                    },
                    "reservations, oldest first; 'next' is the cursor of the next page",
                ),
                "400": json_answer(ERR, "a state, limit or cursor this API does not take"),
                "404": json_answer(ERR, "another user's, for a caller who sees only their own"),
                **AUTH_ERRORS,
            },
        },
        "post": {
            "summary": "Reserve GPUs for a spec (atomic; never oversubscribes)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("ReservationRequest")}},
            },
            "responses": {
                "201": json_answer(ref("Reservation"), "placed"),
                "400": json_answer(
                    ERR,
                    "the body is not what this document allows; the message "
                    "names the field and what is allowed",
                ),
                "404": json_answer(ERR, "the owner is not a hub user"),
                "409": json_answer(ERR, "reservation id already used"),
                "422": json_answer(ERR, "a spec the owner may not use; 'allowed' lists theirs"),
                "502": json_answer(ERR, "the hub did not answer for the owner"),
                "503": json_answer(ref("Capacity"), "nothing fits now"),
                **AUTH_ERRORS,
            },
        },
    },
    "/reservations/{id}": {
        "get": {
            "summary": "One active reservation",
            "parameters": [_ID],
            "responses": {
                "200": json_answer(ref("Reservation"), "found"),
                "404": json_answer(
                    ref("Gone"),
                    "not found or not yours; or released (gone, as after DELETE): "
                    "then the answer says when and why, and ?state=all lists it",
                ),
                **AUTH_ERRORS,
            },
        },
        "delete": {
            "summary": "Release a reservation (releasing a released one succeeds). "
            "Releasing means stopping: an admin's release stops the server or "
            "training that holds it; a user stops their server or cancels their "
            "training instead",
            "parameters": [_ID],
            "responses": {
                "202": json_answer(ERR, "its workload is being stopped; freed after"),
                "204": {"description": "released"},
                "404": json_answer(ERR, "not found or not yours"),
                "409": json_answer(ERR, "it holds your running server or training"),
                "502": json_answer(ERR, "the hub did not answer when asked to stop a server"),
                "429": json_answer(ERR, "too many changes; see Retry-After"),
                "503": json_answer(ERR, "its node does not answer; kept until it does"),
                **AUTH_ERRORS,
            },
        },
    },
}

# What a reservation made by POST leads to (stateful clients and testers follow these).
OPENAPI_LINKS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("/reservations", "post"): {
        "GetReservation": ("/reservations/{id}", "get"),
        "ReservationMetrics": ("/reservations/{id}/metrics", "get"),
        "ReleaseReservation": ("/reservations/{id}", "delete"),
    }
}
