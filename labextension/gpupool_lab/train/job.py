"""What a training is, checked in one place for the pool, the client and the runner.

A training request (what a user sends: widget, launcher, CLI, REST)::

    {"name": "digits-mlp", "graph": {...} | "command": ["python", "train.py"],
     "dataset": "digits", "spec": "a100-20g", "image": "trainer",
     "hyperparameters": {"epochs": 3, "batch_size": 64, "learning_rate": 0.001,
                         "optimizer": "adam", "seed": 0},
     "priority": 0, "max_run_time": 3600}

The job document (what the pool hands the runner, ``job.json`` in the training's folder)
adds the id, the dataset's path in the container and the number of processes. Pure
Python: no torch, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..graph.compile import _checked
from ..graph.model import Graph, GraphError, load

JOB_FORMAT = "gpupool.training/1"
OPTIMIZERS = ("adam", "adamw", "sgd")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
ID_RE = re.compile(r"t-[0-9a-f]{12}")
MAX_COMMAND_ARGS = 64
MAX_ARG_CHARS = 4096
METRIC_MARK = "GPUPOOL-METRIC "  # a line of the runner's output that carries a metric
ERROR_MARK = "GPUPOOL-ERROR "  # the runner's last word when it fails
OUTPUT_ROOT = "/home/jovyan/trainings"  # ~/trainings/<id>/ in the container


class TrainingError(ValueError):
    """A training request that cannot be accepted; the message names the field and what
    is allowed."""


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its default and what is allowed."""

    default: Any
    kind: str  # int | float | choice
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def check(self, name: str, value: Any) -> Any:
        if self.kind == "choice":
            if value not in self.choices:
                raise TrainingError(
                    f"hyperparameters.{name}: {value!r} is not allowed; "
                    f"allowed: {', '.join(self.choices)}"
                )
            return value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and self.kind == "int":
            ok = float(value).is_integer()
            value = int(value) if ok else value
        if ok and isinstance(value, float):
            ok = math.isfinite(value)
        assert self.low is not None and self.high is not None
        if not ok or not (self.low <= value <= self.high):
            what = "an integer" if self.kind == "int" else "a number"
            raise TrainingError(
                f"hyperparameters.{name}: must be {what} from {self.low:g} to {self.high:g}, "
                f"got {value!r}"
            )
        return float(value) if self.kind == "float" else value


HYPERPARAMETERS: dict[str, Hyper] = {
    "epochs": Hyper(10, "int", 1, 10_000, help="passes over the training data"),
    "batch_size": Hyper(64, "int", 1, 65_536, help="samples per step, all processes together"),
    "learning_rate": Hyper(1e-3, "float", 1e-8, 10.0, help="the optimizer's step size"),
    "optimizer": Hyper("adam", "choice", choices=OPTIMIZERS, help="adam, adamw or sgd"),
    "momentum": Hyper(0.9, "float", 0.0, 0.999, help="sgd only"),
    "weight_decay": Hyper(0.0, "float", 0.0, 1.0, help="L2 penalty"),
    "seed": Hyper(0, "int", 0, 2**31 - 1, help="weights, shuffling and the test split"),
    "test_fraction": Hyper(
        0.2, "float", 0.01, 0.9, help="held out for evaluation when the dataset has no test split"
    ),
}


def hyperparameters(given: Any) -> dict[str, Any]:
    """Defaults filled in, every value checked; unknown names are refused."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise TrainingError("hyperparameters: must be an object")
    unknown = sorted(set(given) - set(HYPERPARAMETERS))
    if unknown:
        raise TrainingError(
            f"hyperparameters: unknown {', '.join(unknown)}; allowed: {', '.join(HYPERPARAMETERS)}"
        )
    return {k: h.check(k, given.get(k, h.default)) for k, h in HYPERPARAMETERS.items()}


def check_graph(doc: Any) -> Graph:
    """The graph, loaded and shape-checked; TrainingError names the layer that is wrong."""
    try:
        graph = load(doc)
        _checked(graph)
    except GraphError as e:
        raise TrainingError(f"graph: {'; '.join(e.problems)}") from None
    inputs = [n for n in graph.nodes if n.type == "Input"]
    outputs = [n for n in graph.nodes if n.type == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise TrainingError(
            f"graph: a training needs exactly one Input and one Output, the graph has "
            f"{len(inputs)} and {len(outputs)}"
        )
    return graph


def check_command(cmd: Any) -> list[str]:
    if (
        not isinstance(cmd, list)
        or not cmd
        or not all(isinstance(a, str) and a and "\0" not in a for a in cmd)
    ):
        raise TrainingError("command: must be a non-empty list of non-empty strings")
    if len(cmd) > MAX_COMMAND_ARGS or any(len(a) > MAX_ARG_CHARS for a in cmd):
        raise TrainingError(
            f"command: at most {MAX_COMMAND_ARGS} arguments of {MAX_ARG_CHARS} characters"
        )
    return list(cmd)


def check_name(name: Any, default: str) -> str:
    if name is None or name == "":
        return default
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise TrainingError(
            "name: letters, digits, space, '.', '_' or '-', starting with a letter or digit, "
            f"at most 100 characters; got {name!r}"
        )
    return name


def job_document(
    *,
    training_id: str,
    name: str,
    graph: dict[str, Any] | None,
    command: list[str] | None,
    dataset: dict[str, str] | None,
    hyper: dict[str, Any],
    processes: int,
    attempt: int,
) -> dict[str, Any]:
    """What the runner reads (``job.json``)."""
    return {
        "format": JOB_FORMAT,
        "id": training_id,
        "name": name,
        "kind": "graph" if graph is not None else "command",
        "graph": graph,
        "command": command,
        "dataset": dataset,
        "hyperparameters": hyper,
        "processes": processes,
        "attempt": attempt,
        "output": f"{OUTPUT_ROOT}/{training_id}",
    }


def check_job(doc: Any) -> dict[str, Any]:
    """The runner's check of its job document (written by the pool, read back here)."""
    if not isinstance(doc, dict) or doc.get("format") != JOB_FORMAT:
        raise TrainingError(f"job: not a {JOB_FORMAT} document")
    if not isinstance(doc.get("id"), str) or not ID_RE.fullmatch(doc["id"]):
        raise TrainingError(f"job: id {doc.get('id')!r} is not a training id")
    out = dict(doc)
    out["hyperparameters"] = hyperparameters(doc.get("hyperparameters"))
    if doc.get("kind") == "graph":
        check_graph(doc.get("graph"))
        if not isinstance(doc.get("dataset"), dict):
            raise TrainingError("job: a graph training needs a dataset")
    elif doc.get("kind") == "command":
        out["command"] = check_command(doc.get("command"))
    else:
        raise TrainingError(f"job: kind {doc.get('kind')!r}; allowed: graph, command")
    n = doc.get("processes", 1)
    if not isinstance(n, int) or not 1 <= n <= 64:
        raise TrainingError(f"job: processes must be 1 to 64, got {n!r}")
    return out
