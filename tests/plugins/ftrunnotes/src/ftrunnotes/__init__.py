"""A plugin that adds the command ``ft notes`` and writes ``notes.txt`` into every run (plugin API 3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ftcore import FtError, help_examples, hookimpl

FTCORE_PLUGIN_API = 3
NOTES = "notes.txt"


def _enabled() -> bool:
    """Notes are written only when ``FTRUNNOTES=1``: the suite installs this plugin beside every other test, whose
    runs must hold exactly ft's own files."""
    return os.environ.get("FTRUNNOTES") == "1"


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``ft notes RUN``: print what this plugin wrote into the run."""

    @cli.command(epilog=help_examples("ft notes runs/lora"))
    @click.argument("run", type=click.Path(path_type=Path))
    def notes(run: Path) -> None:
        """Print the notes ftrunnotes wrote into a run directory."""
        path = run / NOTES
        if not path.is_file():
            raise FtError(f"{run}: no {NOTES} (was ftrunnotes installed when this run trained?)")
        click.echo(path.read_text(encoding="utf-8"), nl=False)


@hookimpl
def run_started(config: Any, run_dir: Path) -> None:
    if not _enabled():
        return
    with (run_dir / NOTES).open("a", encoding="utf-8") as handle:
        handle.write(f"started: method={config.method}\n")


@hookimpl
def run_finished(run_dir: Path, manifest: dict[str, Any]) -> None:
    if not _enabled():
        return
    with (run_dir / NOTES).open("a", encoding="utf-8") as handle:
        loss = manifest["train_loss_mean"]
        handle.write(f"finished: steps={manifest['global_step']} loss={'none' if loss is None else f'{loss:.4f}'}\n")
