"""Schema migrations of the pool's database (Alembic), on SQLite and a real PostgreSQL.

The revisions must produce exactly the tables the code declares; a ledger made by the
previous schema, or before gpupool had migrations, must come through an upgrade with its
data intact; a database from a newer gpupool is refused, untouched.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from gpupool.catalog import load_catalog
from gpupool.cli import main as cli
from gpupool.pool import migrate
from gpupool.pool.ledger import Ledger
from gpupool.pool.tables import (
    make_engine,
    meta,
    metadata,
    node_states,
    notices,
    reservation_gpus,
    reservations,
)
from gpupool.pool.trainings.store import TrainingStore
from tests.conftest import CATALOG

NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.timezone.utc)


def schema_diff(url: str) -> list[object]:
    """What Alembic's autogenerate finds between the database and the declared tables."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE}
            )
            return list(compare_metadata(ctx, migrate.target_metadata()))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_the_revisions_know_every_table_exactly(db_url: str) -> None:
    """Running every revision, one by one from an empty database, gives exactly the
    tables, columns, types, nullability and indexes that tables.py and
    trainings/store.py declare. A change to either without a revision fails here."""
    engine = make_engine(db_url)
    first = migrate.upgrade(engine, "0001")
    assert (first.before, first.after, first.how) == (None, "0001", "upgraded")
    second = migrate.upgrade(engine)
    assert (second.before, second.after, second.how) == ("0001", migrate.head(), "upgraded")
    engine.dispose()
    assert schema_diff(db_url) == []


def test_a_new_database_is_made_at_the_newest_revision(db_url: str) -> None:
    ledger = Ledger(db_url, load_catalog(CATALOG))
    assert ledger.schema.how == "created"
    with ledger.engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    ledger.close()
    assert schema_diff(db_url) == []
    again = Ledger(db_url, load_catalog(CATALOG))
    assert again.schema.how == "current"
    again.close()


def fill_previous(url: str) -> None:
    """A ledger as the previous schema (revision 0002, before trainings) left it: an active
    reservation on two GPU shares, a released one, a notice, a drained node."""
    engine = make_engine(url)
    migrate.upgrade(engine, "0002")
    with engine.begin() as conn:
        assert "trainings" not in inspect(conn).get_table_names()
        conn.execute(insert(meta).values(key="generation", value=7))
        for rid, state in (("r-live", "active"), ("r-old", "released")):
            conn.execute(
                insert(reservations).values(
                    id=rid,
                    owner="ann",
                    spec="a100-40g",
                    kind="notebook",
                    server_name="",
                    node="node-a",
                    cpu_millicores=4000,
                    memory_mib=16384,
                    disk_mib=0,
                    price_per_hour=1.5,
                    container=f"jupyter-ann-{rid}",
                    port=None,
                    state=state,
                    created_at=NOW,
                    released_at=None if state == "active" else NOW + dt.timedelta(hours=2),
                    release_reason=None if state == "active" else "stopped",
                )
            )
        conn.execute(
            insert(reservation_gpus).values(
                reservation_id="r-live",
                uuid="GPU-a0",
                gpu_index=0,
                memory_mib=40960,
                sm_percent=50,
                whole=False,
            )
        )
        conn.execute(
            insert(notices).values(
                reservation_id="r-live",
                kind="gpu-idle",
                message="your GPUs are idle",
                created_at=NOW,
                act_at=NOW + dt.timedelta(minutes=15),
                stop_reason=None,
            )
        )
        conn.execute(insert(node_states).values(name="node-b", drained=True, changed_by="root"))
    engine.dispose()


def check_intact(ledger: Ledger) -> None:
    live = ledger.get("r-live")
    assert live is not None and live.state == "active"
    assert [(g.uuid, g.memory_mib, g.sm_percent) for g in live.gpus] == [("GPU-a0", 40960, 50)]
    assert live.created_at.replace(tzinfo=dt.timezone.utc) == NOW
    old = ledger.get("r-old")
    assert old is not None and old.release_reason == "stopped"
    assert [n["message"] for n in ledger.notices("ann")] == ["your GPUs are idle"]
    assert ledger.drained() == {"node-a": False, "node-b": True}
    # the share is in force: the card has 40 GiB left, so a whole card goes elsewhere
    whole = ledger.reserve(ledger.catalog.spec("a100-1x"), "bob")
    assert getattr(whole, "gpus", None) and whole.gpus[0].uuid != "GPU-a0"  # type: ignore[union-attr]
    # and the new tables work
    TrainingStore(ledger.engine).list()


def test_a_ledger_of_the_previous_schema_upgrades_with_its_data(db_url: str) -> None:
    fill_previous(db_url)
    ledger = Ledger(db_url, load_catalog(CATALOG))
    assert (ledger.schema.before, ledger.schema.how) == ("0002", "upgraded")
    check_intact(ledger)
    ledger.close()
    assert schema_diff(db_url) == []


def test_a_ledger_made_before_migrations_is_adopted(db_url: str) -> None:
    """Before Alembic, the service made its tables with create_all and never altered one:
    such a database (no gpupool_schema_version) gets the missing tables and the newest revision."""
    fill_previous(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE gpupool_schema_version"))
    engine.dispose()
    ledger = Ledger(db_url, load_catalog(CATALOG))
    assert (ledger.schema.before, ledger.schema.how) == (None, "adopted")
    check_intact(ledger)
    ledger.close()
    assert schema_diff(db_url) == []


def test_a_database_of_a_newer_gpupool_is_refused_untouched(db_url: str) -> None:
    fill_previous(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE gpupool_schema_version SET version_num = '0099'"))
    with pytest.raises(migrate.MigrationError, match=r"revision 0099.*newest is 0003"):
        Ledger(db_url, load_catalog(CATALOG))
    with engine.connect() as conn:
        assert migrate.current(conn) == "0099"
        assert "trainings" not in inspect(conn).get_table_names()
        assert conn.execute(select(reservations.c.id)).scalars().all() == ["r-live", "r-old"]
    engine.dispose()


@pytest.mark.postgres
def test_two_services_starting_at_once_make_one_schema(pg_url: str) -> None:
    """Two pool services opening one new PostgreSQL database together: the advisory lock
    lets one make the tables; the other finds them made."""
    outcomes: list[str] = []
    errors: list[BaseException] = []
    catalog = load_catalog(CATALOG)

    def start() -> None:
        try:
            ledger = Ledger(pg_url, catalog)
            outcomes.append(ledger.schema.how)
            ledger.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(outcomes) == ["created", "current", "current", "current"]


def test_gpupool_db_shows_and_upgrades(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    assert cli(["db", "current", "--db", url]) == 0
    assert "no revision (empty); the newest is 0003" in capsys.readouterr().out
    fill_previous(url)
    assert cli(["db", "current", "--db", url]) == 0
    assert "0002; the newest is 0003" in capsys.readouterr().out
    assert cli(["db", "upgrade", "7", "--db", url]) == 2
    assert "no revision '7'; known: 0001, 0002, 0003 or head" in capsys.readouterr().err
    assert cli(["db", "upgrade", "--db", url]) == 0
    assert "upgraded from revision 0002 to 0003" in capsys.readouterr().out
    assert cli(["db", "history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["0001", "0002", "0003"]
    engine = make_engine(url)
    with engine.connect() as conn:
        assert set(metadata.tables) <= set(inspect(conn).get_table_names())
    engine.dispose()
