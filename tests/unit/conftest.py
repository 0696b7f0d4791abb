"""Fixtures shared by the unit tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.catalog_edits import HUB_CONFIG


@pytest.fixture
def cat(tmp_path: Path) -> Path:
    """A private copy of hub_config/*.yaml that a test may break."""
    dst = tmp_path / "hub_config"
    dst.mkdir()
    for f in HUB_CONFIG.glob("*.yaml"):
        shutil.copy(f, dst / f.name)
    return dst
