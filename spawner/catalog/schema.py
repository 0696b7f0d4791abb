"""JSON schemas of the catalog files. Unknown keys are refused everywhere.

The schemas check shape; ``entries.py`` and ``load.py`` check meaning (units, references,
uniqueness), and every problem becomes a message that names the file, the entry, the key,
and what is allowed. ``schema_entries`` holds the schemas of the list files' entries,
``schema_pool`` that of pool.yaml, ``schema_parts`` the pieces both are made of.
"""

from __future__ import annotations

from typing import Any

from .schema_entries import DATASET, IMAGE, NODE, SPEC
from .schema_pool import POOL


def _file(top: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {top: {"type": "array", "items": item}},
    }


# file name -> (top-level key or None for a plain mapping, schema)
FILES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "specs.yaml": ("specs", _file("specs", SPEC)),
    "images.yaml": ("images", _file("images", IMAGE)),
    "nodes.yaml": ("nodes", _file("nodes", NODE)),
    "datasets.yaml": ("datasets", _file("datasets", DATASET)),
    "pool.yaml": (None, POOL),
}
REQUIRED_FILES = ("specs.yaml", "nodes.yaml")
