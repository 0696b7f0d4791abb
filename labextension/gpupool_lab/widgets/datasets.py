"""The DatasetPicker widget: the pool's datasets and the user's own, with a preview; the
chosen one is its ``value``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from gpupool.lab.client import PoolApi, PoolApiError
from gpupool.lab.datasets import (
    DatasetPathError,
    Entry,
    catalog_entries,
    home_entries,
    preview,
    resolve,
)

STATIC = Path(__file__).parent / "static"


class DatasetPicker(anywidget.AnyWidget):
    """``DatasetPicker()`` lists the pool's catalog (mounted under /datasets) and the
    tables, arrays and image folders in your home; pick one to see a preview.
    ``picker.value`` is the chosen dataset (name, source, path, format) or None."""

    _esm = STATIC / "dataset_picker.js"

    datasets = traitlets.List(help="what can be picked").tag(sync=True)
    selected = traitlets.Unicode("", help="the key of the chosen dataset").tag(sync=True)
    preview = traitlets.Dict(help="the chosen dataset's preview").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        *,
        home: str | os.PathLike[str] | None = None,
        datasets_root: str | os.PathLike[str] | None = None,
        pool: PoolApi | None = None,
        **kwargs: Any,
    ) -> None:
        self._home = Path(home or os.environ.get("HOME", "~")).expanduser()
        self._root = Path(datasets_root or os.environ.get("GPUPOOL_DATASETS", "/datasets"))
        self._pool = pool
        super().__init__(**kwargs)
        self.refresh()

    def refresh(self) -> None:
        """Read the catalog and the home folder again."""
        problems = []
        items: list[dict[str, Any]] = []
        try:
            api = self._pool or PoolApi.from_env()
            items = api.datasets()
        except (PoolApiError, OSError, KeyError, ValueError) as e:
            problems.append(f"the pool's dataset catalog is not available: {e}")
        entries = catalog_entries(items, self._root) + home_entries(self._home)
        self._entries = {e.key: e for e in entries}
        self.error = "; ".join(problems)
        self.datasets = [e.to_json() for e in entries]
        if self.selected and self.selected not in self._entries:
            self.selected = ""

    @traitlets.validate("selected")
    def _check(self, proposal: dict[str, str]) -> str:
        key = proposal["value"]
        if key == "":
            return key
        source, _, name = key.partition(":")
        # the name is checked against its root even though it must also be listed: the
        # listing can be stale, the root is the rule
        try:
            if source == "catalog":
                resolve(self._root, name)
            elif source == "home":
                resolve(self._home, name)
            else:
                raise DatasetPathError(f"dataset {key!r}: unknown source; allowed: catalog, home")
        except DatasetPathError as e:
            raise traitlets.TraitError(str(e)) from None
        if key not in self._entries:
            raise traitlets.TraitError(f"no dataset {key!r}; pick one of the list")
        return key

    @traitlets.observe("selected")
    def _show(self, change: dict[str, Any]) -> None:
        entry = self._entries.get(change["new"])
        if entry is None:
            self.preview = {}
            return
        try:
            self.preview = preview(entry.path, entry.format) if entry.available else {}
        except (OSError, ValueError, SyntaxError) as e:
            self.preview = {"note": f"no preview: {e}"}

    @property
    def value(self) -> dict[str, Any] | None:
        entry: Entry | None = self._entries.get(self.selected)
        if entry is None:
            return None
        return {k: entry.to_json()[k] for k in ("name", "source", "path", "format", "read_only")}

    def select(self, name: str, source: str = "catalog") -> None:
        self.selected = f"{source}:{name}"
