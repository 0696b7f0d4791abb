"""Shared fixtures: the test catalog, a real PostgreSQL, a real JupyterHub."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub import Hub
from tests.support.postgres import Postgres

FIXTURES = Path(__file__).parent / "fixtures"
CATALOG = FIXTURES / "catalog"


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """A private copy of the test catalog (2 nodes x 4 A100 80 GiB) that a test may change."""
    dst = tmp_path / "catalog"
    shutil.copytree(CATALOG, dst)
    return dst


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on loopback, for the whole session."""
    if os.environ.get("GPUPOOL_TEST_NO_POSTGRES"):
        pytest.skip("GPUPOOL_TEST_NO_POSTGRES is set")
    pg = Postgres().start()
    try:
        yield pg
    finally:
        pg.stop()


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty PostgreSQL database."""
    return postgres.create_database(f"gpupool_{next(_db_counter)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each ledger test runs on SQLite (a file) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """A running hub on the test catalog with SQLite ledger, shared by a test module."""
    # the test catalog's nodes have no engines: nothing to probe or reconcile
    h = Hub(CATALOG, watch_nodes=False).start()
    try:
        yield h
    finally:
        h.cleanup()
