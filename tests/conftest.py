"""Shared fixtures. The tiny model fixtures come from ftcore's pytest plugin (ftcore.testing.pytest_plugin)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_site(tmp_path: Path):
    """A directory that acts like site-packages for fake plugin distributions.

    ``add(dist, module_source, entry_name=...)`` writes ``<module>.py`` and a ``.dist-info`` with an
    ``ftcore`` entry point, so ``importlib.metadata`` discovers it exactly as an installed wheel.
    Put the directory on ``PYTHONPATH`` for subprocesses.
    """

    site = tmp_path / "site"
    site.mkdir()

    def add(dist: str, source: str, *, module: str | None = None, entry: str | None = None, version: str = "1.0") -> None:
        module = module or dist.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[ftcore]\n{entry or dist} = {module}\n")

    return FakeSite(site, add)


class FakeSite:
    """A fake site-packages directory; ``str(site)`` is its path, ``site.add(...)`` adds a distribution."""

    def __init__(self, path: Path, add) -> None:
        self.path = path
        self.add = add

    def __str__(self) -> str:
        return str(self.path)


@pytest.fixture
def fake_trackers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty ``wandb``/``tensorboard``/``mlflow`` packages on ``sys.path`` where the real ones are missing, so a
    config naming those trackers validates (ft refuses a tracker that is not installed) in tests that never use them."""
    import importlib.util

    site = tmp_path / "fake-trackers"
    for name in ("wandb", "tensorboard", "mlflow"):
        if importlib.util.find_spec(name) is None:
            (site / name).mkdir(parents=True)
            (site / name / "__init__.py").write_text('"""A stand-in: ft only checks that the tracker is installed."""\n')
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def single_thread():
    """One torch thread for the test: the tiny model gains nothing from more, and on a busy machine
    several threads per process spin against each other (10x slower measured on 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
