"""Backup and restore of the pool's database (``gpupool db backup|restore``), with real
SQLite and PostgreSQL: a restored ledger holds what the backed-up one held, across
databases and schema revisions; bad files and non-empty targets change nothing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gpupool.catalog import load_catalog
from gpupool.cli import main as cli
from gpupool.pool import migrate
from gpupool.pool.backup import BackupError, backup, restore
from gpupool.pool.ledger import Ledger
from gpupool.pool.tables import make_engine, reservations
from gpupool.pool.trainings.store import TrainingStore
from gpupool.pool.trainings.store import trainings as trainings_table
from tests.conftest import CATALOG
from tests.unit.test_migrations import check_intact, fill_previous
from tests.unit.test_training_dispatch import starting


def busy_ledger(url: str) -> Ledger:
    """A ledger with notebooks, a released reservation, a drained node and a training with
    events and an attempt."""
    catalog = load_catalog(CATALOG)
    ledger = Ledger(url, catalog)
    for owner, spec in (("ann", "a100-40g"), ("bob", "a100-1x"), ("cy", "a100-2x")):
        assert not hasattr(ledger.reserve(catalog.spec(spec), owner), "reason")
    gone = ledger.reserve(catalog.spec("cpu-1"), "ann")
    ledger.release(gone.id, "stopped by ann")  # type: ignore[union-attr]
    ledger.set_drained("node-b", True, by="root")
    store = TrainingStore(ledger.engine)
    starting(store, ledger, catalog)
    tid = store.list()[0].id
    store.add_events(tid, 1, [{"kind": "epoch", "epoch": 1, "loss": 0.5, "time": 1.0}])
    store.add_attempt(tid, 1, node="node-a")
    return ledger


def snapshot(ledger: Ledger) -> dict[str, object]:
    store = TrainingStore(ledger.engine)
    return {
        "reservations": sorted(
            (r.to_json() for r in ledger.list(active_only=False)), key=lambda r: str(r["id"])
        ),
        "drained": ledger.drained(),
        "trainings": [t.to_json() for t in store.list()],
        "events": [e for t in store.list() for e in store.events(t.id)],
    }


@pytest.mark.postgres
def test_sqlite_backup_restores_into_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The way from the quickstart's SQLite to a production PostgreSQL."""
    src = busy_ledger(f"sqlite:///{tmp_path / 'a.sqlite'}")
    before = snapshot(src)
    header = backup(src.engine, tmp_path / "pool.backup.gz")
    assert header["revision"] == migrate.head()
    assert header["tables"]["reservations"] == 5 and header["tables"]["trainings"] == 1
    src.close()

    done = restore(make_engine(pg_url), tmp_path / "pool.backup.gz")
    assert done["restored"]["reservation_gpus"] == header["tables"]["reservation_gpus"]
    dst = Ledger(pg_url, load_catalog(CATALOG))
    assert dst.schema.how == "current"
    assert snapshot(dst) == before
    # the restored shares are in force: what was full stays full
    assert dst.fits_now(load_catalog(CATALOG).spec("a100-2x")) == src_fits(tmp_path)
    dst.close()


def src_fits(tmp_path: Path) -> int:
    again = Ledger(f"sqlite:///{tmp_path / 'a.sqlite'}", load_catalog(CATALOG))
    try:
        return again.fits_now(load_catalog(CATALOG).spec("a100-2x"))
    finally:
        again.close()


def test_a_backup_of_the_previous_schema_restores_and_upgrades(tmp_path: Path, db_url: str) -> None:
    old = f"sqlite:///{tmp_path / 'old.sqlite'}"
    fill_previous(old)
    engine = make_engine(old)
    assert backup(engine, tmp_path / "old.gz")["revision"] == "0002"
    engine.dispose()
    done = restore(make_engine(db_url), tmp_path / "old.gz")
    assert "upgraded from revision 0002 to 0003" in done["schema"]
    ledger = Ledger(db_url, load_catalog(CATALOG))
    check_intact(ledger)
    ledger.close()


def test_restore_refuses_a_database_with_data_and_changes_nothing(tmp_path: Path) -> None:
    a = busy_ledger(f"sqlite:///{tmp_path / 'a.sqlite'}")
    backup(a.engine, tmp_path / "a.gz")
    b = Ledger(f"sqlite:///{tmp_path / 'b.sqlite'}", load_catalog(CATALOG))
    b.reserve(b.catalog.spec("cpu-1"), "dan")
    before = snapshot(b)
    with pytest.raises(BackupError, match=r"already holds pool data .*reservations.*Nothing"):
        restore(b.engine, tmp_path / "a.gz")
    assert snapshot(b) == before
    a.close()
    b.close()


