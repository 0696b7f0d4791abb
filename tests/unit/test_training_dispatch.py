"""The dispatcher after a restart that cut a launch short: a training still 'starting' is
adopted when its container runs and started again otherwise. Real ledger and store
(SQLite); the node's engine is a stand-in (StubEngine), because a launch cut short at the
right instant cannot be produced on cue with a real engine. Real engines:
tests/integration/test_trainings.py."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from gpupool.catalog import load_catalog
from gpupool.job import hyperparameters
from gpupool.pool.ledger import Ledger
from gpupool.pool.tables import utcnow
from gpupool.pool.trainings.dispatch import Dispatcher
from gpupool.pool.trainings.store import TrainingStore


class StubEngine:
    """Answers inspect_container with a given state (or 404), as a training container of
    ``owner``'s; records other calls."""

    def __init__(self, state: dict[str, Any] | None, owner: str = "ann"):
        self.state = state
        self.owner = owner
        self.calls: list[str] = []

    async def call(self, node: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(method)
        if method == "inspect_container":
            if self.state is None:
                raise NotFound("no such container")
            labels = {"io.gpupool.owner": self.owner, "io.gpupool.kind": "training"}
            return {"Id": args[0], "State": self.state, "Config": {"Labels": labels}}
        if method == "logs":
            return iter([])  # docker-py's log stream (stream=True), empty
        return None

    async def run(self, fn: Any, node: Any = None) -> Any:
        return fn()


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@pytest.fixture
def parts(catalog_dir: Path, tmp_path: Path) -> tuple[Any, Ledger, TrainingStore]:
    catalog = load_catalog(catalog_dir)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", catalog)
    return catalog, ledger, TrainingStore(ledger.engine)


def starting(store: TrainingStore, ledger: Ledger, catalog: Any) -> str:
    res = ledger.reserve(catalog.spec("cpu-1"), "ann", kind="training", server_name="t-1")
    store.add(
        id="t-000000000001",
        owner="ann",
        name="x",
        kind="command",
        state="starting",
        spec="cpu-1",
        image="trainer",
        dataset=None,
        request=json.dumps({"command": ["true"], "hyperparameters": hyperparameters({})}),
        priority=0,
        processes=1,
        max_run_seconds=3600,
        max_attempts=3,
        attempt=1,
        submitted_at=utcnow(),
        started_at=utcnow(),
        run_seconds=0.0,
        reservation_id=res.id,  # type: ignore[union-attr]
        node=res.node,  # type: ignore[union-attr]
        container="gpupool-train-t-000000000001-1",
        log_cursor=0,
        message="starting on node-a",
        cancel_requested=False,
    )
    return res.id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("container", "state", "message"),
    [
        ({"Running": True, "Status": "running"}, "running", "running on node-a"),
        (None, "queued", "requeued: attempt 1 of 3 ended (its container is gone"),
        (
            {"Running": False, "Status": "created"},
            "queued",
            "requeued: attempt 1 of 3 ended (its start was interrupted)",
        ),
    ],
)
async def test_a_launch_cut_short_is_adopted_or_started_again(
    parts: Any, tmp_path: Path, container: dict | None, state: str, message: str
) -> None:
    catalog, ledger, store = parts
    rid = starting(store, ledger, catalog)
    engine = StubEngine(container)
    d = Dispatcher(catalog, ledger, store, _run, artifacts=tmp_path / "a", engines=engine)  # type: ignore[arg-type]
    t = store.get("t-000000000001")
    await d.watch(t)  # type: ignore[arg-type]
    after = store.get("t-000000000001")
    assert after is not None and after.state == state
    assert after.message.startswith(message)
    freed = ledger.get(rid)
    assert freed is not None and freed.state == ("active" if state == "running" else "released")
    if state == "queued" and container is not None:
        assert "remove_container" in engine.calls


