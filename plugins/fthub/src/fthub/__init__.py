"""fthub: ``ft upload`` publishes a run directory to the Hugging Face Hub with a generated model card.

The command is added through the ``register_commands`` hook (plugin API 3); its module imports click only,
and ``huggingface_hub``, torch and the merge are imported when the command runs.
"""

from __future__ import annotations

import click

from ftcore import hookimpl

FTCORE_PLUGIN_API = 3


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``ft upload``."""
    from fthub.command import upload

    cli.add_command(upload)
