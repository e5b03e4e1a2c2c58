"""Shipped plugins use ftcore's public API only: ``import ftcore`` / ``from ftcore import NAME``, NAME exported.

Read from the plugins' source with ``ast`` (no import), so an import inside a function counts too. A plugin's
tests may use more (``ftcore.testing``, the host's internals); its ``src`` may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ftcore

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "plugins").glob("*/src/**/*.py"))


def ftcore_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of ftcore or one of its modules in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "ftcore"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ftcore":
            found.append((node.lineno, node.module or "", [alias.name for alias in node.names]))
    return found


def test_every_shipped_plugin_is_read() -> None:
    names = {path.relative_to(ROOT / "plugins").parts[0] for path in SOURCES}
    assert {"ftlora", "ftqlora", "ftfull", "ftinstruct", "ftmetrics", "ftpref", "ftrl"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "plugins")))
def test_plugin_imports_only_public_ftcore(path: Path) -> None:
    problems = []
    for line, module, names in ftcore_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if module != "ftcore":
            problems.append(f"{where} imports the private module {module} (use `from ftcore import ...`)")
        problems += [f"{where} imports {name!r}, which ftcore does not export" for name in names
                     if name not in ftcore.__all__]
    assert not problems, "\n".join(problems)


def test_every_export_resolves() -> None:
    for name in ftcore.__all__:
        assert getattr(ftcore, name) is not None, name


def test_a_private_import_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "plugin.py"
    module.write_text("def hook():\n    from ftcore.models.loading import load_for_inference\n    import ftcore.testing\n")
    assert [entry[1] for entry in ftcore_imports(module)] == ["ftcore.models.loading", "ftcore.testing"]
