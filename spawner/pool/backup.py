"""Backup and restore of the pool's database, as one portable file.

``gpupool db backup FILE`` writes every row of every pool table (reservations and their
GPU shares, notices, drain flags, trainings with their events and attempts) as gzipped
JSON lines, read in one consistent snapshot while the pool service runs: SQLite reads in
one transaction, PostgreSQL in one REPEATABLE READ transaction. The first line names
the schema revision and the row count of each table.

``gpupool db restore FILE`` writes a backup into an empty database: the schema is made at
the backup's revision, the rows go in (in foreign-key order, in one transaction), then
the schema is upgraded to the newest revision. So a backup from an older gpupool
restores into a newer one, and a backup of SQLite restores into PostgreSQL (the way from
the quickstart's SQLite to a production database). A database that already has pool
rows is refused and left as it was.

Only the pool's tables: where JupyterHub's tables share the database (the compose
deployment), back those up with the database's own tool (``pg_dump``), which also
works for the pool's; this format is the one that crosses databases and versions.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, delete, func, insert, select
from sqlalchemy.engine import Connection, Engine

from . import migrate
from .tables import utcnow

FORMAT = "gpupool-backup"
VERSION = 1
BATCH = 1000  # rows per INSERT (executemany) on restore


class BackupError(ValueError):
    """A backup that cannot be written or restored; the message says why."""


def _tables(conn: Connection) -> MetaData:
    """The pool's tables in the database, as they are there (the database may also hold
    JupyterHub's tables: those are not the pool's to back up)."""
    ours = {name for md in migrate.target_metadata() for name in md.tables}
    md = MetaData()
    md.reflect(conn, only=lambda name, _md: name in ours)
    return md


def _value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).isoformat()
    return v


def backup(engine: Engine, dest: Path) -> dict[str, Any]:
    """Write a backup of the database to ``dest``; returns its header."""
    opts = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        revision = migrate.current(conn)
        if revision is None:
            raise BackupError(
                f"{engine.url.render_as_string(hide_password=True)} has no gpupool schema "
                "revision: not a pool database, or one made before migrations (start the pool "
                "service once, or run `gpupool db upgrade`)"
            )
        md = _tables(conn)
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in md.sorted_tables
        }
        header = {
            "format": FORMAT,
            "version": VERSION,
            "revision": revision,
            "created_at": utcnow().isoformat(),
            "dialect": engine.dialect.name,
            "tables": counts,
        }
        tmp = dest.with_name(dest.name + ".partial")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            f.write(json.dumps(header) + "\n")
            for t in md.sorted_tables:
                for row in conn.execute(select(t).order_by(*t.primary_key.columns)):
                    data = {k: _value(v) for k, v in row._mapping.items()}
                    f.write(json.dumps({"t": t.name, "r": data}) + "\n")
        tmp.replace(dest)
    return header


def read_header(src: Path) -> dict[str, Any]:
    try:
        with gzip.open(src, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
    except FileNotFoundError:
        raise BackupError(f"{src}: no such file") from None
    except (OSError, ValueError) as e:
        raise BackupError(f"{src} is not a gpupool backup (gzipped JSON lines): {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{src} is not a gpupool backup (its first line names no {FORMAT})")
    if header.get("version") != VERSION:
        raise BackupError(
            f"{src} is a backup of format version {header.get('version')}; "
            f"this gpupool reads version {VERSION}"
        )
    known = {s.revision for s in migrate.scripts().walk_revisions()}
    if header.get("revision") not in known:
        raise BackupError(
            f"{src} was made at schema revision {header.get('revision')}, which this gpupool "
            f"does not know (known: {', '.join(sorted(known))}): restore it with a newer gpupool"
        )
    return header


def _rows(src: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with gzip.open(src, "rt", encoding="utf-8") as f:
        f.readline()
        for n, line in enumerate(f, start=2):
            try:
                item = json.loads(line)
                yield item["t"], item["r"]
            except (ValueError, KeyError, TypeError) as e:
                raise BackupError(f"{src}, line {n}: not a row of a gpupool backup ({e})") from None


def restore(engine: Engine, src: Path) -> dict[str, Any]:
    """Write the backup at ``src`` into the empty database behind ``engine``."""
    header = read_header(src)
    with engine.connect() as conn:
        md = _tables(conn)
        used = [
            t.name
            for t in md.sorted_tables
            if t.name != "pool_meta"  # the ledger's counter, made at its first start
            and conn.execute(select(func.count()).select_from(t)).scalar_one()
        ]
    if used:
        raise BackupError(
            f"{engine.url.render_as_string(hide_password=True)} already holds pool data (tables "
            f"{', '.join(used)} have rows); restore into an empty database. Nothing was changed."
        )
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({migrate.PG_LOCK_KEY})")
        # its tables are empty (checked above): made, or moved, to the backup's revision
        migrate.move_to(conn, header["revision"])
        md = _tables(conn)
        conn.execute(delete(md.tables["pool_meta"]))  # the backup's counter replaces it
        # rows come grouped by table: insert them in batches (executemany)
        batch: list[dict[str, Any]] = []
        batch_table = None
        for name, row in _rows(src):
            table = md.tables.get(name)
            if table is None:
                raise BackupError(
                    f"{src}: rows of table {name!r}, which revision {header['revision']} "
                    "does not have. Nothing was changed."
                )
            if table is not batch_table or len(batch) >= BATCH:
                if batch:
                    conn.execute(insert(batch_table), batch)  # type: ignore[arg-type]
                batch, batch_table = [], table
            for col in table.columns:
                if isinstance(col.type, DateTime) and isinstance(row.get(col.name), str):
                    row[col.name] = dt.datetime.fromisoformat(row[col.name])
            batch.append(row)
            counts[name] = counts.get(name, 0) + 1
        if batch:
            conn.execute(insert(batch_table), batch)  # type: ignore[arg-type]
        want = {k: v for k, v in header["tables"].items() if v}
        if counts != want:
            raise BackupError(
                f"{src} is incomplete: its header counts {want}, its body holds {counts}. "
                "Nothing was changed."
            )
        outcome = migrate.upgrade_connection(conn)
    return {**header, "restored": counts, "schema": outcome.describe()}
