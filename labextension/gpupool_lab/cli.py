"""``gpupool status | specs | usage | train`` in the lab terminal: readable tables, or ``--json``.

They call the pool with the server's own token (JUPYTERHUB_API_TOKEN, GPUPOOL_API_URL:
the spawner sets both) and read this server's GPUs locally (through HAMi-core when the
server is sliced, so memory is the slice's). An error says what failed and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, TextIO

from .client import PoolApi, PoolApiError
from .metrics import LocalMetrics, Slice
from .table import table


def _mib(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v / 1024:.1f} GiB" if v >= 1024 else f"{v} MiB"


def status(args: argparse.Namespace, out: TextIO) -> int:
    logging.getLogger("gpupool").setLevel(logging.ERROR)  # NVML's state is in the output
    sl = Slice.from_env()
    local = LocalMetrics(slice=sl)
    try:
        local.sample()
        time.sleep(0.5)  # a CPU rate needs two readings
        sample = local.sample()
    finally:
        local.close()
    reservation, notices, error = None, [], None
    try:
        api = PoolApi.from_env()
        if sl.reservation:
            reservation = api.reservation(sl.reservation)
        notices = [n for n in api.notices() if n["reservation"] == sl.reservation]
    except PoolApiError as e:
        error = e.message
    if args.json:
        print(
            json.dumps(
                {
                    "slice": sl.to_json(),
                    "sample": sample,
                    "reservation": reservation,
                    "notices": notices,
                    "pool_error": error,
                },
                indent=2,
            ),
            file=out,
        )
        return 0
    if not sl.reservation:
        print("This server holds no pool reservation (not started by gpupool).", file=out)
    else:
        state = reservation["state"] if reservation else "unknown"
        print(
            f"server:  spec {sl.spec} on node {sl.node}, reservation {sl.reservation} ({state})",
            file=out,
        )
    cpu, mem = sample["cpu"], sample["memory"]
    print(
        f"cpu:     {cpu['used_cores'] if cpu['used_cores'] is not None else '-'} of "
        f"{cpu['limit_cores'] or 'no limit'} cores   memory: {_mib(mem['used_mib'])} of "
        f"{_mib(mem['limit_mib']) if mem['limit_mib'] else 'no limit'}",
        file=out,
    )
    if sl.gpus:
        read = {g["uuid"]: g for g in sample["gpus"]}
        rows = []
        for g in sl.gpus:  # what the pool gave, with what NVML reads where it can
            r = read.get(g.uuid, {})
            util = r.get("utilization_gpu")
            rows.append(
                [
                    g.index,
                    r.get("model") or "-",
                    "whole card" if g.whole else _mib(g.memory_mib),
                    f"{g.sm_percent} %" if g.sm_percent else "-",
                    "-" if util is None else f"{util} %",
                    f"{_mib(r.get('memory_used_mib'))} / {_mib(r.get('memory_total_mib'))}"
                    if r
                    else "-",
                ]
            )
        print(file=out)
        table(rows, ["GPU", "model", "slice", "SM", "busy (card)", "memory used"], out, {4})
        if sample.get("nvml_error"):
            print(f"NVML: {sample['nvml_error']}", file=out)
    for n in notices:
        print(f"\nNOTICE: {n['message']}", file=out)
    if error:
        print(f"\n(the pool did not answer: {error})", file=out)
    return 0


def specs(args: argparse.Namespace, out: TextIO) -> int:
    rows = PoolApi.from_env().specs()
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    table(
        [
            [
                s["slug"],
                s.get("display_name"),
                s.get("gpus"),
                _mib(s.get("gpu_memory_mib")) if s.get("gpu_memory_mib") else "-",
                s.get("fits_now"),
                s.get("price_per_hour"),
            ]
            for s in rows
        ],
        ["spec", "name", "GPUs", "GPU memory", "fits now", "price/h"],
        out,
        {2, 4, 5},
    )
    return 0


def usage(args: argparse.Namespace, out: TextIO) -> int:
    u = PoolApi.from_env().usage(args.month)
    if args.json:
        print(json.dumps(u, indent=2), file=out)
        return 0
    print(f"{u['user']} · {u['month']}", file=out)
    table(
        [
            [r["spec"], f"{r['hours']:.2f}", f"{r['gpu_hours']:.2f}", f"{r['cost']:.2f}"]
            for r in u["by_spec"]
        ]
        + [
            [
                "total",
                f"{u['total']['hours']:.2f}",
                f"{u['total']['gpu_hours']:.2f}",
                f"{u['total']['cost']:.2f}",
            ]
        ],
        ["spec", "hours", "GPU-hours", "cost"],
        out,
        {1, 2, 3},
    )
    q = u["quota"]
    print(f"\nquota ({q['source']}):", file=out)
    for key, title in (
        ("gpus", "GPUs held"),
        ("gpu_memory_mib", "GPU memory held"),
        ("gpu_hours_this_month", "GPU-hours this month"),
    ):
        v = q[key]
        now = v.get("held", v.get("used"))
        limit = "no limit" if v["limit"] is None else f"{v['limit']}, {v['left']} left"
        print(f"  {title}: {now} ({limit})", file=out)
    return 0


def add_commands(sub: Any) -> None:
    for name, fn, text in (
        ("status", status, "this server's slice, its live GPU, CPU and memory use, notices"),
        ("specs", specs, "the specs you may use, and how many more fit now"),
        ("usage", usage, "your GPU-hours and cost this month, and your quota"),
    ):
        p = sub.add_parser(name, help=text, description=f"{text} (lab side: inside a server).")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "usage":
            p.add_argument("--month", help="YYYY-MM (default: this month)")
        p.set_defaults(func=lambda a, fn=fn: run(fn, a))
    from .sshconfig import add_command as add_ssh_config
    from .train.cli import add_train_command

    add_train_command(sub, run)
    add_ssh_config(sub)


def run(fn: Any, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return fn(args, out)
    except PoolApiError as e:
        print(f"gpupool {args.command}: {e.message}", file=sys.stderr)
        return 1
