"""A training's output is the user's: nothing it prints may stall the pool for others.

Every record read from a container's log is checked against the contract (job.py) and
dropped, counted and reported when it breaks it; each training's failure stays with that
training; a cancel and the run-time limit apply even when its output cannot be read; the
bytes read per pass and the events kept per training are bounded; a checkpoint record
cannot copy anything outside the training's folder.

Real ledger and store (SQLite); the node's engine is a stand-in (FakeEngine) that serves
a log as docker-py does. Real engines: tests/integration/test_hostile_trainings.py.
"""

from __future__ import annotations

import calendar
import io
import json
import logging
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from gpupool.catalog import load_catalog
from gpupool.job import hyperparameters
from gpupool.pool.ledger import Ledger
from gpupool.pool.tables import utcnow
from gpupool.pool.trainings import output
from gpupool.pool.trainings import store as store_module
from gpupool.pool.trainings.dispatch import Dispatcher
from gpupool.pool.trainings.launch import training_container_name
from gpupool.pool.trainings.store import TrainingStore

T0 = calendar.timegm((2026, 11, 23, 10, 0, 0, 0, 0, 0)) * 1_000_000_000  # ns
GOOD = {"kind": "epoch", "epoch": 1, "test_accuracy": 0.5}
RUNNING = {"Running": True, "Status": "running"}


def stamp(ns: int) -> str:
    """Docker's RFC 3339 timestamp of ``ns`` (nanoseconds since 1970)."""
    s, frac = divmod(ns, 1_000_000_000)
    y, mo, d, h, mi, sec = time.gmtime(s)[:6]
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}.{frac:09d}Z"


def metric(rec: Any) -> str:
    return "GPUPOOL-METRIC " + (rec if isinstance(rec, str) else json.dumps(rec))


