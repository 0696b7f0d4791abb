"""A pool for a test module: Docker engines with gpupool's images loaded, and a real hub
whose catalog names them. Context managers, so a module's fixture is two lines and what
it starts is always stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .catalogs import write_engine_catalog
from .docker import Engine, ensure_docker_installed, start_engines, stop_engines
from .hub import Hub
from .images import ensure_image


@contextlib.contextmanager
def engines_with_images(names: list[str], **kw: Any) -> Iterator[dict[str, Engine]]:
    """Engines ``names`` (start_engines' options in ``kw``), each with the images loaded."""
    ensure_docker_installed()
    engs = start_engines(names, **kw)
    try:
        ensure_image(engs.values())
        yield engs
    finally:
        stop_engines(engs)


@contextlib.contextmanager
def hub_on(engines: dict[str, Engine], folder: Path, **kw: Any) -> Iterator[Hub]:
    """A started hub whose catalog (written into ``folder``) has ``engines`` as its nodes
    (Hub's options in ``kw``)."""
    h = Hub(write_engine_catalog(folder, engines), **kw).start()
    try:
        yield h
    finally:
        h.cleanup()
