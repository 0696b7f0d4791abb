"""The ledger's database transactions: writers serialize, and an in-memory copy of the
database is rebuilt whenever another writer changed it.

Every write runs in one transaction that first takes a database-wide lock (``BEGIN
IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL) and compares a
generation counter (``pool_meta``) with the one the copy was made at: if another process
wrote since, the copy is rebuilt before deciding. A thread lock serializes the writers of
one process and guards the copy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from .migrate import Migration, upgrade_connection
from .tables import PG_LOCK_KEY, meta


def _generation(conn: Connection) -> int:
    return conn.execute(select(meta.c.value).where(meta.c.key == "generation")).scalar_one()


class Transactions:
    """Transactions on ``engine`` for an in-memory copy that ``rebuild`` makes from a
    connection."""

    def __init__(self, engine: Engine, rebuild: Callable[[Connection], None]):
        self.engine = engine
        self.lock = threading.RLock()
        self.generation: int | None = None  # of the database the copy was made from
        self._pg = engine.dialect.name == "postgresql"
        self._rebuild = rebuild

    def open(self) -> Migration:
        """Bring the schema up to date and make the copy; what the migration did."""
        with self.lock, self.tx() as conn:
            schema = upgrade_connection(conn)
            if conn.execute(select(meta.c.value).where(meta.c.key == "generation")).first() is None:
                conn.execute(insert(meta).values(key="generation", value=0))
            self.reload(conn)
        return schema

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self._pg:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A locked transaction on an up-to-date copy; bumps the generation on success,
        unless the writer set ``conn.info["unchanged"]`` (nothing the copy holds changed)."""
        with self.lock:
            try:
                with self.tx() as conn:
                    gen = _generation(conn)
                    if gen != self.generation:
                        self.reload(conn)
                    yield conn
                    if not conn.info.pop("unchanged", False):
                        gen += 1
                        conn.execute(
                            update(meta).where(meta.c.key == "generation").values(value=gen)
                        )
                self.generation = gen
            except BaseException:
                self.generation = None  # the in-memory copy may be ahead of the database
                raise

    def reload(self, conn: Connection) -> None:
        """Rebuild the copy from the database behind ``conn``."""
        self._rebuild(conn)
        self.generation = _generation(conn)

    def refresh(self) -> None:
        """Rebuild the copy if another writer changed the database."""
        with self.lock, self.tx() as conn:
            if _generation(conn) != self.generation:
                self.reload(conn)
