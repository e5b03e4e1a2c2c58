"""ftcore's layers (docs/architecture.md): imports only go down, never in a cycle, and nothing imports the CLI.

Every module of src/ftcore is parsed with ``ast``; its imports at module level and inside functions are edges of
the graph (an import of ``ftcore.a.b`` also runs ``ftcore/a/__init__.py``, so that package is an edge too).
Imports under ``if TYPE_CHECKING:`` are left out: they are annotations and never run. Nothing is imported, so
the test takes a second and needs no torch.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: The layers, top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = ("cli", "commands", "testing", "jobs", "run", "models", "data", "artifacts", "config", "contract", "base")

# --- layer mapping (tools/relayout.py rewrites this block) ---
#: The layer of each module, or of every module of a package (the longest matching name wins). ``ftcore`` itself
#: (the public API of ``__init__.py``) matches only itself.
MODULE_LAYERS = {
    "ftcore.__main__": "cli",
    "ftcore.cli": "cli",
    "ftcore.commands": "commands",
    "ftcore.testing": "testing",
    "ftcore.jobs": "jobs",
    "ftcore.run": "run",
    "ftcore.models": "models",
    "ftcore.data": "data",
    "ftcore.artifacts": "artifacts",
    "ftcore.config": "config",
    "ftcore": "contract",
    "ftcore.contract": "contract",
    "ftcore.errors": "base",
    "ftcore.util": "base",
}
# --- end of layer mapping ---

#: The only module that may import ftcore.cli: ``python -m ftcore``.
CLI_ENTRY = "ftcore.__main__"


def modules() -> dict[str, Path]:
    """Every module of ftcore by dotted name (a package by its own name, from its ``__init__.py``)."""
    found = {}
    for path in sorted((SRC / "ftcore").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The ftcore modules that running module ``name`` (at ``path``) imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from pkg import mod`` imports the module; ``from pkg import name`` only pkg.
            targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    edges = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if not target.startswith("ftcore"):
            continue
        # Importing ftcore.a.b runs ftcore/a/__init__.py first, unless the importer is already inside ftcore.a.
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            ancestor = ".".join(parts[:i])
            if not (name == ancestor or name.startswith(ancestor + ".")) or ancestor == target:
                edges.add(ancestor)
    edges.discard(name)
    return edges


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Each ftcore module → the ftcore modules it imports."""
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def layer_of(name: str) -> str | None:
    """The layer ``name`` belongs to by :data:`MODULE_LAYERS`, or None when no entry covers it."""
    if name == "ftcore":
        return MODULE_LAYERS.get(name)
    matches = [key for key in MODULE_LAYERS if key != "ftcore" and (name == key or name.startswith(key + "."))]
    return MODULE_LAYERS[max(matches, key=len)] if matches else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it began, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_has_a_layer_and_every_entry_a_module():
    names = modules()
    assert set(MODULE_LAYERS.values()) <= set(LAYERS)
    unplaced = [name for name in names if layer_of(name) is None]
    assert not unplaced, f"no layer for {unplaced}: add them to MODULE_LAYERS (tests/test_layers.py)"
    stale = [key for key in MODULE_LAYERS if not any(n == key or n.startswith(key + ".") for n in names)]
    assert not stale, f"MODULE_LAYERS names modules that do not exist: {stale}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_only_go_down():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = sorted(
        f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
        for name, targets in import_graph().items()
        for target in targets
        if name != CLI_ENTRY and rank[layer_of(target)] < rank[layer_of(name)]
    )
    assert not upward, "imports going up the layers (docs/architecture.md):\n" + "\n".join(upward)


def test_nothing_imports_the_cli():
    importers = sorted(name for name, targets in import_graph().items() if "ftcore.cli" in targets)
    assert importers == [CLI_ENTRY]


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("ftcore.top", "import ftcore.pkg.mod\n", {"ftcore.pkg", "ftcore.pkg.mod"}),
    ("ftcore.top", "from ftcore.pkg import mod, function\n", {"ftcore.pkg", "ftcore.pkg.mod"}),
    ("ftcore.top", "def f():\n    from ftcore import low, hookimpl\n", {"ftcore", "ftcore.low"}),
    ("ftcore.top", "if TYPE_CHECKING:\n    from ftcore.low import Thing\nimport json\n", set()),
    ("ftcore.pkg.other", "from .mod import x\nfrom ftcore.pkg.mod import y\n", {"ftcore.pkg.mod"}),
])
def test_the_graph_sees_every_kind_of_import(tmp_path, importer, source, expected):
    known = {name: Path() for name in ("ftcore", "ftcore.top", "ftcore.low", "ftcore.pkg", "ftcore.pkg.mod")}
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imported(importer, path, known) == expected


def test_the_graph_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
