"""The dispatcher after a restart that cut a launch short: a training still 'starting' is
adopted when its container runs and started again otherwise. Real ledger and store
(SQLite); the node's engine is a stand-in (StubEngine), because a launch cut short at the
right instant cannot be produced on cue with a real engine. Real engines:
tests/integration/test_trainings.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from gpupool.catalog import load_catalog
from gpupool.lab.train.job import hyperparameters
from gpupool.pool.ledger import Ledger
from gpupool.pool.tables import utcnow
from gpupool.pool.trainings.dispatch import Dispatcher
from gpupool.pool.trainings.store import TrainingStore


class StubEngine:
    """Answers inspect_container with a given state (or 404); records other calls."""

    def __init__(self, state: dict[str, Any] | None):
        self.state = state
        self.calls: list[str] = []

    async def call(self, node: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(method)
        if method == "inspect_container":
            if self.state is None:
                raise NotFound("no such container")
            return {"State": self.state}
        if method == "logs":
            return b""
        return None


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
    if state == "queued":
        assert "remove_container" in engine.calls
