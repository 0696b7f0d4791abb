"""The notebook widgets' Python side (their front-ends run in tests/integration/
test_graph_editor.py): GraphEditor's starting points, its document checked when it
arrives from the browser (a bad one is refused and the graph stays), compile, save and
load; GpuMonitor's window; the bundled JavaScript is in the package (no CDN)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import traitlets

from gpupool.graph import FORMAT, GraphError, template
from gpupool.job import TrainingError, hyperparameters
from gpupool.lab.client import PoolApiError
from gpupool.lab.widgets import GpuMonitor, GraphEditor, TrainingLauncher
from gpupool.lab.widgets.graph_editor import STATIC


def test_starting_points() -> None:
    assert [n.type for n in GraphEditor().graph.nodes] == ["Input", "Output"]
    assert GraphEditor(template="lenet").graph.infer().params == 61706
    assert GraphEditor(template("mlp")).graph.name == "mlp"
    assert GraphEditor(template("mlp").to_json()).graph.infer().params == 203530
    with pytest.raises(ValueError, match="no template 'vgg'; known: mlp, lenet"):
        GraphEditor(template="vgg")
    with pytest.raises(ValueError, match="not both"):
        GraphEditor(template("mlp"), template="lenet")
    assert set(GraphEditor().templates) == {"mlp", "lenet", "resnet", "transformer"}


def test_a_bad_document_from_the_browser_is_refused_and_the_graph_stays() -> None:
    ed = GraphEditor(template="mlp")
    before = ed.document
    with pytest.raises(traitlets.TraitError, match="unknown layer 'Nope'"):
        ed.document = {"format": FORMAT, "nodes": [{"id": "a", "type": "Nope"}], "edges": []}
    with pytest.raises(traitlets.TraitError, match="format"):
        ed.document = {"nodes": []}
    assert ed.document == before
    # a graph with a layer in error is a valid document: the editor shows the error
    doc = json.loads(json.dumps(before))
    doc["nodes"][1]["params"]["out_features"] = 0
    ed.document = doc
    assert "out_features: must be an integer ≥ 1, got 0" in ed.graph.infer().errors["fc1"]
    with pytest.raises(GraphError, match="fc1"):
        ed.to_module()


def test_compile_save_and_load(tmp_path: Path) -> None:
    torch = (
        importlib.import_module("torch")
        if os.environ.get("GPUPOOL_TEST_TORCH")
        else pytest.importorskip("torch")
    )
    ed = GraphEditor(template="lenet")
    doc = ed.document
    doc["nodes"][-2]["params"]["out_features"] = 5  # fc3
    ed.graph = doc
    y = ed.to_module()(torch.randn(2, 1, 28, 28))
    assert tuple(y.shape) == (2, 5)
    assert "nn.Linear(84, 5)" in ed.to_code()
    path = ed.save(tmp_path / "net")
    assert path.name == "net.gpgraph.json"
    other = GraphEditor(path)
    assert other.document == ed.document
    other.load(tmp_path / "net.gpgraph.json")
    (tmp_path / "bad.gpgraph.json").write_text("{")
    with pytest.raises(GraphError, match=r"bad.gpgraph.json: not valid JSON"):
        other.load(tmp_path / "bad.gpgraph.json")
    assert other.document == ed.document


def test_monitor_window_and_bundles() -> None:
    assert GpuMonitor().window == 120
    with pytest.raises(traitlets.TraitError, match="window: from 10 to 3600"):
        GpuMonitor(window=5)
    for name in ("graph_editor.js", "gpu_monitor.js", "dataset_picker.js", "training_launcher.js"):
        text = (STATIC / name).read_text()
        assert "export" in text and "render" in text
        assert "https://" not in text.replace("https://github.com", "")  # nothing from a CDN


def test_training_launcher_takes_a_graph_in_any_form_and_builds_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a pool (no GPUPOOL_API_URL): the form's choices stay empty, the request is
    built and checked locally; submitting says what is missing. With a real pool:
    tests/integration/test_trainings.py."""
    monkeypatch.delenv("GPUPOOL_API_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    ed = GraphEditor(template="mlp")
    path = ed.save(tmp_path / "net")
    for graph in (ed, ed.graph, ed.document, path, str(path)):
        assert TrainingLauncher(graph).graph == ed.document
    with pytest.raises(
        TrainingError, match="a GraphEditor, a Graph, a dict or a file path, got int"
    ):
        TrainingLauncher(3)
    with pytest.raises(TrainingError, match="cannot read"):
        TrainingLauncher(tmp_path / "missing.gpgraph.json")
    launcher = TrainingLauncher(ed, dataset="digits", spec="a100-20g", epochs=3, learning_rate=0.01)
    assert launcher.specs == [] and launcher.datasets == []
    assert launcher.hyperparameters == hyperparameters({"epochs": 3, "learning_rate": 0.01})
    req = launcher.request()
    assert req["graph"] == ed.document and req["dataset"] == "digits" and req["spec"] == "a100-20g"
    assert "priority" not in req and "image" not in req
    with pytest.raises(TrainingError, match=r"hyperparameters\.epochs"):
        TrainingLauncher(ed, epochs=0)
    with pytest.raises(TrainingError, match="graph: give a graph"):
        TrainingLauncher().request()
    assert TrainingLauncher(command=["python", "t.py"], spec="cpu").request()["command"] == [
        "python",
        "t.py",
    ]
    # the view's Submit: the error lands in the widget, for the view to show
    launcher._on_msg(launcher, {"action": "submit"}, [])
    assert "GPUPOOL_API_URL is not set" in launcher.error
    with pytest.raises(PoolApiError):
        launcher.submit()
    with pytest.raises(TrainingError, match="nothing to cancel"):
        launcher.cancel()


class StubPool:
    """A stand-in for the pool API, in process, for the launcher's following thread (the
    real API: tests/integration/test_trainings.py). It plays one training: queued with an
    empty log, then running with metrics, then succeeded."""

    def __init__(self) -> None:
        self.calls = 0

    def specs(self) -> list[dict]:
        return [{"slug": "cpu-1", "display_name": "CPU", "gpus": 0, "fits_now": 3}]

    def datasets(self) -> list[dict]:
        return [{"name": "digits", "format": "numpy"}]

    def submit_training(self, req: dict) -> dict:
        return {"id": "t-1", "state": "queued", "message": "queued"}

    def training(self, tid: str) -> dict:
        self.calls += 1
        state = ["queued", "running", "running", "succeeded"][min(self.calls - 1, 3)]
        out = {
            "id": tid,
            "state": state,
            "message": state,
            "node": "n1" if state != "queued" else None,
        }
        if state == "succeeded":
            out["result"] = {"test_accuracy": 0.9, "snippet": "x"}
        return out

    def training_metrics(self, tid: str, since: int = 0, kinds: str | None = None) -> dict:
        if self.calls < 2 or since >= 3:
            return {"records": [], "last_seq": since}
        recs = [
            {"seq": 1, "kind": "start", "steps_per_epoch": 2},
            {"seq": 2, "kind": "step", "step": 1, "loss": 2.0, "samples_per_s": 100.0},
            {"seq": 3, "kind": "epoch", "epoch": 1, "test_accuracy": 0.9},
        ]
        return {"records": recs, "last_seq": 3}

    def training_logs(self, tid: str, tail: int | str = 200) -> str:
        return "" if self.calls < 2 else "epoch 1/1\n"


def test_training_launcher_follows_its_training_in_a_thread() -> None:
    import time

    launcher = TrainingLauncher(template("mlp"), spec="cpu-1", api=StubPool(), poll_seconds=0.02)
    assert launcher.specs[0]["slug"] == "cpu-1" and launcher.datasets[0]["name"] == "digits"
    launcher.submit()  # follows in a thread, as after the view's Submit
    deadline = time.monotonic() + 10
    while launcher.state != "succeeded":
        assert time.monotonic() < deadline, (launcher.state, launcher.error)
        time.sleep(0.02)
    assert launcher.error == ""  # an empty log on the way was no error
    assert launcher.steps == [[1, 2.0, 100.0]] and launcher.epochs[0]["epoch"] == 1
    assert launcher.log_tail == "epoch 1/1\n" and launcher.result["test_accuracy"] == 0.9
