"""REST API of trainings, under ``<prefix>/api/trainings``.

POST submits (the widget, the lab's launcher, ``gpupool train submit`` and curl all send
the same document, see request.py); GET lists and shows, with the queue position and why
a training waits; ``metrics`` and ``logs`` follow a running one; ``cancel`` stops it.
A training of another user answers 404, exactly as one that does not exist (observers
and admins see all; only its owner and admins cancel).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

from gpupool.job import ACTIVE, ENDED, STATES, TrainingError
from gpupool.pool.openapi_parts import ERR, json_answer, path_param, query, ref
from gpupool.pool.paging import openapi_parameters
from gpupool.pool.patterns import ID_RE
from gpupool.pool.release import cancel_training
from gpupool.pool.tables import utcnow
from gpupool.pool.web import ApiError, BaseHandler

from .request import QuotaRefusal, check_quota, check_request
from .store import Training

TID_RE = ID_RE  # any id-like string: an unknown one answers 404 like a foreign one
MAX_TAIL = 10_000
_submit_locks: dict[str, asyncio.Lock] = {}  # per user
MAX_REQUEST_BYTES = 1024 * 1024  # a training request: a graph of thousands of layers fits
STATE_FILTERS = {"queued": ("queued",), "active": ACTIVE, "ended": ENDED}
STATE_CHOICES = ("all", *STATE_FILTERS, *(s for s in STATES if s not in STATE_FILTERS))
TAIL_RE = r"all|[1-9][0-9]{0,3}|10000"  # 1 to MAX_TAIL lines, or all
MAX_SEQ = 2**53  # records' seq numbers stay below this (JSON numbers are doubles)


class TrainingBase(BaseHandler):
    @property
    def dispatcher(self) -> Any:
        return self.ctx.trainings

    @property
    def store(self) -> Any:
        return self.ctx.trainings.store

    async def _find(self, tid: str) -> Training:
        t = await self.ctx.run(self.store.get, tid)
        if t is None or not self.caller.may_see(t.owner):
            raise ApiError(404, f"no training {tid!r}")
        return t

    def view(self, t: Training) -> dict[str, Any]:
        out = t.to_json()
        if t.state == "queued":
            out["queue_position"] = self.dispatcher.positions.get(t.id)
        return out


class TrainingsHandler(TrainingBase):
    max_body = MAX_REQUEST_BYTES

    async def get(self) -> None:
        owner = self.get_argument("owner", None)
        state = self.choice("state", STATE_CHOICES, "all")
        states = None if state == "all" else STATE_FILTERS.get(state, (state,))
        if not (self.caller.can_observe or self.caller.acts_for_others):
            if owner not in (None, self.caller.name):
                raise ApiError(404, f"no user {owner!r}")
            owner = self.caller.name
        found, nxt = await self.time_paged(
            lambda after, n: self.store.list(owner, states, after=after, limit=n),
            lambda t: (t.submitted_at, t.id),
        )
        self.send({"trainings": [self.view(t) for t in found], "next": nxt})

    async def post(self) -> None:
        if not self.caller.can_use:
            raise ApiError(403, "submitting a training needs the scope custom:gpupool:use")
        data = self.json_object()
        try:
            sub = check_request(
                data,
                self.ctx.catalog,
                groups=self.caller.groups,
                is_admin=self.caller.is_admin,
                user=self.caller.name,
            )
            check_quota(self.ctx.catalog, self.caller.name, self.caller.groups, sub.spec)
        except QuotaRefusal as e:
            raise ApiError(403, str(e), reason="quota") from None
        except TrainingError as e:
            raise self.refused(str(e), data, "TrainingRequest") from None
        settings = self.ctx.catalog.pool.trainings
        # count and add under the user's lock: a burst of submits cannot pass the limit
        # together (one pool service serves the API)
        async with _submit_locks.setdefault(self.caller.name, asyncio.Lock()):
            waiting = await self.ctx.run(self.store.count, self.caller.name, ("queued",))
            if waiting >= settings.per_user_queued:
                raise ApiError(
                    429,
                    f"you have {waiting} trainings waiting; at most {settings.per_user_queued} may "
                    "wait at once: cancel some or wait for them to start",
                    reason="queue-full",
                    headers={"Retry-After": "60"},
                )
            tid = "t-" + secrets.token_hex(6)
            t = await self.ctx.run(
                self.store.add,
                id=tid,
                owner=self.caller.name,
                name=sub.name,
                kind=sub.kind,
                state="queued",
                spec=sub.spec.slug,
                image=sub.image,
                dataset=sub.dataset,
                request=sub.request_json(),
                priority=sub.priority,
                processes=sub.processes,
                max_run_seconds=sub.max_run_seconds,
                max_attempts=settings.max_attempts,
                attempt=0,
                submitted_at=utcnow(),
                run_seconds=0.0,
                log_cursor=0,
                message="queued",
                cancel_requested=False,
            )
        self.dispatcher.wake()
        self.set_header("Location", f"trainings/{tid}")
        self.send(self.view(t), status=201)


class TrainingHandler(TrainingBase):
    async def get(self, tid: str) -> None:
        t = await self._find(tid)
        out = self.view(t)
        out["latest"] = {
            kind: await self.ctx.run(self.store.last_event, tid, kind) for kind in ("step", "epoch")
        }
        out["attempts"] = await self.ctx.run(self.store.attempts, tid)
        self.send(out)


class TrainingMetricsHandler(TrainingBase):
    async def get(self, tid: str) -> None:
        t = await self._find(tid)
        raw = self.get_argument("since", "0")
        since = int(raw) if re.fullmatch(r"[0-9]{1,16}", raw) else -1
        if not 0 <= since <= MAX_SEQ:
            raise ApiError(
                400, f"since: the seq of the last record you have (0 to {MAX_SEQ}), got {raw!r}"
            )
        kinds_arg = self.get_argument("kinds", "")
        kinds = [k for k in kinds_arg.split(",") if k] or None
        records = await self.ctx.run(self.store.events, tid, since, kinds)
        self.send(
            {
                "training": tid,
                "state": t.state,
                "records": records,
                "last_seq": records[-1]["seq"] if records else since,
            }
        )


class TrainingLogsHandler(TrainingBase):
    async def get(self, tid: str) -> None:
        await self._find(tid)
        tail_arg = self.get_argument("tail", "200")
        if not re.fullmatch(TAIL_RE, tail_arg):
            raise ApiError(400, f"tail: 1 to {MAX_TAIL} lines, or all; got {tail_arg!r}")
        tail = MAX_TAIL if tail_arg == "all" else int(tail_arg)
        path = self.dispatcher.folder(tid) / "log.txt"

        def read() -> str:
            try:
                lines = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                return ""
            return "\n".join(lines[-tail:]) + ("\n" if lines else "")

        text = await self.ctx.run(read)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class TrainingCancelHandler(TrainingBase):
    async def post(self, tid: str) -> None:
        t = await self._find(tid)
        if not self.caller.may_change(t.owner):
            raise ApiError(403, "observers may read trainings, not cancel them")
        if t.state in ENDED:
            raise ApiError(409, f"training {tid} has already ended ({t.state})")
        by = self.caller.name
        done = await self.ctx.run(
            self.store.update,
            tid,
            only_from=["queued"],
            state="cancelled",
            message=f"cancelled by {by} while queued",
            cancel_requested=True,
            cancelled_by=by,
            finished_at=utcnow(),
        )
        if done:
            await self.ctx.run(
                self.store.add_events,
                tid,
                t.attempt,
                [{"kind": "cancelled", "message": f"cancelled by {by} while queued"}],
            )
        else:
            await cancel_training(self.ctx, tid, by)  # as an admin's release of it does
        self.dispatcher.wake()
        t = await self.ctx.run(self.store.get, tid)
        self.send(self.view(t), status=202)


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/trainings", TrainingsHandler),
    (rf"/api/trainings/({TID_RE})", TrainingHandler),
    (rf"/api/trainings/({TID_RE})/metrics", TrainingMetricsHandler),
    (rf"/api/trainings/({TID_RE})/logs", TrainingLogsHandler),
    (rf"/api/trainings/({TID_RE})/cancel", TrainingCancelHandler),
]


_JSON = "application/json"


def _json_ok(code: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {code: {"description": what, "content": {_JSON: {"schema": schema}}}}


def _op(summary: str, ok: dict[str, Any], *extra: str, **more: Any) -> dict[str, Any]:
    resp: dict[str, Any] = {**ok}
    for code in extra:
        resp[code] = json_answer(ERR, _WHY[code])
    return {"summary": summary, "responses": resp, **more}


_WHY = {
    "400": "Not what this document allows: the message names the field and what is allowed",
    "403": "The token lacks the scope, or the quota can never allow the spec (reason quota)",
    "404": "No such training, or another user's",
    "409": "The training has already ended",
    "413": "The request is over 1 MiB",
    "422": "Allowed by this document but refused on its content: a spec, image or dataset "
    "the catalog does not offer you, a graph that does not build, a priority or run time "
    "over your limits; the message says which and what is allowed",
    "429": "Too many changes a minute, or too many of your trainings waiting; see Retry-After",
}
# the component schemas (Training, TrainingRequest, TrainingList) are in
# gpupool.pool.schemas, where contract.py checks request bodies against them too
_TRAINING = ref("Training")
_PATH_ID = [path_param("id", TID_RE)]

OPENAPI_PATHS: dict[str, Any] = {
    "/trainings": {
        "get": _op(
            "Your trainings (all users' with custom:gpupool:observe), oldest first",
            _json_ok("200", ref("TrainingList"), "trainings"),
            "400",
            "404",
            parameters=[
                query("owner", {"type": "string"}, "whose (observers; others: own, else 404)"),
                query(
                    "state",
                    {"type": "string", "enum": list(STATE_CHOICES)},
                    "all (default); queued, active or ended; or one state",
                ),
                *openapi_parameters(),
            ],
        ),
        "post": _op(
            "Submit a training: a graph or a command, a dataset, a spec, hyperparameters",
            _json_ok("201", _TRAINING, "queued"),
            "400",
            "403",
            "413",
            "422",
            "429",
            requestBody={
                "required": True,
                "content": {_JSON: {"schema": ref("TrainingRequest")}},
            },
        ),
    },
    "/trainings/{id}": {
        "get": _op(
            "One training, with its latest metrics and its attempts",
            _json_ok("200", _TRAINING, "the training"),
            "404",
            parameters=_PATH_ID,
        )
    },
    "/trainings/{id}/metrics": {
        "get": _op(
            "Its metrics and events after seq `since` (step, epoch, checkpoint, done, ...)",
            _json_ok("200", {"type": "object"}, "records"),
            "400",
            "404",
            parameters=[
                *_PATH_ID,
                query(
                    "since",
                    {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                    "the seq of the last record you have (default 0: all)",
                ),
                query("kinds", {"type": "string"}, "comma-separated kinds (default: all)"),
            ],
        )
    },
    "/trainings/{id}/logs": {
        "get": _op(
            "The tail of its log (text)",
            {"200": {"description": "log lines", "content": {"text/plain": {}}}},
            "400",
            "404",
            parameters=[
                *_PATH_ID,
                query(
                    "tail",
                    {"type": "string", "pattern": f"^({TAIL_RE})$"},
                    f"the last 1 to {MAX_TAIL} lines (default 200), or all",
                ),
            ],
        )
    },
    "/trainings/{id}/cancel": {
        "post": _op(
            "Cancel it: dropped from the queue, or stopped and its GPUs freed",
            _json_ok("202", _TRAINING, "cancelling"),
            "403",
            "404",
            "409",
            parameters=_PATH_ID,
        )
    },
}

# What a training made by POST leads to (openapi.py adds them as OpenAPI links).
OPENAPI_LINKS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("/trainings", "post"): {
        "GetTraining": ("/trainings/{id}", "get"),
        "TrainingMetrics": ("/trainings/{id}/metrics", "get"),
        "TrainingLogs": ("/trainings/{id}/logs", "get"),
        "CancelTraining": ("/trainings/{id}/cancel", "post"),
    }
}
