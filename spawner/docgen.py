"""The configuration reference (docs/configuration.md), made from the code itself: the
catalog's JSON Schema (what each YAML key may be), the traitlets of gpupool's
configurable classes (their ``help``, type and default) and the hub's environment
settings (``gpupool.hub``'s docstring).

    python -m gpupool.docgen > docs/configuration.md

``tests/unit/test_docs.py`` fails when the committed file differs from what this makes.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from typing import Any

from traitlets import HasTraits, TraitType

from .catalog.schema import FILES, REQUIRED_FILES

HEADER = """# Configuration reference

Made by `python -m gpupool.docgen` from the code: edit the code, then run it again
(`tests/unit/test_docs.py` checks that this file is current).

There are three places settings live:

1. **The catalog folder** (`hub_config/`, or `GPUPOOL_CONFIG_DIR`): YAML files checked
   against a schema at start. Unknown keys are refused, and the message names the file,
   the key and what is allowed. `gpupool check-config --config DIR` checks a folder.
2. **The environment** of the hub: deployment facts (addresses, databases, secrets).
3. **Traitlets** of gpupool's classes, for what a site tunes in `jupyterhub_config.py`
   (`c.GpuPoolSpawner.…`), on the pool service's command line (`gpupool-pool --help-all`)
   or the agent's (`gpupool-agent --help-all`).
"""


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " or ".join(f"`{v}`" for v in schema["enum"])
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type(s) for s in schema.get("oneOf") or schema["anyOf"])
    t = schema.get("type", "")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array" and isinstance(schema.get("items"), dict):
        inner = _type(schema["items"])
        return f"list of {inner}" if inner else "list"
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return str(t)


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥")):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "maxLength" in schema:
        parts.append(f"length ≤ {schema['maxLength']}")
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    if "default" in schema:
        parts.append(f"default `{schema['default']}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(schema: dict[str, Any], prefix: str, out: list[str]) -> None:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    for key, sub in props.items():
        if not isinstance(sub, dict):
            continue
        path = f"{prefix}{key}"
        desc = sub.get("description", "")
        out.append(
            f"| `{path}` | {_cell(_type(sub))} | {'yes' if key in required else ''} | "
            f"{_cell(_limits(sub))} | {_cell(desc)} |"
        )
        if sub.get("type") == "object" or "properties" in sub:
            _rows(sub, f"{path}.", out)
        items = sub.get("items")
        if isinstance(items, dict) and ("properties" in items):
            _rows(items, f"{path}[].", out)


def catalog_reference() -> str:
    out = ["## The catalog folder", ""]
    for name, (top, schema) in FILES.items():
        need = "required" if name in REQUIRED_FILES else "optional"
        out += [f"### `{name}` ({need})", ""]
        out += ["| key | type | required | limits | what it is |", "|---|---|---|---|---|"]
        if top is not None:
            item = schema["properties"][top]["items"]
            _rows(item, f"{top}[].", out)
        else:
            _rows(schema, "", out)
        out.append("")
    return "\n".join(out)


def environment_reference() -> str:
    from . import hub

    doc = hub.__doc__ or ""
    items = re.findall(r"^- (``GPUPOOL_.*?)(?=^- ``|\Z)", doc, re.M | re.S)
    out = ["## The hub's environment", "", "| variable | what it is |", "|---|---|"]
    for item in items:
        names, _, text = item.partition(": ")
        names = " / ".join(f"`{n}`" for n in re.findall(r"``(GPUPOOL_[A-Z_]+)``", names))
        out.append(f"| {names} | {_cell(text.replace('``', '`'))} |")
    return "\n".join([*out, ""])


def _default(trait: TraitType) -> str:
    try:
        value = trait.default()
    except Exception:  # a dynamic default (computed at run time)
        return "(computed)"
    if value in ("", None, [], {}):
        return repr(value) if value is not None else "None"
    return f"`{value!r}`"


def classes() -> list[type[HasTraits]]:
    from .agent.app import AgentApp
    from .gpuspawner import GpuPoolSpawner
    from .pool.service import PoolService

    return [GpuPoolSpawner, PoolService, AgentApp]


def traitlets_reference() -> str:
    out = ["## Traitlets", ""]
    for cls in classes():
        out += [f"### `{cls.__name__}` ({cls.__module__})", ""]
        doc = inspect.getdoc(cls) or ""
        if doc:
            out += [doc.split("\n\n")[0], ""]
        own = {
            name: t
            for name, t in sorted(cls.class_own_traits(config=True).items())
            if not name.startswith("_")
        }
        for name, trait in own.items():
            help_text = textwrap.dedent(trait.help or "").strip()
            out += [
                f"#### `{cls.__name__}.{name}`",
                "",
                f"{type(trait).__name__}, default {_default(trait)}",
                "",
                help_text or "(no help)",
                "",
            ]
    return "\n".join(out)


def render() -> str:
    return (
        "\n".join(
            [HEADER, catalog_reference(), environment_reference(), traitlets_reference()]
        ).rstrip()
        + "\n"
    )


if __name__ == "__main__":
    sys.stdout.write(render())