class LogEngine:
    """A running container's ``docker logs --timestamps`` output (three epochs, a
    checkpoint after the second) and its checkpoint file, whose first copy is cut short by
    the pool stopping (the task cancelled) when ``cut`` is set."""

    def __init__(self, tid: str, *, cut: bool):
        self.tid = tid
        self.cut = cut
        self.copied: list[str] = []
        marks = [
            {"kind": "epoch", "epoch": 1, "test_accuracy": 0.5},
            {"kind": "epoch", "epoch": 2, "test_accuracy": 0.6},
            {"kind": "checkpoint", "epoch": 2, "file": "checkpoints/epoch-0002.pt"},
            {"kind": "epoch", "epoch": 3, "test_accuracy": 0.7},
        ]
        self.log = "".join(
            f"2026-11-23T10:00:0{i}.{i}00000000Z GPUPOOL-METRIC {json.dumps(m)}\n"
            for i, m in enumerate(marks, start=1)
        ).encode()

    async def call(self, node: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "logs":
            return iter([self.log])  # docker-py's log stream (stream=True)
        return None

    async def run(self, fn: Any, node: Any = None) -> Any:
        return fn()

    def client(self, node: Any) -> Any:
        return self

    def get_archive(self, container: str, path: str) -> tuple[list[bytes], dict[str, int]]:
        if self.cut:
            raise asyncio.CancelledError  # the pool stops mid-copy
        self.copied.append(path)
        data = b"weights"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(path.rsplit("/", 1)[-1])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return [buf.getvalue()], {"size": len(data)}


async def test_a_pool_stopped_mid_read_stores_each_epoch_once(parts: Any, tmp_path: Path) -> None:
    """The pool stops (its task cancelled) while it copies a checkpoint out of a running
    training, after it stored that read's records. At the next start it reads the same
    log again: each epoch is stored once, and the checkpoint it missed is copied then.
    (The integration test of a hub restart mid-training hit this window now and then.)"""
    catalog, ledger, store = parts
    starting(store, ledger, catalog)
    tid = "t-000000000001"
    store.update(tid, state="running")
    node = catalog.node("node-a")
    first = LogEngine(tid, cut=True)
    d = Dispatcher(catalog, ledger, store, _run, artifacts=tmp_path / "a", engines=first)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await d.reader.read(store.get(tid), node)  # type: ignore[arg-type]
    again = LogEngine(tid, cut=False)
    d = Dispatcher(catalog, ledger, store, _run, artifacts=tmp_path / "a", engines=again)  # type: ignore[arg-type]
    await d.reader.read(store.get(tid), node)  # type: ignore[arg-type]
    await d.reader.read(store.get(tid), node)  # type: ignore[arg-type]
    epochs = [r["epoch"] for r in store.events(tid, kinds=["epoch"])]
    assert epochs == [1, 2, 3]
    assert [r["epoch"] for r in store.events(tid, kinds=["checkpoint"])] == [2]
    t = store.get(tid)
    assert t is not None and t.checkpoint_epoch == 2
    assert again.copied == [f"/home/jovyan/trainings/{tid}/checkpoints/epoch-0002.pt"]
    assert (tmp_path / "a" / tid / "checkpoints" / "epoch-0002.pt").read_bytes() == b"weights"


async def test_a_pass_never_waits_on_a_node_known_to_be_down(parts: Any, tmp_path: Path) -> None:
    """A training on a node the monitor has down is not inspected (an engine that hangs
    would hold the pass for the client's timeout before the queue is scheduled, issue 18);
    once the node has been down for requeue_after it is started again elsewhere."""
    catalog, ledger, store = parts
    starting(store, ledger, catalog)
    store.update("t-000000000001", state="running")
    engine = StubEngine({"Running": True, "Status": "running"})
    clock = [1_000_000.0]
    health = {"node-a": ("down", clock[0] - 5)}
    d = Dispatcher(
        catalog,
        ledger,
        store,
        _run,
        artifacts=tmp_path / "a",
        engines=engine,  # type: ignore[arg-type]
        node_health=lambda name: health.get(name, ("up", None)),
        clock=lambda: clock[0],
    )
    await d.watch(store.get("t-000000000001"))  # type: ignore[arg-type]
    assert engine.calls == []
    assert store.get("t-000000000001").state == "running"  # type: ignore[union-attr]
    clock[0] += catalog.pool.trainings.requeue_after
    await d.watch(store.get("t-000000000001"))  # type: ignore[arg-type]
    assert engine.calls == []
    after = store.get("t-000000000001")
    assert after is not None and after.state == "queued", after
    assert "node-a has been down for" in after.message
