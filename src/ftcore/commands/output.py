"""What the commands share about their output: ``--json``, colour and the ``Examples:`` section of ``--help``.

With ``--json`` a command prints one JSON object, its result, on standard output and nothing else there:
whatever it or the libraries it calls would print to standard output meanwhile goes to standard error, with
the logs. Scripts read stdout; people read stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click


def json_option(func: Callable) -> Callable:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as one JSON object on stdout (logs and progress stay on stderr).")(func)


@contextlib.contextmanager
def result_on_stdout(as_json: bool) -> Iterator[TextIO]:
    """Yield the stream the result goes to; in ``--json`` mode, send everything else printed meanwhile to stderr."""
    stdout = sys.stdout
    if not as_json:
        yield stdout
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield stdout


def print_json(payload: Any, stream: TextIO) -> None:
    """Write ``payload`` as indented JSON (paths and other objects as strings) to ``stream``."""
    stream.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()


def use_color(stream: TextIO, asked: bool | None = None) -> bool:
    """Colour when asked (``--color``/``--no-color``), else when ``stream`` is a terminal and ``NO_COLOR`` is unset.

    https://no-color.org: a ``NO_COLOR`` variable set to anything but the empty string turns colour off.
    """
    if asked is not None:
        return asked
    if os.environ.get("NO_COLOR", ""):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def examples(*lines: str) -> str:
    """An ``Examples:`` epilog for a command's ``--help``, kept as written (click's ``\\b`` marker)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) + "\n"


#: The public name plugins use for their own commands' epilogs (``from ftcore import help_examples``).
help_examples = examples