def test_an_empty_database_already_at_the_newest_revision_takes_an_older_backup(
    tmp_path: Path,
) -> None:
    """A service started once on the new database made its (empty) tables at the newest
    revision; an older backup still restores into it."""
    old = f"sqlite:///{tmp_path / 'old.sqlite'}"
    fill_previous(old)
    backup(make_engine(old), tmp_path / "old.gz")
    new = f"sqlite:///{tmp_path / 'new.sqlite'}"
    Ledger(new, load_catalog(CATALOG)).close()
    restore(make_engine(new), tmp_path / "old.gz")
    ledger = Ledger(new, load_catalog(CATALOG))
    check_intact(ledger)
    ledger.close()


def test_bad_backups_are_refused_and_change_nothing(tmp_path: Path) -> None:
    a = busy_ledger(f"sqlite:///{tmp_path / 'a.sqlite'}")
    good = tmp_path / "a.gz"
    backup(a.engine, good)
    a.close()
    lines = gzip.open(good, "rt").read().splitlines()
    header = json.loads(lines[0])

    def write(name: str, text: str) -> Path:
        p = tmp_path / name
        with gzip.open(p, "wt") as f:
            f.write(text)
        return p

    not_gz = tmp_path / "plain.txt"
    not_gz.write_text("hello\n")
    cases = {
        tmp_path / "missing.gz": "no such file",
        not_gz: "not a gpupool backup",
        write("other.gz", json.dumps({"format": "x"}) + "\n"): "names no gpupool-backup",
        write("newer.gz", json.dumps({**header, "revision": "0099"}) + "\n"): (
            "revision 0099, which this gpupool does not know"
        ),
        # cut short: the header counts rows the body lacks
        write("cut.gz", "\n".join(lines[:-3]) + "\n"): "incomplete",
        write("junk.gz", "\n".join([*lines[:3], "{not json"]) + "\n"): "line 4: not a row",
    }
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    for path, message in cases.items():
        engine = make_engine(target)
        with pytest.raises(BackupError, match=message):
            restore(engine, path)
        with engine.connect() as conn:
            rev = migrate.current(conn)
            rows = (
                conn.execute(select(func.count()).select_from(reservations)).scalar_one()
                if rev
                else 0
            )
        assert rows == 0, path
        engine.dispose()
    # after all that, the good one still restores
    restore(make_engine(target), good)
    engine = make_engine(target)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(trainings_table)).scalar_one() == 1
    engine.dispose()


def test_gpupool_db_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = busy_ledger(f"sqlite:///{tmp_path / 'a.sqlite'}")
    before = snapshot(a)
    a.close()
    src, dst = f"sqlite:///{tmp_path / 'a.sqlite'}", f"sqlite:///{tmp_path / 'b.sqlite'}"
    assert cli(["db", "backup", str(tmp_path / "b.gz"), "--db", src]) == 0
    assert "rows at revision 0003 written to" in capsys.readouterr().out
    assert cli(["db", "restore", str(tmp_path / "b.gz"), "--db", dst]) == 0
    assert "rows restored from" in capsys.readouterr().out
    assert cli(["db", "restore", str(tmp_path / "b.gz"), "--db", dst]) == 1
    assert "already holds pool data" in capsys.readouterr().err
    b = Ledger(dst, load_catalog(CATALOG))
    assert snapshot(b) == before
    b.close()
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    assert cli(["db", "backup", str(tmp_path / "c.gz"), "--db", empty]) == 1
    assert "no gpupool schema revision" in capsys.readouterr().err


def test_an_older_backup_restores_beside_jupyterhubs_tables(tmp_path: Path, db_url: str) -> None:
    """In the compose deployment JupyterHub's tables share the database and are there
    first; an older backup still restores (only the pool's tables count)."""
    old = f"sqlite:///{tmp_path / 'old.sqlite'}"
    fill_previous(old)
    backup(make_engine(old), tmp_path / "old.gz")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(255))")
        conn.exec_driver_sql("INSERT INTO users (id, name) VALUES (1, 'ann')")
    # `gpupool db upgrade 0002` by hand, then back to empty (moved down on restore)
    assert migrate.upgrade(engine, "0002").how == "upgraded"
    restore(engine, tmp_path / "old.gz")
    ledger = Ledger(db_url, load_catalog(CATALOG))
    check_intact(ledger)
    ledger.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM users").scalar_one() == "ann"
    engine.dispose()
