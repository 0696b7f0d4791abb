"""The ``gpupool`` command.

Hub-side subcommands live here (``plan``, ``check-config``, ``local-catalog``); the
lab-side ones (``status``, ``specs``, ``usage``) in ``gpupool.lab.cli``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalog import CatalogError, config_dir, load_catalog
from .pool.scheduler import POLICIES


def _catalog(path: str | None):  # type: ignore[no-untyped-def]
    try:
        return load_catalog(path or config_dir())
    except CatalogError as e:
        print(f"gpupool: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import TraceError, run

    catalog = _catalog(args.config)
    try:
        with open(args.trace) if args.trace != "-" else sys.stdin as f:
            return run(
                catalog, f, sys.stdout, node_policy=args.node_policy, gpu_policy=args.gpu_policy
            )
    except FileNotFoundError:
        print(f"gpupool plan: trace file {args.trace} not found", file=sys.stderr)
        return 2
    except TraceError as e:
        print(f"gpupool plan: the trace has problems; nothing was run:\n{e}", file=sys.stderr)
        return 2


def cmd_check_config(args: argparse.Namespace) -> int:
    catalog = _catalog(args.config)
    gpus = sum(len(n.gpus) for n in catalog.nodes)
    print(
        f"{catalog.directory}: {len(catalog.specs)} specs, {len(catalog.images)} images, "
        f"{len(catalog.nodes)} nodes with {gpus} GPUs, {len(catalog.datasets)} datasets: OK"
    )
    for w in catalog.warnings:
        print(f"warning: {w}")
    return 0


def cmd_local_catalog(args: argparse.Namespace) -> int:
    from .localnode import write_local_catalog

    summary = write_local_catalog(
        Path(args.source),
        Path(args.out),
        engine=args.engine,
        hami_core=args.hami_core,
        real_hami=args.real_hami,
        datasets_dir=Path(args.datasets_dir) if args.datasets_dir else None,
    )
    _catalog(args.out)  # the result must load
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpupool", description="gpupool: a Jupyter-native GPU pool")
    sub = p.add_subparsers(dest="command", required=True)

    plan = sub.add_parser(
        "plan",
        help="replay a trace of reservation events against the real scheduler and ledger",
        description="Replay JSON lines {op: reserve|release, id, spec, owner} against the scheduler "
        "and ledger (in-memory database, no engines); print one JSON line per event and a summary.",
    )
    plan.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR or hub_config/)"
    )
    plan.add_argument(
        "--trace", required=True, help="JSON-lines trace file, or - for standard input"
    )
    plan.add_argument(
        "--node-policy", choices=POLICIES, help="override pool.yaml's scheduler.node_policy"
    )
    plan.add_argument(
        "--gpu-policy", choices=POLICIES, help="override pool.yaml's scheduler.gpu_policy"
    )
    plan.set_defaults(func=cmd_plan)

    check = sub.add_parser("check-config", help="validate a catalog folder and summarise it")
    check.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR or hub_config/)"
    )
    check.set_defaults(func=cmd_check_config)

    local = sub.add_parser(
        "local-catalog",
        help="(quickstart) write a catalog whose one node is this machine's Docker engine",
    )
    local.add_argument(
        "--source", default=str(config_dir()), help="catalog to copy (default: hub_config/)"
    )
    local.add_argument("--out", required=True, help="folder to write")
    local.add_argument("--engine", default="unix:///var/run/docker.sock")
    local.add_argument(
        "--hami-core", required=True, help="host path of libvgpu.so for sliced specs"
    )
    local.add_argument(
        "--real-hami", action="store_true", help="libvgpu.so is HAMi-core, not the stand-in"
    )
    local.add_argument(
        "--datasets-dir",
        help="export scikit-learn's digits here and point the catalog's 'digits' at it",
    )
    local.set_defaults(func=cmd_local_catalog)

    from .lab.cli import add_commands  # status, specs, usage (inside a user's server)

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
