"""The TrainingLauncher widget: submit a training from a notebook and watch it.

    from gpupool.lab.widgets import GraphEditor, TrainingLauncher
    editor = GraphEditor(template="mlp")
    launcher = TrainingLauncher(graph=editor, dataset="digits", spec="a100-20g", epochs=3)
    launcher              # the form, then the loss and accuracy curves, the log, Cancel
    launcher.submit()     # or the Submit button
    launcher.wait()       # until it ends; launcher.result, launcher.load_model()

It calls the pool with this server's own token (the kernel's JUPYTERHUB_API_TOKEN and
GPUPOOL_API_URL, set by the spawner) through the same API as ``gpupool train`` and curl.
While a training runs, a thread of the kernel follows it (every ``poll_seconds``) and
updates the traits the view draws: ``state``, ``message``, ``steps``, ``epochs``,
``log_tail``, ``result``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from gpupool.job import ENDED, HYPERPARAMETERS, TrainingError, check_graph, hyperparameters
from gpupool.lab.client import PoolApi, PoolApiError

STATIC = Path(__file__).parent / "static"
MAX_POINTS = 2000  # loss points kept for the curve (older ones thinned)


def _graph_doc(graph: Any) -> dict[str, Any] | None:
    """A graph document from a GraphEditor, a Graph, a dict or a *.gpgraph.json path."""
    if graph is None:
        return None
    if hasattr(graph, "document") and isinstance(graph.document, dict):  # GraphEditor
        return dict(graph.document)
    if hasattr(graph, "to_json"):  # gpupool.graph.Graph
        return graph.to_json()
    if isinstance(graph, str | os.PathLike):
        path = Path(graph).expanduser()
        try:
            return json.loads(path.read_text())
        except OSError as e:
            raise TrainingError(f"graph: cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise TrainingError(f"graph: {path} is not JSON: {e}") from None
    if isinstance(graph, dict):
        return graph
    raise TrainingError(
        f"graph: a GraphEditor, a Graph, a dict or a file path, got {type(graph).__name__}"
    )


class TrainingLauncher(anywidget.AnyWidget):
    """A training's form, then its progress: queue position and why it waits, node and
    GPUs, loss and accuracy curves, throughput, the log tail, Cancel; when done, the final
    metrics and the snippet that loads the model."""

    _esm = STATIC / "training_launcher.js"

    # what is asked (the form edits these; the graph comes from Python)
    graph = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    command = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)
    dataset = traitlets.Unicode("").tag(sync=True)
    spec = traitlets.Unicode("").tag(sync=True)
    image = traitlets.Unicode("").tag(sync=True)
    name = traitlets.Unicode("").tag(sync=True)
    hyperparameters = traitlets.Dict().tag(sync=True)
    priority = traitlets.Int(0).tag(sync=True)
    max_run_time = traitlets.Float(0.0, help="seconds; 0: the pool's default").tag(sync=True)
    # choices for the form, from the pool
    specs = traitlets.List().tag(sync=True)
    datasets = traitlets.List().tag(sync=True)
    hyper_help = traitlets.Dict().tag(sync=True)
    # the training, once submitted
    training_id = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    node = traitlets.Unicode("").tag(sync=True)
    steps = traitlets.List().tag(sync=True)  # [[step, loss, samples_per_s], ...]
    epochs = traitlets.List().tag(sync=True)  # the runner's epoch records
    log_tail = traitlets.Unicode("").tag(sync=True)
    result = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    poll_seconds = traitlets.Float(2.0).tag(sync=True)

    def __init__(
        self,
        graph: Any = None,
        *,
        dataset: str = "",
        spec: str = "",
        command: list[str] | None = None,
        api: PoolApi | None = None,
        **kwargs: Any,
    ):
        hyper = {k: kwargs.pop(k) for k in list(kwargs) if k in HYPERPARAMETERS}
        super().__init__(
            graph=_graph_doc(graph),
            dataset=dataset,
            spec=spec,
            command=list(command or []),
            hyperparameters=hyperparameters(hyper),
            hyper_help={
                k: {"default": h.default, "help": h.help, "choices": list(h.choices)}
                for k, h in HYPERPARAMETERS.items()
            },
            **kwargs,
        )
        self._api = api
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.on_msg(self._on_msg)
        with contextlib.suppress(PoolApiError):
            self.load_choices()

    @property
    def api(self) -> PoolApi:
        if self._api is None:
            self._api = PoolApi.from_env(timeout=30)
        return self._api

    def load_choices(self) -> None:
        """The specs and datasets the form offers (this user's, from the pool)."""
        self.specs = [
            {
                "slug": s["slug"],
                "display_name": s.get("display_name") or s["slug"],
                "gpus": s.get("gpus", 0),
                "fits_now": s.get("fits_now"),
            }
            for s in self.api.specs()
        ]
        self.datasets = [
            {
                "name": d["name"],
                "format": d.get("format", ""),
                "description": d.get("description", ""),
            }
            for d in self.api.datasets()
        ]

    # -- asking ------------------------------------------------------------------------
    def request(self) -> dict[str, Any]:
        """The request this widget sends (the same as ``gpupool train submit`` and REST)."""
        req: dict[str, Any] = {"spec": self.spec, "hyperparameters": dict(self.hyperparameters)}
        if self.command:
            req["command"] = list(self.command)
        else:
            if self.graph is None:
                raise TrainingError("graph: give a graph (a GraphEditor, a Graph or a file)")
            check_graph(self.graph)
            req["graph"] = self.graph
        for key in ("dataset", "image", "name"):
            if getattr(self, key):
                req[key] = getattr(self, key)
        if self.priority:
            req["priority"] = self.priority
        if self.max_run_time:
            req["max_run_time"] = self.max_run_time
        return req

    def submit(self, follow: bool = True) -> str:
        """Submit; returns the training's id. Errors (bad input, quota) raise PoolApiError
        or TrainingError with the pool's message, shown in the widget too."""
        if self.training_id and self.state not in ENDED:
            raise TrainingError(f"this launcher already follows {self.training_id}")
        try:
            t = self.api.submit_training(self.request())
        except (PoolApiError, TrainingError) as e:
            self.error = getattr(e, "message", str(e))
            raise
        self.error = ""
        self._seq = 0
        self.steps, self.epochs, self.result, self.log_tail = [], [], None, ""
        self.training_id = t["id"]
        self._apply(t)
        if follow:
            self._start_following()
        return t["id"]

    def cancel(self) -> None:
        if not self.training_id:
            raise TrainingError("nothing to cancel: submit first")
        self._apply(self.api.cancel_training(self.training_id))

    # -- following -----------------------------------------------------------------------
    def _apply(self, t: dict[str, Any]) -> None:
        self.state, self.message = t["state"], t.get("message", "")
        self.node = t.get("node") or ""
        if t.get("result") is not None:
            self.result = t["result"]

    def refresh(self) -> dict[str, Any]:
        """Fetch the training's state, new metrics and log tail once."""
        t = self.api.training(self.training_id)
        m = self.api.training_metrics(self.training_id, since=self._seq)
        steps, epochs = list(self.steps), list(self.epochs)
        for r in m["records"]:
            if r["kind"] == "step":
                steps.append([r["step"], r.get("loss"), r.get("samples_per_s")])
            elif r["kind"] == "epoch":
                epochs = [e for e in epochs if e["epoch"] < r["epoch"]] + [r]
            elif r["kind"] == "resume":
                steps = [s for s in steps if s[0] <= r["epoch"] * self._steps_per_epoch(m)]
        if len(steps) > MAX_POINTS:
            steps = steps[len(steps) - MAX_POINTS :: 2] + steps[-1:]
        self._seq = m["last_seq"]
        if m["records"]:
            self.steps, self.epochs = steps, epochs
        with contextlib.suppress(PoolApiError):
            self.log_tail = self.api.training_logs(self.training_id, 30)
        self._apply(t)
        return t

    def _steps_per_epoch(self, m: dict[str, Any]) -> int:
        start = next((r for r in reversed(m["records"]) if r["kind"] == "start"), None)
        return int(start["steps_per_epoch"]) if start else 10**9

    def _start_following(self) -> None:
        self._stop.clear()

        def follow() -> None:
            while not self._stop.is_set():
                try:
                    t = self.refresh()
                    if t["state"] in ENDED:
                        return
                except PoolApiError as e:
                    self.error = e.message
                except Exception as e:  # shown in the widget; the thread goes on
                    self.error = f"{type(e).__name__}: {e}"
                self._stop.wait(self.poll_seconds)

        self._thread = threading.Thread(target=follow, name="gpupool-training", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 3600) -> dict[str, Any]:
        """Block until the training ends (or ``timeout`` s); its final state."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.refresh()
            if t["state"] in ENDED:
                self._stop.set()
                return t
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.training_id} is still {t['state']}: {t['message']}")
            time.sleep(self.poll_seconds)

    def load_model(self) -> Any:
        """The trained model (a torch.nn.Module in eval mode) from ~/trainings/<id>/, when
        the training ran where this server's home is (one node, or shared homes)."""
        import importlib.util
        import re

        folder = Path.home() / "trainings" / self.training_id
        snippet = (self.result or {}).get("snippet", "")
        m = re.search(r"from model import (\w+)", snippet)
        if self.state != "succeeded" or m is None:
            raise TrainingError(
                f"no trained model: the training is {self.state or 'not submitted'}"
            )
        if not (folder / "model.pt").exists():
            raise FileNotFoundError(
                f"{folder}/model.pt is not in this server's home: the training ran on "
                f"{self.node or 'another node'}, whose home volume is its own"
            )
        import torch

        spec = importlib.util.spec_from_file_location(
            f"gpupool_{self.training_id}", folder / "model.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = getattr(module, m.group(1))()
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
        return model.eval()

    def close(self) -> None:
        stop = getattr(self, "_stop", None)  # absent when __init__ refused its arguments
        if stop is not None:
            stop.set()
        super().close()

    # -- from the view ------------------------------------------------------------------
    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        try:
            if action == "submit":
                self.submit()
            elif action == "cancel":
                self.cancel()
            elif action == "reload":
                self.load_choices()
        except (PoolApiError, TrainingError) as e:
            self.error = getattr(e, "message", str(e))
