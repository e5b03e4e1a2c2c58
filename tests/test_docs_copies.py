"""Code the docs show inline as a copy of a repository file (``<!-- copy: PATH -->`` before the fence) is that
file, byte for byte: a worked example cannot drift from the plugin it documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_COPY = re.compile(r"^<!--\s*copy:\s*(?P<path>\S+)\s*-->$")


def copies() -> list[tuple[str, int, str, str]]:
    """``(page, line, path, block)`` for every marked block of the docs."""
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = _COPY.match(line.strip())
            if match:
                end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
                found.append((str(page.relative_to(ROOT)), i + 1, match["path"], "\n".join(lines[i + 2:end])))
    return found


def test_the_worked_examples_are_marked() -> None:
    paths = {path for _, _, path, _ in copies()}
    assert "tests/plugins/ftpairrank/src/ftpairrank/__init__.py" in paths
    assert "examples/plugins/fttopn/src/fttopn/__init__.py" in paths


@pytest.mark.parametrize(("page", "line", "path", "block"), copies(), ids=lambda v: str(v)[:60])
def test_inline_copy_matches_the_file(page: str, line: int, path: str, block: str) -> None:
    expected = (ROOT / path).read_text(encoding="utf-8").rstrip("\n")
    assert block == expected, f"{page}:{line}: the copy of {path} differs from the file; paste the file again"
