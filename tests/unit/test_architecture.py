"""The package's structure, checked from its source (issue 21).

- no import cycle between modules of the package (imports inside functions count too;
  those under ``if TYPE_CHECKING:`` do not, they never run);
- no module over 500 lines;
- the pool service and the rest of the hub side import nothing from the user side
  (``gpupool.lab``), and the user side nothing from the hub side's private parts;
- the shared contracts (the training job, NVML reading) depend on neither side.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# import name → folder, as pyproject.toml's package-dir maps them
PACKAGE_DIRS = {
    "gpupool": ROOT / "spawner",
    "gpupool.lab": ROOT / "labextension" / "gpupool_lab",
    "gpupool.kernels": ROOT / "kernels",
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if "node_modules" in rel.parts or "migrations" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            # a folder mapped to its own import name is not part of its parent's folder
            if name not in found or len(prefix) > len(found[name].as_posix()):
                found[name] = path
    # labextension/gpupool_lab lies outside spawner/, kernels too: no overlap to resolve
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                return True
    return False


def _imports(name: str) -> set[str]:
    """Modules of the package that module ``name`` imports (at any depth of its code)."""
    tree = ast.parse(MODULES[name].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    here = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and _type_checking_only(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{alias.name}" for alias in node.names]
        for target in targets:
            # the longest module of the package that the target names
            parts = target.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and ".".join(parts) != name:
                out.add(".".join(parts))
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_the_package():
    assert "gpupool.pool.service" in MODULES
    assert "gpupool.lab.serverext" in MODULES
    assert "gpupool.catalog.models" in GRAPH["gpupool.catalog.load"]


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_has_at_most_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines; split it by job"


# the one module that may join both sides: the ``gpupool`` command, whose lab-side
# subcommands (status, specs, usage, train) run inside a user's server
COMMAND_LINE = "gpupool.cli"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_hub_side_imports_nothing_from_the_lab():
    """The spawner, the pool service, the agent and the shared contracts never import the
    user side (gpupool.lab)."""
    hub_side = [
        n
        for n in MODULES
        if not _under(n, ("gpupool.lab", "gpupool.kernels")) and n != COMMAND_LINE
    ]
    assert "gpupool.pool.trainings.dispatch" in hub_side
    wrong = {n: sorted(t for t in GRAPH[n] if _under(t, ("gpupool.lab",))) for n in hub_side}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, f"hub-side modules import the lab: {wrong}"


def test_shared_contracts_depend_on_neither_side():
    contracts = ("gpupool.job", "gpupool.nvml")
    sides = ("gpupool.lab", "gpupool.pool", "gpupool.agent")
    for name in MODULES:
        if _under(name, contracts):
            wrong = sorted(t for t in GRAPH[name] if _under(t, sides))
            assert not wrong, f"{name} is a shared contract but imports {wrong}"
    assert any(_under(n, ("gpupool.job",)) for n in MODULES), "the training job module is missing"
    assert any(_under(n, ("gpupool.nvml",)) for n in MODULES), "the NVML module is missing"


def test_imports_use_the_package_name_never_a_folder_name():
    """``spawner``, ``gpupool_lab`` and ``hub_config`` are folders, not import names (a tool
    that resolves relative imports by folder writes them; they work only in a checkout)."""
    wrong = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            wrong += [
                f"{name}: {m}"
                for m in mods
                if m.split(".")[0] in ("spawner", "gpupool_lab", "hub_config", "labextension")
            ]
    assert not wrong, wrong


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_says_its_job(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    assert doc, f"{MODULES[name].relative_to(ROOT)}: no docstring; open with a sentence on its job"
