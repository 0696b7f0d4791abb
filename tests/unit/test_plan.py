"""`gpupool plan` as a user runs it: a real subprocess on a trace file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CATALOG


def plan(tmp_path: Path, lines: list[dict | str], *extra: str) -> subprocess.CompletedProcess[str]:
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gpupool.cli",
            "plan",
            "--config",
            str(CATALOG),
            "--trace",
            str(trace),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plan_replays_and_summarises(tmp_path: Path) -> None:
    events: list[dict | str] = [
        {"op": "reserve", "id": f"h{i}", "spec": "a100-40g", "owner": "u1"} for i in range(16)
    ]
    events += [
        {"op": "reserve", "id": "over", "spec": "a100-40g", "owner": "u2"},
        {"op": "release", "id": "h3"},
        {"op": "reserve", "id": "again", "spec": "a100-40g", "owner": "u2"},
        {"op": "release", "id": "never-made"},
        "# comments and blank lines are skipped",
        "",
    ]
    r = plan(tmp_path, events)
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    placed = [o for o in out if o.get("placed") is True]
    assert len(placed) == 17
    assert all(
        len(o["gpus"]) == 1 and o["gpus"][0]["memory_mib"] == 40960 and o["gpus"][0]["sm"] == 50
        for o in placed
    )
    over = next(o for o in out if o.get("id") == "over")
    assert over["placed"] is False and over["reason"] == "capacity" and "node-a" in over["message"]
    again = next(o for o in out if o.get("id") == "again")
    released_gpu = next(o for o in out if o.get("id") == "h3")["gpus"][0]["uuid"]
    assert again["placed"] is True and again["gpus"][0]["uuid"] == released_gpu
    assert next(o for o in out if o.get("id") == "never-made")["released"] is False
    summary = out[-1]
    assert summary["summary"] is True
    assert (summary["placed"], summary["rejected"], summary["released"]) == (17, 1, 1)
    assert summary["placed_before_first_rejection"] == 16
    assert 0 < summary["decision_us_p50"] <= summary["decision_us_p99"]
    assert len(summary["gpus"]) == 8
    assert all(
        g["peak_memory_mib"] == 81920 and g["peak_sm_percent"] == 100 for g in summary["gpus"]
    )


def test_plan_policy_override_spreads(tmp_path: Path) -> None:
    events: list[dict | str] = [
        {"op": "reserve", "id": f"s{i}", "spec": "a100-40g", "owner": "u"} for i in range(4)
    ]
    packed = [json.loads(x) for x in plan(tmp_path, events).stdout.splitlines()[:4]]
    spread = [
        json.loads(x)
        for x in plan(
            tmp_path, events, "--node-policy", "spread", "--gpu-policy", "spread"
        ).stdout.splitlines()[:4]
    ]
    assert {o["node"] for o in packed} == {"node-a"}
    assert len({o["gpus"][0]["uuid"] for o in packed}) == 2  # two halves per card
    assert {o["node"] for o in spread} == {"node-a", "node-b"}
    assert len({o["gpus"][0]["uuid"] for o in spread}) == 4


def test_plan_refuses_a_bad_trace_whole(tmp_path: Path) -> None:
    r = plan(
        tmp_path,
        [
            {"op": "reserve", "id": "ok", "spec": "cpu-1"},
            "{not json",
            {"op": "grab", "id": "x"},
            {"op": "reserve", "id": "y", "spec": "h100-80g"},
            {"op": "reserve", "id": "z", "spec": "cpu-1", "gpus": 2},
            {"op": "release"},
        ],
    )
    assert r.returncode == 2
    assert r.stdout == ""  # nothing ran
    err = r.stderr
    assert "line 2: not JSON" in err
    assert "line 3: op 'grab' is not allowed; allowed: reserve, release" in err
    assert (
        "line 4: spec 'h100-80g' is not in the catalog; specs: cpu-1, a100-40g, a100-1x, a100-2x"
        in err
    )
    assert "line 5: unknown field(s) gpus for reserve; allowed: id, op, owner, spec" in err
    assert "line 6: id must be a non-empty string" in err


def test_plan_missing_trace_and_bad_catalog(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpupool.cli",
            "plan",
            "--config",
            str(CATALOG),
            "--trace",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not found" in r.stderr
    (tmp_path / "cat").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "gpupool.cli", "check-config", "--config", str(tmp_path / "cat")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "specs.yaml: missing" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "gpupool.cli", "check-config", "--config", str(CATALOG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "2 nodes with 8 GPUs" in r.stdout
