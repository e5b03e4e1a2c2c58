"""`ft plugin new` writes packages that install, show up in `ft plugins` and pass their own tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ftcore.errors import UsageError
from ftcore.jobs.scaffold import new_plugin
from ftcore.testing.process import run_ft


def _pip(*args: str) -> subprocess.CompletedProcess:
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args, *(isolation if args[0] == "install" else [])],
        capture_output=True, text=True,
    )


@pytest.mark.model  # installs and tests a plugin package: a minute, not for the quick tier
@pytest.mark.parametrize(("kind", "name"), [("method", "tmplmethod"), ("format", "tmplformat"), ("metric", "tmplmetric"),
                                           ("reward", "tmplreward")])
def test_generated_plugin_installs_lists_and_passes_its_tests(tmp_path, kind, name):
    result = run_ft("plugin", "new", name, "--kind", kind, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / f"ft-{name}"
    assert (root / "pyproject.toml").is_file() and (root / "README.md").is_file()

    # Installed into a folder of its own (put on PYTHONPATH), never into the environment the suite runs in.
    site = tmp_path / "site"
    installed = _pip("install", "--no-deps", "--target", str(site), str(root))
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listing = json.loads(run_ft("plugins", "--json", env=env).stdout)
    mine = [p for p in listing["plugins"] if p["dist"] == f"ft-{name}"]
    assert mine, listing
    assert name in mine[0][kind + "s"]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(root / "tests")],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout


def test_bad_name_and_kind_and_existing_folder(tmp_path):
    with pytest.raises(UsageError, match="invalid method name"):
        new_plugin("Bad Name", "method", tmp_path)
    with pytest.raises(UsageError, match="unknown plugin kind"):
        new_plugin("ok", "trainer", tmp_path)
    new_plugin("twice", "metric", tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        new_plugin("twice", "metric", tmp_path)


def test_install_hint_installs_the_folder(tmp_path, monkeypatch):
    """`pip install ft-NAME` would ask the package index for ft-NAME: the hint names the folder as a path."""
    from click.testing import CliRunner

    from ftcore.cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plugin", "new", "hinted", "--kind", "reward"])
    assert result.exit_code == 0, result.output
    assert "`pip install ./ft-hinted`" in result.output
    assert (tmp_path / "ft-hinted" / "src" / "ft_hinted" / "__init__.py").is_file()
