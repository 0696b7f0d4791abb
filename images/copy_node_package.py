"""Copy a Node package with the packages it needs at run time, so the copy runs on its own.

    python3 copy_node_package.py SRC DEST

A global npm install nests a package's dependencies in its own ``node_modules``; a local one
(``npm install --prefix .tools``, as tests/run.sh does) hoists them beside it, where a copy
of the package alone cannot find them (``Cannot find package 'commander'``). Each needed
package found outside SRC goes to ``DEST/node_modules``; Node's own lookup order decides
which copy of a name is the needed one. images/build.sh uses it for the hub image's
configurable-http-proxy. Standard library only: it runs on the build machine's python3.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def _meta(pkg: Path) -> dict:
    return json.loads((pkg / "package.json").read_text())


def _resolve(pkg: Path, name: str) -> Path | None:
    """Where Node finds ``name`` for code in ``pkg``: ``pkg/node_modules/name``, then the
    ``node_modules`` of each folder above."""
    for d in [pkg, *pkg.parents]:
        if d.name == "node_modules":
            continue
        found = d / "node_modules" / name
        if (found / "package.json").is_file():
            return found.resolve()
    return None


def copy_node_package(src: Path | str, dest: Path | str) -> list[str]:
    """Copy ``src`` to ``dest`` and the packages it needs from outside ``src`` into
    ``dest/node_modules``; return the names of those. A missing (non-optional) dependency
    raises ``FileNotFoundError`` naming the package that needs it."""
    src, dest = Path(src).resolve(), Path(dest)
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    added: list[str] = []
    seen: set[Path] = set()
    todo = [(src, n, True) for n in _meta(src).get("dependencies", {})]
    todo += [(src, n, False) for n in _meta(src).get("optionalDependencies", {})]
    while todo:
        pkg, name, required = todo.pop()
        found = _resolve(pkg, name)
        if found is None:
            if required:
                raise FileNotFoundError(
                    f"{_meta(pkg).get('name', pkg.name)} needs the package {name!r}, "
                    f"which is not installed where Node looks for it (from {pkg})"
                )
            continue
        if found in seen:
            continue
        seen.add(found)
        meta = _meta(found)
        todo += [(found, n, True) for n in meta.get("dependencies", {})]
        todo += [(found, n, False) for n in meta.get("optionalDependencies", {})]
        if src in found.parents:
            continue  # in the package's own node_modules: copied with it
        try:
            rel = found.relative_to(src.parent)  # hoisted beside the package
        except ValueError:
            rel = Path(name)  # from a node_modules further up
        if "node_modules" in rel.parts:
            continue  # nested in another needed package, which is copied whole
        target = dest / "node_modules" / rel
        if not target.exists():
            shutil.copytree(found, target, symlinks=True)
            added.append(str(rel))
    return sorted(added)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: copy_node_package.py SRC DEST", file=sys.stderr)
        return 2
    try:
        copy_node_package(argv[0], argv[1])
    except (OSError, ValueError) as e:
        print(f"copy_node_package: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
