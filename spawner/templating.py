"""gpupool's pages and spawn form as Jinja2 templates, autoescaped.

The search path is the catalog folder's ``templates/`` (a deployer's overrides, the same
folder JupyterHub takes its page overrides from), then the package's own
(``gpupool/templates``). A template there replaces the built-in one of the same name,
and may extend it: ``{% extends "gpupool/page.html" %}`` is this package's base page,
reached through the name ``builtin/`` when an override of the same name extends it
(``{% extends "builtin/gpupool/usage.html" %}``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined

BUILTIN = Path(__file__).resolve().parent / "templates"


def search_path(catalog_dir: str | Path | None) -> list[Path]:
    """Where templates are looked for, first match wins."""
    own = [Path(catalog_dir) / "templates"] if catalog_dir else []
    return [p for p in own if p.is_dir()] + [BUILTIN]


@cache
def environment(catalog_dir: str | None) -> Environment:
    paths = [str(p) for p in search_path(catalog_dir)]
    loader = ChoiceLoader(
        [
            FileSystemLoader(paths),
            PrefixLoader({"builtin": FileSystemLoader(str(BUILTIN))}),
        ]
    )
    env = Environment(
        loader=loader,
        autoescape=True,  # every value written into a page is escaped, always
        undefined=StrictUndefined,  # a name a template misses is an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    return env


def render(catalog_dir: str | None, name: str, **values: Any) -> str:
    return environment(catalog_dir).get_template(name).render(**values)
