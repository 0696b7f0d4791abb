"""``gpupool train submit | list | show | logs | cancel`` in the lab terminal.

The same request as the TrainingLauncher widget and the REST API::

    gpupool train submit --graph mlp.gpgraph.json --dataset digits --spec a100-20g \\
        --epochs 3 --learning-rate 0.01 --follow
    gpupool train submit --spec cpu-small -- python train.py --fast
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from gpupool.job import ENDED, HYPERPARAMETERS
from gpupool.lab.client import PoolApi, PoolApiError
from gpupool.lab.table import table


def _client() -> PoolApi:
    return PoolApi.from_env(timeout=30)


def _num(v: Any, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else fmt.format(v)


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    req: dict[str, Any] = {"spec": args.spec}
    if args.graph:
        path = Path(args.graph).expanduser()
        try:
            req["graph"] = json.loads(path.read_text())
        except OSError as e:
            raise PoolApiError(0, f"cannot read the graph {path}: {e.strerror}") from None
        except ValueError as e:
            raise PoolApiError(0, f"{path} is not JSON: {e}") from None
    if args.program:
        req["command"] = args.program
    for key in ("dataset", "image", "name", "priority", "max_run_time"):
        if getattr(args, key) is not None:
            req[key] = getattr(args, key)
    hyper = {k: getattr(args, k) for k in HYPERPARAMETERS if getattr(args, k) is not None}
    if hyper:
        req["hyperparameters"] = hyper
    return req


def follow(api: PoolApi, tid: str, out: TextIO, every: float = 2.0) -> dict[str, Any]:
    """Print progress until the training ends: where it waits, then each epoch."""
    since, last_msg = 0, ""

    def state_line(t: dict[str, Any]) -> None:
        nonlocal last_msg
        if t["message"] != last_msg:
            print(f"[{t['state']}] {t['message']}", file=out, flush=True)
            last_msg = t["message"]

    while True:
        t = api.training(tid)
        m = api.training_metrics(tid, since=since, kinds="epoch,resume,requeued,error")
        if t["state"] not in ENDED:
            state_line(t)  # where it is now, then the epochs since the last look
        for r in m["records"]:
            if r["kind"] == "epoch":
                acc = r.get("test_accuracy")
                print(
                    f"  epoch {r['epoch']}: train loss {_num(r.get('train_loss'))}, "
                    f"test loss {_num(r.get('test_loss'))}"
                    + (f", test accuracy {acc:.3f}" if acc is not None else "")
                    + f", {_num(r.get('samples_per_s'), '{:.0f}')} samples/s",
                    file=out,
                    flush=True,
                )
            elif r["kind"] == "resume":
                print(f"  resumed after epoch {r['epoch']}", file=out, flush=True)
        since = m["last_seq"]
        if t["state"] in ENDED:
            state_line(t)  # the end, after its last epochs
            return t
        time.sleep(every)


def submit(args: argparse.Namespace, out: TextIO) -> int:
    api = _client()
    t = api.submit_training(build_request(args))
    if args.json and not args.follow:
        print(json.dumps(t, indent=2), file=out)
        return 0
    print(f"submitted {t['id']} ({t['name']}): {t['message']}", file=out, flush=True)
    if not args.follow:
        print(f"follow it: gpupool train logs {t['id']} --follow", file=out)
        return 0
    t = follow(api, t["id"], out)
    return _ending(t, out)


def _ending(t: dict[str, Any], out: TextIO) -> int:
    if t["state"] == "succeeded":
        print(f"\nthe model and checkpoints are in {t['output']}", file=out)
        snippet = (t.get("result") or {}).get("snippet")
        if snippet:
            print("load it with:\n\n" + snippet, file=out)
        return 0
    return 1


def list_(args: argparse.Namespace, out: TextIO) -> int:
    rows = _client().trainings(args.state)
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    table(
        [
            [
                t["id"],
                t["name"][:24],
                t["state"],
                t["spec"],
                t.get("node"),
                t.get("checkpoint_epoch"),
                _num((t.get("result") or {}).get("test_accuracy"), "{:.3f}"),
                t["message"][:60],
            ]
            for t in rows
        ],
        ["id", "name", "state", "spec", "node", "epoch", "accuracy", "message"],
        out,
        {5, 6},
    )
    return 0


def show(args: argparse.Namespace, out: TextIO) -> int:
    t = _client().training(args.id)
    if args.json:
        print(json.dumps(t, indent=2), file=out)
        return 0
    print(f"{t['id']} · {t['name']} · {t['state']}", file=out)
    print(f"  {t['message']}", file=out)
    print(f"  spec {t['spec']}, image {t['image']}, dataset {t.get('dataset') or '-'}", file=out)
    if t.get("hyperparameters"):
        h = t["hyperparameters"]
        print("  " + ", ".join(f"{k} {v}" for k, v in h.items()), file=out)
    print(f"  attempt {t['attempt']} of {t['max_attempts']}, node {t.get('node') or '-'}", file=out)
    latest = t.get("latest") or {}
    ep, st = latest.get("epoch"), latest.get("step")
    if ep:
        print(
            f"  last epoch {ep['epoch']}: test loss {_num(ep.get('test_loss'))}, "
            f"accuracy {_num(ep.get('test_accuracy'), '{:.3f}')}",
            file=out,
        )
    if st:
        print(
            f"  last step {st['step']}: loss {_num(st.get('loss'))}, "
            f"{_num(st.get('samples_per_s'), '{:.0f}')} samples/s",
            file=out,
        )
    print(f"  output: {t['output']}", file=out)
    return 0


def logs(args: argparse.Namespace, out: TextIO) -> int:
    api = _client()
    if not args.follow:
        print(api.training_logs(args.id, args.tail), file=out, end="")
        return 0
    seen = 0
    while True:
        t = api.training(args.id)
        lines = api.training_logs(args.id, "all").splitlines()
        for line in lines[seen:]:
            print(line, file=out, flush=True)
        seen = len(lines)
        if t["state"] in ENDED:
            print(f"[{t['state']}] {t['message']}", file=out)
            return 0 if t["state"] == "succeeded" else 1
        time.sleep(2)


def cancel(args: argparse.Namespace, out: TextIO) -> int:
    t = _client().cancel_training(args.id)
    print(f"{t['id']}: {t['message']}", file=out)
    return 0


def add_train_command(sub: Any, run: Any) -> None:
    p = sub.add_parser(
        "train",
        help="trainings on the pool: submit, list, show, logs, cancel",
        description=__doc__.split("\n\n")[0],
    )
    tsub = p.add_subparsers(dest="train_command", required=True)

    s = tsub.add_parser(
        "submit",
        help="submit a graph or a command",
        description="Submit a training; the command after -- runs instead of a graph.",
    )
    s.add_argument("--graph", help="a graph file (*.gpgraph.json)")
    s.add_argument("--dataset", help="a dataset of the catalog, by name")
    s.add_argument("--spec", required=True, help="the spec to run on")
    s.add_argument("--image", help="a training image (default: the first for the spec)")
    s.add_argument("--name")
    s.add_argument("--priority", type=int)
    s.add_argument("--max-run-time", dest="max_run_time", type=float, help="seconds")
    for key, h in HYPERPARAMETERS.items():
        kind = {"int": int, "float": float}.get(h.kind, str)
        s.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=kind,
            help=f"{h.help} (default {h.default})",
        )
    s.add_argument("--follow", action="store_true", help="wait and print progress")
    s.add_argument("--json", action="store_true")
    s.add_argument("program", nargs=argparse.REMAINDER, help="-- program and arguments")
    s.set_defaults(func=lambda a: run(_strip(submit), a))

    ls = tsub.add_parser("list", help="your trainings")
    ls.add_argument("--state", help="queued, active, ended, or one state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=lambda a: run(list_, a))
    for name, fn, text in (("show", show, "one training"), ("cancel", cancel, "cancel one")):
        x = tsub.add_parser(name, help=text)
        x.add_argument("id")
        x.add_argument("--json", action="store_true")
        x.set_defaults(func=lambda a, fn=fn: run(fn, a))
    lg = tsub.add_parser("logs", help="its log")
    lg.add_argument("id")
    lg.add_argument("--tail", default="200", help="lines, or all (default 200)")
    lg.add_argument("--follow", action="store_true", help="until it ends")
    lg.set_defaults(func=lambda a: run(logs, a))


def _strip(fn: Any) -> Any:
    """argparse keeps the '--' of a REMAINDER: drop it."""

    def wrapped(args: argparse.Namespace, out: TextIO) -> int:
        if args.program and args.program[0] == "--":
            args.program = args.program[1:]
        if not args.program and not args.graph:
            raise PoolApiError(0, "give --graph FILE, or a command after --")
        return fn(args, out)

    return wrapped
