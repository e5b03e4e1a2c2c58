"""``ft plugin new``: write a ready-to-install plugin package for a method, a dataset format, a metric or a reward.

The generated package has a pyproject with the ``ftcore`` entry point, one module with the hook
implementations, a test that subclasses ftcore's contract suite, and a README, written from the template files
in ``templates/plugin/`` (the method's builds on ftlora, a plugin like any third party's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

from ftcore.errors import UsageError

KINDS = ("method", "format", "metric", "reward")

#: The template files (``string.Template`` text) and ``kinds.json`` (each kind's summary and dependencies).
TEMPLATES = Path(__file__).parents[1] / "templates" / "plugin"


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def new_plugin(name: str, kind: str, output: str | Path = ".") -> Path:
    """Write a plugin package providing the ``kind`` named ``name`` under ``output``; return its folder."""
    from ftcore import PLUGIN_API_VERSION, __version__
    from ftcore.contract.specs import check_name

    if kind not in KINDS:
        raise UsageError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        check_name(kind, name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    module = "ft_" + re.sub(r"[^a-z0-9]", "_", name)
    dist = module.replace("_", "-")
    root = Path(output) / dist
    if root.exists():
        raise UsageError(f"{root} already exists; choose another name or --output")
    about = json.loads(_template("kinds.json"))[kind]
    values = {
        "name": name, "kind": kind, "dist": dist, "module": module,
        "summary": about["summary"], "plugin_api": PLUGIN_API_VERSION,
        "dependencies": ", ".join(f'"{d}"' for d in (f"ftcore>={__version__}", *about["dependencies"])),
    }
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"src/{module}/__init__.py": f"{kind}.py.tmpl",
        f"tests/test_{module}.py": f"test_{kind}.py.tmpl",
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(_template(template)).substitute(values), encoding="utf-8")
    return root
