"""ftexport: the ``ft export`` command, a run as one GGUF file (llama.cpp, Ollama) plus an Ollama Modelfile,
checked against the run by a parity check. Importing it loads click only."""

from __future__ import annotations

import click

from ftcore import hookimpl

FTCORE_PLUGIN_API = 3


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``ft export``."""
    from ftexport.command import export

    cli.add_command(export)
