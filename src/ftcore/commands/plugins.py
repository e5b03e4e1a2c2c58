"""``ft plugins``: what is installed, from which distribution, and what failed to load."""

from __future__ import annotations

import json

import click

from ftcore.commands import COMMANDS
from ftcore.commands.output import examples


def _describe(info) -> str:
    provides = []
    for kind in ("methods", "formats", "shapes", "metrics", "rewards", "importers", "commands"):
        names = getattr(info, kind)
        if names:
            provides.append(f"{kind}: {', '.join(names)}")
    return "; ".join(provides) or "hooks only"


@click.command(epilog=examples("ft plugins", "ft plugins --hooks", "ft plugins --json", "ft --disable ftmetrics plugins"))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--hooks", "show_hooks", is_flag=True, help="Also show which hooks each plugin implements.")
def plugins(as_json: bool, show_hooks: bool) -> None:
    """List installed plugins: distribution, version, what they provide, and any that failed."""
    from ftcore.contract.plugins import clash_message, get_registry

    registry = get_registry()
    registry.commands(reserved=frozenset(COMMANDS))
    if as_json:
        payload = {
            "plugins": [info.as_dict() for info in registry.plugins],
            "failed": [info.as_dict() for info in registry.failed],
            "clashes": [{"kind": kind, "name": name, "plugins": [info.name for info in owners],
                         "error": clash_message(kind, name, owners)}
                        for (kind, name), owners in sorted(registry.clashes.items())],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    for info in registry.plugins:
        click.echo(f"{info.name:<12} {info.dist} {info.version:<10} {_describe(info)}")
        click.echo(f"{'':<12} from {info.module}")
        if show_hooks:
            click.echo(f"{'':<12} hooks: {', '.join(info.hooks)}")
    for info in registry.failed:
        click.echo(f"{info.name:<12} {info.dist} {info.version:<10} FAILED: {info.error}")
    for (kind, name), owners in sorted(registry.clashes.items()):
        click.echo(f"CLASH        {clash_message(kind, name, owners)}")


@click.group()
def plugin() -> None:
    """Create plugins."""


@plugin.command("new", epilog=examples(
    "ft plugin new mymethod                     # a method plugin in ./ft-mymethod",
    "ft plugin new jsonl_qa --kind format -o plugins/",
    "ft plugin new bleurt --kind metric",
    "ft plugin new brevity --kind reward             # a reward for RL methods",
))
@click.argument("name")
@click.option("--kind", type=click.Choice(["method", "format", "metric", "reward"]), default="method", show_default=True,
              help="What the plugin provides.")
@click.option("--output", "-o", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder to create the package in.")
def new(name: str, kind: str, output: str) -> None:
    """Write a ready-to-install plugin package providing the method/format/metric/reward NAME."""
    from ftcore.jobs.scaffold import new_plugin

    root = new_plugin(name, kind, output)
    # "pip install ft-x" would look ft-x up on the package index: name the folder as a path.
    folder = str(root) if root.is_absolute() or str(root).startswith(".") else f"./{root}"
    click.echo(f"wrote {root}: `pip install {folder}` then `ft plugins`; its tests: `pytest {root / 'tests'}`")
