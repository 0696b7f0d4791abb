"""The pool database's start-up check and its backup and restore, with baselines measured
in the same run (not part of the test suite):

- start: opening the schema of a database that is already current, as every start of
  the pool service does (``migrate.upgrade``: read the revision, compare) against what
  the service did before it had migrations (``create_all``, which inspects every table);
- backup: ``gpupool db backup`` of a busy ledger against the bare read of the same rows
  (one ``SELECT *`` per table, the least any backup must do); restore against the bare
  insert of the same rows (``executemany`` per table into empty tables).

    .venv/bin/python tests/bench/bench_db.py [--reservations 20000] [--trainings 1000]
        [--events 50] [--postgres]

Prints a table and one JSON line per figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import MetaData, insert, select  # noqa: E402

from gpupool.pool import migrate  # noqa: E402
from gpupool.pool.backup import backup, restore  # noqa: E402
from gpupool.pool.tables import (  # noqa: E402
    make_engine,
    reservation_gpus,
    reservations,
)
from gpupool.pool.trainings.store import events, trainings  # noqa: E402

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def fill(url: str, n_res: int, n_train: int, n_events: int) -> int:
    engine = make_engine(url)
    migrate.upgrade(engine)
    rows = 0
    with engine.begin() as conn:
        res = [
            {
                "id": f"r-{i:08d}",
                "owner": f"user{i % 97}",
                "spec": "a100-20g",
                "kind": "notebook",
                "server_name": "",
                "node": f"gpu-{i % 16}",
                "cpu_millicores": 4000,
                "memory_mib": 32768,
                "disk_mib": 0,
                "price_per_hour": 1.2,
                "container": f"jupyter-{i}",
                "port": None,
                "state": "released" if i % 10 else "active",
                "created_at": T0 + dt.timedelta(minutes=i),
                "released_at": None if i % 10 == 0 else T0 + dt.timedelta(minutes=i + 90),
                "release_reason": None if i % 10 == 0 else "stopped",
            }
            for i in range(n_res)
        ]
        conn.execute(insert(reservations), res)
        gpus = [
            {
                "reservation_id": r["id"],
                "uuid": f"GPU-{i % 128:04d}",
                "gpu_index": i % 8,
                "memory_mib": 20480,
                "sm_percent": 30,
                "whole": False,
            }
            for i, r in enumerate(res)
        ]
        conn.execute(insert(reservation_gpus), gpus)
        tr = [
            {
                "id": f"t-{i:012d}",
                "owner": f"user{i % 97}",
                "name": "mlp",
                "kind": "graph",
                "state": "succeeded",
                "spec": "a100-20g",
                "image": "trainer",
                "dataset": "digits",
                "request": json.dumps({"graph": {"layers": list(range(40))}}),
                "priority": 0,
                "processes": 1,
                "max_run_seconds": 3600,
                "max_attempts": 3,
                "attempt": 1,
                "submitted_at": T0,
                "started_at": T0,
                "finished_at": T0,
                "run_seconds": 60.0,
                "reservation_id": None,
                "node": "gpu-1",
                "container": None,
                "log_cursor": 0,
                "message": "done",
                "checkpoint_epoch": 10,
                "result": json.dumps({"test_accuracy": 0.97}),
                "exit_code": 0,
                "cancel_requested": False,
                "cancelled_by": None,
            }
            for i in range(n_train)
        ]
        conn.execute(insert(trainings), tr)
        ev = [
            {
                "training_id": t["id"],
                "seq": s + 1,
                "attempt": 1,
                "time": 1.0 + s,
                "kind": "epoch",
                "epoch": s + 1,
                "data": json.dumps({"loss": 0.5 / (s + 1), "accuracy": 0.9}),
            }
            for t in tr
            for s in range(n_events)
        ]
        conn.execute(insert(events), ev)
        rows = len(res) + len(gpus) + len(tr) + len(ev)
    engine.dispose()
    return rows


def timed(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bare_read(url: str) -> list[tuple[Any, list[dict[str, Any]]]]:
    engine = make_engine(url)
    md = MetaData()
    md.reflect(engine)
    out = []
    with engine.connect() as conn:
        for t in md.sorted_tables:
            if t.name == migrate.VERSION_TABLE:
                continue
            out.append((t, [dict(r._mapping) for r in conn.execute(select(t))]))
    engine.dispose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reservations", type=int, default=20_000)
    ap.add_argument("--trainings", type=int, default=1_000)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--postgres", action="store_true", help="also on a PostgreSQL it starts")
    args = ap.parse_args()
    results = []
    pg = None
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", lambda name: f"sqlite:///{tmp}/{name}.sqlite")]
        if args.postgres:
            from tests.support.postgres import Postgres

            pg = Postgres().start()
            targets.append(("postgresql", lambda name: pg.create_database(f"bench_{name}")))
        try:
            for dialect, url_of in targets:
                src = url_of("src")
                rows = fill(src, args.reservations, args.trainings, args.events)
                engine = make_engine(src)
                check = timed(lambda engine=engine: migrate.upgrade(engine), 20)

                def create_all(engine: Any = engine) -> None:
                    with engine.begin() as conn:
                        for md in migrate.target_metadata():
                            md.create_all(conn)

                before = timed(create_all, 20)
                path = Path(tmp) / f"{dialect}.gz"
                b = timed(lambda engine=engine, path=path: backup(engine, path), args.rounds)
                read = timed(lambda src=src: bare_read(src), args.rounds)
                engine.dispose()
                data = bare_read(src)

                r_times, i_times = [], []
                for k in range(args.rounds):
                    dst = make_engine(url_of(f"r{k}"))
                    t = time.perf_counter()
                    restore(dst, path)
                    r_times.append(time.perf_counter() - t)
                    dst.dispose()
                    dst = make_engine(url_of(f"i{k}"))
                    migrate.upgrade(dst)
                    t = time.perf_counter()
                    with dst.begin() as conn:
                        for table, items in data:
                            if items and table.name != "pool_meta":
                                conn.execute(insert(table), items)
                    i_times.append(time.perf_counter() - t)
                    dst.dispose()
                figures = {
                    "dialect": dialect,
                    "rows": rows,
                    "start_check_ms": round(check * 1000, 2),
                    "create_all_ms": round(before * 1000, 2),
                    "start_ratio": round(check / before, 3),
                    "backup_s": round(b, 3),
                    "bare_read_s": round(read, 3),
                    "backup_ratio": round(b / read, 2),
                    "backup_mb": round(path.stat().st_size / 1e6, 2),
                    "restore_s": round(statistics.median(r_times), 3),
                    "bare_insert_s": round(statistics.median(i_times), 3),
                    "restore_ratio": round(
                        statistics.median(r_times) / statistics.median(i_times), 2
                    ),
                }
                results.append(figures)
        finally:
            if pg is not None:
                pg.stop()
    print(
        f"{'db':<11}{'rows':>9}{'start ms':>10}{'create_all':>11}{'ratio':>7}"
        f"{'backup s':>10}{'read s':>8}{'ratio':>7}{'MB':>7}{'restore s':>11}{'insert s':>10}{'ratio':>7}"
    )
    for f in results:
        print(
            f"{f['dialect']:<11}{f['rows']:>9}{f['start_check_ms']:>10}{f['create_all_ms']:>11}"
            f"{f['start_ratio']:>7}{f['backup_s']:>10}{f['bare_read_s']:>8}{f['backup_ratio']:>7}"
            f"{f['backup_mb']:>7}{f['restore_s']:>11}{f['bare_insert_s']:>10}{f['restore_ratio']:>7}"
        )
    print("--- json ---")
    for f in results:
        print(json.dumps(f))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
