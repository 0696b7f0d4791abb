"""What a training is, checked in one place for the pool, the client and the runner.

A training request (what a user sends: widget, launcher, CLI, REST)::

    {"name": "digits-mlp", "graph": {...} | "command": ["python", "train.py"],
     "dataset": "digits", "spec": "a100-20g", "image": "trainer",
     "hyperparameters": {"epochs": 3, "batch_size": 64, "learning_rate": 0.001,
                         "optimizer": "adam", "seed": 0},
     "priority": 0, "max_run_time": 3600}

The job document (what the pool hands the runner, ``job.json`` in the training's folder)
adds the id, the dataset's path in the container and the number of processes.

What a training prints for the pool: ``GPUPOOL-METRIC {...}`` lines, one record each (a
``kind`` of RECORDS, an optional ``time`` in Unix seconds and the fields listed for its
kind), and at most one ``GPUPOOL-ERROR {"message": ...}``. The pool keeps a record as
check_record returns it and drops (and counts) one that breaks this. Pure Python: no
torch, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .graph.compile import checked
from .graph.model import Graph, GraphError, load

JOB_FORMAT = "gpupool.training/1"
OPTIMIZERS = ("adam", "adamw", "sgd")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
ID_RE = re.compile(r"t-[0-9a-f]{12}")
MAX_COMMAND_ARGS = 64
MAX_ARG_CHARS = 4096
METRIC_MARK = "GPUPOOL-METRIC "  # a line of the runner's output that carries a metric
ERROR_MARK = "GPUPOOL-ERROR "  # the runner's last word when it fails
OUTPUT_ROOT = "/home/jovyan/trainings"  # ~/trainings/<id>/ in the container
CHECKPOINT_RE = re.compile(r"checkpoints/epoch-\d{4,6}\.pt")  # in the training's folder
# where a training stands, as the pool reports it and the lab shows it
STATES = ("queued", "starting", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("starting", "running")
ENDED = ("succeeded", "failed", "cancelled")


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
        checked(graph)
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


# -- what a training prints ---------------------------------------------------------------
# A command training's output is its user's own: each field is checked, numbers within
# what the pool's database and a JSON reader take, strings cut (a training printing one
# such line must not stall the pool's pass for every user).
MAX_RECORD_CHARS = 64 * 1024  # a longer line is not parsed
MAX_COUNT = 10**9  # epochs, steps, processes: a database INTEGER holds them
MAX_EXACT = 2**53  # parameters, bytes: exact as a JSON (JavaScript) number
MAX_TIME = 1e11  # Unix seconds (the year 5138)
MAX_MESSAGE = 2000


class RecordError(ValueError):
    """A printed record that breaks the contract; the message names the field."""


Field = Callable[[Any], Any]  # the value as kept, or RecordError(what it must be)


def clean_text(value: str, limit: int) -> str:
    """At most ``limit`` characters, without NUL or unpaired surrogates (neither a
    PostgreSQL text nor a UTF-8 file takes them)."""
    cut = value[:limit]
    return cut.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _integer(low: int, high: int) -> Field:
    def check(v: Any) -> int:
        if isinstance(v, float) and v.is_integer():  # 3.0 from a script is 3
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise RecordError(f"an integer from {low} to {high}")
        return v

    return check


def _measure(v: Any) -> float | int | None:
    """A measured value: NaN or infinity (a diverged loss says so) is kept as null."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RecordError("a number or null")
    if isinstance(v, int):
        return v if abs(v) <= MAX_EXACT else float(v) if abs(v) < 1e300 else None
    return v if math.isfinite(v) else None


def _text(limit: int) -> Field:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise RecordError("a string")
        return clean_text(v, limit)

    return check


def _texts(items: int, limit: int) -> Field:
    def check(v: Any) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v[:items]):
            raise RecordError("a list of strings")
        return [clean_text(x, limit) for x in v[:items]]

    return check


def _checkpoint_file(v: Any) -> str:
    if not isinstance(v, str) or not CHECKPOINT_RE.fullmatch(v):
        raise RecordError("checkpoints/epoch-NNNN.pt")
    return v


_COUNT, _EXACT, _NAME = _integer(0, MAX_COUNT), _integer(0, MAX_EXACT), _text(256)
_RESULTS = {
    k: _measure for k in ("train_loss", "test_loss", "test_accuracy", "seconds", "samples_per_s")
}
RECORDS: dict[str, dict[str, Field]] = {
    "start": {
        "epochs": _COUNT,
        "start_epoch": _COUNT,
        "steps_per_epoch": _COUNT,
        "processes": _COUNT,
        "device": _NAME,
        "parameters": _EXACT,
        "dataset": _text(1024),
        "command": _texts(MAX_COMMAND_ARGS, 256),
    },
    "resume": {"epoch": _COUNT, "checkpoint": _NAME},
    "step": {"epoch": _COUNT, "step": _COUNT, "loss": _measure, "samples_per_s": _measure},
    "epoch": {"epoch": _COUNT, **_RESULTS},
    "checkpoint": {"epoch": _COUNT, "file": _checkpoint_file, "bytes": _EXACT},
    "done": {
        **_RESULTS,
        "epochs": _COUNT,
        "files": _texts(16, 256),
        "snippet": _text(16 * 1024),
        "exit_code": _integer(-255, 255),
    },
}
REQUIRED = {
    "resume": ("epoch",),
    "step": ("step",),
    "epoch": ("epoch",),
    "checkpoint": ("epoch", "file"),
}


def _shown(v: Any) -> str:
    """A short view of a value a training printed, for its warning."""
    if isinstance(v, str):
        return repr(v[:40])
    if isinstance(v, int) and abs(v) > 10**40:
        return "a huge integer"  # repr() refuses one of over 4300 digits
    return repr(v) if isinstance(v, int | float) else type(v).__name__


def check_record(rec: Any) -> dict[str, Any]:
    """A GPUPOOL-METRIC record as the pool keeps it: its kind, time and known fields,
    checked and coerced; other fields are left out. RecordError names what is wrong."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record is a JSON object, not {_shown(rec)}")
    kind = rec.get("kind")
    if not isinstance(kind, str) or kind not in RECORDS:
        raise RecordError(f"kind {_shown(kind)}; allowed: {', '.join(RECORDS)}")
    out: dict[str, Any] = {"kind": kind}
    t = rec.get("time")
    if t is not None:
        ok = isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= MAX_TIME
        if not ok:  # NaN fails the comparison too
            raise RecordError(f"{kind}.time: Unix seconds from 0 to 1e11, not {_shown(t)}")
        out["time"] = float(t)
    for name in REQUIRED.get(kind, ()):
        if rec.get(name) is None:
            raise RecordError(f"{kind}.{name} is missing")
    for name, check in RECORDS[kind].items():
        if name not in rec:
            continue
        v = rec[name]
        try:
            out[name] = None if v is None else check(v)
        except RecordError as e:
            raise RecordError(f"{kind}.{name}: {e}, not {_shown(v)}") from None
    return out


def check_error(rec: Any) -> dict[str, Any]:
    """A GPUPOOL-ERROR line's object: its message, cut."""
    message = rec.get("message") if isinstance(rec, dict) else None
    if not isinstance(message, str):
        raise RecordError('an error line is {"message": "..."}')
    return {"kind": "error", "message": clean_text(message, MAX_MESSAGE)}
