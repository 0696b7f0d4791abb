"""The catalog folder on disk: where it is, and its YAML files read and checked against the
schemas, each problem one line that names the file, the entry and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .schema import FILES, REQUIRED_FILES
from .schema_parts import SLUG_HELP

#: Where the catalog is when GPUPOOL_CONFIG_DIR is not set: ``hub_config/`` in the working
#: directory, as JupyterHub looks for ``jupyterhub_config.py`` there (in a checkout, its own).
DEFAULT_DIR = Path("hub_config")
#: What ``gpupool init DIR`` writes: ``hub_config/`` packaged as ``gpupool/catalog/starter``
#: by the wheel's build (setup.py); an editable install reads the checkout's folder itself.
_STARTER_DIRS = (
    Path(__file__).resolve().parent / "starter",
    Path(__file__).resolve().parents[2] / "hub_config",
)


class CatalogError(ValueError):
    """The catalog folder has problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid gpupool catalog:\n  " + "\n  ".join(problems))


def config_dir() -> Path:
    return Path(os.environ.get("GPUPOOL_CONFIG_DIR") or DEFAULT_DIR)


def starter_dir() -> Path:
    """The starter catalog this installation ships (the demo node and specs of hub_config/)."""
    for d in _STARTER_DIRS:
        if (d / "specs.yaml").is_file() and (d / "nodes.yaml").is_file():
            return d
    raise CatalogError([f"no starter catalog in this installation (looked in {_STARTER_DIRS[0]})"])


def _entry_name(top: str | None, path: list[Any], doc: Any) -> str:
    """'specs[2] (slug a100-20g)' for a path into a list of entries."""
    if top is None or len(path) < 2 or path[0] != top or not isinstance(path[1], int):
        return ""
    i = path[1]
    label = ""
    try:
        item = doc[top][i]
        key = "slug" if top == "specs" else "name"
        if isinstance(item, dict) and isinstance(item.get(key), str):
            label = f" ({key} '{item[key]}')"
    except (IndexError, KeyError, TypeError):
        pass
    return f"{top}[{i}]{label}"


def _key_path(top: str | None, path: list[Any]) -> str:
    rest = path[2:] if top is not None and len(path) >= 2 and path[0] == top else path
    out = ""
    for p in rest:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err: jsonschema.ValidationError) -> str:
    v, schema, inst = err.validator, err.schema, err.instance
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, dict) else []
        keys = ", ".join(repr(k) for k in extra)
        return f"unknown key {keys}; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"{err.message.split(' is a required')[0]} is required"
    if v == "enum":
        return f"{inst!r} is not allowed; allowed: {', '.join(map(str, schema['enum']))}"
    if v == "pattern":
        if schema["pattern"].startswith("^[a-z0-9]("):
            return f"{inst!r} is not a valid name; use {SLUG_HELP}"
        if schema["pattern"] == "^/":
            return f"{inst!r} must be an absolute path"
        return f"{inst!r} does not have the expected form ({schema.get('description') or schema['pattern']})"
    if v == "type":
        return f"must be {schema['type']}, got {inst!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[v]
        return f"{inst!r} is out of range; must be {word} {schema[v]}"
    if v == "minLength":
        return "must not be empty"
    if v == "anyOf":
        return f"{inst!r} is not allowed; {schema.get('description', 'see the schema')}"
    return err.message


def _schema_problems(fname: str, top: str | None, doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        where = [fname]
        entry = _entry_name(top, path, doc)
        if entry:
            where.append(entry)
        key = _key_path(top, path)
        if key:
            where.append(key)
        out.append(": ".join([*where, _describe(err)]))
    return out


def read_folder(directory: Path) -> tuple[dict[str, Any], list[str]]:
    """The folder's documents that passed their schema, by file name, and every problem."""
    docs: dict[str, Any] = {}
    problems: list[str] = []
    if not directory.is_dir():
        return {}, [
            f"{directory}: catalog folder not found (set GPUPOOL_CONFIG_DIR to a folder with "
            f"specs.yaml and nodes.yaml; `gpupool init {directory}` writes a starter one)"
        ]
    for path in sorted(directory.glob("*.y*ml")):
        if path.name not in FILES:
            problems.append(f"{path.name}: unknown catalog file; allowed files: {', '.join(FILES)}")
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            problems.append(f"{path.name}:{line}: not valid YAML: {getattr(e, 'problem', e)}")
            continue
        top, schema = FILES[path.name]
        if not isinstance(doc, dict):
            want = f"a mapping with the key '{top}'" if top else "a mapping"
            problems.append(f"{path.name}: must be {want}, got {type(doc).__name__}")
            continue
        found = _schema_problems(path.name, top, doc, schema)
        problems.extend(found)
        if not found:
            docs[path.name] = doc
    for name in REQUIRED_FILES:
        if not (directory / name).exists():
            problems.append(
                f"{name}: missing from {directory}; a catalog needs {' and '.join(REQUIRED_FILES)}"
            )
    return docs, problems