class FakeEngine:
    """Containers by name (a state and a log of (ns, text) lines). ``logs`` answers as
    docker-py does: the whole log as bytes, or with ``stream=True`` a stream of one chunk
    per line; ``since`` and ``tail`` as the engine applies them. Counts the bytes it
    handed out, records the other calls."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.sent = 0
        self.archive: bytes | None = None  # what get_archive answers
        self.archive_chunks = 1
        self.archive_sent = 0
        self.archive_paths: list[str] = []
        self.volumes: dict[str, dict[str, str]] = {}  # name: labels

    def add(
        self,
        name: str,
        lines: list[str],
        state: dict[str, Any] | None = None,
        owner: str | None = None,  # its io.gpupool.owner label (none: not removed by the pool)
    ) -> None:
        log = [(T0 + (i + 1) * 1_000_000, text) for i, text in enumerate(lines)]
        self.containers[name] = {"state": dict(state or RUNNING), "log": log}
        if owner is not None:
            self.containers[name]["owner"] = owner

    async def call(self, node: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(method)
        c = self.containers.get(args[0]) if args and isinstance(args[0], str) else None
        if method == "inspect_container":
            if c is None:
                raise NotFound("no such container")
            if "inspect_error" in c:
                raise c["inspect_error"]
            labels = c.get("labels", {"io.gpupool.kind": "training"})
            if "owner" in c:
                labels = {**labels, "io.gpupool.owner": c["owner"]}
            return {"Id": args[0], "State": c["state"], "Config": {"Labels": labels}}
        if method in ("networks", "inspect_network"):  # gpupool-users as gpupool makes it
            icc = {"com.docker.network.bridge.enable_icc": "false"}
            net = {"Name": "gpupool-users", "Id": "n1", "Driver": "bridge", "Options": icc}
            return [net] if method == "networks" else net
        if method == "inspect_volume":
            if args[0] not in self.volumes:
                raise NotFound("no such volume")
            return {"Labels": self.volumes[args[0]]}
        if method == "create_volume":
            self.volumes.setdefault(kwargs["name"], kwargs.get("labels") or {})
            return {"Labels": self.volumes[kwargs["name"]]}
        if method == "logs":
            if c is None:
                raise NotFound("no such container")
            return self._logs(c, **kwargs)
        if method == "stop" and c is not None:
            c["state"] = {"Running": False, "Status": "exited", "ExitCode": 137}
        if method == "remove_container":
            self.containers.pop(args[0], None)
        if method == "create_container":
            self.containers[kwargs["name"]] = {
                "state": {"Running": False, "Status": "created"},
                "labels": kwargs.get("labels") or {},
            }
            return {"Id": kwargs["name"]}
        if method == "start" and c is not None:
            c["state"] = dict(RUNNING)
            c.setdefault("log", [])
        return None

    def _logs(self, c: dict[str, Any], **kwargs: Any) -> Any:
        if "logs_error" in c:
            raise c["logs_error"]
        since = kwargs.get("since")
        lines = [
            f"{stamp(ns)} {text}\n".encode()
            for ns, text in c["log"]
            if since is None or ns >= since * 1_000_000_000
        ]
        tail = kwargs.get("tail", "all")
        if isinstance(tail, int):
            lines = lines[-tail:] if tail else []
        if kwargs.get("stream"):  # docker-py follows a stream unless told not to
            if kwargs.get("follow") is not False:
                pytest.fail("a followed log does not end while its container runs")
        else:
            data = b"".join(lines)
            self.sent += len(data)
            return data
        return self._stream(lines, c.get("stream_error"))

    def _stream(self, lines: list[bytes], error: Exception | None) -> Iterator[bytes]:
        for line in lines:
            self.sent += len(line)
            yield line
        if error is not None:
            raise error

    async def run(self, fn: Any, node: Any = None) -> Any:
        return fn()

    def client(self, node: Any) -> Any:
        return self

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def put_archive(self, *args: Any) -> bool:
        return True

    def get_archive(self, container: str, path: str) -> tuple[Iterator[bytes], dict[str, int]]:
        self.archive_paths.append(path)
        assert self.archive is not None
        data, n = self.archive, self.archive_chunks

        def chunks() -> Iterator[bytes]:
            for _ in range(n):
                self.archive_sent += len(data)
                yield data

        return chunks(), {"size": 7}


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@pytest.fixture
def parts(catalog_dir: Path, tmp_path: Path) -> tuple[Any, Ledger, TrainingStore]:
    (catalog_dir / "pool.yaml").write_text(
        (catalog_dir / "pool.yaml").read_text() + "trainings:\n  max_checkpoint_mib: 1\n"
    )
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", catalog)
    return catalog, ledger, TrainingStore(ledger.engine)


def add_training(
    parts: Any, tid: str, owner: str, *, state: str = "running", **values: Any
) -> str | None:
    """A training in ``state``; a running one holds a reservation on node-a."""
    catalog, ledger, store = parts
    res = None
    if state != "queued":
        res = ledger.reserve(catalog.spec("cpu-1"), owner, kind="training", server_name=tid)
    row: dict[str, Any] = {
        "id": tid,
        "owner": owner,
        "name": "x",
        "kind": "command",
        "state": state,
        "spec": "cpu-1",
        "image": "trainer",
        "dataset": None,
        "request": json.dumps({"command": ["true"], "hyperparameters": hyperparameters({})}),
        "priority": 0,
        "processes": 1,
        "max_run_seconds": 3600,
        "max_attempts": 3,
        "attempt": 0 if res is None else 1,
        "submitted_at": utcnow(),
        "started_at": None if res is None else utcnow(),
        "run_seconds": 0.0,
        "reservation_id": None if res is None else res.id,
        "node": None if res is None else res.node,
        "container": None if res is None else training_container_name(tid, 1),
        "log_cursor": 0,
        "message": "",
        "cancel_requested": False,
        **values,
    }
    store.add(**row)
    return None if res is None else res.id


def dispatcher(parts: Any, engine: FakeEngine, tmp_path: Path) -> Dispatcher:
    catalog, ledger, store = parts
    return Dispatcher(catalog, ledger, store, _run, artifacts=tmp_path / "a", engines=engine)  # type: ignore[arg-type]


# -- the records, one by one ---------------------------------------------------------------
DROPPED = {
    "time not a number": {"kind": "step", "step": 1, "time": "now"},
    "time NaN": '{"kind": "step", "step": 1, "time": NaN}',
    "time infinite": '{"kind": "step", "step": 1, "time": Infinity}',
    "time negative": {"kind": "step", "step": 1, "time": -5},
    "epoch too large for the database": {"kind": "epoch", "epoch": 10**30},
    "epoch with 5000 digits": '{"kind": "epoch", "epoch": ' + "9" * 5000 + "}",
    "epoch negative": {"kind": "epoch", "epoch": -1},
    "epoch a string": {"kind": "epoch", "epoch": "1"},
    "epoch a boolean": {"kind": "epoch", "epoch": True},
    "epoch a fraction": {"kind": "epoch", "epoch": 1.5},
    "step missing": {"kind": "step", "loss": 0.5},
    "loss nested junk": {"kind": "step", "step": 1, "loss": {"a": [1, {"b": None}]}},
    "test accuracy a list": {"kind": "epoch", "epoch": 1, "test_accuracy": [0.5]},
    "checkpoint outside its folder": {"kind": "checkpoint", "epoch": 1, "file": "../../x.pt"},
    "kind missing": {"epoch": 1},
    "kind not a string": {"kind": ["step"]},
    "kind unknown": {"kind": "weird"},
    "kind the pool's own": {"kind": "succeeded", "message": "forged"},
    "not JSON": "{not json",
    "not an object": '["a list"]',
    "nested 50 000 deep": "[" * 50_000,
    "nested a million deep": "[" * 1_000_000,
    "a 10 MB line": {"kind": "step", "step": 1, "pad": "x" * 10_000_000},
}


@pytest.mark.parametrize("bad", DROPPED.values(), ids=DROPPED.keys())
def test_a_malformed_record_is_dropped_and_counted_and_good_ones_pass(bad: Any) -> None:
    lines = [metric(GOOD), metric(bad), metric({**GOOD, "epoch": 2})]
    raw = "".join(f"{stamp(T0 + i)} {line}\n" for i, line in enumerate(lines, 1)).encode()
    batch = output.read_log(raw, 0)
    assert batch.records == [GOOD, {**GOOD, "epoch": 2}]
    assert batch.dropped == 1
    assert batch.cursor == T0 + 3
    assert all(len(line) <= 16 * 1024 + 20 for line in batch.text)  # kept as text, cut


def test_an_error_line_must_carry_a_message() -> None:
    raw = (
        f"{stamp(T0 + 1)} GPUPOOL-ERROR {json.dumps({'message': {'nested': 1}})}\n"
        f"{stamp(T0 + 2)} GPUPOOL-ERROR {json.dumps({'message': 'x' * 9000 + chr(0)})}\n"
    ).encode()
    batch = output.read_log(raw, 0)
    assert batch.dropped == 1
    assert batch.records == [{"kind": "error", "message": "x" * 2000}]


def test_good_records_are_kept_coerced_and_cut() -> None:
    """Known fields checked, unknown ones (a forged seq or attempt) dropped, strings cut,
    NUL and unpaired surrogates replaced, a diverged loss (NaN) kept as null."""
    lines = [
        metric({"kind": "start", "epochs": 3, "device": "cpu" * 1000, "command": ["x"] * 500}),
        metric({"kind": "epoch", "epoch": 2.0, "seq": 1, "attempt": 9, "evil": "x"}),
        metric('{"kind": "step", "step": 7, "loss": NaN, "samples_per_s": 1e400}'),
        metric({"kind": "resume", "epoch": 1, "checkpoint": "a\u0000b\ud800c"}),
        metric({"kind": "checkpoint", "epoch": 2, "file": "checkpoints/epoch-0002.pt"}),
        metric({"kind": "done", "test_accuracy": 0.9, "time": 1_790_000_000.5}),
    ]
    raw = "".join(f"{stamp(T0 + i)} {line}\n" for i, line in enumerate(lines, 1)).encode()
    batch = output.read_log(raw, 0)
    assert batch.dropped == 0
    start, epoch, step, resume, ckpt, done = batch.records
    assert len(start["device"]) == 256 and len(start["command"]) == 64
    assert epoch == {"kind": "epoch", "epoch": 2}
    assert step == {"kind": "step", "step": 7, "loss": None, "samples_per_s": None}
    assert resume["checkpoint"] == "a\ufffdb?c"
    resume["checkpoint"].encode("utf-8")  # storable
    assert ckpt == {"kind": "checkpoint", "epoch": 2, "file": "checkpoints/epoch-0002.pt"}
    assert done == {"kind": "done", "test_accuracy": 0.9, "time": 1_790_000_000.5}


RUNNER = [  # as gpupool.lab.train.runner prints them
    {
        "kind": "start",
        "time": 1_790_000_000.123,
        "epochs": 3,
        "start_epoch": 1,
        "steps_per_epoch": 22,
        "processes": 2,
        "device": "cpu",
        "parameters": 4_810,
        "dataset": "digits: 1437 training, 360 test samples",
    },
    {"kind": "resume", "epoch": 2, "checkpoint": "checkpoints/epoch-0002.pt"},
    {"kind": "step", "epoch": 1, "step": 3, "loss": 2.1, "samples_per_s": 5120.5},
    {
        "kind": "epoch",
        "epoch": 1,
        "train_loss": 1.2,
        "test_loss": 1.1,
        "test_accuracy": None,
        "seconds": 0.5,
        "samples_per_s": 2874.0,
    },
    {"kind": "checkpoint", "epoch": 1, "file": "checkpoints/epoch-0001.pt", "bytes": 21_000},
    {
        "kind": "done",
        "train_loss": 0.2,
        "test_loss": 0.3,
        "test_accuracy": 0.95,
        "seconds": 0.5,
        "samples_per_s": 2874.0,
        "epochs": 3,
        "files": ["model.pt", "model.py", "graph.gpgraph.json", "load_model.py"],
        "snippet": "import sys, torch\nmodel.eval()\n",
    },
    {"kind": "start", "command": ["python", "train.py"], "processes": 1},
    {"kind": "done", "exit_code": 0},
]


def test_what_the_runner_prints_is_kept_whole() -> None:
    raw = "".join(f"{stamp(T0 + i)} {metric(r)}\n" for i, r in enumerate(RUNNER, 1)).encode()
    batch = output.read_log(raw, 0)
    assert batch.records == RUNNER and batch.dropped == 0


def test_a_forged_line_break_cannot_forge_a_timestamp() -> None:
    """Only docker's newline starts a line (and docker stamps it): a carriage return or a
    Unicode line separator inside a line is text, not a line with a far-future stamp."""
    forged = f"hello\r9999-12-31T23:59:59.999999999Z {metric(GOOD)}\u2028x"
    raw = f"{stamp(T0 + 1)} {forged}\n".encode()
    batch = output.read_log(raw, 0)
    assert batch.cursor == T0 + 1 and batch.records == []


# -- through the dispatcher --------------------------------------------------------------
HOSTILE = [
    metric({"kind": "step", "step": 1, "time": "now"}),
    metric({"kind": "epoch", "epoch": 10**30}),
    metric('{"kind": "step", "step": 2, "loss": 0.1, "time": NaN}'),
    metric(GOOD),
    "plain text",
]


async def test_hostile_output_stalls_nobody(parts: Any, tmp_path: Path) -> None:
    """A's output breaks the contract three ways: the pass goes on, A keeps its good
    record and a warning, and B (queued) is started in the same pass."""
    store = parts[2]
    add_training(parts, "t-00000000000a", "ann")
    add_training(parts, "t-00000000000b", "bob", state="queued")
    engine = FakeEngine()
    engine.add(training_container_name("t-00000000000a", 1), HOSTILE)
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    b = store.get("t-00000000000b")
    assert b is not None and b.state == "running", b.message
    a = store.get("t-00000000000a")
    assert a is not None and a.state == "running" and a.log_cursor > 0
    events = store.events(a.id)
    assert [e["kind"] for e in events] == ["epoch", "warning"]
    assert events[1]["message"].startswith("3 malformed metric lines dropped")
    log = (tmp_path / "a" / a.id / "log.txt").read_text()
    assert "plain text" in log and "3 malformed metric lines dropped" in log
    await d.tick()  # nothing new: no second warning
    assert [e["kind"] for e in store.events(a.id)] == ["epoch", "warning"]


async def test_a_watch_that_raises_is_contained_to_its_training(
    parts: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = parts[2]
    add_training(parts, "t-00000000000a", "ann")
    add_training(parts, "t-00000000000b", "bob", state="queued")
    engine = FakeEngine()
    engine.add(training_container_name("t-00000000000a", 1), [])
    engine.containers[training_container_name("t-00000000000a", 1)]["inspect_error"] = RuntimeError(
        "something nobody expected"
    )
    d = dispatcher(parts, engine, tmp_path)
    with caplog.at_level(logging.ERROR, logger="gpupool.trainings"):
        await d.tick()
    b = store.get("t-00000000000b")
    assert b is not None and b.state == "running", b.message
    assert any(
        "t-00000000000a" in r.getMessage() and r.exc_info is not None for r in caplog.records
    )


@pytest.mark.parametrize("why", ["cancel", "run time"])
@pytest.mark.parametrize("failure", ["hostile output", "a broken log stream"])
async def test_cancel_and_the_run_time_limit_apply_when_reading_fails(
    parts: Any, tmp_path: Path, why: str, failure: str
) -> None:
    """Its container is stopped and, at the next pass, its reservation freed, whatever
    its output does to the reading."""
    _, ledger, store = parts
    tid = "t-00000000000a"
    values: dict[str, Any] = (
        {"cancel_requested": True, "cancelled_by": "ann"}
        if why == "cancel"
        else {"max_run_seconds": 1, "started_at": utcnow().replace(year=2020)}
    )
    rid = add_training(parts, tid, "ann", **values)
    engine = FakeEngine()
    name = training_container_name(tid, 1)
    engine.add(name, HOSTILE if failure == "hostile output" else [metric(GOOD)], owner="ann")
    if failure == "a broken log stream":
        engine.containers[name]["logs_error"] = RuntimeError("the stream broke")
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    assert "stop" in engine.calls
    assert engine.calls.index("stop") < engine.calls.index("logs")  # reading cannot delay it
    await d.tick()
    t = store.get(tid)
    assert t is not None and t.state == "cancelled", t.message
    assert t.message == (
        "cancelled by ann"
        if why == "cancel"
        else "stopped: it ran past its maximum run time of 1 s"
    )
    r = ledger.get(rid)
    assert r is not None and r.state == "released"
    assert name not in engine.containers


async def test_bytes_read_per_pass_are_capped_and_the_next_pass_goes_on(
    parts: Any, tmp_path: Path
) -> None:
    """10 MB of output (10 000 lines of 1 kB): a pass reads about 1 MiB of it, the next
    pass the next MiB, nothing twice and nothing skipped."""
    store = parts[2]
    tid = "t-00000000000a"
    add_training(parts, tid, "ann")
    engine = FakeEngine()
    lines = [metric({"kind": "step", "step": i + 1, "pad": "x" * 950}) for i in range(10_000)]
    engine.add(training_container_name(tid, 1), lines)
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    assert 512 * 1024 < engine.sent <= 1024 * 1024 + 2048
    first = [e["step"] for e in store.events(tid, kinds=["step"])]
    assert first == list(range(1, len(first) + 1))
    engine.sent = 0
    await d.tick()
    assert engine.sent <= 1024 * 1024 + 2048
    steps = [e["step"] for e in store.events(tid, kinds=["step"])]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > len(first)


async def test_an_ended_training_behind_on_its_output_is_settled_from_its_last_lines(
    parts: Any, tmp_path: Path
) -> None:
    """A training that printed far more than a pass reads and then ended: its result is
    in its last lines, read at once, so that its reservation is not held for hours."""
    _, ledger, store = parts
    tid = "t-00000000000a"
    rid = add_training(parts, tid, "ann")
    engine = FakeEngine()
    lines = ["y" * 1000] * 5000 + [metric({"kind": "done", "exit_code": 0})]
    engine.add(
        training_container_name(tid, 1),
        lines,
        {"Running": False, "Status": "exited", "ExitCode": 0},
    )
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    t = store.get(tid)
    assert t is not None and t.state == "succeeded", t.message
    assert ledger.get(rid).state == "released"  # type: ignore[union-attr]
    assert engine.sent <= 2 * (1024 * 1024 + 2048)
    assert "output skipped" in (tmp_path / "a" / tid / "log.txt").read_text()


def test_the_events_kept_per_training_are_capped(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last N of each kind are kept: a training printing steps without end cannot
    fill the database, and its last epoch, checkpoint and result stay."""
    store = parts[2]
    monkeypatch.setattr(store_module, "MAX_EVENTS_PER_KIND", 100)
    add_training(parts, "t-00000000000a", "ann")
    store.add_events("t-00000000000a", 1, [{"kind": "epoch", "epoch": 1}])
    for start in range(0, 1000, 250):
        batch = [{"kind": "step", "step": i} for i in range(start, start + 250)]
        store.add_events("t-00000000000a", 1, batch)
    steps = store.events("t-00000000000a", kinds=["step"])
    assert [s["step"] for s in steps] == list(range(900, 1000))
    assert [e["epoch"] for e in store.events("t-00000000000a", kinds=["epoch"])] == [1]


