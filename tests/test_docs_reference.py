"""The generated reference pages match the code, every hook is documented, and the site builds strictly."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hook_names() -> list[str]:
    from ftcore.contract import hookspecs

    return [name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "ftcore_spec")]


def test_generated_reference_matches_the_code(tmp_path, fresh_plugins):
    written = load_generator().write_pages(tmp_path)
    assert {p.name for p in written} == {"config.md", "cli.md", "hooks.md"}
    stale = [p.name for p in written if p.read_text() != (REFERENCE / p.name).read_text()]
    assert not stale, f"docs/reference/{stale} differ from the code: run `python docs/gen_reference.py` and commit"


def test_generation_is_deterministic(tmp_path, fresh_plugins):
    generator = load_generator()
    first = {p.name: p.read_text() for p in generator.write_pages(tmp_path / "a")}
    second = {p.name: p.read_text() for p in generator.write_pages(tmp_path / "b")}
    assert first == second


def test_every_hook_is_in_the_reference_and_the_authoring_guide():
    hooks = hook_names()
    assert len(hooks) >= 8
    reference = (REFERENCE / "hooks.md").read_text()
    guide = (DOCS / "plugins" / "index.md").read_text()
    missing = [h for h in hooks if f"### `{h}`" not in reference] + [h for h in hooks if f"`{h}`" not in guide]
    assert not missing, f"hooks not documented: {missing}"


def test_every_command_and_config_key_is_in_the_reference(fresh_plugins):
    from ftcore.cli import cli
    from ftcore.config.schema import FtConfig
    from ftcore.contract.plugins import get_registry

    names = cli.list_commands(None)
    own = load_generator().own_distributions()
    added = get_registry().commands()
    cli_page = (REFERENCE / "cli.md").read_text()
    for name in names:
        if name in added and added[name][1].dist not in own:
            continue  # a test plugin's command
        assert f"## `ft {name}`" in cli_page, name
    config_page = (REFERENCE / "config.md").read_text()
    for name in FtConfig.model_fields:
        assert f"| `{name}` |" in config_page, name


def test_every_user_facing_error_has_a_troubleshooting_entry():
    from ftcore import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.FtError) and c is not errors.FtError]
    page = (DOCS / "troubleshooting.md").read_text()
    missing = [c.__name__ for c in classes if f"## {c.__name__}" not in page]
    assert not missing, f"troubleshooting.md lacks: {missing}"


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed (pip install mkdocs-material, or run `nox -s docs`)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "hooks" / "index.html").is_file()
