"""The ``ft`` command line.

Subcommands live in ``ftcore.commands.<name>`` and are imported only when they run (or when help
lists them); command modules import click only, and their bodies import the heavy libraries, so
``ft --help``, ``ft --version``, ``ft plugins`` and ``ft config validate`` never load torch.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from ftcore.commands import COMMANDS
from ftcore.errors import FtError, UsageError, unreachable_hub
from ftcore.util.redact import redact

#: Commands of ft's own plugin distributions: when one is missing, ``ft NAME`` says which distribution adds it.
PLUGIN_COMMANDS = {"export": "ftexport", "upload": "fthub"}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented pattern), followed by
    the commands plugins add through the ``register_commands`` hook."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(_plugin_commands())]

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0])
        if name not in COMMANDS and not name.startswith("-") and name not in _plugin_commands():
            raise UsageError(_unknown_command(name))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            found = _plugin_commands().get(cmd_name)
            return found[0] if found else None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own = [(name, self.get_command(ctx, name)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(70)) for name, command in own if not command.hidden])
        added = _plugin_commands()
        if added:
            with formatter.section("Commands from plugins"):
                formatter.write_dl([(name, f"{command.get_short_help_str(60)} [{info.dist}]")
                                    for name, (command, info) in sorted(added.items())])


def _plugin_commands() -> dict[str, tuple[click.Command, object]]:
    from ftcore.contract.plugins import get_registry

    return get_registry().commands(reserved=frozenset(COMMANDS))


def _unknown_command(name: str) -> str:
    """One line for ``ft NAME`` that nothing provides: the distribution that adds it, or a did-you-mean."""
    from ftcore.util.suggest import did_you_mean

    dist = PLUGIN_COMMANDS.get(name)
    if dist:
        return (f"`ft {name}` is added by the {dist} plugin distribution, which is not installed: "
                f"pip install {dist} (or ./plugins/{dist} from ft's repository)")
    from ftcore.contract.plugins import get_registry

    failed = "".join(f" ({failure})" for failure in get_registry().command_failures)
    return (f"no such command {name!r}{did_you_mean(name, [*COMMANDS, *_plugin_commands()])}; `ft --help` lists "
            f"them{failed}")


def _versions() -> str:
    from ftcore import __version__
    from ftcore.contract.plugins import get_registry

    lines = [f"ftcore {__version__}"]
    registry = get_registry()
    for info in registry.plugins:
        if info.name != "ftcore":
            lines.append(f"  {info.name}: {info.dist} {info.version}")
    for info in registry.failed:
        lines.append(f"  {info.name}: {info.dist} {info.version} (failed to load)")
    return "\n".join(lines)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_versions())
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="""\b
Examples:
  ft train --config cfg.yaml                       # fine-tune; writes a run directory
  ft benchmark --tuned runs/run1                   # base vs tuned on held-out data
  ft generate runs/run1 -p "Hello"                 # try the tuned model
  ft env                                           # versions and devices for a bug report

\b
Shell completion (bash; zsh and fish alike, see the docs):
  eval "$(_FT_COMPLETE=bash_source ft)"
""")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show ftcore's and every plugin's version.")
@click.option("--debug", is_flag=True, envvar="FT_DEBUG", help="Show full tracebacks on errors (or FT_DEBUG=1).")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--disable", "disabled", multiple=True, metavar="NAME", help="Do not load this plugin (repeatable).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, quiet: bool, disabled: tuple[str, ...]) -> None:
    """ft: fine-tune large language models with LoRA, QLoRA, full fine-tuning and more.

    Methods, dataset formats and metrics come from plugins; `ft plugins` lists them.
    """
    from ftcore.contract import plugins
    from ftcore.util.logs import setup_logging

    if ctx.invoked_subcommand not in READS_STDIN:
        _close_stdin()
    if debug:
        os.environ["FT_DEBUG"] = "1"
    if not _is_terminal(sys.stderr):
        _plain_progress()
    setup_logging(-1 if quiet else verbose)
    if disabled:
        plugins.disable(disabled)


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _plain_progress() -> None:
    """No redrawn progress bars when stderr is a file, a pipe or CI's log: ft prints progress as log lines there,
    and the libraries it calls (transformers' loading and saving, the Hub's downloads, datasets) print nothing.

    Set before those libraries are imported (they read these variables once); a user's own setting wins.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


#: The only commands that read standard input (``ft chat``: the user's turns).
READS_STDIN = {"chat"}


def _close_stdin() -> None:
    """Give this process an empty standard input: a library that asks a question there (transformers asks
    whether to run a model's code) reads end-of-file and refuses instead of taking piped input as a yes."""
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (kept open for the process's lifetime)


def _said_by_rank_zero(exc: FtError) -> bool:
    """True on ranks other than 0 for an interruption: every rank stops alike, and rank 0 says so once."""
    from ftcore.run.guard import Interrupted

    return isinstance(exc, Interrupted) and os.environ.get("RANK", "0") != "0"


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("FT_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ft`` console script: one line per error, traceback with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="ft", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.message = redact(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except FtError as exc:
        if _debugging(args):
            click.echo(redact(traceback.format_exc()), err=True, nl=False)
        if not _said_by_rank_zero(exc):
            click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in ft or a plugin: still one line unless debugging
        if _debugging(args):
            raise
        unreachable = unreachable_hub(exc)
        if unreachable is not None:  # the network, not a bug
            click.echo(redact(f"error: {unreachable}"), err=True)
            sys.exit(unreachable.exit_code)
        click.echo(redact(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"), err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