# -- checkpoints ---------------------------------------------------------------------
def tar_of(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 7 if kind == tarfile.REGTYPE else 0
    return info


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize(
    ("file", "archive", "kept"),
    [
        ("../../../escape.pt", tar_of(member("escape.pt"), b"weights"), False),
        ("checkpoints/epoch-0001.pt", tar_of(member("../../../escape.pt"), b"weights"), True),
        ("checkpoints/epoch-0001.pt", tar_of(member("/tmp/escape.pt"), b"weights"), True),
        (
            "checkpoints/epoch-0001.pt",
            tar_of(member("epoch-0001.pt", tarfile.SYMTYPE, "/etc/passwd")),
            False,
        ),
        (
            "checkpoints/epoch-0001.pt",
            tar_of(member("epoch-0001.pt", tarfile.LNKTYPE, "../../../etc/passwd")),
            False,
        ),
    ],
    ids=["path in the record", "path in the tar", "absolute path in the tar", "symlink", "link"],
)
async def test_a_hostile_checkpoint_copies_nothing_outside_its_folder(
    parts: Any, tmp_path: Path, file: str, archive: bytes, kept: bool
) -> None:
    store = parts[2]
    tid = "t-00000000000a"
    add_training(parts, tid, "ann")
    engine = FakeEngine()
    engine.archive = archive
    engine.add(
        training_container_name(tid, 1), [metric({"kind": "checkpoint", "epoch": 1, "file": file})]
    )
    root = tmp_path / "a"
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    before = files_under(tmp_path)
    assert all(not p.endswith("escape.pt") for p in before), before
    found = files_under(root / tid)
    if kept:
        assert found >= {"checkpoints/epoch-0001.pt"}
        assert (root / tid / "checkpoints" / "epoch-0001.pt").read_bytes() == b"weights"
    else:
        assert not any(p.startswith("checkpoints/") for p in found), found
    t = store.get(tid)
    assert t is not None and t.checkpoint_epoch == (1 if kept else None)


async def test_a_checkpoint_stream_larger_than_the_limit_is_not_read_to_its_end(
    parts: Any, tmp_path: Path
) -> None:
    """A checkpoint 'file' that is a folder of gigabytes answers a small stat and an
    endless tar: the pool stops reading past its checkpoint limit (1 MiB here)."""
    store = parts[2]
    tid = "t-00000000000a"
    add_training(parts, tid, "ann")
    engine = FakeEngine()
    engine.archive, engine.archive_chunks = b"\0" * (1024 * 1024), 50
    file = "checkpoints/epoch-0001.pt"
    engine.add(
        training_container_name(tid, 1), [metric({"kind": "checkpoint", "epoch": 1, "file": file})]
    )
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    assert engine.archive_sent <= 4 * 1024 * 1024
    t = store.get(tid)
    assert t is not None and t.checkpoint_epoch is None and t.state == "running"
    assert [e["kind"] for e in store.events(tid)] == ["checkpoint", "warning"]


async def test_a_container_at_a_trainings_name_that_is_not_its_owners_is_left(
    parts: Any, tmp_path: Path
) -> None:
    """Mallory's container sits at the name bob's training would get (made by hand or by an
    older rule): bob's launch refuses to remove it, says why, and frees its reservation; a
    home volume labelled for mallory at bob's name is never mounted either."""
    store, ledger = parts[2], parts[1]
    add_training(parts, "t-00000000000b", "bob", state="queued")
    engine = FakeEngine()
    squat = training_container_name("t-00000000000b", 1)
    engine.add(squat, ["mallory's"], owner="mallory")
    d = dispatcher(parts, engine, tmp_path)
    await d.tick()
    assert engine.containers[squat].get("owner") == "mallory"  # not removed
    b = store.get("t-00000000000b")
    assert b is not None and b.state == "queued", b.message
    assert "labelled for 'mallory', not 'bob'" in b.message
    assert not [r for r in ledger.list("bob") if r.state == "active"]

    # the next attempt's name is free, but the home at bob's name is mallory's
    from gpupool.container import home_volume

    engine.volumes[home_volume("bob")] = {"io.gpupool.owner": "mallory"}
    await d.tick()
    b = store.get("t-00000000000b")
    assert b is not None and b.state in ("queued", "failed"), b.message
    assert "volume" in b.message and "labelled for 'mallory'" in b.message
    assert training_container_name("t-00000000000b", 2) not in engine.containers
