"""Schema migrations of the pool's database (Alembic), run when the pool service starts.

Every table of the pool (the ledger's and the trainings') is made by the revisions in
``migrations/versions``; ``gpupool_schema_version`` in the database says which one it is at.
On start the pool brings the database to the newest revision, in one transaction under
the ledger's lock, so two services starting at once on one PostgreSQL do not race:

- an empty database gets the tables straight from the SQLAlchemy tables and is stamped
  with the newest revision (Alembic's advice for new databases; a test holds the
  migrations' result equal to the tables);
- a database made before gpupool had migrations (tables but no ``gpupool_schema_version``)
  was made by ``create_all``, which only ever added tables: it gets the missing ones and
  the newest revision;
- a database at an older revision runs the revisions after it;
- a database at a revision this gpupool does not know (made by a newer gpupool) is
  refused, naming both revisions: running on it could lose data.

``gpupool db`` shows and runs the same by hand (``current``, ``history``, ``upgrade``),
and backs the database up and restores it (``backup.py``).
A new column or table means a new revision file beside the others and the same change
in ``tables.py`` or ``trainings/store.py``; ``tests/unit/test_migrations.py`` fails
until both agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

from .tables import PG_LOCK_KEY

SCRIPTS = Path(__file__).parent / "migrations"
# Not Alembic's default name: JupyterHub keeps its own alembic_version, and a deployment
# may well put the hub's and the pool's tables in one database.
VERSION_TABLE = "gpupool_schema_version"


class MigrationError(RuntimeError):
    """The database cannot be brought to this gpupool's schema; the message says why."""


def target_metadata() -> list[MetaData]:
    """The tables the newest revision must produce."""
    from .tables import metadata as ledger
    from .trainings.store import metadata as trainings

    return [ledger, trainings]


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision this gpupool knows."""
    found = scripts().get_current_head()
    assert found is not None, "no migrations in " + str(SCRIPTS)
    return found


def current(conn: Connection) -> str | None:
    """The revision the database is at (None: never stamped)."""
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


@dataclass(frozen=True)
class Migration:
    """What a start did to the database schema: the revision before, after, and how."""

    before: str | None  # the revision found (None: empty, or made before migrations)
    after: str
    how: str  # "current" | "created" | "adopted" | "upgraded"

    def describe(self) -> str:
        return {
            "current": f"database schema at revision {self.after} (the newest)",
            "created": f"new database: tables made at revision {self.after}",
            "adopted": (
                "database made before gpupool had migrations: missing tables added, "
                f"stamped at revision {self.after}"
            ),
            "upgraded": (
                f"database schema upgraded from revision {self.before or '(empty)'} to {self.after}"
            ),
        }[self.how]


def upgrade_connection(conn: Connection, target: str = "head") -> Migration:
    """Bring the database behind ``conn`` (in a transaction) to ``target``."""
    newest = head()
    want = newest if target == "head" else target
    before = current(conn)
    if before == want:
        return Migration(before, want, "current")
    if before is not None and before not in {s.revision for s in scripts().walk_revisions()}:
        raise MigrationError(
            f"the pool's database is at schema revision {before}, which this gpupool does not "
            f"know (its newest is {newest}): it was made by a newer gpupool. Run that version, "
            "or restore a backup made before the upgrade (see the operations guide)."
        )
    if before is not None and want in {
        s.revision for s in scripts().iterate_revisions(before, "base")
    }:
        raise MigrationError(
            f"the database is at revision {before}, after {want}: gpupool does not downgrade "
            "a database with data; restore a backup made at that revision instead"
        )
    if before is None:
        tables = set(inspect(conn).get_table_names())
        if want == newest:
            # new, or made by create_all before migrations: create_all adds only what is missing
            how = "adopted" if "reservations" in tables else "created"
            for md in target_metadata():
                md.create_all(conn)
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(
                scripts(), newest
            )
            return Migration(None, newest, how)
        # other tables (JupyterHub's, when it shares the database) are not the pool's
        ours = {name for md in target_metadata() for name in md.tables}
        if tables & ours:
            raise MigrationError(
                f"cannot take an unversioned database with pool tables to revision {want}; "
                "only to the newest"
            )
    command.upgrade(config(conn), want)
    return Migration(before, want, "upgraded")


def move_to(conn: Connection, revision: str) -> None:
    """Take a database whose pool tables are empty to ``revision``, up or down."""
    if current(conn) is None:
        upgrade_connection(conn)
    have = current(conn)
    if have == revision:
        return
    older = {s.revision for s in scripts().iterate_revisions(have, "base")}
    (command.downgrade if revision in older else command.upgrade)(config(conn), revision)


def upgrade(engine: Engine, target: str = "head") -> Migration:
    """Bring the database to ``target`` (default: the newest revision), under the lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # the ledger's lock: one writer of the schema
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
        return upgrade_connection(conn, target)


def history() -> list[tuple[str, str]]:
    """(revision, first line of its description), oldest first."""
    out = []
    for s in scripts().walk_revisions():
        first = (s.doc or "").strip().split("\n\n")[0]
        out.append((s.revision, " ".join(first.split())))
    return list(reversed(out))
